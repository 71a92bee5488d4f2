"""emcee on the exact simulator for the test spectrum of tests/test_relxill_bright.py (TRUTH,
1/8 subarray, 100 ks, seed 11), under the shipped posterior's prior: the reference of
test_auto_fit_returns_the_exact_posterior_via_network_guided_sampling.

    python benchmarks/relxill_bright_emcee_reference.py     (~10 min on one core)

Writes benchmarks/results/relxill_bright_emcee_reference.json (median and sd per parameter,
the sampler's diagnostics, provenance).
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "relxill_bright_emcee_reference.json"
TRUTH = {"nH": 0.5, "a": 0.9, "Incl": 40.0, "gamma": 2.0, "Afe": 2.0, "refl_frac": 2.0,
         "norm": 8e-5, "pileup.alpha": 0.5, "pileup.f": 0.95}


def bright_test_spectrum():
    """The test spectrum (TRUTH, 1/8 subarray, 100 ks, seed 11) as an Observation, with the
    shipped bright posterior's setup: (obs, model, prior, pileup, posterior folder)."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import simxray as sx
    from benchmarks.bench_relxill_bright import write_spectrum
    from simxray.datasets import DATA_DIR
    from simxray.inference.diagnostics import simulator_for
    from simxray.inference.fitting import _adopt_setup
    from simxray.inference.saving import read_posterior_config

    pdir = DATA_DIR / "posterior_relxill_bright"
    sim = simulator_for(read_posterior_config(pdir)).at(exposure=1e5, frame_time=0.44104)
    r = sim.simulate(np.array([[TRUTH[n] for n in sim.names]]), np.random.default_rng(11))
    path = write_spectrum(Path(tempfile.mkdtemp()) / "bright.pi", r["counts"][0], sim)
    obs = sx.Observation.from_pha(path)
    model, prior, pile = _adopt_setup(pdir, obs, "posterior")
    return obs, model, prior, pile, pdir


def main() -> int:
    import simxray as sx
    from simxray.provenance import provenance, sha256

    obs, model, prior, pile, pdir = bright_test_spectrum()
    t0 = time.time()
    res = sx.fit(obs, model, prior, pileup=pile, method="exact", importance=False,
                 n_samples=2000, ppc_draws=0, seed=2)
    out: dict = {"seconds": round(time.time() - t0, 1), "sampler": {
        k: v for k, v in res.summary["sampler"].items() if isinstance(v, int | float | str)}}
    for j, n in enumerate(res.names):
        out[n] = [float(np.median(res.samples[:, j])), float(res.samples[:, j].std())]
    out["provenance"] = provenance(seed=2, inputs={"posterior_config": sha256(pdir / "config.json"),
                                                   "spectrum_seed": 11})
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    tmp.replace(OUT)
    print(json.dumps({k: v for k, v in out.items() if k != "provenance"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
