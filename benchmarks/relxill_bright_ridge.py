"""The norm / pileup-alpha ridge of the bright test spectrum (tests/test_relxill_bright.py):
emcee on the exact simulator with several seeds, and ``auto`` (network-guided importance
sampling), samples saved to build/lead/METHODSEED.npz.

    python benchmarks/relxill_bright_ridge.py exact 5     (~10 min on one core)
    python benchmarks/relxill_bright_ridge.py auto 2      (~40 s)
    python benchmarks/relxill_bright_ridge.py exact 7 60000   (3x longer chains, ~30 min)
    python benchmarks/relxill_bright_ridge.py emulator 9 200000
        (emcee on the multi-mode emulator, 10x longer chains than the exact runs, ~20 min;
         its draws reweighted to the exact posterior with PSIS, saved as emulator9_200000x)

The summary of the runs is benchmarks/results/relxill_bright_ridge.json.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(REPO))
    import simxray as sx
    from benchmarks.relxill_bright_emcee_reference import bright_test_spectrum

    method = sys.argv[1]
    obs, model, prior, pile, _ = bright_test_spectrum()
    t0 = time.time()
    kw = dict(importance=False) if method == "exact" else {}
    if method == "emulator":
        from simxray.datasets import DATA_DIR

        kw = dict(emulator=DATA_DIR / "emulator_relxill_bright", n_effective=20000)
    if len(sys.argv) > 3:                    # longer chains: python ... exact SEED MAX_STEPS
        kw["max_steps"] = int(sys.argv[3])
    seed = int(sys.argv[2])
    res = sx.fit(obs, model, prior, pileup=pile, method="emcee" if method == "emulator" else method,
                 n_samples=4000, ppc_draws=0, seed=seed, **kw)
    method = f"{method}{seed}" + (f"_{sys.argv[3]}" if len(sys.argv) > 3 else "")
    Path("build/lead").mkdir(parents=True, exist_ok=True)
    if method.startswith("emulator"):            # the exact posterior from the emulator's draws
        from simxray.inference.fitting import _find_emulator
        from simxray.inference.reweight import reweight

        emu, _ = _find_emulator(res.problem, kw["emulator"])
        d = res.samples
        rw = reweight(res.problem.likelihood()(d), res.problem.likelihood(emu)(d), len(d),
                      np.random.default_rng(seed + 1))
        print("PSIS k-hat", rw["khat"], "ESS", rw["ess"])
        np.savez(f"build/lead/{method}x.npz", samples=d[rw["index"]], names=np.array(res.names),
                 khat=rw["khat"], ess=rw["ess"])
    np.savez(f"build/lead/{method}.npz", samples=res.samples, names=np.array(res.names),
             chain_log_prob=res.chain_log_prob if res.chain_log_prob is not None else np.zeros(0))
    print(method, time.time() - t0, {n: (float(np.median(res.samples[:, j])), float(res.samples[:, j].std())) for j, n in enumerate(res.names)})
    print(json.dumps({k: v for k, v in res.summary["sampler"].items() if isinstance(v, int | float | str)}, indent=0)[:1500])


if __name__ == "__main__":
    main()
