"""PPAD on real observations: latents, decoded light curves, hardness, anomaly score and
variability class, side by side with the raw-event baseline of
:mod:`simxray.events.lightcurve`.

:func:`analyse` encodes a list of :class:`~simxray.events.realfile.Observation` with a
frozen PPAD and returns one JSON-ready dict per source:

* ``ppad``: latent z, scale N/E (counts per good-time second, 0.5-7 keV), class
  probabilities from :class:`VariabilityClassifier`, the class and its probability, the
  anomaly score and percentile (:class:`~simxray.events.features.AnomalyScorer` against
  the model's reference latents), hardness ratios decoded from z (with 16/84 % intervals
  from ``bootstrap`` Poisson resamplings of the events, each re-encoded), and the decoded
  light curve's peak time and peak/median ratio (total rate on 2048 points inside the GTIs);
* ``baseline``: Bayesian-blocks flare search, a blind Z²₁ search against the blocks, Z² at
  the dither periods, a class (``periodic`` when the Z² false-alarm probability is below
  1e-3, else the blocks' ``constant``/``flare``/``variable``) and count hardness ratios with
  background subtraction and uncertainties.

* ``class`` and ``variability``: the reported class, :func:`combined_class` (rule in
  :data:`DECISION_RULE`): periodic from the dither- and trials-corrected Z² search; variable
  only when the Bayesian blocks and the PPAD likelihood-ratio test agree (or one of them is
  strong on its own); the shape (flare, qpe, dip) from the blocks' eruptions and dips, the
  PPAD classifier where the blocks are ambiguous (eclipse against dip, slow modulation).
  PPAD alone cannot give the class: its periodic head spans 1-24 cycles per span (the
  magnetar's 3.76 s is ~1470 cycles in its window) and its classifier, trained on flares of
  2-20x quiescence, calls Sgr A*'s 80x flares "qpe".

The PPAD class comes from a histogram gradient-boosting classifier trained on the model's
own reference latents (4000 simulated sources of the six classes, labels ``kind_id``) with
the decoded features of :func:`~simxray.events.features.feature_matrix`; it is refitted
on first use in a process (about 20 s on one core) and kept in memory only: nothing is
pickled to disk (the project never unpickles files).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .eventfile import EventList
from .lightcurve import (
    CSC_BANDS,
    band_counts,
    bayesian_blocks_flare,
    block_morphology,
    dither_z2,
    hardness_ratios,
    z2_search,
)
from .realfile import Observation

FAP_PERIODIC = 1e-3
"""Baseline: a Z² peak with a false-alarm probability below this is called periodic."""

P0_LOOSE, P0_STRICT = 0.01, 0.001
"""Bayesian-blocks false-alarm probabilities: a change point at ``P0_LOOSE`` needs the PPAD
variability test to confirm it; one at ``P0_STRICT`` stands on its own."""

MIN_EVENTS_FOR_CLASS = 20
"""Below this many 0.5-7 keV events a source's class is reported with a warning (too few to tell)."""

PPAD_STRONG_Z = 5.0
"""The PPAD likelihood ratio alone makes a source variable when it is above every null
simulation and this many null standard deviations above their mean."""

DECISION_RULE = (
    "1 periodic: blind Z2_1 search (0.5-7 keV, 10 cycles per span to the frame Nyquist frequency, "
    "null = the Bayesian-blocks light curve) with dither windows (707 s, 1000 s, 3 harmonics, +-2 cycles "
    "per span) removed from the search and the trials: FAP = 1-(1-exp(-Z2/2))^N < 1e-3. "
    "2 variable: Bayesian blocks (p0=0.01) >= 2 blocks AND PPAD likelihood-ratio test significant "
    "(p <= 1/(n_sims+1)); or Bayesian blocks (p0=0.001) >= 2 blocks; or PPAD test significant with "
    "z >= 5. Otherwise constant. "
    "3 shape of a variable source from the p0=0.01 blocks (eruption = run of blocks >= 2x the baseline "
    "block rate, dip = run <= 0.5x): one eruption covering < 50% of the good time -> flare; >= 3 "
    "eruptions -> qpe; 2 eruptions -> flare (repeated flares); dips and no eruption -> eclipse if the "
    "PPAD class is eclipse, else dip; anything else -> the PPAD classifier's most probable "
    "non-constant class.")
"""The combined variability decision of :func:`combined_class`, in words."""

PEAK_POINTS = 2048



class VariabilityClassifier:
    """Class probabilities (constant, flare, dip, eclipse, periodic, qpe) from PPAD latents."""

    _memory: dict[str, object] = {}

    def __init__(self, model, key: str | None = None, seed: int = 0):
        from .features import feature_matrix, fit_classifier
        from .simulate import KINDS

        self.model = model
        self.classes = list(KINDS)
        ref = model.reference
        if "z" not in ref or "kind_id" not in ref:
            from ..errors import ResponseMismatchError

            raise ResponseMismatchError("the PPAD model has no reference latents with kind_id labels; a "
                                        "variability class needs them (train with simxray train-ppad)",
                                        field="reference")
        z, y = np.asarray(ref["z"], np.float32), np.asarray(ref["kind_id"], np.int64)
        key = key or hashlib.sha256(z.tobytes() + y.tobytes()).hexdigest()
        import sklearn

        key = f"{key[:24]}-sk{sklearn.__version__}-s{seed}"
        self.clf = self._memory.get(key)
        if self.clf is None:      # refitted per process: no pickled classifier on disk
            self.clf = fit_classifier(feature_matrix(model, z), y, seed=seed)
        self._memory[key] = self.clf

    def predict_proba(self, z: np.ndarray) -> np.ndarray:
        """(S, 6) class probabilities."""
        from .features import feature_matrix

        return self.clf.predict_proba(feature_matrix(self.model, np.asarray(z, np.float32)))


def _band_groups(model) -> list[np.ndarray]:
    edges = np.asarray(model.cfg.band_edges)
    mids = 0.5 * (edges[:-1] + edges[1:])
    return [(mids >= lo) & (mids < hi) for lo, hi in CSC_BANDS]


def decoded_hardness(model, z: np.ndarray) -> np.ndarray:
    """(S, 3) hard_hm, hard_ms, hard_hs of the time-averaged decoded rates."""
    from .features import decoded_summaries

    nb = model.cfg.n_bands
    return decoded_summaries(model, np.asarray(z, np.float32))[:, nb:nb + 3]


def decoded_peak(model, enc, i: int, gti: np.ndarray) -> dict:
    """Peak time (s) of the decoded total rate inside the GTIs and its ratio to the median."""
    t = np.linspace(enc.tstart[i], enc.tstart[i] + enc.span[i], PEAK_POINTS)
    from .eventfile import in_gti

    t = t[in_gti(t, gti)]
    r = model.light_curve(enc, i, t).sum(1)
    k = int(np.argmax(r))
    return {"peak_time": float(t[k]), "peak_rate": float(r[k]), "median_rate": float(np.median(r)),
            "peak_ratio": float(r[k] / max(np.median(r), 1e-12))}


def ppad_light_curve(model, enc, i: int, edges: np.ndarray) -> np.ndarray:
    """(K, 3) decoded rate (counts per good-time second) in CSC bands S, M, H on time bins."""
    lc = model.binned_light_curve(enc, i, edges)
    return np.column_stack([lc[:, g].sum(1) for g in _band_groups(model)])


def _resample(ev: EventList, rng: np.random.Generator) -> EventList:
    """Poisson bootstrap of an event list: each event kept Poisson(1) times."""
    k = rng.poisson(1.0, ev.n_events)
    idx = np.repeat(np.arange(ev.n_events), k)
    return EventList(ev.time[idx], ev.energy[idx], ev.gti.copy(), ev.frame_time, ev.name, {})


def _constant_like(ev: EventList, rng: np.random.Generator) -> EventList:
    """A constant-rate event list like ``ev``: the same number of events, times uniform over
    its GTIs on frame centres, energies resampled from its own."""
    g = ev.gti
    lengths = g[:, 1] - g[:, 0]
    u = rng.uniform(0.0, lengths.sum(), ev.n_events)
    k = np.searchsorted(np.cumsum(lengths), u, side="right").clip(0, len(g) - 1)
    off = u - (np.cumsum(lengths) - lengths)[k]
    ft = ev.frame_time or 0.0
    if ft > 0:
        off = np.minimum((np.floor(off / ft) + 0.5) * ft, lengths[k])
    t = np.sort(g[k, 0] + off)
    e = ev.energy[rng.integers(0, ev.n_events, ev.n_events)] if ev.n_events else ev.energy
    return EventList(t, e, g.copy(), ev.frame_time, ev.name, {})


def _lr_statistic(model, enc, events: Sequence[EventList]) -> np.ndarray:
    """T = log L(PPAD rate) - log L(constant rate with the observed band counts), summed over
    the events in the model's bands (nats)."""
    ll = model.log_likelihood(enc, events)
    edges = np.asarray(model.cfg.band_edges)
    out = np.zeros(len(events))
    for i, e in enumerate(events):
        n_b = np.histogram(e.energy, edges)[0].astype(np.float64)
        n = n_b.sum()
        if n == 0:
            out[i] = 0.0
            continue
        nz = n_b[n_b > 0]
        ll0 = (nz * np.log(nz / e.exposure)).sum() - n
        out[i] = ll[i] * n - ll0
    return out


def variability_test(model, events: Sequence[EventList], enc, *, n_sims: int = 50, seed: int = 0,
                     steps: int = 30, lr: float = 0.05) -> list[dict]:
    """Is the variability PPAD decodes significant?  Parametric bootstrap of the likelihood
    ratio T (:func:`_lr_statistic`) of each source against ``n_sims`` constant-rate event lists
    with the same GTIs, frame time, number of events and energies (:func:`_constant_like`),
    each encoded like the source: p-value = (1 + #{T_null >= T}) / (n_sims + 1)."""
    rng = np.random.default_rng(seed)
    t_obs = _lr_statistic(model, enc, events)
    sims = [_constant_like(e, rng) for e in events for _ in range(n_sims)]
    es = model.encode(sims, steps=steps, lr=lr)
    t_null = _lr_statistic(model, es, sims).reshape(len(events), n_sims)
    out = []
    for i in range(len(events)):
        tn = t_null[i]
        out.append({"T": float(t_obs[i]), "null_mean": float(tn.mean()), "null_std": float(tn.std()),
                    "null_max": float(tn.max()), "n_sims": int(n_sims),
                    "p_value": float((1 + np.sum(tn >= t_obs[i])) / (n_sims + 1)),
                    "z": float((t_obs[i] - tn.mean()) / max(tn.std(), 1e-9))})
    return out


def baseline(obs: Observation, *, band: tuple[float, float] = (0.5, 7.0), p0: float = 0.01,
             seed: int = 0) -> dict:
    """The raw-event baseline for one observation (see module docstring)."""
    s = obs.source
    dt = float(obs.meta.get("dtcor", 1.0))
    bb = bayesian_blocks_flare(s, band, p0=p0, dtcor=dt)
    bb_strict = bayesian_blocks_flare(s, band, p0=P0_STRICT, dtcor=dt)
    null = (np.asarray(bb["edges"]), np.asarray(bb.get("rates", [1.0])))
    z2 = z2_search(s, band, null=null)
    dz = dither_z2(s, band, null)
    bkg = band_counts(obs.background) if obs.background is not None else None
    hr = hardness_ratios(band_counts(s), bkg, obs.backscal, seed=seed)
    cls = "periodic" if z2["fap"] < FAP_PERIODIC else bb["cls"]
    return {"class": cls, "bayesian_blocks": bb, "z2_search": z2, "dither_z2": dz, "hardness": hr,
            "bayesian_blocks_strict": {k: bb_strict.get(k) for k in ("p0", "n_blocks", "cls", "peak_time",
                                                                    "peak_ratio", "flare_interval")},
            "morphology": block_morphology(bb)}


def combined_class(ppad: dict | None, base: dict) -> dict:
    """The reported variability class of a source (:data:`DECISION_RULE`) from the PPAD result
    (class probabilities, ``variability_test``; None: baseline tests only) and the
    :func:`baseline` result.  Returns the class, the step that decided it and the evidence."""
    z2 = base["z2_search"]
    bb, strict, mor = base["bayesian_blocks"], base["bayesian_blocks_strict"], base["morphology"]
    vt = (ppad or {}).get("variability_test")
    ppad_sig = bool(vt and vt["significant"])
    ppad_strong = bool(ppad_sig and vt["z"] >= PPAD_STRONG_Z)
    ev = {"z2_fap": z2.get("fap"), "z2_log10_fap": z2.get("log10_fap"), "z2_period_s": z2.get("period_s"),
          "z2_n_trials": z2.get("n_trials"), "dither_peak": z2.get("dither_peak"),
          "blocks_p0_0.01": bb.get("n_blocks"), "blocks_p0_0.001": strict.get("n_blocks"),
          "ppad_p_value": vt["p_value"] if vt else None, "ppad_z": vt["z"] if vt else None,
          "ppad_class": (ppad or {}).get("class"), "n_eruptions": mor["n_eruptions"], "n_dips": mor["n_dips"]}
    if z2.get("fap", 1.0) < FAP_PERIODIC:
        return {"class": "periodic", "decided_by": "Z2 search (dither windows and trials corrected)",
                "period_s": z2["period_s"], "evidence": ev}
    loose = bb.get("n_blocks", 1) >= 2
    variable = (loose and ppad_sig) or strict.get("n_blocks", 1) >= 2 or ppad_strong
    if not variable:
        return {"class": "constant", "decided_by": "no significant variability (blocks and PPAD test)",
                "evidence": ev}
    probs = (ppad or {}).get("probabilities") or {}
    ppad_var = max((k for k in probs if k != "constant"), key=probs.get, default=None)
    if mor["n_eruptions"] == 1 and mor["eruption_time_fraction"] < 0.5 and mor["n_dips"] == 0:
        cls, by = "flare", "Bayesian-blocks shape: one eruption"
    elif mor["n_eruptions"] >= 3:
        cls, by = "qpe", "Bayesian-blocks shape: >= 3 eruptions"
    elif mor["n_eruptions"] == 2 and mor["eruption_time_fraction"] < 0.5:
        cls, by = "flare", "Bayesian-blocks shape: two eruptions (repeated flares)"
    elif mor["n_dips"] >= 1 and mor["n_eruptions"] == 0:
        cls = "eclipse" if ppad_var == "eclipse" else "dip"
        by = "Bayesian-blocks shape: dips; PPAD chooses eclipse or dip"
    elif ppad_var is not None:
        cls, by = ppad_var, "PPAD classifier (blocks shape ambiguous)"
    else:
        cls, by = bb.get("cls", "variable"), "Bayesian blocks (no PPAD result)"
    return {"class": cls, "decided_by": by, "evidence": ev}


def analyse(model, observations: Sequence[Observation], *, steps: int = 30, lr: float = 0.05,
            bootstrap: int = 0, seed: int = 0, k: int = 10, classifier: VariabilityClassifier | None = None,
            progress: bool = False, with_baseline: bool = True, enc=None, null_sims: int = 50,
            alpha: float | None = None) -> tuple[list[dict], object]:
    """PPAD and baseline results per observation, and the EncodeResult of the sources
    (``enc``: an earlier encoding of exactly these sources, reused).  ``null_sims`` constant
    simulations per source for :func:`variability_test` (0: no test); a source is variable when
    its p-value is <= ``alpha`` (default 1 / (null_sims + 1): T above every simulation)."""
    from .features import AnomalyScorer

    events = [o.source for o in observations]
    if enc is None:
        enc = model.encode(events, steps=steps, lr=lr, progress=progress)
    clf = classifier or VariabilityClassifier(model)
    proba = clf.predict_proba(enc.z)
    hard = decoded_hardness(model, enc.z)
    anomaly = AnomalyScorer(model.reference["z"], k=k).score(enc.z) if "z" in model.reference else None
    vtest = variability_test(model, events, enc, n_sims=null_sims, seed=seed, steps=steps, lr=lr) \
        if null_sims > 0 else None
    alpha = 1.0 / (null_sims + 1) if alpha is None else alpha
    boot_hard = boot_cls = None
    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        reps = [_resample(e, rng) for e in events for _ in range(bootstrap)]
        ok = [r.n_events > 0 for r in reps]
        eb = model.encode([r for r, g in zip(reps, ok, strict=True) if g], steps=steps, lr=lr)
        hz = np.full((len(reps), 3), np.nan)
        pz = np.full((len(reps), len(clf.classes)), np.nan)
        hz[np.array(ok)] = decoded_hardness(model, eb.z)
        pz[np.array(ok)] = clf.predict_proba(eb.z)
        boot_hard = hz.reshape(len(events), bootstrap, 3)
        boot_cls = pz.reshape(len(events), bootstrap, -1)
    out = []
    for i, o in enumerate(observations):
        p = proba[i]
        c = int(np.argmax(p))
        res: dict = {"name": o.source.name, "file": Path(o.meta["path"]).name, "region": o.meta.get("region"),
                     "n_events_region": o.meta.get("n_events_region"),
                     "good_time_s": o.meta.get("good_time_s"), "livetime_s": o.meta.get("livetime_s"),
                     "frame_time_s": o.meta.get("frame_time"), "timesys": o.meta.get("timesys"),
                     "timeref": o.meta.get("timeref"), "mjdref": o.meta.get("mjdref"),
                     "ccd_ids": o.meta.get("ccd_ids"), "gti_gaps": o.meta.get("gti_gaps"),
                     "order": o.meta.get("order"), "warnings": o.meta.get("warnings", []),
                     "notes": o.meta.get("notes", [])}
        ppad: dict = {"z": enc.z[i].tolist(), "scale_counts_per_s": float(enc.scale[i]),
                      "n_events_0.5-7keV": int(enc.n_events[i]), "loss": float(enc.loss[i]),
                      "class": clf.classes[c], "class_probability": float(p[c]),
                      "probabilities": {k_: float(v) for k_, v in zip(clf.classes, p, strict=True)},
                      "hardness": {key: {"value": float(hard[i, j])}
                                   for j, key in enumerate(("hard_hm", "hard_ms", "hard_hs"))},
                      "decoded_peak": decoded_peak(model, enc, i, o.source.gti)}
        if boot_hard is not None:
            for j, key in enumerate(("hard_hm", "hard_ms", "hard_hs")):
                v = boot_hard[i, :, j]
                v = v[np.isfinite(v)]
                if v.size:
                    ppad["hardness"][key].update(lo=float(np.quantile(v, 0.16)), hi=float(np.quantile(v, 0.84)))
            pc = boot_cls[i]
            pc = pc[np.isfinite(pc[:, 0])]
            ppad["bootstrap"] = {"n": int(bootstrap),
                                 "class_fraction": {k_: float(np.mean(pc.argmax(1) == j))
                                                    for j, k_ in enumerate(clf.classes)} if len(pc) else {},
                                 "class_probability_16_84": [float(np.quantile(pc[:, c], 0.16)),
                                                             float(np.quantile(pc[:, c], 0.84))]
                                 if len(pc) else None}
        if vtest is not None:
            v = dict(vtest[i])
            v["alpha"] = alpha
            v["significant"] = bool(v["p_value"] <= alpha)
            ppad["variability_test"] = v
            ppad["final_class"] = ppad["class"] if v["significant"] else "constant"
        else:
            ppad["final_class"] = ppad["class"]
        if anomaly is not None:
            ppad["anomaly_score"] = float(anomaly[0][i])
            ppad["anomaly_percentile"] = float(anomaly[1][i])
        span = o.source.span
        ppad["in_training_regime"] = bool(500 <= enc.n_events[i] <= 8000 and 20e3 <= span <= 120e3)
        if enc.n_events[i] < MIN_EVENTS_FOR_CLASS:
            res["warnings"] = [*res["warnings"], f"only {int(enc.n_events[i])} events in 0.5-7 keV: too few to "
                               "tell variability, so 'constant' means no evidence of it"]
        res["ppad"] = ppad
        if with_baseline:
            res["baseline"] = baseline(o, seed=seed)
            res["variability"] = combined_class(ppad, res["baseline"])
            res["class"] = res["variability"]["class"]
        out.append(res)
    return out, enc


def json_safe(obj):
    """Replace NaN/inf by None recursively (strict JSON)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, np.floating | np.integer):
        return json_safe(obj.item())
    return obj


__all__ = ["VariabilityClassifier", "analyse", "baseline", "combined_class", "DECISION_RULE", "variability_test", "decoded_hardness", "decoded_peak",
           "ppad_light_curve", "json_safe", "FAP_PERIODIC"]
