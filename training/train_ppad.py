"""Train the shipped PPAD event encoder (simxray/data/ppad) on simulated event lists.

Reproducible: the simulated population comes from ``simulate_population(n, seed=1000+seed)``
and training from ``seed``; run on CPU with one thread for bitwise-stable results::

    nice python training/train_ppad.py                     # defaults used for the shipped model
    python training/train_ppad.py --n-sources 300 --steps 200 --out /tmp/ppad   # smoke test
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-sources", type=int, default=6000, help="simulated event lists (default %(default)s)")
    ap.add_argument("--steps", type=int, default=10000, help="auto-decoder steps (default %(default)s)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--init-steps", type=int, default=3000, help="amortised-initialiser steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "simxray" / "data" / "ppad"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from simxray.events.ppad import PPADConfig, reference_set, train_ppad
    from simxray.events.simulate import simulate_population
    from simxray.provenance import provenance

    torch.set_num_threads(args.threads)
    t0 = time.time()
    sim_seed = 1000 + args.seed
    events, labels = simulate_population(args.n_sources, seed=sim_seed)
    cfg = PPADConfig()
    model, _z, hist = train_ppad(events, cfg, steps=args.steps, batch_size=args.batch_size, seed=args.seed,
                                 init_steps=args.init_steps, progress=not args.quiet)
    model.reference = reference_set(model, events, labels, progress=not args.quiet)
    prov = provenance(command="training/train_ppad.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                      seed=args.seed, simulation="simxray.events.simulate.simulate_population",
                      simulation_seed=sim_seed, n_sources=args.n_sources,
                      training=dict(steps=args.steps, batch_size=args.batch_size, init_steps=args.init_steps,
                                    threads=args.threads, final_loss=hist["final_loss"],
                                    wall_seconds=round(time.time() - t0, 1)))
    model.save(args.out, extra={"provenance": prov, "loss_history": hist["loss"][::10]})
    print(f"trained on {args.n_sources} simulated event lists in {time.time() - t0:.0f} s; "
          f"final loss {hist['final_loss']:.4f}; saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
