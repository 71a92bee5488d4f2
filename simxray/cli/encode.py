"""``simxray encode EVENTS... --out latents.h5``: PPAD latents of event lists, and for real
event files the light curves, hardness ratios, anomaly score and variability class."""

from __future__ import annotations

import argparse

from ._common import add_seed, add_threads


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="encode event lists into PPAD latent vectors",
                       description="Encode event lists (FITS event files and/or HDF5 event-list datasets) "
                                   "with a trained PPAD: the network is frozen and each latent is optimised "
                                   "on its event list (batched).  Writes an HDF5 file with z (S, d), the rate "
                                   "scale N/E (counts/s), tstart/span (s), names and provenance.  FITS event "
                                   "files (Chandra evt2, CSC regevt3) are read with source selection (--ra/--dec "
                                   "or --region, background --bkg) and analysed: PPAD light curves per band, "
                                   "hardness ratios with uncertainties, anomaly score, variability class with its "
                                   "probability, next to a raw-event baseline (Bayesian blocks, Z2 search); "
                                   "--report writes them as JSON, --plot draws the light curves.")
    p.add_argument("inputs", nargs="+", metavar="EVENTS", help="event files (FITS) or datasets (.h5)")
    p.add_argument("--model", default=None, help="PPAD model directory (default: the shipped encoder)")
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--overwrite", action="store_true", help="replace earlier outputs at --out/--report/--plot")
    p.add_argument("--report", default=None, metavar="JSON", help="also write the per-source analysis as JSON")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="draw binned events and PPAD light curves per band (GTI gaps shaded)")
    sel = p.add_argument_group("source selection (FITS event files)")
    sel.add_argument("--ra", type=float, default=None, help="source RA (deg, ICRS)")
    sel.add_argument("--dec", type=float, default=None, help="source Dec (deg, ICRS)")
    sel.add_argument("--radius", type=float, default=2.0, help="source circle radius (arcsec, default %(default)s)")
    sel.add_argument("--region", default=None, help="ds9/CIAO text or FITS (CSC reg3) region file instead of --ra/--dec")
    sel.add_argument("--bkg", type=float, nargs=2, default=None, metavar=("R_IN", "R_OUT"),
                     help="background annulus radii (arcsec) around the source")
    sel.add_argument("--order", default="auto", choices=("auto", "zeroth", "dispersed", "first", "all"),
                     help="grating orders (auto: zeroth for grating files)")
    sel.add_argument("--rmf", default=None, help="RMF whose EBOUNDS convert PI to energy (files without energy)")
    p.add_argument("--no-analysis", action="store_true",
                   help="latents only for FITS inputs (no class, hardness, baseline)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="re-encode N Poisson resamplings of each source for PPAD hardness/class intervals")
    p.add_argument("--null-sims", type=int, default=50, metavar="N",
                   help="constant-rate simulations per source for PPAD's variability test (default "
                        "%(default)s; 0: none): a source is variable when its likelihood ratio beats all N")
    p.add_argument("--bin", type=float, default=None, metavar="S",
                   help="light-curve bin (s) for --plot and the stored light curves (default: span/40, "
                        "at least 10 frames)")
    p.add_argument("--steps", type=int, default=30, help="optimisation steps per batch (default %(default)s)")
    p.add_argument("--lr", type=float, default=0.05, help="latent learning rate (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="sources per batch (default %(default)s)")
    p.add_argument("--method", choices=("grid", "events"), default="grid",
                   help="encoder loss: on the interpolation grid from all events (default) or the event-level "
                        "training loss on up to the model's max_events events per source")
    add_seed(p, 0, "the event subsampling and the bootstrap")
    p.add_argument("--anomaly", action="store_true",
                   help="add a k-nearest-neighbour anomaly score against the model's reference latents "
                        "(always on for analysed FITS inputs)")
    p.add_argument("--k", type=int, default=10, help="neighbours for the anomaly score (default %(default)s)")
    p.add_argument("--light-curves", type=int, default=0, metavar="NBINS",
                   help="also write binned model light curves (counts/s per band) with NBINS time bins")
    add_threads(p, "batches are encoded in this many worker threads, one torch thread each")
    p.add_argument("--gti-from-header", action="store_true",
                   help="when an event file has no GTI extension, use TSTART/TSTOP (or, without them, the "
                        "span of the event times) as the good time, with a warning")
    p.set_defaults(func=run)


READING = ("Each source's answer is 'class' (with 'variability': the rule and the step that decided it). "
           "'ppad.final_class' is PPAD alone (its classifier gated by its variability test); 'ppad.class' and "
           "'ppad.probabilities' are the classifier's guess at the shape, trained on simulated sources (flares of "
           "2-20x quiescence), advisory only: it calls Sgr A*'s 80x flares 'qpe' and guesses a shape even for "
           "constant sources. 'warnings' list what the reader assumed (energies from PI, GTIs from the header, ...).")
"""How to read the ``--report`` JSON (stored in it as ``how_to_read``)."""


def _is_dataset(path: str) -> bool:
    return path.lower().endswith((".h5", ".hdf5"))


def plot_observation(ax_row, model, enc, i: int, obs, bin_s: float) -> None:
    """Binned counts per live second (points, Poisson errors) and the PPAD rate per band
    (lines) on ``ax_row`` (one axis per CSC band); time outside the GTIs shaded."""
    import numpy as np

    from ..events.lightcurve import CSC_BANDS, binned_light_curve
    from ..events.realencode import ppad_light_curve

    s = obs.source
    dt = float(obs.meta.get("dtcor", 1.0))
    edges, counts, live = binned_light_curve(s, bin_s, CSC_BANDS, dt)
    model_lc = ppad_light_curve(model, enc, i, edges) / dt
    t0 = s.tstart
    mid = 0.5 * (edges[:-1] + edges[1:]) - t0
    ok = live > 0.05 * bin_s
    for b, ax in enumerate(ax_row):
        rate = np.where(ok, counts[:, b] / np.where(ok, live, 1), np.nan)
        n = counts[:, b]
        lo_err = np.where(ok, np.sqrt(n) / np.where(ok, live, 1), np.nan)               # Gehrels (1986)
        hi_err = np.where(ok, (1.0 + np.sqrt(n + 0.75)) / np.where(ok, live, 1), np.nan)  # 1-sigma bounds
        ax.errorbar(mid[ok] / 1e3, rate[ok], yerr=[lo_err[ok], hi_err[ok]], fmt=".", ms=3, color="0.3", lw=0.6)
        ax.step(np.r_[edges[:-1], edges[-1]] / 1e3 - t0 / 1e3, np.r_[model_lc[:, b], model_lc[-1, b]],
                where="post", color="C3", lw=1.2)
        g = s.gti - t0
        for a, bb in zip(np.r_[0.0, g[:, 1]], np.r_[g[:, 0], s.span], strict=True):
            if bb > a:
                ax.axvspan(a / 1e3, bb / 1e3, color="0.85", lw=0)
        lo, hi = CSC_BANDS[b]
        ax.set_title(f"{lo:g}-{hi:g} keV", fontsize=7)
        ax.tick_params(labelsize=6)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import sys
    import time

    import h5py
    import numpy as np
    import torch

    from ..errors import ParameterError, ResponseMismatchError
    from ..events.eventfile import read_event_dataset
    from ..events.features import AnomalyScorer
    from ..events.ppad import PPAD, default_model_dir
    from ..events.realfile import read_observation
    from ..io.outputs import atomic_file, check_output
    from ..provenance import provenance, sha256

    torch.set_num_threads(1)        # batches run in --threads worker threads instead
    for name in ("steps", "batch_size", "k"):
        if getattr(args, name) < 1:
            raise ParameterError(f"must be >= 1, got {getattr(args, name)}", field=f"--{name.replace('_', '-')}")
    if args.null_sims < 0:
        raise ParameterError(f"must be >= 0, got {args.null_sims}", field="--null-sims")
    if args.bootstrap < 0:
        raise ParameterError(f"must be >= 0, got {args.bootstrap}", field="--bootstrap")
    if args.bin is not None and not args.bin > 0:
        raise ParameterError(f"must be > 0 s, got {args.bin}", field="--bin")
    # ---- every output checked before any work
    outs = {"--out": args.out, "--report": args.report, "--plot": args.plot}
    given = [v for v in outs.values() if v]
    if len({os.path.abspath(v) for v in given}) < len(given):
        raise ParameterError("--out, --report and --plot must be different files", field="--out")
    for flag, path in outs.items():
        if path:
            check_output(path, kind="file", overwrite=args.overwrite, inputs=args.inputs, field=flag)
    fits_inputs = [p for p in args.inputs if not _is_dataset(p)]
    if (args.report or args.plot) and args.no_analysis:
        raise ParameterError("--report/--plot need the analysis; drop --no-analysis", field="--no-analysis")
    if (args.report or args.plot) and not fits_inputs:
        raise ParameterError("--report/--plot analyse FITS event files; none was given", field="--report")
    model_dir = args.model or default_model_dir()
    model = PPAD.load(model_dir)
    # ---- read
    t_read = time.perf_counter()
    events, observations, labels_list, is_obs = [], [], {}, []
    missing_gti = "header" if args.gti_from_header else "error"
    for p in args.inputs:
        if _is_dataset(p):
            evs, lab, _ = read_event_dataset(p)
            for key, val in lab.items():
                labels_list.setdefault(key, [None] * len(events)).extend(list(val))
            events.extend(evs)
            observations.extend([None] * len(evs))
            is_obs.extend([False] * len(evs))
        else:
            o = read_observation(p, ra=args.ra, dec=args.dec, radius=args.radius, region=args.region,
                                 bkg=tuple(args.bkg) if args.bkg else None, order=args.order, rmf=args.rmf,
                                 missing_gti=missing_gti)
            events.append(o.source)
            observations.append(o)
            is_obs.append(True)
            if not args.quiet:
                for w in o.meta.get("warnings", []):
                    print(f"warning: {p}: {w}", file=sys.stderr)
        for key in labels_list:
            labels_list[key].extend([None] * (len(events) - len(labels_list[key])))
    labels = {k: np.asarray(v) for k, v in labels_list.items() if all(x is not None for x in v)}
    t_read = time.perf_counter() - t_read
    # ---- encode
    t0 = time.perf_counter()
    enc = model.encode(events, steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                       workers=max(1, args.threads), progress=not args.quiet, method=args.method)
    dt = time.perf_counter() - t0
    anomaly = None
    analyse = bool(fits_inputs) and not args.no_analysis
    if args.anomaly or analyse:
        ref = model.reference.get("z")
        if ref is None or len(ref) <= args.k:
            if args.anomaly:
                raise ResponseMismatchError("model has no reference latents for --anomaly (train with simxray "
                                            "train-ppad, which stores them)", path=str(model_dir),
                                            field="reference")
        else:
            anomaly = AnomalyScorer(ref, k=args.k).score(enc.z)
    results: list[dict | None] = [None] * len(events)
    class_names: list[str] = []
    proba = None
    if analyse:
        from ..events.realencode import VariabilityClassifier
        from ..events.realencode import analyse as analyse_obs

        idx = [i for i, f in enumerate(is_obs) if f]
        clf = None
        if "kind_id" in model.reference and "z" in model.reference:
            clf = VariabilityClassifier(model)
            class_names = clf.classes
        if clf is not None:
            res, _ = analyse_obs(model, [observations[i] for i in idx], steps=args.steps, lr=args.lr,
                                 bootstrap=args.bootstrap, seed=args.seed, k=args.k, classifier=clf,
                                 null_sims=args.null_sims,
                                 enc=enc.subset(np.array(idx)))
            proba = np.full((len(events), len(class_names)), np.nan, np.float32)
            for j, i in enumerate(idx):
                results[i] = res[j]
                proba[i] = [res[j]["ppad"]["probabilities"][c] for c in class_names]
        else:
            from ..events.realencode import baseline

            for i in idx:
                results[i] = {"name": events[i].name, "note": "model has no labelled reference latents: no "
                                                               "variability class", "baseline": baseline(observations[i])}
    prov = provenance(command="encode", inputs=[{"path": str(p), "sha256": sha256(p)} for p in args.inputs],
                      model=str(model_dir), model_sha256=sha256(os.path.join(model_dir, "weights.safetensors")),
                      seed=args.seed, steps=args.steps, lr=args.lr, method=args.method,
                      selection={"ra": args.ra, "dec": args.dec, "radius_arcsec": args.radius,
                                 "region": args.region, "bkg_arcsec": args.bkg, "order": args.order,
                                 "rmf": args.rmf},
                      analysis=None if not analyse else {
                          "classifier": "HistGradientBoosting on the model's reference latents (kind_id), seed 0",
                          "null_sims": args.null_sims, "bootstrap": args.bootstrap,
                          "baseline": "bayesian_blocks p0=0.01, Z2 search FAP<1e-3",
                          "class": "combined decision, realencode.DECISION_RULE"})
    # ---- light-curve bins
    bins = []
    for e in events:
        b = args.bin or max(e.span / 40.0, 10 * (e.frame_time or 3.24104))
        bins.append(float(min(b, e.span)))
    import contextlib

    from ..events.realencode import json_safe

    # all outputs are written to temporary siblings and moved into place together at the end;
    # any failure removes every temporary and leaves earlier outputs untouched
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_file(args.out, overwrite=args.overwrite, inputs=args.inputs))
        tmp_report = stack.enter_context(atomic_file(args.report, overwrite=args.overwrite, inputs=args.inputs,
                                                     field="--report")) if args.report else None
        tmp_plot = stack.enter_context(atomic_file(args.plot, overwrite=args.overwrite, inputs=args.inputs,
                                                   field="--plot")) if args.plot else None
        with h5py.File(tmp, "w") as f:
            f["z"] = enc.z
            f["scale"] = enc.scale
            f["loss"] = enc.loss
            f["tstart"] = enc.tstart
            f["span"] = enc.span
            f["n_events"] = enc.n_events
            f["names"] = np.array([e.name.encode() for e in events], dtype="S")
            if anomaly is not None:
                f["anomaly_score"], f["anomaly_percentile"] = anomaly
            if proba is not None:
                f["class_probabilities"] = proba
                f["class_probabilities"].attrs["classes"] = json.dumps(class_names)
            if args.light_curves:
                nb = int(args.light_curves)
                lc = np.zeros((len(events), nb, model.cfg.n_bands), np.float32)
                edges = np.zeros((len(events), nb + 1))
                for i in range(len(events)):
                    edges[i] = np.linspace(enc.tstart[i], enc.tstart[i] + enc.span[i], nb + 1)
                    lc[i] = model.binned_light_curve(enc, i, edges[i])
                f["light_curve"] = lc
                f["light_curve"].attrs["unit"] = "counts/s per band"
                f["light_curve_edges"] = edges
            if any(r is not None for r in results):
                from ..events.lightcurve import CSC_BANDS, binned_light_curve
                from ..events.realencode import ppad_light_curve

                g = f.create_group("sources")
                for i, r in enumerate(results):
                    if r is None:
                        continue
                    o = observations[i]
                    sg = g.create_group(f"{i:04d}")
                    e_, c_, l_ = binned_light_curve(o.source, bins[i], CSC_BANDS, float(o.meta.get("dtcor", 1.0)))
                    sg["lc_edges"] = e_
                    sg["lc_counts"] = c_
                    sg["lc_livetime"] = l_
                    sg["lc_ppad_rate"] = ppad_light_curve(model, enc, i, e_)
                    sg["gti"] = o.source.gti
                    sg.attrs["bands_keV"] = json.dumps([list(b) for b in CSC_BANDS])
                    sg.attrs["result"] = json.dumps(json_safe(r), default=str)
            if labels:
                gl = f.create_group("labels")
                for key, val in labels.items():
                    gl[key] = val.astype("S") if val.dtype.kind == "U" else val
            f.attrs["band_edges_keV"] = np.asarray(model.cfg.band_edges)
            f.attrs["provenance"] = json.dumps(prov, default=str)
            f.attrs["rate_definition"] = "rate(t, band) = scale * rho((t - tstart) / span, band | z) counts/s"
        if tmp_report is not None:
            doc = {"provenance": prov, "read_seconds": t_read, "encode_seconds": dt,
                   "how_to_read": READING, "sources": [r for r in results if r is not None]}
            tmp_report.write_text(json.dumps(json_safe(doc), indent=1, default=str))
        if tmp_plot is not None:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            idx = [i for i, r in enumerate(results) if r is not None]
            fig, axes = plt.subplots(len(idx), 3, figsize=(9, 1.7 * len(idx) + 0.4), squeeze=False)
            for row, i in enumerate(idx):
                plot_observation(axes[row], model, enc, i, observations[i], bins[i])
                r = results[i]
                label = r["name"][:40]
                if "ppad" in r:
                    label += f"\nclass {r.get('class', r['ppad']['final_class'])}; PPAD {r['ppad']['final_class']} " \
                             f"(classifier {r['ppad']['class']} " \
                             f"{r['ppad']['class_probability']:.2f}); baseline {r['baseline']['class']}"
                axes[row, 0].set_ylabel("counts/s", fontsize=6)
                axes[row, 0].text(0.01, 0.97, label, transform=axes[row, 0].transAxes, fontsize=5.5, va="top")
            for ax in axes[-1]:
                ax.set_xlabel("time - tstart (ks)", fontsize=6)
            fig.tight_layout()
            fig.savefig(tmp_plot, dpi=90, format="png")
            plt.close(fig)
    if not args.quiet:
        print(f"read {len(events)} sources in {t_read:.2f} s; encoded in {dt:.1f} s "
              f"({len(events) / max(dt, 1e-9):.1f} sources/s) -> {args.out}")
        for r in results:
            if r is not None and "ppad" in r:
                b = r["baseline"]
                vt = r["ppad"].get("variability_test", {})
                print(f"  {r['name'][:60]}: class {r.get('class', r['ppad']['final_class'])} "
                      f"[{r.get('variability', {}).get('decided_by', 'PPAD')}]; "
                      f"PPAD {r['ppad']['final_class']} (classifier, advisory: {r['ppad']['class']} "
                      f"p={r['ppad']['class_probability']:.2f}; variability p-value {vt.get('p_value', float('nan')):.3f}; "
                      f"anomaly percentile {r['ppad'].get('anomaly_percentile', float('nan')):.2f}); baseline "
                      f"{b['class']} (blocks {b['bayesian_blocks']['n_blocks']}, Z2 {b['z2_search']['z2']:.1f} "
                      f"at P={b['z2_search']['period_s']:.4g} s)")
        for o, r in zip(observations, results, strict=True):      # analysis warnings (reader's printed above)
            for w in (r or {}).get("warnings", []):
                if o is not None and w not in o.meta.get("warnings", []):
                    print(f"warning: {r['name']}: {w}", file=sys.stderr)
        if anomaly is not None and not analyse:
            top = np.argsort(-anomaly[0])[:5]
            for i in top:
                print(f"  anomaly {anomaly[0][i]:.3f} (percentile {anomaly[1][i]:.3f})  {events[i].name}")
    return 0
