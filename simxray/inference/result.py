"""The result of a fit: :class:`FitResult`, one class for every method and the CLI.

A :class:`FitResult` holds the posterior samples (N, P) in physical units and their names,
a JSON-able summary (medians, intervals, checks, fluxes, sampler diagnostics, provenance),
and, when the method has them, the per-walker chains and log posterior.  Its methods give
what a user reaches for::

    res.summary()                 # print the table
    res.plot_corner("corner.png") # corner plot (linear axes; log=True for log10)
    res.plot_spectrum("spec.png") # data, posterior-predictive band, unpiled model, residuals
    res.plot_unfolded("uf.png")   # E F_E: data unfolded through response + pileup vs model
    res.to_arviz()                # arviz.InferenceData: posterior per chain, sample_stats,
                                  # log_likelihood per channel, prior, observed_data, ...
    res.save("out/")              # samples.h5, posterior.nc, summary.json, plots

Fluxes (absorbed and unabsorbed energy and photon flux per band, the pileup fraction,
incident and detected count rates) are posterior medians with 68 % and 90 % intervals,
computed on the posterior draws by :func:`flux_summary`.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

KEV_TO_ERG = 1.602176634e-9
DEFAULT_BANDS: tuple[tuple[float, float], ...] = ((0.5, 2.0), (2.0, 10.0), (0.5, 8.0))
ABSORBERS = ("tbabs", "phabs", "wabs", "ztbabs", "zphabs", "zwabs")
UNITS = {"nh": "1e22 cm^-2", "kt": "keV", "linee": "keV", "sigma": "keV", "incl": "deg",
         "ecut": "keV", "highecut": "keV", "pileup_ftime": "s", "norm": "photons/keV/cm^2/s at 1 keV"}


def summarise(samples: np.ndarray) -> dict:
    """Median, mean, sd, 68 % and 90 % central intervals of samples (N,)."""
    s = np.asarray(samples, dtype=float)
    q = np.percentile(s, [5, 16, 50, 84, 95])
    return {"median": float(q[2]), "mean": float(s.mean()), "sd": float(s.std()),
            "ci68": [float(q[1]), float(q[3])], "ci90": [float(q[0]), float(q[4])]}


def var_name(name: str) -> str:
    """An ArviZ/netCDF-safe variable name: ``pileup.alpha`` → ``pileup_alpha``."""
    return name.replace(".", "_")


def unit_of(name: str, model=None) -> str:
    """The unit of a parameter (from the model registry where known)."""
    if model is not None and not name.startswith("pileup."):
        try:
            u = model.lookup(name).parameter.unit
            if u:
                return u
        except Exception:       # noqa: BLE001 - unknown names simply have no unit
            pass
    key = var_name(name).lower()
    return UNITS.get(key, UNITS.get(key.rsplit("_", 1)[-1] if "." in name and not
                                    name.startswith("pileup.") else key, ""))


class FitSummary(dict):
    """The summary dict; calling it prints the table (``res.summary()``)."""

    def __call__(self) -> None:
        print(format_summary(self))


def format_summary(summary: dict) -> str:
    """A fixed-width table of the summary for the terminal."""
    rows = [f"{'parameter':<18} {'median':>11} {'68% interval':>25} {'90% interval':>25}"]

    def fmt(v: float) -> str:
        return f"{v:.4g}"

    def row(name: str, s: dict, unit: str = "") -> str:
        return (f"{name:<18} {fmt(s['median']):>11} "
                f"{'[' + fmt(s['ci68'][0]) + ', ' + fmt(s['ci68'][1]) + ']':>25} "
                f"{'[' + fmt(s['ci90'][0]) + ', ' + fmt(s['ci90'][1]) + ']':>25}"
                + (f"  {unit}" if unit else ""))

    for name, s in summary["parameters"].items():
        rows.append(row(name, s, s.get("unit", "")))
    pf = summary.get("pileup_fraction")
    if pf:
        rows.append(row("pileup fraction", pf))
    fl = summary.get("fluxes") or {}
    for key in ("rate_incident", "rate_detected"):
        if key in fl:
            rows.append(row(key.replace("_", " "), fl[key], "counts/s"))
    for band, d in (fl.get("bands") or {}).items():
        rows.append(row(f"F {band} keV", d["energy_flux"], "erg/cm^2/s (absorbed)"))
        rows.append(row(f"F {band} unabs", d["energy_flux_unabsorbed"], "erg/cm^2/s"))
    ev = summary.get("evidence")
    if ev:
        rows.append(f"log evidence ln Z = {ev['logz']:.2f} ± {ev['logz_err']:.2f}")
    ch = summary.get("checks", {})
    ppc = ch.get("ppc")
    if ppc:
        rows.append(f"posterior-predictive fit statistic: observed {ppc['cstat_obs_median']:.1f}, "
                    f"replicas 90% [{ppc['cstat_rep_90'][0]:.1f}, {ppc['cstat_rep_90'][1]:.1f}], "
                    f"p = {ppc['p_value']:.3f}")
    lc = ch.get("local_coverage")
    if lc:
        rows.append(f"local calibration on {lc.get('n', '?')} simulations: max coverage error "
                    f"{lc.get('max_error', float('nan')):.3f}")
    emb = ch.get("embedding")
    if emb:
        rows.append(f"embedding distance d² = {emb['d2']:.1f} (training spectra: median "
                    f"{emb['reference_median']:.1f}, 99.9% {emb['reference_q999']:.1f})")
    for w in summary.get("warnings", []):
        rows.append(f"WARNING: {w}")
    if not summary.get("warnings"):
        rows.append("checks passed")
    return "\n".join(rows)


# -- fluxes ----------------------------------------------------------------------------------

def _band_grid(bands, n_per_band: int = 200) -> tuple[np.ndarray, list[tuple[int, int]]]:
    edges_all = sorted({float(e) for b in bands for e in b})
    parts = []
    for a, b in zip(edges_all[:-1], edges_all[1:], strict=True):
        parts.append(np.geomspace(a, b, n_per_band + 1)[:-1])
    grid = np.concatenate(parts + [np.array([edges_all[-1]])])
    idx = []
    for lo, hi in bands:
        i0 = int(np.argmin(np.abs(grid - lo)))
        i1 = int(np.argmin(np.abs(grid - hi)))
        idx.append((i0, i1))
    return grid, idx


def model_fluxes(model, params: dict[str, np.ndarray], bands=DEFAULT_BANDS) -> dict:
    """Absorbed and unabsorbed energy (erg/cm²/s) and photon (photons/cm²/s) fluxes per
    band for parameter draws ``params`` ({name: (K,)}), each (K,)."""
    grid, idx = _band_grid(bands)
    mid = 0.5 * (grid[1:] + grid[:-1])
    K = max(np.size(v) for v in params.values()) if params else 1
    p = {k: np.broadcast_to(np.asarray(v, float), (K,)) for k, v in params.items()}
    absorbed = np.atleast_2d(model.evaluate(grid, p))
    unabs_p = dict(p)
    for q in model.parameters:
        comp = q.component.split("_")[0].lower()
        if comp in ABSORBERS and q.parameter.name.lower() == "nh":
            unabs_p[q.name] = np.zeros(K)
    unabsorbed = np.atleast_2d(model.evaluate(grid, unabs_p))
    out = {}
    for (lo, hi), (i0, i1) in zip(bands, idx, strict=True):
        key = f"{lo:g}-{hi:g}"
        out[key] = {
            "photon_flux": absorbed[:, i0:i1].sum(1),
            "energy_flux": (absorbed[:, i0:i1] * mid[i0:i1]).sum(1) * KEV_TO_ERG,
            "photon_flux_unabsorbed": unabsorbed[:, i0:i1].sum(1),
            "energy_flux_unabsorbed": (unabsorbed[:, i0:i1] * mid[i0:i1]).sum(1) * KEV_TO_ERG,
        }
    return out


def flux_summary(problem, theta: np.ndarray, bands=DEFAULT_BANDS) -> tuple[dict, dict]:
    """Posterior summaries of fluxes per band, the pileup fraction and the incident and
    detected count rates (counts/s, all channels) for draws theta (K, P).

    Returns (summary dict, raw draws {name: (K,)}).
    """
    sim = problem.simulator
    draws: dict[str, np.ndarray] = {}
    mp_all, rate_inc, rate_det, frac = [], [], [], []
    for a in range(0, len(theta), sim.batch_size):
        mp, pp = sim.split(theta[a:a + sim.batch_size])
        mp_all.append(mp)
        inc, _ = sim.forward(mp, None, all_channels=True)
        rate_inc.append(inc.sum(1))
        if pp is not None:
            det, fr = sim.forward(mp, pp, all_channels=True)
            rate_det.append(det.sum(1))
            frac.append(fr)
    mp = {k: np.concatenate([m[k] for m in mp_all]) for k in mp_all[0]}
    fl = model_fluxes(problem.model, mp, bands)
    exp = problem.obs.exposure
    out: dict[str, Any] = {"bands": {}, "units": {"energy_flux": "erg/cm^2/s",
                                                  "photon_flux": "photons/cm^2/s",
                                                  "rate": "counts/s"}}
    for band, d in fl.items():
        out["bands"][band] = {k: summarise(v) for k, v in d.items()}
        for k, v in d.items():
            draws[f"{k}_{band.replace('-', '_').replace('.', 'p')}keV"] = v
    r_inc = np.concatenate(rate_inc) / exp
    out["rate_incident"] = summarise(r_inc)
    draws["rate_incident"] = r_inc
    if rate_det:
        r_det = np.concatenate(rate_det) / exp
        out["rate_detected"] = summarise(r_det)
        draws["rate_detected"] = r_det
        draws["pileup_fraction"] = np.concatenate(frac)
    return out, draws


# -- the result ------------------------------------------------------------------------------

@dataclass
class FitResult:
    """Posterior samples (N, P) with names, the summary and (for MCMC) the chains.

    chains : (draws, chains, P) physical units after burn-in and thinning, or None.
    log_prob : (N,) log posterior of ``samples`` (or None).
    problem : the :class:`~simxray.inference.problem.FitProblem` (predictions, plots).
    """

    samples: np.ndarray
    names: list[str]
    summary: dict
    files: dict[str, str] = field(default_factory=dict)
    chains: np.ndarray | None = field(default=None, repr=False)
    chain_log_prob: np.ndarray | None = field(default=None, repr=False)
    problem: Any = field(default=None, repr=False)
    predictive: dict | None = field(default=None, repr=False)
    method: str = ""
    prior_samples: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.summary, FitSummary):
            self.summary = FitSummary(self.summary)

    # -- access ----------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        """Samples (N,) of a parameter (``res["nH"]``)."""
        for i, n in enumerate(self.names):
            if n == name or var_name(n) == name:
                return self.samples[:, i]
        raise KeyError(f"{name!r}; expected one of {', '.join(self.names)}")

    def median(self) -> dict[str, float]:
        return {n: float(np.median(self.samples[:, i])) for i, n in enumerate(self.names)}

    def __repr__(self) -> str:
        med = ", ".join(f"{n}={v:.4g}" for n, v in self.median().items())
        return f"FitResult({self.method or 'fit'}: {med}; {len(self.samples)} samples)"

    # -- plots -----------------------------------------------------------------------
    def plot_corner(self, path: str | os.PathLike = "corner.png", *, log: bool = False,
                    truths=None, title: str | None = None) -> Path:
        """Corner plot in the summary's (linear) parameterisation; ``log=True`` puts
        log-uniform parameters (nH, norm) on log10 axes."""
        from ..plots import corner_plot

        logs = None
        if log and self.problem is not None:
            logs = [d.dist == "loguniform" for d in self.problem.prior.varying]
        return corner_plot(self.samples, self.names, path, truths=truths,
                           title=title or self.summary.get("title"), log=logs)

    def plot_spectrum(self, path: str | os.PathLike = "spectrum.png", *, n_draws: int = 100,
                      seed: int = 0, title: str | None = None) -> Path:
        """Counts spectrum with the posterior-predictive band, the unpiled model and
        residuals (channels grouped for display only)."""
        from ..plots import spectrum_plot

        if self.problem is None:
            raise ValueError("this result has no fitting problem attached; nothing to predict")
        pred = self.predictive or predict(self.problem, self.samples, n_draws,
                                          np.random.default_rng(seed))
        prob = self.problem
        sl, m = prob.slice, prob.inner
        bkg = pred.get("background")
        model = pred["mu"] + (bkg if bkg is not None else 0.0)
        unpiled = None if pred.get("mu_unpiled") is None else pred["mu_unpiled"] + (
            bkg if bkg is not None else 0.0)
        e_lo = prob.obs.e_min[sl][m]
        e_hi = prob.obs.e_max[sl][m]
        pf = self.summary.get("pileup_fraction")
        note = (f"pileup fraction {pf['median']:.1%} [{pf['ci90'][0]:.1%}, {pf['ci90'][1]:.1%}]"
                " (90%)") if pf else None
        ppc = self.summary.get("checks", {}).get("ppc")
        if ppc:
            note = (note + "; " if note else "") + f"PPC p = {ppc['p_value']:.2f}"
        return spectrum_plot(e_lo, e_hi, prob.x, prob.obs.exposure, path, model=model,
                             model_unpiled=unpiled, background=bkg,
                             title=title or self.summary.get("title"), note=note)

    def unfolded(self, *, n_draws: int = 100, seed: int = 0, units: str = "eeuf",
                 min_counts: int = 15) -> dict[str, np.ndarray]:
        """The unfolded spectrum's numbers (:func:`simxray.plots.unfolded_spectrum`):
        grouped energies [keV], data and model in E·F_E [keV cm⁻² s⁻¹] (``units="eeuf"``)
        or N(E) [photons cm⁻² s⁻¹ keV⁻¹] (``"uf"``), with and without pileup."""
        from ..plots import unfolded_spectrum

        return unfolded_spectrum(**self._unfolded_inputs(n_draws, seed), units=units,
                                 min_counts=min_counts)

    def _unfolded_inputs(self, n_draws: int, seed: int) -> dict:
        if self.problem is None:
            raise ValueError("this result has no fitting problem attached; nothing to unfold")
        prob = self.problem
        pred = self.predictive or predict(prob, self.samples, n_draws,
                                          np.random.default_rng(seed))
        e_lo = prob.obs.e_min[prob.slice][prob.inner]
        e_hi = prob.obs.e_max[prob.slice][prob.inner]
        return {"e_lo": e_lo, "e_hi": e_hi, "counts": prob.x,
                "source_flux": channel_flux(prob, pred["theta"], e_lo, e_hi),
                "model": pred["mu"], "model_unpiled": pred.get("mu_unpiled"),
                "background": pred.get("background")}

    def plot_unfolded(self, path: str | os.PathLike = "unfolded.png", *, n_draws: int = 100,
                      seed: int = 0, units: str = "eeuf", title: str | None = None) -> Path:
        """Unfolded spectrum (E·F_E, or photons cm⁻² s⁻¹ keV⁻¹ with ``units="uf"``): the
        data unfolded through the response and pileup against the source model, the same
        source as pileup distorts it, and data/model (:func:`simxray.plots.unfolded_plot`)."""
        from ..plots import unfolded_plot

        pf = self.summary.get("pileup_fraction")
        note = (f"pileup fraction {pf['median']:.1%} [{pf['ci90'][0]:.1%}, {pf['ci90'][1]:.1%}]"
                " (90%)") if pf else None
        return unfolded_plot(**self._unfolded_inputs(n_draws, seed), path=path, units=units,
                             title=title or self.summary.get("title"), note=note)

    # -- ArviZ -----------------------------------------------------------------------
    def _chain_view(self, max_draws: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(chain, draw, P) samples and (chain, draw) log posterior, thinned to at most
        ``max_draws`` draws in all; independent samples are split into 4 chains."""
        if self.chains is not None:
            ch = np.transpose(self.chains, (1, 0, 2))          # (chain, draw, P)
            lp = None if self.chain_log_prob is None else self.chain_log_prob.T
            step = max(1, int(np.ceil(ch.shape[0] * ch.shape[1] / max_draws)))
            return ch[:, ::step], (None if lp is None else lp[:, ::step])
        n = min(len(self.samples), max_draws) // 4 * 4
        s = self.samples[:n].reshape(4, n // 4, -1)
        return s, None

    def to_arviz(self, *, max_draws: int = 2000, log_likelihood: bool = True):
        """An :class:`arviz.InferenceData` built with ArviZ's ``from_dict``: ``posterior``
        (per chain: emcee walkers; independent draws as 4 chains), ``sample_stats`` (lp),
        ``log_likelihood`` (per channel, so ``az.loo`` works), ``prior``,
        ``observed_data``, ``constant_data`` (exposure, frame time, responses' sha256), and
        units as variable attributes.  At most ``max_draws`` draws in all (thinned)."""
        import arviz as az

        ch, lp = self._chain_view(max_draws)
        C, D, P = ch.shape
        post = {var_name(n): ch[:, :, i] for i, n in enumerate(self.names)}
        kw: dict[str, Any] = {"posterior": post}
        coords: dict[str, Any] = {}
        dims: dict[str, list[str]] = {}
        if lp is not None:
            kw["sample_stats"] = {"lp": lp}
        prob = self.problem
        if prob is not None:
            ch_num = prob.obs.channel[prob.slice][prob.inner]
            coords["channel"] = ch_num
            dims = {"counts": ["channel"], "background_counts": ["channel"]}
            kw["observed_data"] = {"counts": prob.x}
            if log_likelihood:
                flat = ch.reshape(C * D, P)
                mu = prob.expected(flat)
                ll = prob.channel_loglike(mu).reshape(C, D, -1)
                kw["log_likelihood"] = {"counts": ll}
            const: dict[str, Any] = {"exposure": np.array(prob.obs.exposure)}
            if prob.obs.frame_time is not None:
                const["frame_time"] = np.array(prob.obs.frame_time)
            if prob.background is not None:
                const["background_counts"] = prob.background
                const["background_scale"] = np.array(np.mean(prob.background_scale))
            kw["constant_data"] = const
            rng = np.random.default_rng(0)
            pri = prob.prior.sample(min(1000, max_draws), rng)
            kw["prior"] = {var_name(n): pri[None, :, i] for i, n in enumerate(self.names)}
        idata = az.from_dict(**kw, coords=coords, dims=dims)
        model = prob.model if prob is not None else None
        for grp in ("posterior", "prior"):
            if hasattr(idata, grp):
                ds = getattr(idata, grp)
                for n in self.names:
                    if var_name(n) in ds:
                        ds[var_name(n)].attrs["units"] = unit_of(n, model)
                        ds[var_name(n)].attrs["long_name"] = n
        if prob is not None and hasattr(idata, "constant_data"):
            cd = idata.constant_data
            cd["exposure"].attrs["units"] = "s"
            if "frame_time" in cd:
                cd["frame_time"].attrs["units"] = "s"
            ident = prob.obs.identity()
            cd.attrs.update({k: json.dumps(ident[k]) for k in ("spectrum", "arf", "rmf",
                                                                "background")})
            idata.observed_data["counts"].attrs["units"] = "counts"
        fl = self.summary.get("fluxes")
        if fl:
            idata.posterior.attrs["fluxes"] = json.dumps(fl)
        idata.posterior.attrs.update({"inference_library": "simxray",
                                      "method": self.method or "",
                                      "model": self.summary.get("model", "")})
        return idata

    # -- saving ----------------------------------------------------------------------
    def save(self, out: str | os.PathLike, *, overwrite: bool = False, plots: bool = True,
             inputs=()) -> dict[str, str]:
        """Write samples.h5, posterior.nc, summary.json, corner.png, spectrum.png and
        unfolded.png into the folder ``out`` atomically (an earlier folder is replaced only with
        ``overwrite``)."""
        from ..io.outputs import atomic_dir

        with atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
            files = self._write(tmp, plots)
        final = Path(out)
        self.files = {k: str(final / Path(v).name) for k, v in files.items()}
        return self.files

    def _write(self, d: Path, plots: bool) -> dict[str, str]:
        import h5py

        files = {}
        with h5py.File(d / "samples.h5", "w") as f:
            ds = f.create_dataset("samples", data=self.samples, compression="gzip",
                                  compression_opts=1)
            ds.attrs["names"] = [var_name(n) for n in self.names]
            ds.attrs["units"] = [unit_of(n, getattr(self.problem, "model", None))
                                 for n in self.names]
            if self.chains is not None:
                f.create_dataset("chains", data=self.chains, compression="gzip",
                                 compression_opts=1)
            for k, v in (self.summary.get("_draws") or {}).items():
                f.create_dataset(f"derived/{k}", data=np.asarray(v))
            prov = self.summary.get("provenance", {})
            f.attrs["provenance"] = json.dumps(prov, default=str)
            f.attrs["method"] = self.method
        files["samples"] = str(d / "samples.h5")
        idata = self.to_arviz()
        idata.to_netcdf(str(d / "posterior.nc"))
        files["inference_data"] = str(d / "posterior.nc")
        if plots:
            files["corner"] = str(self.plot_corner(d / "corner.png"))
            if self.problem is not None:
                files["spectrum"] = str(self.plot_spectrum(d / "spectrum.png"))
                files["unfolded"] = str(self.plot_unfolded(d / "unfolded.png"))
        from ..io.modeldir import write_json

        write_json(d / "summary.json", {k: v for k, v in self.summary.items()
                                        if not k.startswith("_")})
        files["summary"] = str(d / "summary.json")
        return files


# -- posterior predictive --------------------------------------------------------------------

def channel_flux(problem, theta: np.ndarray, e_lo: np.ndarray, e_hi: np.ndarray,
                 sub: int = 8) -> np.ndarray:
    """The source model's mean photon flux density [photons cm⁻² s⁻¹ keV⁻¹] over each
    channel's nominal energy range [e_lo, e_hi] keV (C,), for draws theta (K, P): (K, C).
    The model is integrated on the channel boundaries subdivided ``sub`` times."""
    nodes = np.unique(np.concatenate([e_lo, e_hi]))
    fine = np.concatenate([np.linspace(a, b, sub + 1)[:-1] for a, b in
                           zip(nodes[:-1], nodes[1:], strict=True)] + [nodes[-1:]])
    sim = problem.simulator
    parts = []
    for a in range(0, len(theta), sim.batch_size):
        mp, _ = sim.split(theta[a:a + sim.batch_size])
        f = np.atleast_2d(problem.model.evaluate(fine, mp))
        cum = np.concatenate([np.zeros((len(f), 1)), np.cumsum(f, axis=1)], axis=1)
        i0 = np.searchsorted(fine, e_lo)
        i1 = np.searchsorted(fine, e_hi)
        width = np.maximum(np.asarray(e_hi, float) - np.asarray(e_lo, float), 1e-12)
        parts.append((cum[:, i1] - cum[:, i0]) / width)
    return np.concatenate(parts)



def predict(problem, samples: np.ndarray, n_draws: int, rng: np.random.Generator) -> dict:
    """Expected counts (K, C) with and without pileup, pileup fractions and Poisson replicas
    for ``n_draws`` random posterior draws, in the noticed channels."""
    k = min(int(n_draws), len(samples))
    draws = samples[rng.choice(len(samples), k, replace=False)]
    mu, frac = problem.expected_with_fraction(draws)
    out: dict[str, Any] = {"theta": draws, "mu": mu, "pileup_fraction": frac, "mu_unpiled": None}
    sim = problem.simulator
    if sim.pileup:
        parts = []
        for a in range(0, k, sim.batch_size):
            mp, _ = sim.split(draws[a:a + sim.batch_size])
            parts.append(sim.forward(mp, None)[0][:, problem.inner])
        out["mu_unpiled"] = np.concatenate(parts)
    bkg = problem.expected_background()
    out["background"] = bkg
    mu_tot = mu + (bkg if bkg is not None else 0.0)
    out["replicates"] = rng.poisson(mu_tot)
    return out


def predictive_check(problem, pred: dict, rng: np.random.Generator) -> dict:
    """Posterior-predictive check of the fit statistic (C-stat, or W-stat with a background):
    the observed spectrum's statistic against replicas drawn from the same draws; p is the
    fraction of replicas that fit worse."""
    mu = pred["mu"]
    if problem.statistic == "wstat":
        from .stats import wstat

        b_mu = pred["background"]
        alpha = problem.background_scale
        obs_stat = wstat(problem.x, problem.background, mu, alpha)
        b_rep = rng.poisson(np.broadcast_to(b_mu / np.asarray(alpha, float), mu.shape))
        rep = pred["replicates"]
        rep_stat = np.array([wstat(rep[i], b_rep[i], mu[i:i + 1], alpha)[0]
                             for i in range(len(mu))])
    else:
        from .stats import cstat

        obs_stat = cstat(problem.x, mu)
        rep_stat = cstat(pred["replicates"], mu)
    p = float(np.mean(rep_stat >= obs_stat))
    return {"statistic": problem.statistic, "cstat_obs_median": float(np.median(obs_stat)),
            "cstat_rep_90": [float(np.percentile(rep_stat, 5)), float(np.percentile(rep_stat, 95))],
            "p_value": p, "n_draws": int(len(mu))}


__all__ = ["FitResult", "FitSummary", "format_summary", "summarise", "flux_summary",
           "model_fluxes", "channel_flux", "predict", "predictive_check", "var_name", "DEFAULT_BANDS"]
