"""Train the shipped PPAD event encoder (simxray/data/ppad_default) on simulated event lists.

Settings come from ``training/ppad_default.toml`` (command-line options override them).
Reproducible: the simulated population is ``simulate_population(n, seed=1000+seed)`` and
training uses ``seed``; run on CPU with one thread for bitwise-stable results::

    nice -n 10 python training/train_ppad.py                   # the shipped model (~20 min)
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

DEFAULT_CONFIG = ROOT / "training" / "ppad_default.toml"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="TOML settings (default %(default)s)")
    ap.add_argument("--n-sources", type=int, help="simulated event lists (overrides [data] n_sources)")
    ap.add_argument("--steps", type=int, help="auto-decoder steps (overrides [training] steps)")
    ap.add_argument("--init-steps", type=int, help="amortised-initialiser steps")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--out", default=str(ROOT / "simxray" / "data" / "ppad_default"))
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from simxray.events.ppad import PPADConfig, reference_set, train_ppad
    from simxray.events.simulate import simulate_population
    from simxray.io.tomlfile import read_toml
    from simxray.provenance import provenance, sha256

    conf = read_toml(args.config, "PPAD training settings")
    tr = dict(conf.get("training", {}))
    n_sources = args.n_sources or int(conf.get("data", {}).get("n_sources", 4000))
    for key in ("steps", "init_steps", "seed", "threads"):
        if getattr(args, key) is not None:
            tr[key] = getattr(args, key)
    seed = int(tr.get("seed", 0))
    torch.set_num_threads(int(tr.get("threads", 1)))
    t0 = time.time()
    sim_seed = 1000 + seed
    events, labels = simulate_population(n_sources, seed=sim_seed)
    t_sim = time.time() - t0
    cfg = PPADConfig.from_dict(conf.get("model", {}))
    model, _z, hist = train_ppad(events, cfg, steps=int(tr.get("steps", 3600)),
                                 batch_size=int(tr.get("batch_size", 64)), lr=float(tr.get("lr", 2e-3)),
                                 lr_z=float(tr.get("lr_z", 0.05)), seed=seed,
                                 init_steps=int(tr.get("init_steps", 2000)), device="cpu",
                                 amortised=bool(tr.get("amortised", False)), progress=not args.quiet)
    t_train = time.time() - t0 - t_sim
    model.reference = reference_set(model, events, labels, max_sources=int(tr.get("reference_sources", 4000)),
                                    seed=seed, progress=not args.quiet)
    prov = provenance(script="training/train_ppad.py",
                      command="training/train_ppad.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                      config=str(Path(args.config).resolve().relative_to(ROOT)) if Path(args.config).resolve()
                      .is_relative_to(ROOT) else str(args.config), config_sha256=sha256(args.config),
                      seed=seed, simulation="simxray.events.simulate.simulate_population",
                      simulation_seed=sim_seed, n_sources=n_sources,
                      training=dict(tr, final_loss=hist["final_loss"], simulate_seconds=round(t_sim, 1),
                                    train_seconds=round(t_train, 1),
                                    wall_seconds=round(time.time() - t0, 1)))
    model.save(args.out, extra={"provenance": prov, "loss_history": hist["loss"][::10]})
    print(f"trained on {n_sources} simulated event lists in {time.time() - t0:.0f} s; "
          f"final loss {hist['final_loss']:.4f}; saved to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
