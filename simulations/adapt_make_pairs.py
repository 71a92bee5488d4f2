"""Write synthetic HETG/ACIS pairs with a hidden truth for ``simxray adapt``.

    python simulations/adapt_make_pairs.py OUT_DIR [--n 16] [--seed 7] [--overwrite]
    simxray adapt OUT_DIR/pairs.toml --out ADAPT_DIR

Sources scatter around the absorbed power law fitted to the real 3C 120 HETG first orders
(``../shared/data/chandra``) exactly as in ``benchmarks/bench_adaptation.py`` (log10 nH and
Gamma within ±0.3 and ±0.25, norm log-uniform in [2e-4, 2e-3]); each pair has Poisson
HEG/MEG ±1 spectra through the real grating responses and an event-simulated (reality)
piled ACIS-S spectrum, 30 ks, written as OGIP PHA files with provenance and a PAIRS.toml
whose ``truth`` tables carry the hidden parameters.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="folder to write")
    ap.add_argument("--n", type=int, default=16, help="number of pairs (default %(default)s)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from simxray.adaptation.grating import fit_gratings
    from simxray.adaptation.simulator import PriorBox
    from simxray.adaptation.synthetic import setup_3c120, write_pairs
    from simxray.errors import SimxrayError

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_adaptation import HALF_WIDTH, NORM_RANGE

    torch.set_num_threads(1)
    shared = Path(os.environ.get("SIMXRAY_SHARED", ROOT.parent / "shared"))
    try:
        S = setup_3c120(shared / "data" / "chandra")
        ref = fit_gratings(S.arms, S.source, np.array([-1.0, 1.8, -2.0])).mean
        box = PriorBox(S.source.names, [ref[0] - HALF_WIDTH["nH"], ref[1] - HALF_WIDTH["PhoIndex"],
                                        np.log10(NORM_RANGE[0])],
                       [ref[0] + HALF_WIDTH["nH"], ref[1] + HALF_WIDTH["PhoIndex"], np.log10(NORM_RANGE[1])],
                       S.source.log)
        rng = np.random.default_rng(args.seed)
        pairs = [S.simulate_pair(th, rng, f"pair{i:02d}") for i, th in enumerate(box.sample(args.n, rng))]
        path = write_pairs(args.out, S, pairs, overwrite=args.overwrite)
    except SimxrayError as exc:
        print(f"adapt_make_pairs.py: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(pairs)} pairs and {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
