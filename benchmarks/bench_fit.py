"""Benchmark: fitting the piled-up NGC 4258 spectrum with the shipped neural posterior
(``simxray fit``) vs Sherpa's maximum-likelihood fit with ``jdpileup``.

* ``cli_wall_s``: ``python -m simxray.cli fit source_bin10.pi --samples 10000 --out DIR``
  as a fresh process (interpreter start-up, imports, 10,000 posterior draws, summary,
  posterior-predictive check, samples.h5, posterior.nc, corner and spectrum plots).
* ``warm_sample_summary_s``: the same fit in a warm session without outputs or
  predictive check (reading the spectrum, loading the network, sampling, summary).
* ``cli_cpu_s`` / ``warm_sample_summary_cpu_s``: the CPU seconds of the same runs, and
  ``load_average_1min`` at the start: on a shared machine wall times exceed CPU times.
* ``sherpa_fit_s``: Sherpa 4.x ``fit()`` (C-stat, Levenberg-Marquardt then Nelder-Mead)
  of ``atten * powlaw1d`` with ``set_pileup_model(jdpileup)`` on 0.5-8 keV, starting from
  typical values; plus ``covar()`` for 1-sigma errors.  Sherpa here has no XSPEC, so
  absorption is Sherpa's ``atten`` (Rumph et al. 1994) rather than ``tbabs``: N_H and the
  index are close but not identical by construction.

``ratio`` = Sherpa fit time / simxray CLI time (> 1: simxray is faster).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FRAME_TIME = 3.24104


def _spectrum() -> Path:
    from simxray.datasets import default_spectrum_path

    return default_spectrum_path()


def _children_cpu() -> float:
    """CPU seconds (user + system) of finished child processes and their descendants."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def time_cli(n_samples: int, repeats: int) -> tuple[float, float, dict]:
    """Best wall time and CPU time (both processes: the fit and its forked corner-plot
    child) of the fit command as a fresh process, and its summary."""
    best, best_cpu, summary = float("inf"), float("inf"), {}
    env = {**os.environ, "MPLBACKEND": "Agg"}
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t, c = time.perf_counter(), _children_cpu()
            subprocess.run([sys.executable, "-m", "simxray.cli", "fit", str(_spectrum()),
                            "--samples", str(n_samples), "--out", tmp, "--quiet"],
                           check=True, cwd=REPO, env=env, capture_output=True)
            best = min(best, time.perf_counter() - t)
            best_cpu = min(best_cpu, _children_cpu() - c)
            summary = json.loads((Path(tmp) / "summary.json").read_text())
    return best, best_cpu, summary


def time_warm(n_samples: int, repeats: int) -> dict:
    """Sampling + summary in a session where the imports are done."""
    import torch

    from simxray.inference.fit import fit_spectrum

    fit_spectrum(_spectrum(), n_samples=100, ppc_draws=0, plots=False)     # warm up
    best = float("inf")
    best_cpu = float("inf")
    sample_only = float("inf")
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        res = fit_spectrum(_spectrum(), n_samples=n_samples, ppc_draws=0, plots=False)
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
        sample_only = min(sample_only, res.summary["timing_s"]["sample"])
    return {"warm_sample_summary_s": best, "warm_sample_summary_cpu_s": best_cpu,
            "warm_sampling_s": sample_only, "torch_threads": torch.get_num_threads()}


def sherpa_fit() -> dict:
    """Sherpa ML fit with jdpileup; {} if Sherpa is not installed."""
    import logging

    try:
        import sherpa.astro.ui as ui
    except ImportError:
        return {}
    logging.getLogger("sherpa").setLevel(logging.ERROR)
    ui.clean()
    ui.load_pha(1, str(_spectrum()))
    ui.notice(0.5, 8.0)
    ui.set_stat("cstat")
    abs1 = ui.create_model_component("atten", "abs1")
    p1 = ui.create_model_component("powlaw1d", "p1")
    jdp = ui.create_model_component("jdpileup", "jdp")
    ui.set_source(abs1 * p1)
    ui.set_pileup_model(jdp)
    abs1.hcol = 1e22
    abs1.heiRatio.freeze()
    abs1.heiiRatio.freeze()
    p1.gamma = 1.8
    p1.ampl = 1e-3
    jdp.alpha = 0.5
    jdp.f = 0.95
    jdp.f.min = 0.85
    jdp.ftime = FRAME_TIME
    jdp.fracexp = 0.987
    for par in (jdp.g0, jdp.n, jdp.ftime, jdp.fracexp):
        par.freeze()
    t, c = time.perf_counter(), time.process_time()
    ui.set_method("levmar")
    ui.fit()
    ui.set_method("neldermead")
    ui.fit()
    fit_s, fit_cpu = time.perf_counter() - t, time.process_time() - c
    t = time.perf_counter()
    errors = {}
    try:
        ui.covar()
        cov = ui.get_covar_results()
        errors = {n: float(e) for n, e in zip(cov.parnames, cov.parmaxes, strict=True)
                  if e is not None}
    except Exception:  # covariance can fail at a boundary: report the fit alone
        pass
    covar_s = time.perf_counter() - t
    fr = ui.get_fit_results()
    return {"sherpa_fit_s": fit_s, "sherpa_fit_cpu_s": fit_cpu, "sherpa_covar_s": covar_s, "sherpa_cstat": float(fr.statval),
            "sherpa_dof": int(fr.dof), "sherpa_nH_1e22": float(abs1.hcol.val) / 1e22,
            "sherpa_PhoIndex": float(p1.gamma.val), "sherpa_norm": float(p1.ampl.val),
            "sherpa_alpha": float(jdp.alpha.val), "sherpa_f": float(jdp.f.val),
            "sherpa_errors": errors, "sherpa_model": "atten*powlaw1d + jdpileup (no XSPEC)"}


def run(quick: bool = False) -> dict:
    n = 10000
    repeats = 1 if quick else 3
    load = os.getloadavg()[0]
    cli_s, cli_cpu, summary = time_cli(n, repeats)
    out = {"n_samples": n, "cli_wall_s": cli_s, "cli_cpu_s": cli_cpu, "cli_target_s": 10.0,
           "cli_within_target": cli_s < 10.0,
           "load_average_1min": load, "cpu_cores": os.cpu_count()}
    out.update(time_warm(n, repeats))
    out["warm_target_s"] = 2.0
    p = summary.get("parameters", {})
    for name in ("nH", "PhoIndex", "norm", "pileup.alpha", "pileup.f"):
        if name in p:
            out[f"simxray_{name}_median"] = p[name]["median"]
            out[f"simxray_{name}_ci68"] = p[name]["ci68"]
    if summary.get("pileup_fraction"):
        out["simxray_pileup_fraction"] = summary["pileup_fraction"]["median"]
    if summary.get("checks", {}).get("ppc"):
        out["simxray_ppc_p"] = summary["checks"]["ppc"]["p_value"]
    out["simxray_timing_s"] = summary.get("timing_s", {})
    sh = sherpa_fit()
    out.update(sh)
    if sh:
        out["ratio"] = sh["sherpa_fit_s"] / cli_s
    return out


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    for k, v in run(a.quick).items():
        print(f"{k:32s} {v}")
