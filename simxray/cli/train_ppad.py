"""``simxray train-ppad EVENTS_OR_DATASET... --out DIR``: train a PPAD event encoder."""

from __future__ import annotations

import argparse

from ._common import add_overwrite, add_seed, show_progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train-ppad", help="train a PPAD (Poisson-process auto-decoder) event encoder",
                       description="Train a PPAD auto-decoder on event lists: FITS event files and/or HDF5 "
                                   "event-list datasets (as written by simxray.events.eventfile."
                                   "write_event_dataset), or --simulate N simulated sources.  Writes "
                                   "weights.safetensors + config.json (with provenance) to --out.")
    p.add_argument("inputs", nargs="*", metavar="EVENTS_OR_DATASET", help="event files (FITS) or datasets (.h5)")
    p.add_argument("--out", required=True, metavar="DIR", help="output model directory")
    p.add_argument("--simulate", type=int, default=0, metavar="N",
                   help="train on N simulated event lists (in addition to any inputs)")
    p.add_argument("--steps", type=int, default=3000, help="training steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="sources per step (default %(default)s)")
    p.add_argument("--latent-dim", type=int, default=24, help="latent dimension (default %(default)s)")
    p.add_argument("--lr", type=float, default=2e-3, help="network learning rate (default %(default)s)")
    p.add_argument("--lr-z", type=float, default=0.05, help="latent learning rate (default %(default)s)")
    p.add_argument("--init-steps", type=int, default=1500,
                   help="steps for the amortised initialiser, 0 for none (default %(default)s)")
    p.add_argument("--no-periodic-head", action="store_true",
                   help="no periodic head (a sinusoid at the period search's frequency, z0-z2; on by default, "
                        "as in the shipped model; needs --latent-dim >= 4)")
    add_seed(p, 0)
    p.add_argument("--gti-from-header", action="store_true",
                   help="use TSTART/TSTOP when an event file has no GTI extension")
    add_overwrite(p, "a model in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import ParameterError, SimxrayError
    from ..events.eventfile import load_event_inputs
    from ..events.ppad import PPADConfig, reference_set, train_ppad
    from ..events.simulate import simulate_population
    from ..io.outputs import atomic_dir, check_output
    from ..provenance import provenance, sha256

    for name in ("steps", "batch_size", "latent_dim"):
        if getattr(args, name) < 1:
            raise ParameterError(f"must be >= 1, got {getattr(args, name)}", field=f"--{name.replace('_', '-')}")
    if not args.no_periodic_head and args.latent_dim < 4:
        raise ParameterError(f"must be >= 4 with the periodic head (or use --no-periodic-head), got "
                             f"{args.latent_dim}", field="--latent-dim")
    check_output(args.out, kind="dir", overwrite=args.overwrite, inputs=args.inputs)
    events, labels = load_event_inputs(args.inputs, missing_gti="header" if args.gti_from_header else "error")
    sim_seed = None
    if args.simulate:
        sim_seed = args.seed + 1000
        sev, slab = simulate_population(args.simulate, seed=sim_seed)
        if not events:
            labels = slab
        events = events + sev
    if not events:
        raise SimxrayError("no event lists: give EVENTS_OR_DATASET files or --simulate N")
    cfg = PPADConfig(latent_dim=args.latent_dim, periodic_head=not args.no_periodic_head)
    model, _z, hist = train_ppad(events, cfg, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                 lr_z=args.lr_z, seed=args.seed, init_steps=args.init_steps,
                                 progress=show_progress(args))
    model.reference = reference_set(model, events, labels, progress=show_progress(args))
    inputs = [{"path": str(p), "sha256": sha256(p)} for p in args.inputs]
    prov = provenance(inputs=inputs, seed=args.seed, simulated=args.simulate, simulation_seed=sim_seed,
                      command="train-ppad", n_sources=len(events),
                      training=dict(steps=args.steps, batch_size=args.batch_size, lr=args.lr, lr_z=args.lr_z,
                                    init_steps=args.init_steps, final_loss=hist["final_loss"]))
    with atomic_dir(args.out, overwrite=args.overwrite, inputs=args.inputs) as tmp:
        model.save(tmp, extra={"provenance": prov})
    print(f"trained PPAD on {len(events)} event lists; final loss {hist['final_loss']:.4f} per event; "
          f"model in {args.out}")
    return 0
