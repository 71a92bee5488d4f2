"""Trusted-tool references for the real-data benchmark: Sherpa and BXA/UltraNest on real ACIS spectra.

Each setup fits an absorbed power law times Sherpa's ``jdpileup`` (Davis 2001) to a real
Chandra ACIS spectrum in ``../shared/data/chandra``:

* Sherpa: several starting points, Nelder-Mead then Levenberg-Marquardt (then Monte Carlo
  from the best point as a safety net), the lowest statistic wins; ``conf`` 1-sigma errors on
  nH (1e22 cm^-2) and PhoIndex.
* BXA (UltraNest) on the same Sherpa model, statistic and priors: posterior medians, 68 %
  intervals, sd, ln(evidence), likelihood calls and wall seconds.

There is no XSPEC here, so the absorption is simxray's own ``wabs`` (Morrison & McCammon 1983)
wrapped as a Sherpa model (:class:`SimxrayAbsorption`); the power law (``powlaw1d``) and the
pileup model (``jdpileup``) are Sherpa's own.

The W-stat setups use Poisson likelihoods on ungrouped channels for source and background
(Sherpa ``wstat``, background not subtracted).  The walkthrough setup reproduces Sherpa's pileup
thread: chi2gehrels on the file's grouping (10 channels per group), background subtracted.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SIMXRAY_SHARED", REPO.parent / "shared"))
CHANDRA = SHARED / "data" / "chandra"

#: The two parameters every method is compared on, as (Sherpa component, parameter) names.
KEY_PARAMS = ("nH", "PhoIndex")


@dataclass(frozen=True)
class Prior:
    """One prior: ``kind`` is ``loguniform`` or ``uniform`` on [lo, hi]."""

    kind: str
    lo: float
    hi: float


#: Priors of issue 12 (nH in 1e22 cm^-2, ampl in photons/cm^2/s/keV at 1 keV).
BXA_PRIORS: dict[str, Prior] = {
    "nH": Prior("loguniform", 0.01, 20.0),
    "PhoIndex": Prior("uniform", 0.0, 4.0),
    "norm": Prior("loguniform", 1e-5, 0.1),
    "alpha": Prior("uniform", 0.0, 1.0),
    "f": Prior("uniform", 0.85, 1.0),
}


@dataclass(frozen=True)
class Setup:
    """A benchmark setup: spectrum, model, energy range, statistic and pileup settings.

    spectrum : file name in ``../shared/data/chandra`` (its header names ARF, RMF, background).
    elo, ehi : noticed energy range (keV).
    stat : Sherpa statistic (``wstat``: Poisson source + background, ungrouped;
        ``chi2gehrels``: the walkthrough's chi^2 on grouped, background-subtracted data).
    ftime : jdpileup frame time (s); fracexp : jdpileup fractional exposure.
    """

    name: str
    spectrum: str
    model: str = "wabs*powerlaw"
    elo: float = 1.0
    ehi: float = 7.0
    stat: str = "wstat"
    ftime: float = 3.2
    fracexp: float = 1.0
    priors: dict[str, Prior] = field(default_factory=lambda: dict(BXA_PRIORS))
    bxa: bool = True
    note: str = ""

    @property
    def path(self) -> Path:
        return CHANDRA / self.spectrum

    @property
    def grouped(self) -> bool:
        """chi^2 uses the file's GROUPING; the Poisson likelihood is on ungrouped channels."""
        return self.stat.startswith("chi2")

    @property
    def subtract(self) -> bool:
        return self.stat.startswith("chi2")


SETUPS: dict[str, Setup] = {s.name: s for s in [
    Setup("ngc4258_wstat_1-7", "source_bin10.pi", elo=1.0, ehi=7.0, stat="wstat", ftime=3.2,
          fracexp=1.0, note="NGC 4258 (ObsID 1618), Sherpa pileup walkthrough settings "
          "(ftime 3.2 s, fracexp 1, f >= 0.85), W-stat on ungrouped channels."),
    Setup("ngc4258_chi2gehrels_1-7", "source_bin10.pi", elo=1.0, ehi=7.0, stat="chi2gehrels",
          ftime=3.2, fracexp=1.0, bxa=False,
          note="Sherpa pileup walkthrough: chi2gehrels on the file's grouping (10 channels per "
          "group), background subtracted, 1-7 keV; Sherpa regression (XSPEC wabs): nH 6.12101, "
          "gamma 1.41887, statistic 53.6112 on 42 bins."),
    Setup("3c273_zeroth_wstat_0.5-7", "3c273.pi", elo=0.5, ehi=7.0, stat="wstat",
          ftime=3.24104, fracexp=1.0,
          note="3C 273 (ObsID 459) HETG zeroth order; ftime = TIMEDEL 3.24104 s from the PHA "
          "header (frame time including the 41 ms transfer, as jdpileup's 'frame time'), "
          "fracexp = FRACEXPO 1.0 from the ARF header."),
    Setup("csc1575_wstat_0.5-7", "acisf01575_001N001_r0085_pha3.fits.gz", elo=0.5, ehi=7.0,
          stat="wstat", ftime=3.24104, fracexp=1.0,
          note="CSC per-source spectrum (ObsID 1575): the header has no TIMEDEL; the frame time "
          "3.24104 s follows from DTCOR = 1 - 0.04104/TIMEDEL = 0.98733739787229 (full-frame "
          "TIMED mode, 41.04 ms transfer); the ARF has no FRACEXPO, so fracexp = 1. "
          "Background from the file's second SPECTRUM extension (HDUCLAS2 = BKG)."),
]}


# ---------------------------------------------------------------------------------------
# simxray absorption as a Sherpa model
# ---------------------------------------------------------------------------------------

def _absorption_class():
    """Build the Sherpa model class lazily (Sherpa is an optional dependency)."""
    from sherpa.models.model import ArithmeticModel
    from sherpa.models.parameter import Parameter

    from simxray.models import Model

    class SimxrayAbsorption(ArithmeticModel):
        """simxray's ``wabs``/``tbabs``/``phabs`` transmission (bin average) as a Sherpa model.

        nH in 1e22 atoms/cm^2; evaluated on Sherpa's (lo, hi) energy grid in keV.
        """

        def __init__(self, name: str = "abs1", kind: str = "wabs"):
            self._sx = Model(kind)
            self.nH = Parameter(name, "nH", 1.0, min=0.0, max=100.0, hard_min=0.0,
                                hard_max=1e6, units="10^22 atoms / cm^2")
            ArithmeticModel.__init__(self, name, (self.nH,))

        def calc(self, p, lo, hi=None, *args, **kwargs):   # noqa: ANN001 - Sherpa signature
            if hi is None:
                raise ValueError("simxray absorption needs an integrated (lo, hi) energy grid")
            lo = np.asarray(lo, dtype=float)
            hi = np.asarray(hi, dtype=float)
            flip = lo.size > 1 and lo[0] > lo[-1]
            if flip:
                lo, hi = lo[::-1], hi[::-1]
            if lo.size > 1 and np.allclose(lo[1:], hi[:-1], rtol=1e-6, atol=0.0):
                edges = np.append(lo, hi[-1])
                out = np.array(self._sx.evaluate(edges, {"nH": float(p[0])}), dtype=np.float64)
            else:                      # non-contiguous grid: bin by bin
                out = np.array([self._sx.evaluate(np.array([a, b]), {"nH": float(p[0])})[0]
                                for a, b in zip(lo, hi, strict=True)], dtype=np.float64)
            return out[::-1].copy() if flip else out

    return SimxrayAbsorption


# ---------------------------------------------------------------------------------------
# Sherpa session set-up
# ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence Sherpa's logger and stdout chatter."""
    import logging

    lg = logging.getLogger("sherpa")
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        lg.setLevel(old)


@dataclass
class SherpaModel:
    """Handles to the model components of a loaded setup."""

    absorb: object
    power: object
    jdp: object

    def params(self) -> dict[str, object]:
        """Free parameters under the benchmark's names."""
        return {"nH": self.absorb.nH, "PhoIndex": self.power.gamma, "norm": self.power.ampl,
                "alpha": self.jdp.alpha, "f": self.jdp.f}


def load_setup(setup: Setup) -> SherpaModel:
    """Reset ``sherpa.astro.ui`` and load data, filter, statistic and model for ``setup``."""
    import sherpa.astro.ui as ui

    if not setup.path.is_file():
        raise FileNotFoundError(f"spectrum not found: {setup.path}")
    cls = _absorption_class()
    with _quiet():
        ui.clean()
        ui.load_pha(str(setup.path))
        d = ui.get_data()
        if d.get_background() is None:
            raise RuntimeError(f"no background found for {setup.path}")
        if setup.grouped:
            if not d.grouped:
                raise RuntimeError(f"{setup.path} has no GROUPING to use")
        else:
            ui.ungroup()
        if setup.subtract:
            ui.subtract()
        ui.notice(setup.elo, setup.ehi)
        ui.set_stat(setup.stat)
        absorb = cls("abs1", "wabs")
        power = ui.create_model_component("powlaw1d", "power")
        jdp = ui.create_model_component("jdpileup", "jdp")
        ui.set_source(absorb * power)
        ui.set_pileup_model(jdp)
    jdp.ftime = setup.ftime
    jdp.fracexp = setup.fracexp
    jdp.f.min = 0.85
    jdp.g0.frozen = True
    jdp.n.frozen = True
    jdp.ftime.frozen = True
    jdp.fracexp.frozen = True
    jdp.nterms.frozen = True
    m = SherpaModel(absorb, power, jdp)
    for name, par in m.params().items():       # the fit and the sampler share the prior box
        pr = setup.priors[name]
        val = min(max(float(par.val), pr.lo), pr.hi)
        ui.set_par(par, val=val, min=pr.lo, max=pr.hi)
    return m


def _set(m: SherpaModel, values: dict[str, float]) -> None:
    for k, v in values.items():
        m.params()[k].val = v


def _values(m: SherpaModel) -> dict[str, float]:
    return {k: float(p.val) for k, p in m.params().items()}


# ---------------------------------------------------------------------------------------
# Sherpa best fit and conf errors
# ---------------------------------------------------------------------------------------

STARTS: list[dict[str, float]] = [
    {"nH": 1.0, "PhoIndex": 1.5, "norm": 1e-3, "alpha": 0.5, "f": 0.95},
    {"nH": 6.0, "PhoIndex": 1.4, "norm": 2e-3, "alpha": 0.5, "f": 0.92},
    {"nH": 0.1, "PhoIndex": 2.0, "norm": 3e-4, "alpha": 0.2, "f": 0.95},
    {"nH": 3.0, "PhoIndex": 0.8, "norm": 1e-3, "alpha": 0.8, "f": 0.90},
    {"nH": 10.0, "PhoIndex": 2.5, "norm": 1e-2, "alpha": 0.3, "f": 0.97},
    # the norm-alpha-f ridge runs to strong pileup (alpha -> 1, larger norm): start there too
    {"nH": 4.0, "PhoIndex": 1.0, "norm": 5e-3, "alpha": 0.95, "f": 0.93},
    {"nH": 1.0, "PhoIndex": 1.8, "norm": 2e-2, "alpha": 0.9, "f": 0.88},
    # a heavily piled, soft, bright mode (3C 273's global optimum: Gamma 2.6, norm 0.036)
    {"nH": 0.15, "PhoIndex": 2.8, "norm": 4e-2, "alpha": 0.3, "f": 0.99},
]


def sherpa_best_fit(setup: Setup, starts: list[dict[str, float]] | None = None,
                    errors: bool = True, moncar: bool = True,
                    methods: tuple[str, ...] = ("neldermead", "levmar")) -> dict:
    """Sherpa best fit of ``setup`` from several starting points, then ``conf`` 1-sigma errors.

    Each start runs ``methods`` in turn; ``moncar`` adds a Monte Carlo (differential
    evolution) pass from the best point, polished by Levenberg-Marquardt and Nelder-Mead.

    Returns ``{best_fit: {param: value}, statistic, dof, numpoints, conf: {param: [lo, hi]},
    params: {param: {median(=best), lo68, hi68, sd}}, n_calls, seconds, starts}``; conf bounds are
    absolute values (None where conf hit a limit).
    """
    import sherpa.astro.ui as ui

    load1 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    m = load_setup(setup)
    best_stat, best_vals, trail, ncalls = math.inf, None, [], 0
    for start in starts or STARTS:
        _set(m, start)
        with _quiet():
            for method in methods:
                ui.set_method(method)
                ui.fit()
                fr = ui.get_fit_results()
                ncalls += fr.nfev
        trail.append({"start": start, "statistic": float(fr.statval), "end": _values(m)})
        if fr.statval < best_stat - 1e-9:
            best_stat, best_vals = float(fr.statval), _values(m)
    _set(m, best_vals)
    if moncar:                         # global safety net from the best point
        with _quiet():
            ui.set_method("moncar")
            ui.set_method_opt("seed", 74815)
            ui.set_method_opt("population_size", 16 * 5)
            ui.set_method_opt("maxfev", 4000)
            for method in (None, "levmar", "neldermead"):    # moncar, then two polishes
                if method:
                    ui.set_method(method)
                ui.fit()
                fr = ui.get_fit_results()
                ncalls += fr.nfev
                if fr.statval < best_stat - 1e-9:
                    best_stat, best_vals = float(fr.statval), _values(m)
                _set(m, best_vals)
    stat_info = ui.get_stat_info()[0]
    out: dict = {"best_fit": best_vals, "statistic": best_stat,
                 "dof": int(stat_info.dof), "numpoints": int(stat_info.numpoints),
                 "stat": setup.stat, "starts": trail}
    params: dict[str, dict] = {k: {"median": best_vals[k], "lo68": None, "hi68": None, "sd": None}
                               for k in best_vals}
    if errors:
        conf_bounds: dict[str, list] = {}
        with _quiet():
            ui.set_conf_opt("numcores", 1)
            ui.set_conf_opt("sigma", 1)
            pars = [m.params()[k] for k in KEY_PARAMS]
            ui.conf(*pars)
            res = ui.get_conf_results()
        for k, par, lo, hi in zip(KEY_PARAMS, pars, res.parmins, res.parmaxes, strict=True):
            v = best_vals[k]
            lo_abs = None if lo is None else float(v + lo)
            hi_abs = None if hi is None else float(v + hi)
            conf_bounds[k] = [lo_abs, hi_abs]
            sd = None if lo is None or hi is None else float((hi - lo) / 2.0)
            params[k] = {"median": v, "lo68": lo_abs, "hi68": hi_abs, "sd": sd}
            del par
        out["conf"] = conf_bounds
        _set(m, best_vals)
    out["params"] = params
    out["n_calls"] = int(ncalls)
    out["seconds"] = time.perf_counter() - t0
    out["cpu_seconds"] = time.process_time() - c0
    out["load_average_1min"] = load1
    out["log_evidence"] = None
    return out


# ---------------------------------------------------------------------------------------
# BXA / UltraNest
# ---------------------------------------------------------------------------------------

def _summ(samples: np.ndarray) -> dict[str, float]:
    lo, med, hi = np.quantile(samples, [0.15865525393145707, 0.5, 0.8413447460685429])
    return {"median": float(med), "lo68": float(lo), "hi68": float(hi),
            "sd": float(np.std(samples, ddof=1)), "mean": float(np.mean(samples))}


def bxa_posterior(setup: Setup, outdir: str | os.PathLike, seed: int = 1,
                  start: dict[str, float] | None = None, **run_kwargs) -> dict:
    """UltraNest (through BXA's Sherpa solver) posterior of ``setup``.

    Runs in the current process; set ``OMP_NUM_THREADS=1`` before to keep it single-threaded.
    ``start``: parameter values set before sampling (they matter only for BXA's initial
    bookkeeping, not the posterior). Returns ``{params, log_evidence, log_evidence_err,
    n_calls, seconds, n_samples, ...}``.
    """
    import bxa.sherpa as bxa

    m = load_setup(setup)
    if start:
        _set(m, start)
    priors, pars = [], []
    for name, par in m.params().items():
        pr = setup.priors[name]
        if pr.kind == "loguniform":
            priors.append(bxa.create_loguniform_prior_for(par))
        elif pr.kind == "uniform":
            priors.append(bxa.create_uniform_prior_for(par))
        else:
            raise ValueError(f"unknown prior kind {pr.kind!r} for {name}")
        pars.append(par)
    prior = bxa.create_prior_function(priors=priors, parameters=pars)
    np.random.seed(seed)
    solver = bxa.BXASolver(prior=prior, parameters=pars, outputfiles_basename=str(outdir))
    load1 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    results = solver.run(sampler_kwargs={"resume": "overwrite"}, **run_kwargs)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    names = list(m.params())
    samples = np.asarray(results["samples"])
    params = {}
    for i, name in enumerate(names):
        params[name] = _summ(samples[:, i])
    best = results.get("maximum_likelihood", {}).get("point")
    return {"params": params,
            "best_fit": dict(zip(names, map(float, best), strict=True)) if best is not None else None,
            "max_loglike": float(results.get("maximum_likelihood", {}).get("logl", float("nan"))),
            "log_evidence": float(results["logz"]), "log_evidence_err": float(results["logzerr"]),
            "n_calls": int(results["ncall"]), "seconds": seconds, "cpu_seconds": cpu,
            "load_average_1min": load1, "n_samples": int(samples.shape[0]),
            "n_iterations": int(results.get("niter", -1)), "seed": seed,
            "run_kwargs": {k: v for k, v in run_kwargs.items()}}


def versions() -> dict[str, str | None]:
    """Versions of the trusted tools and the interpreter."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for mod in ("sherpa", "bxa", "ultranest", "numpy", "simxray"):
        try:
            pkg = __import__(mod)
            out[mod] = getattr(pkg, "__version__", None)
        except ImportError:
            out[mod] = None
    if out.get("bxa") is None:
        with contextlib.suppress(Exception):
            from importlib.metadata import version
            out["bxa"] = version("bxa")
    return out


def setup_record(setup: Setup) -> dict:
    """JSON-able description of a setup, with the input files' sha256."""
    from simxray.provenance import sha256

    rec = asdict(setup)
    rec["priors"] = {k: asdict(v) for k, v in setup.priors.items()}
    files = {}
    from astropy.io import fits

    with fits.open(setup.path) as h:
        hdr = h["SPECTRUM"].header
        names = [hdr.get("ANCRFILE"), hdr.get("RESPFILE"), hdr.get("BACKFILE")]
    for n in [setup.spectrum, *names]:
        if not n or n.lower() == "none":
            continue
        p = CHANDRA / n
        if not p.is_file() and (CHANDRA / (n + ".gz")).is_file():
            p = CHANDRA / (n + ".gz")
        if p.is_file():
            files[p.name] = sha256(p)
    rec["files_sha256"] = files
    return rec
