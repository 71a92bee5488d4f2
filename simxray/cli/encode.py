"""``simxray encode EVENTS... --model DIR --out latents.h5``: PPAD latents of event lists."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("encode", help="encode event lists into PPAD latent vectors",
                       description="Encode event lists (FITS event files and/or HDF5 event-list datasets) "
                                   "with a trained PPAD: the network is frozen and each latent is optimised "
                                   "on its event list (batched).  Writes an HDF5 file with z (S, d), the rate "
                                   "scale N/E (counts/s), tstart/span (s), names and provenance.")
    p.add_argument("inputs", nargs="+", metavar="EVENTS", help="event files (FITS) or datasets (.h5)")
    p.add_argument("--model", default=None, help="PPAD model directory (default: the shipped encoder)")
    p.add_argument("--out", required=True, help="output HDF5 file")
    p.add_argument("--steps", type=int, default=30, help="optimisation steps per batch (default %(default)s)")
    p.add_argument("--lr", type=float, default=0.05, help="latent learning rate (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=256, help="sources per batch (default %(default)s)")
    p.add_argument("--method", choices=("grid", "events"), default="grid",
                   help="encoder loss: on the interpolation grid from all events (default) or the event-level "
                        "training loss on up to the model's max_events events per source")
    p.add_argument("--seed", type=int, default=0,
                   help="seed for event subsampling with --method events (default %(default)s)")
    p.add_argument("--anomaly", action="store_true",
                   help="add a k-nearest-neighbour anomaly score against the model's reference latents")
    p.add_argument("--k", type=int, default=10, help="neighbours for --anomaly (default %(default)s)")
    p.add_argument("--light-curves", type=int, default=0, metavar="NBINS",
                   help="also write binned model light curves (counts/s per band) with NBINS time bins")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads: batches are encoded in this many worker threads (default %(default)s)")
    p.add_argument("--gti-from-header", action="store_true",
                   help="use TSTART/TSTOP when an event file has no GTI extension")
    p.add_argument("--quiet", action="store_true", help="no progress bars or summary")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import time

    import h5py
    import numpy as np
    import torch

    from ..errors import ParameterError, ResponseMismatchError
    from ..events.eventfile import load_event_inputs
    from ..events.features import AnomalyScorer
    from ..events.ppad import PPAD, default_model_dir
    from ..provenance import atomic_path, provenance, sha256

    torch.set_num_threads(max(1, args.threads))
    for name in ("steps", "batch_size"):
        if getattr(args, name) < 1:
            raise ParameterError(f"must be >= 1, got {getattr(args, name)}", field=f"--{name.replace('_', '-')}")
    model_dir = args.model or default_model_dir()
    model = PPAD.load(model_dir)
    events, labels = load_event_inputs(args.inputs, missing_gti="header" if args.gti_from_header else "error")
    t0 = time.perf_counter()
    enc = model.encode(events, steps=args.steps, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                       progress=not args.quiet, method=args.method)
    dt = time.perf_counter() - t0
    anomaly = None
    if args.anomaly:
        ref = model.reference.get("z")
        if ref is None or len(ref) <= args.k:
            raise ResponseMismatchError("model has no reference latents for --anomaly (train with simxray "
                                        "train-ppad, which stores them)", path=str(model_dir), field="reference")
        anomaly = AnomalyScorer(ref, k=args.k).score(enc.z)
    prov = provenance(command="encode", inputs=[{"path": str(p), "sha256": sha256(p)} for p in args.inputs],
                      model=str(model_dir), model_sha256=sha256(os.path.join(model_dir, "weights.safetensors")),
                      seed=args.seed, steps=args.steps, lr=args.lr, method=args.method)
    tmp = atomic_path(args.out)
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
        if labels:
            g = f.create_group("labels")
            for key, val in labels.items():
                g[key] = val.astype("S") if val.dtype.kind == "U" else val
        f.attrs["band_edges_keV"] = np.asarray(model.cfg.band_edges)
        f.attrs["provenance"] = json.dumps(prov, default=str)
        f.attrs["rate_definition"] = "rate(t, band) = scale * rho((t - tstart) / span, band | z) counts/s"
    os.replace(tmp, args.out)
    if not args.quiet:
        print(f"encoded {len(events)} event lists in {dt:.1f} s ({len(events) / max(dt, 1e-9):.1f} sources/s) "
              f"-> {args.out}")
        if anomaly is not None:
            top = np.argsort(-anomaly[0])[:5]
            for i in top:
                print(f"  anomaly {anomaly[0][i]:.3f} (percentile {anomaly[1][i]:.3f})  {events[i].name}")
    return 0
