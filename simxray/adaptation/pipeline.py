"""The whole adaptation: gratings → hierarchical calibration → learned correction → NPE.

:func:`adapt` runs, for pairs sharing one piled response:

1. grating posteriors of every pair (:mod:`.grating`);
2. hierarchical calibration of φ = (alpha0, alpha1, f, eff) (:mod:`.calibrate`);
3. the residual correction on top, with each pair's shrunken φ (:mod:`.correction`);
4. NPE trained on the uncalibrated Davis simulator, then fine-tuned on the adapted one
   (the core array trainer :class:`simxray.inference.npe.NPE` through
   :func:`.simulator.train_npe`), both on the same θ draws from a uniform box prior;
5. the misspecification score (sbi MMD test in each NPE's embedding space) of the pairs'
   piled spectra against each simulator, before and after;
6. neural emulators (θ → expected piled counts) of the Davis and of the adapted simulator,
   the latter with the calibrated nuisances as extra inputs (:mod:`.emulate`), for emcee.

:func:`write_outputs` saves calibration.json, correction/ (a model directory),
npe_davis/ and npe_adapted/ (:class:`simxray.inference.posterior.Posterior` folders, with
an ``adaptation`` entry in their config.json: simulator, fit-space box), emulator_davis/
and emulator_adapted/ (:class:`simxray.inference.emulator.Emulator` directories) and
summary.json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .calibrate import Calibration, calibrate, grating_posteriors, group_pairs
from .correction import ResidualCorrection, train_correction
from .forward import FitSpaceModel, phi_tensors
from .grating import GratingPosterior
from .metrics import misspecification
from .pairs import Pair
from .simulator import PileupSimulator, PriorBox, embed, train_npe


@dataclass
class AdaptResult:
    calibration: Calibration
    correction: ResidualCorrection
    posteriors: list[GratingPosterior]
    box: PriorBox | None = None
    npe_davis: object | None = None
    npe_adapted: object | None = None
    emulator_davis: object | None = None
    emulator_adapted: object | None = None
    simulators: dict = field(default_factory=dict)
    summary: dict = field(default_factory=dict)
    workdir: object | None = field(default=None, repr=False)  # holds the posterior folders


def adapt(pairs: list[Pair], source: FitSpaceModel, start: np.ndarray, *, grid: str | None = "1024",
          alpha_model: str = "loglinear", box: PriorBox | None = None, n_sims: int = 4000,
          npe: bool = True, correction_steps: int = 200, npe_epochs: int = 150,
          npe_minutes: float = 4.0, finetune_epochs: int | None = None, seed: int = 0,
          emulators: bool = True, emulator_settings: dict | None = None,
          quiet: bool = True, log=print, work_dir: str | os.PathLike | None = None) -> AdaptResult:
    """Run the adaptation (see module doc); ``box`` defaults to the grating posteriors ± 3 sd.

    The NPE posterior folders are written under ``work_dir`` (default: a temporary folder
    that lives as long as the result).

    ``finetune_epochs`` caps the fine-tuning on the adapted simulator (default ``npe_epochs``).
    ``emulators``: also train the Davis and adapted emulators (``emulator_settings``
    override :data:`.emulate.EMULATOR_SETTINGS`).
    """
    rng = np.random.default_rng(seed)
    say = (lambda *_: None) if quiet else log
    posts = grating_posteriors(pairs, source, start, rng=rng)
    say(f"grating posteriors of {len(pairs)} pairs")
    cal = calibrate(pairs, source, start, alpha_model=alpha_model, grid=grid, posteriors=posts, rng=rng)
    say("population phi at mean: " + ", ".join(f"{k}={v:.3f}" for k, v in cal.phi_mean().items()))
    groups = group_pairs(pairs, source, grid)
    index = {id(p): i for i, p in enumerate(pairs)}
    gposts, gphi = [], []
    for g in groups:
        idx = [index[id(p)] for p in g.pairs]
        gposts.append([posts[i] for i in idx])
        shr = [cal.pairs[i]["phi_shrunk"] for i in idx]
        gphi.append(phi_tensors({k: np.array([s[k] for s in shr]) for k in shr[0]}, len(idx)))
    corr, corr_info = train_correction(groups, gposts, gphi, steps=correction_steps, seed=seed, quiet=quiet)
    say(f"correction: NLL/channel {corr_info['nll_before_per_channel']:.4f} -> "
        f"{corr_info['nll_after_per_channel']:.4f}")
    res = AdaptResult(cal, corr, posts, summary={"calibration": cal.to_dict()["population"],
                                                  "correction": corr_info, "n_pairs": len(pairs)})
    if not (npe or emulators):
        return res
    if len(groups) > 1:
        raise ConfigError(f"{len(groups)} different piled responses/frame times; NPE and emulator "
                          "retraining expect pairs sharing one piled response (use --no-npe)",
                          field="pair.piled")
    davis = groups[0].davis
    if box is None:
        box = PriorBox.around(source, np.stack([q.mean for q in posts]), np.stack([q.sd for q in posts]))
    res.box = box
    theta = box.sample(n_sims, rng)
    sims = {"davis": PileupSimulator(davis, source, "davis"),
            "adapted": PileupSimulator(davis, source, "adapted", calibration=cal, correction=corr)}
    res.simulators = sims
    if emulators:
        train_emulators(res, theta, emulator_settings, seed, quiet, say)
    if not npe:
        return res
    if work_dir is None:
        import tempfile

        res.workdir = tempfile.TemporaryDirectory(prefix="simxray_adapt_")
        work_dir = res.workdir.name
    work = Path(work_dir)
    mu_d = sims["davis"].expected(theta, rng)
    res.npe_davis, h_d = train_npe(theta, mu_d, box, work / "npe_davis", epochs=npe_epochs,
                                   max_minutes=npe_minutes, seed=seed, quiet=quiet)
    say(f"NPE on the Davis simulator: {h_d['epochs']} epochs, val loss {h_d['best_val_loss']:.3f}")
    mu_a = sims["adapted"].expected(theta, rng)
    res.npe_adapted, h_a = train_npe(theta, mu_a, box, work / "npe_adapted", init=res.npe_davis,
                                     epochs=finetune_epochs or npe_epochs,
                                     max_minutes=npe_minutes, seed=seed + 1, quiet=quiet)
    say(f"NPE fine-tuned on the adapted simulator: {h_a['epochs']} epochs, val loss {h_a['best_val_loss']:.3f}")
    x_obs = np.stack([p.piled_counts for p in pairs])
    res.summary["npe"] = {"davis": {k: v for k, v in h_d.items() if k != "val_loss"},
                          "adapted": {k: v for k, v in h_a.items() if k != "val_loss"},
                          "n_sims": n_sims, "prior": box.to_dict()}
    res.summary["misspecification_pairs"] = misspecification_scores(res, x_obs, rng)
    return res


def train_emulators(res: AdaptResult, theta: np.ndarray, settings: dict | None, seed: int,
                    quiet: bool, say, n_check: int = 200) -> None:
    """The Davis and adapted emulators (into ``res``) and their accuracy (into ``res.summary``).

    Davis: θ only, on the NPE's fit-space draws ``theta`` of ``res.box``; adapted: θ and
    the nuisance inputs, on 3x as many rows (its input space is larger).  Accuracy: relative
    errors (channels ≥ 10 expected counts) on the held-out rows of the training draws
    (``validation_accuracy``) and on ``n_check`` fresh draws of each emulator's prior, θ from
    the box and the nuisances from the calibrated population (``accuracy_prior_draws``)."""
    from .emulate import emulator_accuracy, train_simulator_emulator

    out = {}
    for k, name in enumerate(("davis", "adapted")):
        kw = ({"theta_fit": theta} if name == "davis" else
              {"n": 3 * len(theta), "rng": np.random.default_rng([seed, 3])})
        emu, info = train_simulator_emulator(res.simulators[name], res.box, settings=settings,
                                             seed=seed + 3, quiet=quiet, **kw)
        info["accuracy_prior_draws"] = emulator_accuracy(emu, res.simulators[name], res.box, n_check,
                                                         np.random.default_rng([seed, 4, k]))
        setattr(res, f"emulator_{name}", emu)
        out[name] = info
        acc = info["accuracy_prior_draws"]
        say(f"emulator of the {name} simulator: {info['epochs']} epochs, relative error on {n_check} "
            f"prior draws: median {acc.get('median', float('nan')):.2%}, 99th pct "
            f"{acc.get('p99', float('nan')):.2%}")
    res.summary["emulators"] = out


def misspecification_scores(res: AdaptResult, x_obs: np.ndarray, rng: np.random.Generator,
                            n_sim: int = 1000) -> dict:
    """MMD test of x_obs against each simulator, in the embedding of the NPE trained on it."""
    theta = res.box.sample(n_sim, rng)
    out = {}
    for name, model in (("before", res.npe_davis), ("after", res.npe_adapted)):
        sim = res.simulators["davis" if name == "before" else "adapted"]
        xs = sim.simulate(theta, rng)
        out[name] = misspecification(embed(model, x_obs), embed(model, xs))
    return out


def write_outputs(out_dir: str | os.PathLike, res: AdaptResult, extra: dict | None = None,
                  overwrite: bool = False) -> Path:
    """Write the adaptation products to ``out_dir`` (see module doc)."""
    from ..io.modeldir import read_json, write_json
    from ..provenance import provenance
    from .calibrate import write_calibration

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError("exists and is not empty; expected a new folder (use --overwrite)", path=out)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(**(extra or {}))
    write_calibration(out / "calibration.json", res.calibration, extra or {})
    res.correction.save(out / "correction", {"inputs": extra or {}})
    for name, post in (("npe_davis", res.npe_davis), ("npe_adapted", res.npe_adapted)):
        if post is None:
            continue
        post.save(out / name, overwrite=True)
        cfg = read_json(out / name / "config.json")
        cfg["adaptation"] = {"simulator": name[4:], "prior_fit_space": res.box.to_dict(),
                             "provenance": prov}
        write_json(out / name / "config.json", cfg)
    for name, emu in (("emulator_davis", res.emulator_davis), ("emulator_adapted", res.emulator_adapted)):
        if emu is None:
            continue
        emu.config.update({"kind": "simxray-adapt-emulator", "simulator": name[9:], "provenance": prov})
        emu.save(out / name)
    write_json(out / "summary.json", {**res.summary, "provenance": prov})
    return out


__all__ = ["adapt", "AdaptResult", "write_outputs", "misspecification_scores", "train_emulators"]
