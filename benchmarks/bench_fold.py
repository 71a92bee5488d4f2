"""Benchmark: folding through ARF × exposure and the RMF, dense vs sparse, vs Sherpa.

NGC 4258 ACIS-S response (1077 energies × 1024 channels, 40 % of the RMF non-zero).
simxray folds a batch of power laws (B = 1024) with one matrix product, the RMF stored
dense or sparse (CSR), in float64 and float32, torch on 1 thread; Sherpa evaluates
``powlaw1d`` through the same ARF/RMF (``eval_model``) once per spectrum.  The faster
storage is the default of :class:`simxray.instrument.response.Response`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(quick: bool = False) -> dict:
    """µs per spectrum of dense/sparse folding and spectra per second vs Sherpa."""
    import numpy as np
    import torch

    from simxray.instrument import Response
    from simxray.io.ogip import read_pha
    from simxray.physics.continuum import powerlaw_flux

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_pileup import _spectrum_path

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # per core: robust on a shared machine (Sherpa is single-threaded)
    try:
        path = _spectrum_path()
        resp = Response.from_spectrum(read_pha(path), device="cpu")
        B = 256 if quick else 1024
        repeats = 3 if quick else 5
        rng = np.random.default_rng(0)
        g, k = rng.uniform(1, 3, (B, 1)), 10 ** rng.uniform(-4, -2.5, (B, 1))
        flux64 = torch.as_tensor(powerlaw_flux(resp.edges, g, k))
        figs: dict = {"what": f"fold B={B} power laws, NGC 4258 ACIS-S 1077 x 1024, 1 thread, "
                              f"best of {repeats}",
                      "rmf_fill": round(resp.matrix.nnz / np.prod(resp.matrix.shape), 3)}
        per = {}
        for dt, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
            x = flux64.to(dt)
            for fmt in ("dense", "sparse"):
                resp.fold(x[:8], matrix_format=fmt)  # build and cache the matrix
                t = _best(lambda x=x, fmt=fmt: resp.fold(x, matrix_format=fmt), repeats)
                per[(tag, fmt)] = t / B
                figs[f"us_per_spectrum_{fmt}_{tag}"] = round(1e6 * t / B, 2)
        figs["dense_over_sparse_speed_f64"] = round(per[("f64", "sparse")] / per[("f64", "dense")], 2)
        sx = 1.0 / per[("f64", "dense")]
        figs["simxray_spectra_per_s"] = round(sx, 1)
        try:
            logging.getLogger("sherpa").setLevel(logging.ERROR)
            import sherpa.astro.ui as ui
        except ImportError as exc:
            figs["reference"] = f"sherpa unavailable: {exc}"
            return figs
        ui.clean()
        ui.load_pha("fold", str(path))
        data = ui.get_data("fold")
        pl = ui.create_model_component("powlaw1d", "fold_pl")
        ui.set_source("fold", pl)
        model = ui.get_model("fold")
        n = 100 if quick else 400

        def loop():
            for i in range(n):
                pl.gamma, pl.ampl = g[i % B, 0], k[i % B, 0]
                data.eval_model(model)

        sh = n / _best(loop, 2)
        ui.clean()
        figs.update({"reference_spectra_per_s": round(sh, 1), "ratio": round(sx / sh, 1),
                     "quick": bool(quick)})
        return figs
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
