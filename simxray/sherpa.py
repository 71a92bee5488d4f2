"""simxray inside Sherpa: any model expression, the Davis pileup, and the emulator.

**Any simxray model** (:class:`SimxrayModel`) is an ordinary Sherpa source model, with the
XSPEC/relxill parameter names, units, hard limits, soft limits and frozen defaults
(:func:`simxray.models.fit_defaults`), on Sherpa's lo/hi energy grids (keV; wavelength
grids in Angstrom are converted), returning writable float64 photons/cm^2/s per bin::

    from sherpa.astro import ui
    from simxray.sherpa import SimxrayModel, SimxrayJDPileup

    ui.load_pha("3c273.pi"); ui.notice(0.5, 7)
    ui.set_source(SimxrayModel("tbabs*powerlaw", "src"))
    ui.set_pileup_model(SimxrayJDPileup("jdp", data=ui.get_data()))
    ui.fit(); ui.conf(); print(ui.calc_energy_flux(0.5, 7))

:class:`SimxrayJDPileup` is a drop-in for Sherpa's ``jdpileup`` (same parameters, same
``set_pileup_model`` interface, the same numbers to ~1e-8; simxray's batched torch
implementation, :mod:`simxray.instrument.pileup`).  ``data=`` takes the frame time from the
spectrum (TIMEDEL/EXPTIME) and the fractional exposure from the ARF (FRACEXPO).

Parallel ``conf``/``covar``: Sherpa forks worker processes (``numcores`` = all CPUs by
default); a forked child that used torch's OpenMP thread pool of the parent waits for ever
on that pool's lock.  Importing this module registers an ``os.register_at_fork`` hook
that sets torch to one thread in every forked child, so they evaluate serially and finish.

**The emulator** predicts *expected counts per channel* with the ARF, RMF, exposure and the
Davis (2001) pileup already included, so in Sherpa it is a **full model**: use
``set_full_model`` (``set_source`` would fold it through the response a second time; the
model detects that and raises a clear error instead of returning wrong numbers)::

    from sherpa.astro import ui
    from simxray.sherpa import SimxrayPileup, notice_emulator_channels

    ui.load_pha("simxray/data/source_bin10.pi")
    ui.ungroup()
    mdl = SimxrayPileup("emu")            # the shipped emulator (tbabs*powerlaw + jdpileup)
    mdl.check_data(ui.get_data())         # same ARF/RMF/exposure/frame time as the training?
    ui.set_full_model(mdl)
    notice_emulator_channels()            # channels 35-548 (0.5-8 keV)
    ui.set_stat("wstat")                  # the background spectrum is used (W-stat)
    ui.fit(); ui.conf(); draws = ui.get_draws(niter=2000)

Parameters carry XSPEC names (``nH`` [10^22 cm^-2], ``PhoIndex``, ``norm``
[photons/keV/cm^2/s at 1 keV]) and Sherpa's ``jdpileup`` names (``alpha``, ``f``); their
soft *and hard* limits are the emulator's training range, so Sherpa refuses values outside
it (no silent extrapolation).  Frozen pileup parameters (g0, n, ftime, fracexp, nterms) are
those the emulator was trained with.

Sherpa's flux functions need the source on an energy grid, which a counts-per-channel
model does not have: ``calc_energy_flux(0.5, 7, model=emu.source_model())`` integrates the
unpiled ``tbabs*powerlaw`` whose parameters are linked to the emulator's
(``emu.source_model("powerlaw")``: unabsorbed).

For other tools: :func:`emulated_counts` (``nH=..., PhoIndex=...`` → counts (C,)) or
:class:`CountsFunction` (theta (B, P) → counts (B, C)).
"""

from __future__ import annotations

import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import ParameterError, ResponseMismatchError, SimxrayError
from .models import Model, fit_defaults

if TYPE_CHECKING:  # the emulator loads lazily: SimxrayModel does not need it
    from .inference.emulator import Emulator

PILEUP_PREFIX = "pileup."
HC_KEV_ANGSTROM = 12.39841874  # keV Angstrom (Sherpa's hc)

try:  # Sherpa is optional: the numpy callable works without it
    from sherpa.models.model import ArithmeticModel, modelCacher1d
    from sherpa.models.parameter import Parameter
    HAVE_SHERPA = True
except ImportError:  # pragma: no cover - exercised only without Sherpa
    ArithmeticModel = object  # type: ignore[misc,assignment]
    HAVE_SHERPA = False

    def modelCacher1d(func):  # type: ignore[no-redef]  # noqa: N802 - Sherpa's name
        return func


# -- fork safety ------------------------------------------------------------------------------

_FORK_GUARD = False


def _one_torch_thread_in_child() -> None:
    """In a forked child: torch to one thread (the parent's OpenMP pool is unusable there)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.set_num_threads(1)
        except RuntimeError:  # pragma: no cover - torch refuses: nothing else to do
            pass


def install_fork_guard() -> bool:
    """Register :func:`_one_torch_thread_in_child` to run after every ``fork`` (once per
    process; done on import).  Returns whether it is installed."""
    global _FORK_GUARD
    if not _FORK_GUARD and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_one_torch_thread_in_child)
        _FORK_GUARD = True
    return _FORK_GUARD


install_fork_guard()

_CACHE: dict[str, Emulator] = {}


def get_emulator(emulator: str | os.PathLike | Emulator | None = None) -> Emulator:
    """An :class:`Emulator` (default: the shipped one), loaded once per directory."""
    from .inference.emulator import Emulator

    if isinstance(emulator, Emulator):
        return emulator
    key = str(emulator) if emulator is not None else ""
    if key not in _CACHE:
        _CACHE[key] = Emulator.load(emulator)
    return _CACHE[key]


def sherpa_name(name: str) -> str:
    """simxray parameter name → Sherpa parameter name (``pileup.alpha`` → ``alpha``)."""
    return name[len(PILEUP_PREFIX):] if name.startswith(PILEUP_PREFIX) else name


# -- any simxray model as a Sherpa model ------------------------------------------------------

def sherpa_parameter_names(model: Model) -> list[str]:
    """Sherpa attribute names of a model's parameters: the short name (``nH``,
    ``PhoIndex``) or, when ambiguous, ``component_Param`` (``powerlaw_norm``)."""
    names = [re.sub(r"\W", "_", n) for n in model.short_names]
    if len({n.lower() for n in names}) != len(names):  # pragma: no cover - defensive
        names = [re.sub(r"\W", "_", n) for n in model.param_names]
    return names


def energy_edges(args: tuple) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """Sherpa grid ``(x,)`` or ``(lo, hi)`` → (increasing keV edges, map to the grid's bins).

    ``(lo, hi)``: energy bins in keV, or wavelength bins in Angstrom (Sherpa's order for
    wavelength analysis: decreasing along the array), contiguous or not.  ``(x,)``: XSPEC's
    convention in Sherpa, ``x`` are n contiguous edges giving n values, the last 0.  The
    mapping takes per-bin *integrals* on the edges to the requested bins.
    """
    if len(args) == 1:
        x = np.asarray(args[0], dtype=np.float64).ravel()
        if x.size < 2 or np.any(np.diff(x) <= 0):
            raise SimxrayModelError("a 1-D grid must be increasing energies (keV), at least 2")
        return x, lambda v: np.append(v, 0.0)
    if len(args) != 2:
        raise SimxrayModelError(f"expected an energy grid (x,) or (lo, hi), got {len(args)} "
                                "arrays")
    lo = np.asarray(args[0], dtype=np.float64).ravel()
    hi = np.asarray(args[1], dtype=np.float64).ravel()
    if lo.shape != hi.shape or lo.size == 0:
        raise SimxrayModelError("lo and hi must be non-empty arrays of the same length")
    if lo.size > 1 and lo[0] > lo[-1]:  # Angstrom, decreasing: keV, increasing, same order
        if np.any(lo <= 0):
            raise SimxrayModelError("wavelength bins must be positive (Angstrom)")
        lo, hi = HC_KEV_ANGSTROM / hi, HC_KEV_ANGSTROM / lo
    if np.any(hi <= lo) or np.any(np.diff(lo) <= 0):
        raise SimxrayModelError("expected increasing bins with hi > lo")
    if np.all(hi[:-1] == lo[1:]):
        edges = np.append(lo, hi[-1])

        def take(v: np.ndarray) -> np.ndarray:
            return v
    else:  # gaps or overlaps: evaluate on the union of all edges, sum the pieces
        edges = np.union1d(lo, hi)
        i_lo, i_hi = np.searchsorted(edges, lo), np.searchsorted(edges, hi)

        def take(v: np.ndarray) -> np.ndarray:
            cum = np.concatenate([[0.0], np.cumsum(v)])
            return cum[i_hi] - cum[i_lo]
    return edges, take


class SimxrayModel(ArithmeticModel):
    """Sherpa model for a simxray expression (``SimxrayModel("tbabs*relxill", "src")``).

    Additive expressions give photons/cm^2/s per bin, multiplicative ones the bin-averaged
    factor.  Parameters: XSPEC/relxill names (``component_Param`` when ambiguous), units,
    hard limits, XSPEC soft limits and frozen defaults (e.g. relxill: z, Rin, Rout, Rbr,
    Index1/2 and Ecut frozen).  ``abund``: abundance table of tbabs/phabs for this model
    (``angr``, ``aspl``, ``grsa``, ``lodd``, ``wilm``; None follows
    :func:`simxray.physics.absorption.set_abund`, whose default is wilm for tbabs and angr
    for phabs).  The output is a new writable float64 array.
    """

    def __init__(self, expr: str | Model, name: str = "simxray", abund: str | None = None):
        if not HAVE_SHERPA:  # pragma: no cover
            raise ImportError("SimxrayModel needs Sherpa (pip install sherpa)")
        from .physics.absorption import _check_abund

        self.expression = expr if isinstance(expr, Model) else Model(expr)
        self._abund = _check_abund(abund)
        self._names = sherpa_parameter_names(self.expression)
        pars = []
        for q, pname in zip(self.expression.parameters, self._names, strict=True):
            spec = next(c.spec for c in self.expression.components if c.instance == q.component)
            lo, hi, frozen = fit_defaults(spec.name, q.parameter)
            par = Parameter(name, pname, float(q.parameter.default), min=lo, max=hi,
                            hard_min=float(q.parameter.min), hard_max=float(q.parameter.max),
                            units=q.parameter.unit, frozen=frozen)
            setattr(self, pname, par)
            pars.append(par)
        super().__init__(name, tuple(pars))

    @property
    def abund(self) -> str | None:
        """Abundance table of this model's tbabs/phabs (None: the global choice)."""
        return self._abund

    @abund.setter
    def abund(self, value: str | None) -> None:
        from .physics.absorption import _check_abund

        self._abund = _check_abund(value)
        self.cache_clear()

    def values(self, p: Any | None = None) -> dict[str, float]:
        """Qualified simxray names → values (current ones, or those of ``p``)."""
        vals = [par.val for par in self.pars] if p is None else list(p)
        return {q: float(v) for q, v in zip(self.expression.param_names, vals, strict=True)}

    def evaluate_edges(self, edges: np.ndarray, p: Any | None = None) -> np.ndarray:
        """The expression on increasing keV edges (N+1,) → (N,), with this model's table."""
        from .physics.absorption import using_abund

        with using_abund(self._abund):
            return self.expression.evaluate(edges, self.values(p))

    @modelCacher1d
    def calc(self, p: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        """Per-bin values on Sherpa's grid ``(lo, hi)`` or ``(x,)``."""
        edges, take = energy_edges(args)
        if self.expression.kind == "add":
            return np.ascontiguousarray(take(self.evaluate_edges(edges, p)), dtype=np.float64)
        # multiplicative: bin averages; go through integrals of the factor x bin width
        width = np.diff(edges)
        integral = take(self.evaluate_edges(edges, p) * width)
        return np.ascontiguousarray(integral / take(width), dtype=np.float64)


# -- the Davis pileup as Sherpa's jdpileup ----------------------------------------------------

class SimxrayJDPileup(ArithmeticModel):
    """Drop-in for Sherpa's ``jdpileup`` (``set_pileup_model``), computed by simxray.

    Same parameters, defaults and limits as Sherpa's JDPileup (``nterms`` at most 30, the
    most simxray and Sherpa's C code use), the same call interface: Sherpa's
    ``PileupResponse1D`` calls :meth:`calc` with the source model, the exposure and the ARF;
    the source is evaluated on Sherpa's pileup kernel grid (4096 bins to 15 keV) and the
    result is counts per ARF energy bin, which Sherpa folds through the RMF.  ``data``
    (a Sherpa ``DataPHA``) sets ``ftime`` from TIMEDEL/EXPTIME and ``fracexp`` from the ARF's
    FRACEXPO.  ``fraction`` holds the pileup fraction of the last evaluation.
    """

    def __init__(self, name: str = "jdpileup", data: Any | None = None):
        if not HAVE_SHERPA:  # pragma: no cover
            raise ImportError("SimxrayJDPileup needs Sherpa (pip install sherpa)")
        from .instrument.pileup import TINY

        self.alpha = Parameter(name, "alpha", 0.5, 0.0, 1.0, 0.0, 1.0)
        self.g0 = Parameter(name, "g0", 1.0, TINY, 1.0, TINY, 1.0, frozen=True)
        self.f = Parameter(name, "f", 0.95, 0.9, 1.0, 0.0, 1.0)
        self.n = Parameter(name, "n", 1.0, TINY, 100.0, TINY, 2048.0, alwaysfrozen=True)
        self.ftime = Parameter(name, "ftime", 3.241, TINY, 5.0, TINY, 100.0, "sec",
                               alwaysfrozen=True)
        self.fracexp = Parameter(name, "fracexp", 0.987, 0.0, 1.0, 0.0, 1.0, alwaysfrozen=True)
        self.nterms = Parameter(name, "nterms", 30, 1, 30, 1, 30, alwaysfrozen=True)
        self.fraction = float("nan")
        self.photons_per_frame = float("nan")
        self.num_terms = 0
        self._piles: dict[tuple, Any] = {}
        super().__init__(name, (self.alpha, self.g0, self.f, self.n, self.ftime, self.fracexp,
                                self.nterms))
        if data is not None:
            self.setup_from_data(data)

    def setup_from_data(self, data: Any) -> dict[str, float]:
        """Frame time (s, TIMEDEL, else EXPTIME + 0.04104) and FRACEXPO from a DataPHA."""
        hdr = dict(getattr(data, "header", None) or {})
        ftime = hdr.get("TIMEDEL") or (hdr["EXPTIME"] + 0.04104 if hdr.get("EXPTIME") else None)
        arf = data.get_arf() if hasattr(data, "get_arf") else None
        frac = dict(getattr(arf, "header", None) or {}).get("FRACEXPO")
        out = {}
        if ftime:
            self.ftime.val = out["ftime"] = float(ftime)
        if frac is not None:
            self.fracexp.val = out["fracexp"] = float(frac)
        return out

    def pileup(self, energ_lo: np.ndarray, energ_hi: np.ndarray, specresp: np.ndarray,
               exposure: float):
        """The simxray :class:`~simxray.instrument.pileup.Pileup` for this ARF and exposure
        (cached): batched evaluation, ``pileup(source (B, K), PileupParams(...))``."""
        import scipy.sparse as sp

        from .instrument.pileup import Pileup
        from .instrument.response import Response

        lo, hi = np.asarray(energ_lo, np.float64), np.asarray(energ_hi, np.float64)
        area = np.asarray(specresp, np.float64)
        key = (lo.tobytes(), hi.tobytes(), area.tobytes(), float(exposure))
        pile = self._piles.get(key)
        if pile is None:
            resp = Response(lo, hi, area, sp.identity(lo.size, format="csr"), float(exposure),
                            device="cpu", name="ARF")
            pile = self._piles[key] = Pileup(resp)
            while len(self._piles) > 4:
                self._piles.pop(next(iter(self._piles)))
        return pile

    def calc(self, p: Any, arf_source: Any, exposure_time: float, min_energy: np.ndarray,
             max_energy: np.ndarray, specresp: np.ndarray, model: Callable) -> np.ndarray:
        """Piled counts per ARF energy bin (JDPileup's signature)."""
        from .instrument.pileup import PileupParams

        names = ("alpha", "g0", "f", "n", "ftime", "fracexp", "nterms")
        pars = dict(zip(names, (float(v) for v in p), strict=True))
        pars["nterms"] = int(round(pars["nterms"]))
        pile = self.pileup(min_energy, max_energy, specresp, exposure_time)
        if np.size(arf_source) != pile.response.n_energies:
            raise ResponseMismatchError(
                f"the source has {np.size(arf_source)} bins but the ARF "
                f"{pile.response.n_energies}; expected the RMF and ARF on one energy grid",
                field=f"{self.name}: ARF")
        e = pile.source_edges
        src = np.asarray(model(e[:-1], e[1:]), dtype=np.float64)
        out = pile(src[None, :], PileupParams(**pars))
        self.fraction = float(out.fraction[0])
        self.photons_per_frame = float(out.photons_per_frame[0])
        self.num_terms = int(out.num_terms[0])
        return np.array(out.counts[0].detach().cpu().numpy(), dtype=np.float64)

    def evaluate_batch(self, data: Any, source: Callable[[np.ndarray, np.ndarray], np.ndarray]
                       | np.ndarray, **params: Any) -> tuple[np.ndarray, np.ndarray]:
        """Batched evaluation for a DataPHA's ARF and exposure: (counts per ARF bin (B, M),
        pileup fraction (B,)).  ``source``: photons/cm^2/s per kernel bin (B, K) on
        :attr:`Pileup.source_edges`, or ``source(lo, hi)`` returning that; ``params``: arrays
        (B,) or floats overriding this model's current values."""
        from .instrument.pileup import PileupParams

        arf = data.get_arf()
        pile = self.pileup(arf.energ_lo, arf.energ_hi, arf.specresp, data.exposure)
        e = pile.source_edges
        src = np.atleast_2d(np.asarray(source(e[:-1], e[1:]) if callable(source) else source,
                                       dtype=np.float64))
        vals: dict[str, Any] = {par.name: par.val for par in self.pars}
        vals.update(params)
        vals["nterms"] = np.rint(vals["nterms"]).astype(int) if np.ndim(vals["nterms"]) \
            else int(round(float(vals["nterms"])))
        out = pile(src, PileupParams(**vals))
        return (out.counts.detach().cpu().numpy().copy(),
                out.fraction.detach().cpu().numpy().copy())

    def __str__(self) -> str:
        s = super().__str__()
        if np.isfinite(self.fraction):
            s += (f"\n   photons per frame: {self.photons_per_frame:g}, terms: "
                  f"{self.num_terms}\n   *** pileup fraction: {self.fraction:g}")
        return s


# -- numpy callable ---------------------------------------------------------------------------

class CountsFunction:
    """``f(theta (B, P) or (P,)) -> expected source counts (B, C) or (C,)`` on the emulator.

    ``names`` (Sherpa/XSPEC names), ``low``/``high`` (training range), ``channel`` (C,),
    ``e_min``/``e_max`` (C,) keV.  ``on_range="error"`` (default) raises
    :class:`~simxray.errors.ParameterError` outside the training range; ``"warn"`` clamps
    with a warning.
    """

    def __init__(self, emulator: str | os.PathLike | Emulator | None = None,
                 on_range: str = "error"):
        self.emulator = get_emulator(emulator)
        self.on_range = on_range
        self.names = [sherpa_name(n) for n in self.emulator.names]
        self.low, self.high = self.emulator.low, self.emulator.high
        self.channel = self.emulator.channel
        self.e_min, self.e_max = self.emulator.e_min, self.emulator.e_max

    def __call__(self, theta: np.ndarray) -> np.ndarray:
        t = np.asarray(theta, dtype=float)
        mu = self.emulator.expected(np.atleast_2d(t), on_range=self.on_range)
        return mu[0] if t.ndim == 1 else mu


def emulated_counts(emulator: str | os.PathLike | Emulator | None = None,
                    on_range: str = "error", **params: float) -> np.ndarray:
    """Expected source counts (C,) in the emulator's channels for named parameters
    (XSPEC/Sherpa names: ``nH``, ``PhoIndex``, ``norm``, ``alpha``, ``f``; every one needed)."""
    fn = CountsFunction(emulator, on_range)
    missing = [n for n in fn.names if n not in params]
    extra = [n for n in params if n not in fn.names]
    if missing or extra:
        raise ParameterError(f"expected exactly {', '.join(fn.names)}; missing "
                             f"{missing or 'none'}, unknown {extra or 'none'}", field="params")
    return fn(np.array([float(params[n]) for n in fn.names]))


# -- the Sherpa model -------------------------------------------------------------------------

def _pha_of(data):
    """The :class:`~simxray.io.ogip.Spectrum` behind a Sherpa ``DataPHA`` (its file, ARF,
    RMF; exposure and frame time from the header)."""
    from .io.ogip import read_pha

    path = getattr(data, "name", None)
    if not path or not os.path.isfile(str(path)):
        raise ResponseMismatchError("cannot check a data set that was not read from a PHA "
                                    "file", field="data")
    arf = data.get_arf() if hasattr(data, "get_arf") else None
    rmf = data.get_rmf() if hasattr(data, "get_rmf") else None
    return read_pha(str(path), arf=getattr(arf, "name", None) or None,
                    rmf=getattr(rmf, "name", None) or None, background="none")


def _default(lo: float, hi: float, log: bool) -> float:
    return math.sqrt(lo * hi) if log else 0.5 * (lo + hi)


class SimxrayPileup(ArithmeticModel):
    """Sherpa model: expected piled-up counts per channel from the simxray emulator.

    A full model (ARF, RMF, exposure and pileup included): use ``set_full_model``.  It is
    evaluated on the data's channel numbers; channels outside the emulator's range raise
    (restrict them with :func:`notice_emulator_channels`), except for the complete channel
    grid used in plots, where they are zero.
    """

    def __init__(self, name: str = "simxray", emulator: str | os.PathLike | Emulator | None = None,
                 data=None):
        if not HAVE_SHERPA:  # pragma: no cover
            raise ImportError("SimxrayPileup needs Sherpa (pip install sherpa)")
        self._emu = get_emulator(emulator)
        if self._emu.covariate_names:        # one network for several observing modes
            if data is None:
                raise ParameterError("this emulator serves several observing modes; pass the "
                                     "data set it models (data=ui.get_data()) or "
                                     "emulator=emu.at(exposure=..., frame_time=...)",
                                     field="data")
            self._emu = self._emu.for_spectrum(_pha_of(data))
        units = dict(self._emu.config.get("units", {}))
        if "powerlaw" in str(self._emu.config.get("model", "")) and not units.get("norm"):
            units["norm"] = "photons/keV/cm^2/s at 1 keV"      # XSPEC powerlaw norm
        pars = []
        for j, n in enumerate(self._emu.names):
            lo, hi = float(self._emu.low[j]), float(self._emu.high[j])
            p = Parameter(name, sherpa_name(n), _default(lo, hi, bool(self._emu.log[j])),
                          min=lo, max=hi, hard_min=lo, hard_max=hi, units=units.get(n, ""))
            setattr(self, sherpa_name(n), p)
            pars.append(p)
        self._lo_ch = int(self._emu.channel[0])
        self._hi_ch = int(self._emu.channel[-1])
        super().__init__(name, tuple(pars))

    @property
    def emulator(self) -> Emulator:
        return self._emu

    def source_model(self, expr: str | None = None, name: str | None = None) -> SimxrayModel:
        """The unpiled source as a :class:`SimxrayModel` whose parameters are *linked* to
        this model's, for Sherpa's flux functions::

            ui.calc_energy_flux(0.5, 7, model=emu.source_model())            # absorbed
            ui.calc_energy_flux(0.5, 7, model=emu.source_model("powerlaw"))  # unabsorbed

        ``expr`` defaults to the emulator's own expression (e.g. ``tbabs*powerlaw``); its
        parameters that the emulator has (nH, PhoIndex, norm) follow the fit.
        """
        src = SimxrayModel(expr or str(self._emu.config.get("model", "tbabs*powerlaw")),
                           name or f"{self.name}_source")
        mine = {p.name.lower(): p for p in self.pars}
        for par in src.pars:
            if par.name.lower() in mine:
                par.link = mine[par.name.lower()]
        return src

    @property
    def fixed_pileup(self) -> dict[str, float]:
        """Pileup parameters frozen at training (g0, n, ftime [s], fracexp, nterms)."""
        return {sherpa_name(k): v for k, v in self._emu.fixed.items()}

    def check_data(self, data, force: bool = False) -> list[str]:
        """Raise :class:`~simxray.errors.ResponseMismatchError` unless a Sherpa ``DataPHA``
        has the ARF/RMF (sha256), exposure, frame time and channels the emulator was trained
        for; ``force`` returns the problems instead."""
        return self._emu.check_spectrum(_pha_of(data), force=force)

    def calc(self, p: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        """Expected counts for parameters ``p`` on channel numbers ``args[0]``."""
        if len(args) != 1:
            raise _full_model_error(self.name)
        ch = np.rint(np.asarray(args[0], dtype=float)).astype(int)
        inside = (ch >= self._lo_ch) & (ch <= self._hi_ch)
        if not inside.all() and ch.size != self._emu.config.get("spectrum_channels", -1):
            raise _channel_error(self.name, ch[~inside], self._lo_ch, self._hi_ch)
        mu = self._emu.expected(np.asarray(p, dtype=float)[None, :])[0]
        out = np.zeros(ch.size)
        out[inside] = mu[ch[inside] - self._lo_ch]
        return out


class SimxrayModelError(SimxrayError):
    """A Sherpa model used the wrong way (raised from :meth:`SimxrayPileup.calc`)."""


def _full_model_error(name: str) -> Exception:
    return SimxrayModelError(
        f"{name}: this model already includes the ARF, RMF, exposure and pileup, and was "
        "evaluated on an energy grid (set_source folds it through the response again); use "
        "set_full_model(...) instead")


def _channel_error(name: str, bad: np.ndarray, lo: int, hi: int) -> Exception:
    return SimxrayModelError(
        f"{name}: channels {int(bad.min())}-{int(bad.max())} are noticed but lie outside the "
        f"emulator's channels {lo}-{hi}; ungroup() and call "
        "simxray.sherpa.notice_emulator_channels()")


def notice_emulator_channels(id: int | str | None = None, model: SimxrayPileup | None = None,
                             emulator: str | os.PathLike | Emulator | None = None) -> list[int]:
    """Ignore every channel of a loaded Sherpa data set except the emulator's (e.g. 35-548);
    returns [first, last]."""
    from sherpa.astro import ui

    emu = model.emulator if model is not None else get_emulator(emulator)
    lo, hi = int(emu.channel[0]), int(emu.channel[-1])
    data = ui.get_data(id)
    old = data.units
    try:
        data.units = "channel"
        data.notice(None, None, ignore=True)
        data.notice(lo, hi)
    finally:
        data.units = old
    return [lo, hi]


def theta_from_model(model: SimxrayPileup) -> dict[str, float]:
    """The model's current parameter values by simxray name (``pileup.alpha``, ...)."""
    return {n: float(p.val) for n, p in zip(model.emulator.names, model.pars, strict=True)}


def values(params: Mapping[str, float]) -> dict[str, float]:
    """simxray names → Sherpa names."""
    return {sherpa_name(k): float(v) for k, v in params.items()}


__all__ = ["SimxrayModel", "SimxrayJDPileup", "install_fork_guard", "energy_edges",
           "sherpa_parameter_names", "SimxrayPileup", "CountsFunction", "emulated_counts", "notice_emulator_channels",
           "get_emulator", "sherpa_name", "theta_from_model", "SimxrayModelError"]
