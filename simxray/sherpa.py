"""The simxray emulator as a Sherpa model, and as a plain numpy callable.

The emulator predicts *expected counts per channel* with the ARF, RMF, exposure and the
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

For other tools: :func:`emulated_counts` (``nH=..., PhoIndex=...`` → counts (C,)) or
:class:`CountsFunction` (theta (B, P) → counts (B, C)).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import ParameterError, ResponseMismatchError, SimxrayError
from .inference.emulator import Emulator

PILEUP_PREFIX = "pileup."

try:  # Sherpa is optional: the numpy callable works without it
    from sherpa.models.model import ArithmeticModel
    from sherpa.models.parameter import Parameter
    HAVE_SHERPA = True
except ImportError:  # pragma: no cover - exercised only without Sherpa
    ArithmeticModel = object  # type: ignore[misc,assignment]
    HAVE_SHERPA = False

_CACHE: dict[str, Emulator] = {}


def get_emulator(emulator: str | os.PathLike | Emulator | None = None) -> Emulator:
    """An :class:`Emulator` (default: the shipped one), loaded once per directory."""
    if isinstance(emulator, Emulator):
        return emulator
    key = str(emulator) if emulator is not None else ""
    if key not in _CACHE:
        _CACHE[key] = Emulator.load(emulator)
    return _CACHE[key]


def sherpa_name(name: str) -> str:
    """simxray parameter name → Sherpa parameter name (``pileup.alpha`` → ``alpha``)."""
    return name[len(PILEUP_PREFIX):] if name.startswith(PILEUP_PREFIX) else name


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

def _default(lo: float, hi: float, log: bool) -> float:
    return math.sqrt(lo * hi) if log else 0.5 * (lo + hi)


class SimxrayPileup(ArithmeticModel):
    """Sherpa model: expected piled-up counts per channel from the simxray emulator.

    A full model (ARF, RMF, exposure and pileup included): use ``set_full_model``.  It is
    evaluated on the data's channel numbers; channels outside the emulator's range raise
    (restrict them with :func:`notice_emulator_channels`), except for the complete channel
    grid used in plots, where they are zero.
    """

    def __init__(self, name: str = "simxray", emulator: str | os.PathLike | Emulator | None = None):
        if not HAVE_SHERPA:  # pragma: no cover
            raise ImportError("SimxrayPileup needs Sherpa (pip install sherpa)")
        self._emu = get_emulator(emulator)
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

    @property
    def fixed_pileup(self) -> dict[str, float]:
        """Pileup parameters frozen at training (g0, n, ftime [s], fracexp, nterms)."""
        return {sherpa_name(k): v for k, v in self._emu.fixed.items()}

    def check_data(self, data, force: bool = False) -> list[str]:
        """Raise :class:`~simxray.errors.ResponseMismatchError` unless a Sherpa ``DataPHA``
        has the ARF/RMF (sha256), exposure, frame time and channels the emulator was trained
        for; ``force`` returns the problems instead."""
        from .io.ogip import read_pha

        path = getattr(data, "name", None)
        if not path or not os.path.isfile(str(path)):
            raise ResponseMismatchError("cannot check a data set that was not read from a PHA "
                                        "file", field="data")
        arf = data.get_arf() if hasattr(data, "get_arf") else None
        rmf = data.get_rmf() if hasattr(data, "get_rmf") else None
        spec = read_pha(str(path), arf=getattr(arf, "name", None) or None,
                        rmf=getattr(rmf, "name", None) or None, background="none")
        return self._emu.check_spectrum(spec, force=force)

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


__all__ = ["SimxrayPileup", "CountsFunction", "emulated_counts", "notice_emulator_channels",
           "get_emulator", "sherpa_name", "theta_from_model", "SimxrayModelError"]
