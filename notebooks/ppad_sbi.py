"""Event-level SBI: flare amplitude and flare hardness from an event list, with NPE (sbi)
using the frozen PPAD encoder as embedding network (see simxray/events/sbi_demo.py).

    python notebooks/ppad_sbi.py [--model DIR] [--n-sims 2000] [--n-test 60] [--out notebooks]

Writes ``ppad_sbi_recovery.png`` (posterior mean ± 68 % vs truth for both parameters, and the
posterior of one test source) and ``ppad_sbi_summary.json`` (RMSE vs prior RMSE, correlation,
68 % coverage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--n-sims", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "notebooks"))
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from simxray.events.ppad import PPAD
    from simxray.events.sbi_demo import (
        PARAM_NAMES,
        evaluate,
        prior,
        simulate_flares,
        train_flare_npe,
    )
    from simxray.provenance import atomic_path, provenance

    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = PPAD.load(args.model, device="cpu")
    t0 = time.time()
    posterior, emb, theta, x = train_flare_npe(model, n_sims=args.n_sims, seed=args.seed)
    t_train = time.time() - t0
    torch.manual_seed(args.seed + 1)
    theta_test = prior().sample((args.n_test,)).numpy()
    events = simulate_flares(theta_test, seed=args.seed + 1)
    res = evaluate(posterior, model, theta_test, events=events)
    means = np.array(res.pop("posterior_mean"))

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for j, name in enumerate(PARAM_NAMES):
        ax = axes[j]
        ax.scatter(theta_test[:, j], means[:, j], s=10)
        lim = [theta_test[:, j].min(), theta_test[:, j].max()]
        ax.plot(lim, lim, "k--", lw=1)
        ax.set_xlabel(f"true {name}")
        ax.set_ylabel(f"posterior mean {name}")
        ax.set_title(f"RMSE {res[name]['rmse']:.3f} (prior {res[name]['prior_rmse']:.3f}), "
                     f"68% cov {res[name]['coverage68']:.2f}", fontsize=8)
    xo = torch.as_tensor(model.encode(events[:1]).z[0])
    s = posterior.sample((2000,), x=xo, show_progress_bars=False).numpy()
    axes[2].scatter(s[:, 0], s[:, 1], s=2, alpha=0.3)
    axes[2].plot(theta_test[0, 0], theta_test[0, 1], "r*", ms=14, label="truth")
    axes[2].set_xlabel(PARAM_NAMES[0])
    axes[2].set_ylabel(PARAM_NAMES[1])
    axes[2].legend()
    axes[2].set_title("posterior of test source 0", fontsize=8)
    fig.tight_layout()
    tmp = atomic_path(out / "ppad_sbi_recovery.png")
    fig.savefig(tmp, dpi=110, format="png")
    os.replace(tmp, out / "ppad_sbi_recovery.png")
    plt.close(fig)
    summary = {"n_sims": args.n_sims, "n_test": args.n_test, "train_seconds": t_train, "metrics": res,
               "provenance": provenance(script="notebooks/ppad_sbi.py", seed=args.seed,
                                        model=str(args.model or "shipped"))}
    tmp = atomic_path(out / "ppad_sbi_summary.json")
    tmp.write_text(json.dumps(summary, indent=2, default=float))
    os.replace(tmp, out / "ppad_sbi_summary.json")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
