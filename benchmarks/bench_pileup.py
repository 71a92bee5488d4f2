"""Benchmark: batched piled-up simulation (simxray) vs Sherpa's per-spectrum ``jdpileup``.

Both sides use the NGC 4258 ACIS-S response (1077 energies × 1024 channels, 20.65 ks,
frame time 3.24104 s) and the same parameter draws from the default campaign's prior
(``simulations/acis_default.toml``): PhoIndex U(1, 3), norm log-U(1e-4, 3e-3)
photons/keV/cm²/s, alpha U(0, 1), f U(0.85, 1); g0 = 1, n = 1, fracexp = 0.987,
nterms = 30, on Sherpa's 4096-bin kernel grid.

* simxray: power law on the kernel grid (torch) → Davis pileup → RMF fold → Poisson
  counts, float64, batches of 256 and 1024, torch on 2 threads.
* simxray, default setup: the same with the default model ``tbabs*powerlaw`` (nH
  log-U(0.01, 10)) evaluated by :class:`simxray.models.Model` (numpy), as the simulator does.
* Sherpa: ``powlaw1d`` with ``set_pileup_model(jdpileup)``, one ``eval_model`` (expected
  counts per channel) per draw, in a Python loop (Sherpa has no XSPEC ``tbabs`` here).

``ratio`` = simxray power-law rate (best batch) / Sherpa rate on the same draws.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FRAME_TIME = 3.24104
FIXED = dict(g0=1.0, n=1.0, ftime=FRAME_TIME, fracexp=0.987, nterms=30)


def _spectrum_path() -> Path:
    shared = Path(os.environ.get("SIMXRAY_SHARED", REPO.parent / "shared"))
    p = shared / "data" / "chandra" / "source_bin10.pi"
    if p.exists():
        return p
    from simxray.datasets import default_spectrum_path

    return default_spectrum_path()


def draws(n: int, seed: int = 1):
    """(PhoIndex, norm, alpha, f, nH) arrays (n,) from the default campaign's prior."""
    import numpy as np

    rng = np.random.default_rng(seed)
    return dict(PhoIndex=rng.uniform(1.0, 3.0, n), norm=10 ** rng.uniform(-4.0, np.log10(3e-3), n),
                alpha=rng.uniform(0.0, 1.0, n), f=rng.uniform(0.85, 1.0, n),
                nH=10 ** rng.uniform(-2.0, 1.0, n))


def powerlaw_torch(log_edges, phoindex, norm):
    """Bin integrals (B, N) of norm E^-PhoIndex on edges given as log(E) (N+1,)."""
    import torch

    s = (1.0 - phoindex)[:, None]
    near = s.abs() < 1e-6
    s_safe = torch.where(near, torch.ones_like(s), s)
    pw = torch.exp(s_safe * log_edges)
    out = torch.where(near, (log_edges[1:] - log_edges[:-1]).expand(s.shape[0], -1),
                      (pw[:, 1:] - pw[:, :-1]) / s_safe)
    return out * norm[:, None]


def simulate_simxray(pile, d, batch: int, flux_fn=None, seed: int = 0):
    """Poisson counts (n, C) for all draws ``d``, in batches; returns (counts, fractions)."""
    import numpy as np
    import torch

    from simxray.instrument import PileupParams

    gen = torch.Generator().manual_seed(seed)
    log_e = torch.log(torch.as_tensor(pile.edges))
    n = d["alpha"].size
    outs, fracs = [], []
    with torch.no_grad():
        for a in range(0, n, batch):
            sl = slice(a, a + batch)
            t = {k: torch.as_tensor(v[sl]) for k, v in d.items()}
            if flux_fn is None:
                flux = powerlaw_torch(log_e, t["PhoIndex"], t["norm"])
            else:
                flux = torch.as_tensor(flux_fn(pile.edges, {k: v[sl] for k, v in d.items()}))
            res = pile(flux, PileupParams(alpha=t["alpha"], f=t["f"], **FIXED))
            mu = pile.response.fold_counts_per_bin(res.counts)
            outs.append(torch.poisson(mu.clamp_(min=0.0), generator=gen))
            fracs.append(res.fraction)
    return torch.cat(outs).numpy(), np.concatenate([f.numpy() for f in fracs])


def sherpa_loop(path: Path, d, n: int):
    """Sherpa's expected counts (n, C) for the first n draws, one eval_model per draw."""
    import numpy as np

    logging.getLogger("sherpa").setLevel(logging.ERROR)
    import sherpa.astro.ui as ui

    ui.clean()
    ui.load_pha("bench", str(path))
    data = ui.get_data("bench")
    pl = ui.create_model_component("powlaw1d", "bench_pl")
    jdp = ui.create_model_component("jdpileup", "bench_jdp")
    jdp.f.min = 0.85  # the prior reaches below Sherpa's soft limit (hard limit 0)
    for k, v in FIXED.items():
        setattr(jdp, k, v)
    ui.set_source("bench", pl)
    ui.set_pileup_model("bench", jdp)
    model = ui.get_model("bench")
    out = np.empty((n, data.channel.size))
    t0 = time.perf_counter()
    for i in range(n):
        pl.gamma, pl.ampl = d["PhoIndex"][i], d["norm"][i]
        jdp.alpha, jdp.f = d["alpha"][i], d["f"][i]
        out[i] = data.eval_model(model)
    dt = time.perf_counter() - t0
    ui.clean()
    return out, dt


def run(quick: bool = False) -> dict:
    """Spectra per second: simxray batched vs Sherpa per spectrum, same response and draws."""
    import numpy as np
    import torch

    from simxray.instrument import Pileup, PileupParams, Response
    from simxray.io.ogip import read_pha

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        path = _spectrum_path()
        resp = Response.from_spectrum(read_pha(path), device="cpu")
        pile = Pileup(resp)
        n_sx = 1024 if quick else 4096
        n_sh = 48 if quick else 300
        d = draws(n_sx)
        figs: dict = {"what": "power law x jdpileup on NGC 4258 ACIS-S (1077 x 1024), 4096-bin kernel"}

        # simxray: warm up, then time each batch size
        simulate_simxray(pile, {k: v[:64] for k, v in d.items()}, 64)
        best = 0.0
        for batch in (256, 1024):
            t0 = time.perf_counter()
            _, frac = simulate_simxray(pile, d, batch)
            rate = n_sx / (time.perf_counter() - t0)
            figs[f"simxray_spectra_per_s_batch{batch}"] = round(rate, 1)
            best = max(best, rate)
        figs["pileup_fraction_quantiles_10_50_90"] = [round(float(q), 4)
                                                      for q in np.quantile(frac, [0.1, 0.5, 0.9])]

        # simxray, default model tbabs*powerlaw through the numpy model registry
        try:
            from simxray.models import Model

            m = Model("tbabs*powerlaw")
            n_def = min(n_sx, 1024)
            dd = {k: v[:n_def] for k, v in d.items()}
            fn = lambda e, p: m.evaluate(e, {"nH": p["nH"], "PhoIndex": p["PhoIndex"],  # noqa: E731
                                             "norm": p["norm"]})
            simulate_simxray(pile, {k: v[:32] for k, v in dd.items()}, 32, flux_fn=fn)
            t0 = time.perf_counter()
            simulate_simxray(pile, dd, 256, flux_fn=fn)
            figs["simxray_default_setup_spectra_per_s"] = round(n_def / (time.perf_counter() - t0), 1)
        except Exception as exc:  # the model layer may be absent
            figs["simxray_default_setup_spectra_per_s"] = f"unavailable: {exc}"

        # Sherpa on the same draws
        try:
            ref, dt = sherpa_loop(path, d, n_sh)
        except ImportError as exc:
            figs["reference"] = f"sherpa unavailable: {exc}"
            figs["simxray_spectra_per_s"] = round(best, 1)
            return figs
        sh_rate = n_sh / dt
        # check: the simulated expectation equals Sherpa's on these draws
        sub = {k: v[:n_sh] for k, v in d.items()}
        with torch.no_grad():
            log_e = torch.log(torch.as_tensor(pile.edges))
            t = {k: torch.as_tensor(v) for k, v in sub.items()}
            res = pile(powerlaw_torch(log_e, t["PhoIndex"], t["norm"]),
                       PileupParams(alpha=t["alpha"], f=t["f"], **FIXED))
            mu = resp.fold_counts_per_bin(res.counts).numpy()
        big = ref >= 1e-6 * ref.max(axis=1, keepdims=True)
        figs.update({
            "simxray_spectra_per_s": round(best, 1),
            "reference_spectra_per_s": round(sh_rate, 1),
            "ratio": round(best / sh_rate, 2),
            "ratio_default_setup": (round(figs["simxray_default_setup_spectra_per_s"] / sh_rate, 2)
                                    if isinstance(figs["simxray_default_setup_spectra_per_s"], float)
                                    else None),
            "max_rel_diff_vs_sherpa": float(np.max(np.abs(mu[big] / ref[big] - 1))),
            "n_simxray": n_sx, "n_sherpa": n_sh, "torch_threads": 2,
            "torch": torch.__version__, "machine": platform.machine(), "quick": bool(quick),
        })
        return figs
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
