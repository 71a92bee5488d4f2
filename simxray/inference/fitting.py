"""``simxray.fit``: any observation, any model expression, any prior, one call.

>>> import simxray as sx                                               # doctest: +SKIP
>>> obs = sx.Observation.from_pha("source_bin10.pi"); obs.notice(1, 7)  # doctest: +SKIP
>>> res = sx.fit(obs, "wabs*powerlaw", prior=sx.BXA_PRIOR,               # doctest: +SKIP
...              pileup={"ftime": 3.2, "fracexp": 1}, method="exact")
>>> res.summary(); res.plot_corner(); res.to_arviz()                    # doctest: +SKIP

Methods (``method=``):

``exact``   the exact batched simulator (Poisson likelihood: W-stat with a background
            spectrum, else C-stat): a short emcee pilot maps the posterior, importance
            sampling from a Student-t mixture fitted to it gives the posterior (PSIS k̂
            < 0.7 and 1,000 effective samples required; :mod:`~simxray.inference.importance`),
            else emcee runs to convergence.  Works for every response and model.
``emcee``   emcee alone: on a matching neural emulator (anchored to the simulator), else
            on the exact simulator, run to 50 autocorrelation times.
``nested``  UltraNest (vectorised MLFriends) on the same likelihood: the posterior and the
            Bayesian evidence ln Z, to compare models (with/without a soft component, with/
            without pileup).
``snpe``    truncated sequential NPE trained for this observation
            (:mod:`simxray.inference.sequential`), ending with a local coverage check.
``npe``     an amortised posterior (shipped or ``simxray train``-ed): used only when its
            response, model, prior and channels match the request exactly.
``auto``    ``npe`` when a shipped or given posterior matches, else ``emcee``; the result's
            summary says which path ran and why (``summary["method_reason"]``).

Length: one module for `simxray.fit`'s method choice (matching of trained networks, the fallback chain npe → network-guided importance sampling → exact) and its runners, so the reasons it reports are built in one place.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import ResponseMismatchError, SimxrayError
from .problem import FitProblem
from .result import FitResult, flux_summary, predict, predictive_check, summarise, unit_of

log = logging.getLogger(__name__)

METHODS = ("auto", "npe", "emcee", "exact", "snpe", "nested")
PPC_ALERT = 0.01
REL_TOL = 1e-3


# -- matching trained networks ----------------------------------------------------------------

def _same_prior(a: dict, b: dict, rtol: float = 1e-6) -> str | None:
    """None when two ``Prior.to_dict()`` descriptions agree, else the first difference."""
    da = {d["name"]: d for d in (a.get("parameters", []) if isinstance(a, dict) else a)}
    db = {d["name"]: d for d in (b.get("parameters", []) if isinstance(b, dict) else b)}
    if set(da) != set(db):
        return f"parameters {sorted(set(da) ^ set(db))} differ"
    for n, x in da.items():
        y = db[n]
        if x.get("dist") != y.get("dist"):
            return f"{n}: {x.get('dist')} vs {y.get('dist')}"
        for k in ("low", "high", "mu", "sigma", "value"):
            u, v = x.get(k), y.get(k)
            if (u is None) != (v is None):
                return f"{n}.{k} differs"
            if u is not None and not math.isclose(float(u), float(v), rel_tol=rtol,
                                                  abs_tol=1e-12):
                return f"{n}.{k}: {u:g} vs {v:g}"
    return None


def _per_observation(cfg: dict, prior: dict) -> dict:
    """A prior description without ``pileup.ftime`` when the network takes the frame time as
    a covariate (each observation's own frame time, not a prior setting)."""
    if "frame_time" not in ((cfg.get("covariates") or {}).get("names") or []):
        return prior
    pars = prior.get("parameters", []) if isinstance(prior, dict) else prior
    return {"parameters": [d for d in pars if d.get("name") != "pileup.ftime"]}


def network_mismatch(cfg: dict, problem: FitProblem) -> list[str]:
    """Reasons why a trained posterior/emulator (its config.json) does not belong to this
    fitting problem (empty: it matches)."""
    from .compat import check_compatibility

    out = list(check_compatibility(cfg, problem.obs.spectrum))
    if "".join(str(cfg.get("model", "")).lower().split()) != "".join(
            problem.model.expr.lower().split()):
        out.append(f"model '{cfg.get('model')}' differs from '{problem.model.expr}'")
    lo, hi = (int(v) for v in cfg.get("channels", (0, -1)))
    if (lo, hi) != problem.obs.noticed_channels:
        out.append(f"channels {lo}-{hi} differ from the noticed {problem.obs.noticed_channels[0]}-"
                   f"{problem.obs.noticed_channels[1]}")
    elif not problem.inner.all():
        out.append("the noticed channels have holes (bad QUALITY or ignored ranges)")
    d = _same_prior(_per_observation(cfg, cfg.get("prior") or {}),
                    _per_observation(cfg, problem.prior.to_dict()))
    if d:
        out.append(f"prior differs ({d})")
    return out


def _candidate_posteriors(posterior) -> list[Path]:
    from ..datasets import DATA_DIR

    if posterior is not None:
        return [Path(posterior)]
    return sorted(p for p in DATA_DIR.glob("posterior_*") if (p / "config.json").is_file())


#: Shipped posteriors whose whole setup (prior, channels, pileup) ``auto`` adopts when the
#: user names their model but no prior and the observation matches their response,
#: exposure and frame time (``simxray fit BRIGHT.pi --model 'tbabs*relxill'``).  The other
#: shipped posteriors are used only when the user's prior and energy range equal theirs.
ADOPT_SETUP = ("posterior_relxill_bright",)


def adoptable_posterior(observation, model: str | None) -> tuple[Path | None, list[str]]:
    """A shipped posterior of :data:`ADOPT_SETUP` trained for this observation (response
    sha256, exposure, frame time, channel count) and ``model``; else (None, reasons)."""
    from .compat import check_compatibility
    from .saving import read_posterior_config as load_config

    if model is None:
        return None, []
    reasons = []
    for p in _candidate_posteriors(None):
        if p.name not in ADOPT_SETUP:
            continue
        try:
            cfg = load_config(p)
        except SimxrayError as exc:
            reasons.append(f"{p.name}: {exc}")
            continue
        if "".join(str(cfg.get("model", "")).lower().split()) != "".join(model.lower().split()):
            continue
        why = list(check_compatibility(cfg, observation.spectrum))
        if not why:
            return p, []
        reasons.append(f"{p.name}: {why[0]}")
    return None, reasons


def find_posterior(problem: FitProblem, posterior=None) -> tuple[Path | None, list[str]]:
    """The first shipped (or the given) posterior that matches; else (None, reasons)."""
    from .saving import read_posterior_config as load_config

    reasons = []
    for p in _candidate_posteriors(posterior):
        try:
            cfg = load_config(p)
        except SimxrayError as exc:
            if posterior is not None:        # the user's own folder: say what is wrong
                raise
            reasons.append(f"{p.name}: {exc}")
            continue
        why = network_mismatch(cfg, problem)
        if not why:
            return p, []
        reasons.append(f"{p.name}: {why[0]}")
    return None, reasons


# -- methods ----------------------------------------------------------------------------------

def _run_npe(problem: FitProblem, post_dir: Path, n_samples: int, seed: int, device=None,
             n_reweight: int = 4000):
    """Sample an amortised posterior; with ``n_reweight``, reweight that many of its draws
    with the exact likelihood (:mod:`simxray.inference.reweight`): the samples are then the
    exact posterior when Pareto k̂ < 0.7, and ``checks.importance`` says whether they are."""
    import torch

    from .compat import network_input
    from .saving import load_posterior
    from .saving import read_posterior_config as load_config

    cfg = load_config(post_dir)
    # counts, then the observation's exposure and frame time when the network conditions on them
    x = network_input(cfg, problem.obs.counts[problem.slice], problem.obs.spectrum)
    loaded = load_posterior(post_dir, device=device)
    if list(loaded.names) != list(problem.names):
        raise ResponseMismatchError(f"the posterior's parameters {loaded.names} differ from "
                                    f"{problem.names}", path=str(post_dir))
    torch.manual_seed(seed)
    dev = next(loaded.model.parameters()).device
    xt = torch.as_tensor(x, dtype=torch.float32, device=dev)
    with torch.no_grad():
        samples = loaded.model.sample(int(n_samples), xt).double().cpu().numpy()
        emb = loaded.model.embedding(xt[None]).double().cpu().numpy()[0]
    checks = {}
    warn = []
    ood = {k: v.double().numpy() for k, v in loaded.ood.items()}
    if "emb_mean" in ood:
        from .diagnostics import embedding_distance

        e = embedding_distance(emb, ood)
        checks["embedding"] = e
        if e["outlier"]:
            warn.append(f"out of distribution: embedding distance d² = {e['d2']:.1f} exceeds "
                        f"that of 99.9% of training spectra ({e['reference_q999']:.1f})")
    info = {"posterior": str(post_dir.resolve()), "weights_sha256": cfg.get("weights_sha256")}

    def net_sample(n: int, rng: np.random.Generator) -> np.ndarray:
        torch.manual_seed(int(rng.integers(2**31)))
        with torch.no_grad():
            return loaded.model.sample(int(n), xt).double().cpu().numpy()

    def net_log_prob(theta: np.ndarray) -> np.ndarray:
        out = np.empty(len(theta))
        with torch.no_grad():
            for i in range(0, len(theta), 8192):
                t = torch.as_tensor(theta[i:i + 8192], dtype=torch.float32, device=dev)
                out[i:i + 8192] = loaded.model.log_prob(t, xt.expand(len(t), -1)).double().cpu().numpy()
        return out

    if n_reweight:
        # the network's draws reweighted with the exact likelihood (neural importance sampling)
        from .reweight import reweight

        draws = samples[:n_reweight]
        lq = net_log_prob(draws)
        lp = problem.prior.log_prob(draws) + problem.likelihood()(draws)
        rw = reweight(lp, lq, n_samples, np.random.default_rng(seed + 13))
        checks["importance"] = {k: v for k, v in rw.items() if k != "index"}
        if rw["reliable"]:
            samples = draws[rw["index"]]
    # the network's sampler and density (physical units), for network-guided importance
    # sampling; private: popped before anything is written
    return samples, {"checks": checks, "warnings": warn, "network": info,
                     "_network": (net_sample, net_log_prob)}


def _network_guided(problem: FitProblem, draws: np.ndarray, n_samples: int, seed: int,
                    n_effective: int, network=None, network_weight: float = 0.2):
    """Importance sampling of the exact posterior from a Student-t mixture fitted to an
    amortised posterior's draws (:func:`~simxray.inference.importance.guided_importance`,
    AMIS + PSIS): the fast way back to the exact posterior when the network is calibrated
    but wider or offset on this spectrum.  ``(samples, extra)`` when PSIS accepts it
    (k̂ < 0.7 and ``n_effective`` effective draws), else None."""
    from .importance import guided_importance
    from .mcmc import _Coords

    coords = _Coords(problem.prior)
    like = problem.likelihood()

    def log_post(x: np.ndarray) -> np.ndarray:
        return coords.log_posterior(x, like)

    pilot = coords.to_x(np.asarray(draws, float)[:4000])
    net = None
    if network is not None:
        # the network itself as a defensive component (``network_weight`` of every round's
        # draws): its density in sampling coordinates is q(theta) |d theta / d x|, and
        # theta = exp(x) for log-uniform priors
        net_sample, net_log_prob = network

        def net_logpdf(x: np.ndarray) -> np.ndarray:
            return net_log_prob(coords.to_theta(x)) + (x * coords.log).sum(-1)

        def net_draw(rng: np.random.Generator, n: int) -> np.ndarray:
            return coords.to_x(net_sample(n, rng))

        net = (net_logpdf, net_draw, network_weight)
    t0 = time.perf_counter()
    gi = guided_importance(log_post, pilot, n_effective=n_effective, n_samples=n_samples,
                           seed=seed + 17, max_rounds=12, network=net)
    if not gi["reliable"]:
        log.info("network-guided importance sampling not reliable (k = %.2f, ESS %.0f)",
                 gi["khat"], gi["ess"])
        return None
    info = {k: v for k, v in gi.items() if k != "x"}
    sampler = {"sampler": "amortised posterior + exact-likelihood importance sampling "
                          "(Student-t mixture AMIS, PSIS)",
               "importance": info, "seconds": round(time.perf_counter() - t0, 3),
               "n_samples": int(n_samples)}
    return coords.to_theta(gi["x"]), {"sampler": sampler, "checks": {}, "warnings": []}


def _run_emcee(problem: FitProblem, n_samples: int, seed: int, *, emulator=None,
               quiet: bool = True, importance: bool = False, **kw):

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if emulator is not None:
            res = problem.sample_emcee(emulator=emulator, anchor=problem, n_samples=n_samples,
                                       seed=seed, quiet=quiet, keep_chain=True, **kw)
        else:
            res = problem.sample_emcee(n_samples=n_samples, seed=seed, quiet=quiet,
                                       keep_chain=True, importance=importance, **kw)
    d = res.diagnostics
    burn = int(d["burn_in"])
    chains = res.chain[burn:] if res.chain is not None and "importance" not in d else None
    clp = res.chain_log_prob[burn:] if res.chain_log_prob is not None else None
    return res.samples, {"sampler": d, "warnings": [f"emcee: {w}" for w in res.warnings],
                         "chains": chains, "chain_log_prob": clp}


def run_nested(problem: FitProblem, *, seed: int = 0, min_live_points: int = 400,
               dlogz: float = 0.5, max_ncalls: int | None = None, quiet: bool = True) -> dict:
    """UltraNest (vectorised) on the exact likelihood: equal-weight samples, ln Z, calls."""
    import ultranest

    like = problem.likelihood()
    prior = problem.prior
    np.random.seed(seed % 2**32)   # UltraNest draws from numpy's global generator

    def loglike(theta):
        ll = like(np.atleast_2d(theta))
        return np.where(np.isfinite(ll), ll, -1e300)

    def transform(u):
        return prior.transform(np.atleast_2d(u))

    t0 = time.perf_counter()
    logging.getLogger("ultranest").setLevel(logging.WARNING)
    sampler = ultranest.ReactiveNestedSampler(list(prior.names), loglike, transform,
                                              vectorized=True, ndraw_min=128, ndraw_max=2048)
    r = sampler.run(min_num_live_points=min_live_points, dlogz=dlogz, max_ncalls=max_ncalls,
                    show_status=not quiet, viz_callback=False)
    seconds = time.perf_counter() - t0
    # ln Z of UltraNest includes the likelihood's constant as we define it (-stat/2)
    return {"samples": np.asarray(r["samples"]), "logz": float(r["logz"]),
            "logz_err": float(r["logzerr"]), "ncall": int(r["ncall"]), "seconds": seconds,
            "ultranest_version": ultranest.__version__, "min_live_points": min_live_points,
            "dlogz": dlogz}


def _run_snpe(problem: FitProblem, n_samples: int, seed: int, quiet: bool,
              n_reweight: int = 4000, **kw):
    """Truncated sequential NPE for this observation, then its draws importance-reweighted
    with the exact likelihood (:mod:`simxray.inference.reweight`): the returned samples are
    the exact posterior when Pareto k̂ < 0.7 (else the network's, with a warning)."""
    import torch

    from .reweight import reweight
    from .sequential import fit_tsnpe

    sim = problem.simulator
    bmu_saved = sim.background_mu
    try:
        bmu = problem.expected_background()
        if bmu is not None:   # the simulator's channels are the noticed slice
            full = np.zeros(problem.inner.size)
            full[problem.inner] = bmu
            bmu = full
        sim.background_mu = bmu
        x = problem.obs.counts[problem.slice]
        # a short exact emcee pilot sets round 1's box (a wide prior needs it)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            pilot = problem.sample_emcee(n_samples=2000, seed=seed, quiet=True, max_steps=250,
                                         n_effective=100).samples
        kw.setdefault("pilot", pilot)
        res = fit_tsnpe(sim, x, prior=problem.prior, mask=problem.inner, seed=seed,
                        quiet=quiet, n_samples=max(n_samples, n_reweight), log=log.info, **kw)
    finally:
        sim.background_mu = bmu_saved
    diag = dict(res.diagnostics)
    checks = {}
    lc = diag.pop("local_coverage", None)
    if lc is not None:
        checks["local_coverage"] = lc
    warn = list(diag.get("warnings", []))
    rng = np.random.default_rng(seed + 11)
    draws = np.asarray(res.samples)[:n_reweight]
    samples = np.asarray(res.samples)[:n_samples]
    if res.estimator is not None and len(draws):
        est = res.estimator
        dev = next(est.parameters()).device
        xo = torch.as_tensor(x[problem.inner], dtype=torch.float32, device=dev)
        with torch.no_grad():
            lq = est.log_prob(torch.as_tensor(draws, dtype=torch.float32, device=dev),
                              xo.expand(len(draws), -1)).double().cpu().numpy()
        lp = problem.prior.log_prob(draws) + problem.likelihood()(draws)
        rw = reweight(lp, lq, n_samples, rng)
        info = {k: v for k, v in rw.items() if k != "index"}
        checks["importance"] = info
        if rw["reliable"]:
            samples = draws[rw["index"]]
        else:
            warn.append(f"importance reweighting with the exact likelihood unreliable "
                        f"(Pareto k = {rw['khat']:.2f} >= 0.7): the network's samples are "
                        "returned; compare with --method exact")
    diag.update(rounds=res.rounds, n_simulations=res.n_simulations, seconds=res.seconds,
                sampler="TSNPE (Deistler et al. 2022) + exact-likelihood importance reweighting")
    return samples, {"sampler": diag, "checks": checks, "warnings": warn}


# -- the entry point --------------------------------------------------------------------------

def fit(observation, model: str | None = None, prior=None, *, pileup="jdpileup",
        method: str = "auto", statistic: str = "auto", n_samples: int = 10000, seed: int = 0,
        posterior=None, emulator=None, force: bool = False, ppc_draws: int = 100,
        bands=None, quiet: bool = True, device=None, n_effective: int = 1000,
        max_steps: int = 20000, n_walkers: int | None = None, nested_live_points: int = 400,
        importance: bool = True, n_reweight: int = 4000,
        snpe_options: dict | None = None) -> FitResult:
    """Fit an observation: returns a :class:`~simxray.inference.result.FitResult`.

    observation : :class:`~simxray.observation.Observation` or a PHA path.
    model : a model expression (default ``tbabs*powerlaw``); prior : NAME → spec mapping,
        a prior TOML, a :class:`~simxray.simulator.prior.Prior` or None (documented
        defaults); pileup : ``"jdpileup"``, ``"none"`` or a mapping of pileup specs.
    method : one of :data:`METHODS` (module docstring).  force : use a posterior given with
        ``posterior=`` even when it does not match (results are then unreliable).
    bands : flux bands [(lo, hi), ...] keV (default 0.5-2, 2-10, 0.5-8).
    importance : ``exact`` starts with emcee-guided importance sampling (else emcee only).
    n_reweight : amortised and sequential NPE draws reweighted with the exact likelihood
        (0: none); with ``auto``, a network that fails this check gives way to ``exact``.
    """
    from ..provenance import provenance, sha256
    from .problem import DEFAULT_MODEL
    from .result import DEFAULT_BANDS

    if method not in METHODS:
        raise SimxrayError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}",
                           field="method")
    if n_samples < 1:
        raise SimxrayError(f"expected a positive number of samples, got {n_samples}",
                           field="samples")
    t0 = time.perf_counter()
    from ..observation import as_observation

    observation = as_observation(observation)
    network = posterior if posterior is not None else emulator
    adopted = False
    if network is not None and model is None and prior is None and not observation.filtered:
        # a network named without a setup: fit the setup it was trained for
        model, prior, pileup = _adopt_setup(network, observation,
                                            "posterior" if posterior is not None else "emulator")
        adopted = True
    adopt_why: list[str] = []
    if (network is None and prior is None and method in ("auto", "npe") and pileup == "jdpileup"
            and not observation.filtered):
        # a bright-source posterior trained for this very observation: fit its setup
        found, adopt_why = adoptable_posterior(observation, model)
        if found is not None:
            model, prior, pileup = _adopt_setup(found, observation, "posterior")
            adopted = True
    if posterior is not None and method == "auto":
        method = "npe"
    if emulator is not None and method == "auto":
        method = "emcee"
    problem = FitProblem(observation, model or DEFAULT_MODEL, prior, pileup=pileup,
                         statistic=statistic)
    obs = problem.obs
    log.debug("fitting %s", problem.describe())
    notes: list[str] = []
    warn: list[str] = list(getattr(obs, "read_warnings", []))
    n_bad = int((~obs.good).sum())
    if n_bad:
        notes.append(f"{n_bad} channel(s) with QUALITY > 0 excluded")
    if obs.grouping is not None and (obs.grouping < 0).any():
        notes.append("the file's GROUPING is used for plots only: the Poisson likelihood "
                     "works on ungrouped channels")
    reason = ""
    chosen = method
    post_dir = None
    forced = False
    if method in ("auto", "npe"):
        post_dir, why = find_posterior(problem, posterior)
        if post_dir is None and method == "npe":
            if posterior is not None and force:
                post_dir = Path(posterior)
                forced = True
                warn += [f"{w} (fitted anyway: --force)" for w in
                         network_mismatch(_load_cfg(posterior), problem)]
            elif posterior is not None and why:
                raise ResponseMismatchError(why[0].split(": ", 1)[-1] + " (use --force to fit "
                                            "anyway)", path=str(obs.path))
            else:
                raise ResponseMismatchError(
                    "no amortised posterior matches this observation, model, prior and "
                    f"energy range ({'; '.join(why) or 'none found'}); use --method exact, "
                    "nested or snpe (no training needed)", path=str(obs.path))
        if post_dir is not None and _abund_changed():
            warn.append("an abundance table other than the models' defaults is selected "
                        "(set_abund); the amortised posterior was trained with the defaults")
        if post_dir is not None:
            chosen = "npe"
            reason = f"the amortised posterior {post_dir.name} matches this setup"
            if adopted and posterior is None:
                reason += (" (its prior, channels and pileup adopted: no prior given and the "
                           "observation's response, exposure and frame time are its own)")
        else:
            chosen = "emcee"
            why = why + [w for w in adopt_why if w not in why]
            reason = ("no amortised posterior matches (" + "; ".join(why) + ")") if why else \
                "no amortised posterior available"
    emu = None
    if chosen == "emcee":
        emu, why_e = _find_emulator(problem, emulator)
        if emu is None and emulator is not None:
            raise ResponseMismatchError(why_e[0].split(": ", 1)[-1], path=str(obs.path))
        if emu is None:
            chosen = "exact"
            reason = (reason + "; " if reason else "") + \
                "no emulator matches: emcee on the exact simulator" + \
                (f" ({why_e[0]})" if why_e else "")
        else:
            reason = (reason + "; " if reason else "") + f"emulator {Path(emu.path).name} matches"
    if not reason:
        reason = f"method {method} requested"
    log.debug("method: %s (%s)", chosen, reason)

    extra: dict = {}
    evidence = None
    t_s = time.perf_counter()
    if chosen == "npe":
        samples, extra = _run_npe(problem, post_dir, n_samples, seed, device,
                                  n_reweight=n_reweight)
        network = extra.pop("_network", None)
        imp = extra["checks"].get("importance")
        if imp is not None and not imp["reliable"]:
            msg = (f"the amortised posterior {post_dir.name} fails the exact-likelihood check "
                   f"on this spectrum (importance reweighting: Pareto k = {imp['khat']:.2f} "
                   ">= 0.7)")
            if method == "auto":
                chosen = "exact"
                gi = _network_guided(problem, samples, n_samples, seed, n_effective,
                                     network=network)
                if gi is not None:
                    k_is = gi[1]["sampler"]["importance"]["khat"]
                    reason += (f"; {msg}, so its draws seeded importance sampling with the exact "
                               f"likelihood (Pareto k = {k_is:.2f})")
                    log.info("%s; importance sampling seeded by its draws instead", msg)
                    gi[1]["checks"] = {**extra["checks"], **gi[1]["checks"]}
                    gi[1]["network"] = extra.get("network")
                    samples, extra = gi
                else:
                    reason += f"; but {msg}: exact likelihood instead"
                    log.info("%s; running the exact likelihood instead", msg)
                    samples, extra = _run_emcee(problem, n_samples, seed, quiet=quiet,
                                                n_effective=n_effective, max_steps=max_steps,
                                                n_walkers=n_walkers, importance=importance)
            else:
                extra["warnings"].append(msg + "; its samples are returned unweighted")
    elif chosen in ("exact", "emcee"):
        samples, extra = _run_emcee(problem, n_samples, seed, emulator=emu, quiet=quiet,
                                    n_effective=n_effective, max_steps=max_steps,
                                    n_walkers=n_walkers,
                                    importance=(chosen == "exact" and method != "emcee"
                                                and importance))
    elif chosen == "nested":
        r = run_nested(problem, seed=seed, min_live_points=nested_live_points, quiet=quiet)
        rng = np.random.default_rng(seed)
        s = r.pop("samples")
        samples = s[rng.permutation(len(s))][:n_samples]
        evidence = {"logz": r["logz"], "logz_err": r["logz_err"],
                    "definition": "ln of the evidence for L = exp(-stat/2), stat = "
                                  f"{problem.statistic} (XSPEC's, data-only terms removed)"}
        extra = {"sampler": {"sampler": "ultranest.ReactiveNestedSampler", **r}, "warnings": []}
    else:
        samples, extra = _run_snpe(problem, n_samples, seed, quiet, n_reweight=n_reweight,
                                   **(snpe_options or {}))
    t_sample = time.perf_counter() - t_s

    names = problem.names
    summary: dict = {
        "spectrum": str(obs.path.resolve()) if obs.path else obs.name,
        "model": problem.model.expr, "pileup": problem.pileup, "method": chosen,
        "method_requested": method, "method_reason": reason, "statistic": problem.statistic,
        "energy_range": list(obs.energy_range), "channels": list(obs.noticed_channels),
        "n_channels": problem.n_channels, "total_counts": float(problem.x.sum()),
        "n_samples": int(len(samples)), "parameters": {}, "checks": {}, "warnings": [],
        "prior": problem.prior.to_dict(), "notes": notes,
        "title": f"{obs.name}: {problem.model.expr}" + (" + pileup" if problem.pileup else "")
                 + f" ({chosen})",
    }
    for i, n in enumerate(names):
        summary["parameters"][n] = {**summarise(samples[:, i]), "unit": unit_of(n, problem.model)}
    summary["checks"].update(extra.get("checks", {}))
    if extra.get("sampler") is not None:
        summary["sampler"] = extra["sampler"]
    if extra.get("network") is not None:
        summary["network"] = extra["network"]
    imp = (extra.get("sampler") or {}).get("importance")
    if evidence is None and imp and imp.get("reliable") and "logz" in imp:
        evidence = {"logz": imp["logz"], "logz_err": imp["logz_err"],
                    "method": "importance sampling (Student-t mixture from "
                              + ("the network's draws)" if "amortised" in
                                 str(extra["sampler"].get("sampler")) else "an emcee pilot)"),
                    "definition": "ln of the evidence for L = exp(-stat/2), stat = "
                                  f"{problem.statistic} (XSPEC's, data-only terms removed), "
                                  "prior normalised over its bounds"}
    if evidence is not None:
        summary["evidence"] = evidence
    warn += extra.get("warnings", [])

    rng = np.random.default_rng(seed + 7)
    pred = None
    t_p = time.perf_counter()
    if ppc_draws > 0:
        pred = predict(problem, samples, ppc_draws, rng)
        ppc = predictive_check(problem, pred, rng)
        summary["checks"]["ppc"] = ppc
        if ppc["p_value"] < PPC_ALERT:
            warn.append(f"misspecified or out of distribution: posterior-predictive "
                        f"{problem.statistic} p = {ppc['p_value']:.3g} < {PPC_ALERT}")
        if problem.pileup:
            summary["pileup_fraction"] = summarise(pred["pileup_fraction"])
    k = min(len(samples), 1000)
    fl, draws = flux_summary(problem, samples[rng.choice(len(samples), k, replace=False)],
                             bands or DEFAULT_BANDS)
    summary["fluxes"] = fl
    summary["_draws"] = draws
    lc = summary["checks"].get("local_coverage")
    if lc and lc.get("max_error", 0) > 0.1:
        warn.append(f"local calibration: max coverage error {lc['max_error']:.2f} > 0.1")
    summary["warnings"] = warn
    summary["flagged"] = bool(warn)
    summary["timing_s"] = {"sample": round(t_sample, 3),
                           "predictive_and_fluxes": round(time.perf_counter() - t_p, 3),
                           "total": round(time.perf_counter() - t0, 3)}
    ident = obs.identity()
    summary["setup_from_network"] = adopted
    from ..physics.absorption import abund_state

    summary["abundances"] = abund_state()
    summary["provenance"] = provenance(
        seed=seed, method=chosen, forced=forced,
        inputs={"spectrum": ident["spectrum"], "arf": ident["arf"], "rmf": ident["rmf"],
                "background": ident["background"],
                "posterior": str(post_dir) if post_dir else None,
                "posterior_sha256": (sha256(post_dir / "weights.safetensors")
                                     if post_dir else None)})
    return FitResult(samples=samples, names=list(names), summary=summary,
                     chains=extra.get("chains"), chain_log_prob=extra.get("chain_log_prob"),
                     problem=problem, predictive=pred, method=chosen)


def _abund_changed() -> bool:
    from ..physics.absorption import MODEL_DEFAULT_ABUND, abund_state

    st = abund_state()
    return any(st[m] != MODEL_DEFAULT_ABUND[m] for m in st if m != "wabs")


def _load_cfg(path) -> dict:
    from .saving import read_posterior_config as load_config

    return load_config(path)


def _adopt_setup(network, obs, kind: str):
    """(model, prior, pileup) a posterior or emulator folder was trained for; notices its
    channels on ``obs``."""
    from ..simulator.prior import Prior

    p = Path(network)
    if kind == "posterior":
        cfg = _load_cfg(p)
    else:
        from .emulator import Emulator

        cfg = Emulator.load(p).config
    lo, hi = (int(v) for v in cfg["channels"])
    obs.notice_channels(lo, hi)
    # a network conditioned on the frame time: the observation's frame time (TIMEDEL), not
    # the campaign's reference value, sets pileup.ftime
    prior = Prior.from_dict(_per_observation(cfg, cfg["prior"]))
    pile = (cfg.get("pileup") or {}).get("model", "none")
    if pile == "none" and any(n.startswith("pileup.") for n in prior.names):
        pile = "jdpileup"
    return cfg["model"], prior, ("none" if pile == "none" else "jdpileup")


def _find_emulator(problem: FitProblem, emulator=None):
    """A matching emulator (given or shipped) and the reasons others do not match."""
    from ..datasets import DATA_DIR
    from .emulator import Emulator

    cands = [Path(emulator)] if emulator is not None else sorted(
        p for p in DATA_DIR.glob("emulator_*") if (p / "config.json").is_file())
    why = []
    for p in cands:
        try:
            emu = Emulator.load(p)
        except SimxrayError as exc:
            why.append(f"{p.name}: {exc}")
            continue
        w = network_mismatch(emu.config, problem)
        if not w:           # a multi-mode emulator: bound to this observation's mode
            return emu.for_spectrum(problem.obs.spectrum, check=False), []
        why.append(f"{p.name}: {w[0]}")
    return None, why


__all__ = ["fit", "run_nested", "find_posterior", "network_mismatch", "adoptable_posterior",
           "METHODS"]
