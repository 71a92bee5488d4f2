"""Benchmark: posteriors on real piled-up ACIS spectra, simxray against Sherpa and BXA.

For every setup in :data:`SETUPS` (NGC 4258 1-7 keV with W-stat and with the pileup
walkthrough's chi2gehrels, 3C 273's zeroth order and the CSC spectrum of ObsID 1575, 0.5-7 keV,
all ``wabs*powerlaw`` times Sherpa's ``jdpileup``) the benchmark reports, side by side, per
method: posterior medians (best fit for Sherpa), 68 % intervals (``conf`` 1-sigma for Sherpa),
sd, ln(evidence), likelihood calls and wall seconds.

The trusted-tool references (Sherpa best fit + ``conf``; BXA/UltraNest, ~10-45 min each on one
core) are cached in ``benchmarks/results/real_reference.json`` with provenance (input sha256,
versions, seed, settings) and rerun only with ``--rerun-references``.  simxray's own methods
come from :func:`simxray_methods` (empty until the fit API exists).

Usage::

    python benchmarks/bench_real.py --json benchmarks/results/real.json
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_real.py --rerun-references sherpa
    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_real.py --rerun-references bxa \
        --setups ngc4258_wstat_1-7

Comparison columns (issue 12): for each simxray method and setup, ``d_bxa_sd`` =
|median - BXA median| / BXA posterior sd for nH and PhoIndex (goal <= 0.5), ``d_sherpa_sd`` =
|median - Sherpa best fit| / Sherpa conf sd (goal <= 1), and ``speedup_vs_bxa`` = BXA wall
seconds / method wall seconds (goal >= 20).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
for p in (str(REPO), str(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from real_reference import (  # noqa: E402
    KEY_PARAMS,
    SETUPS,
    Setup,
    bxa_posterior,
    setup_record,
    sherpa_best_fit,
    versions,
)

REFERENCE = HERE / "results" / "real_reference.json"
BXA_SEED = 1


# ---------------------------------------------------------------------------------------
# Trusted tools: one function per tool, each returning
# {params: {param: {median, lo68, hi68, sd}}, best_fit, log_evidence, n_calls, seconds, ...}
# ---------------------------------------------------------------------------------------

def run_sherpa(setup: Setup) -> dict:
    """Sherpa best fit (5 starts, Nelder-Mead -> Levenberg-Marquardt, Monte Carlo safety net)
    and ``conf`` 1-sigma errors on nH and PhoIndex (``median`` = best fit)."""
    return sherpa_best_fit(setup)


def run_bxa(setup: Setup, seed: int = BXA_SEED) -> dict:
    """BXA (UltraNest, BXA defaults: 400 live points, Lepsilon 0.1) on the same Sherpa model."""
    with tempfile.TemporaryDirectory(prefix="bxa_") as tmp:
        return bxa_posterior(setup, Path(tmp) / setup.name, seed=seed)


TRUSTED = {"sherpa": run_sherpa, "bxa": run_bxa}


#: simxray methods run by default (``--methods``): ``snpe`` (minutes of training) and
#: ``nested`` (UltraNest on the exact likelihood, ~250k calls) are slow and run on request.
SIMXRAY_METHODS = ("exact", "auto")


def _prior_for(setup: Setup) -> dict:
    names = {"alpha": "pileup.alpha", "f": "pileup.f"}
    return {names.get(k, k): {"dist": p.kind, "low": p.lo, "high": p.hi}
            for k, p in setup.priors.items()}


def _from_summary(s: dict, seconds: float) -> dict:
    out = {"params": {}, "seconds": seconds, "method": s["method"],
           "method_reason": s.get("method_reason"),
           "log_evidence": (s.get("evidence") or {}).get("logz"),
           "ppc_p": (s.get("checks", {}).get("ppc") or {}).get("p_value")}
    for k, v in s["parameters"].items():
        key = {"pileup.alpha": "alpha", "pileup.f": "f"}.get(k, k)
        out["params"][key] = {"median": v["median"], "lo68": v["ci68"][0], "hi68": v["ci68"][1],
                              "sd": v["sd"]}
    d = s.get("sampler") or {}
    imp = d.get("importance") or {}
    out["n_calls"] = (d.get("likelihood_spectra") or d.get("ncall")
                      or ((d.get("n_simulations") or 0)
                          + ((s.get("checks", {}).get("importance") or {}).get("n_draws") or 0))
                      or None)
    if imp:
        out["importance"] = {k: imp.get(k) for k in ("ess", "khat", "reliable")}
    lc = s.get("checks", {}).get("local_coverage")
    if lc:
        out["local_coverage_max_error"] = lc.get("max_error")
    return out


def simxray_methods(setup: Setup, methods=SIMXRAY_METHODS, seed: int = 0) -> dict[str, dict]:
    """simxray's fits of ``setup`` (W-stat setups only: simxray fits Poisson likelihoods),
    keyed by method, in the trusted-tool format.  ``exact`` runs through the CLI in a fresh
    process (wall time includes start-up: the time a user waits); the others in-process."""
    import os
    import subprocess
    import time

    if setup.stat != "wstat":
        return {}
    out: dict[str, dict] = {}
    prior = _prior_for(setup)
    for m in methods:
        if m == "exact":
            with tempfile.TemporaryDirectory(prefix="sxfit_") as tmp:
                pfile = Path(tmp) / "prior.toml"
                pfile.write_text("".join(
                    f'"{k}" = {{ dist = "{v["dist"]}", low = {v["low"]!r}, high = {v["high"]!r} }}\n'
                    for k, v in prior.items()))
                cmd = [sys.executable, "-m", "simxray", "fit", str(setup.path), "--model",
                       setup.model, "--energy", f"{setup.elo}:{setup.ehi}", "--prior",
                       str(pfile), "--pileup", f"ftime={setup.ftime},fracexp={setup.fracexp}",
                       "--method", "exact", "--no-plots", "--seed", str(seed), "--out",
                       str(Path(tmp) / "fit"), "-q"]
                t0 = time.perf_counter()
                r = subprocess.run(cmd, capture_output=True, text=True,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
                wall = time.perf_counter() - t0
                if r.returncode != 0:
                    out[m] = {"error": r.stderr.strip()[-500:]}
                    continue
                s = json.loads((Path(tmp) / "fit" / "summary.json").read_text())
                out["exact (CLI)"] = _from_summary(s, wall)
            continue
        import torch

        import simxray as sx

        torch.set_num_threads(1)      # as the CLI does (--threads 1): fastest on 2 cores
        obs = sx.Observation.from_pha(setup.path)
        obs.notice(setup.elo, setup.ehi)
        t0 = time.perf_counter()
        try:
            res = sx.fit(obs, setup.model, prior, pileup={"ftime": setup.ftime,
                                                          "fracexp": setup.fracexp},
                         method=m, seed=seed, ppc_draws=100)
        except Exception as exc:  # noqa: BLE001 - a failed method is a result too
            out[m] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out[m] = _from_summary(res.summary, time.perf_counter() - t0)
    return out


# ---------------------------------------------------------------------------------------
# Reference cache
# ---------------------------------------------------------------------------------------

def load_reference(path: Path = REFERENCE) -> dict:
    """The cached reference results ({} if the file does not exist)."""
    if not path.is_file():
        return {"setups": {}}
    return json.loads(path.read_text())


def save_reference(ref: dict, path: Path = REFERENCE) -> None:
    """Write the reference cache atomically."""
    from simxray.io.outputs import atomic_file
    from simxray.provenance import provenance

    ref["provenance"] = provenance(tools=versions(), bxa_seed=BXA_SEED,
                                   script="benchmarks/bench_real.py")
    with atomic_file(path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(ref, indent=1, sort_keys=False) + "\n")


def _stale(entry: dict, setup: Setup) -> list[str]:
    """Reasons why a cached entry no longer matches the setup or its input files."""
    rec = setup_record(setup)
    why = []
    old = entry.get("setup", {})
    for key in ("spectrum", "model", "elo", "ehi", "stat", "ftime", "fracexp", "priors"):
        if old.get(key) != rec.get(key):
            why.append(f"setup field {key} changed")
    if old.get("files_sha256") != rec["files_sha256"]:
        why.append("input file sha256 changed")
    return why


def update_references(names: list[str], tools: list[str], path: Path = REFERENCE) -> dict:
    """Rerun the given trusted tools on the given setups and store them in the cache."""
    ref = load_reference(path)
    for name in names:
        setup = SETUPS[name]
        entry = ref["setups"].setdefault(name, {})
        entry["setup"] = setup_record(setup)
        for tool in tools:
            if tool == "bxa" and not setup.bxa:
                continue
            print(f"[bench_real] {name}: running {tool} ...", flush=True)
            res = TRUSTED[tool](setup)
            res["versions"] = versions()
            entry[tool] = res
            save_reference(ref, path)          # keep what is done if a later run fails
    return ref


# ---------------------------------------------------------------------------------------
# Comparison and report
# ---------------------------------------------------------------------------------------

def params_of(result: dict) -> dict[str, dict]:
    """{param: {median, lo68, hi68, sd}} of a result (nested under ``params`` or top level)."""
    if "params" in result:
        return result["params"]
    return {k: v for k, v in result.items() if isinstance(v, dict) and "median" in v}


def compare(method: dict, sherpa: dict | None, bxa: dict | None) -> dict:
    """Distances of a method's medians from BXA (in BXA sd) and Sherpa (in conf sd)."""
    out: dict[str, dict] = {}
    mp = params_of(method)
    for k in KEY_PARAMS:
        if k not in mp:
            continue
        row: dict[str, float | None] = {}
        if bxa is not None:
            b = params_of(bxa)[k]
            row["d_bxa_sd"] = abs(mp[k]["median"] - b["median"]) / b["sd"]
        if sherpa is not None:
            s = params_of(sherpa)[k]
            row["d_sherpa_sd"] = (abs(mp[k]["median"] - s["median"]) / s["sd"]
                                  if s.get("sd") else None)
        out[k] = row
    if bxa is not None and method.get("seconds"):
        out["speedup_vs_bxa"] = bxa["seconds"] / method["seconds"]
    return out


def _fmt(p: dict) -> str:
    lo, hi = p.get("lo68"), p.get("hi68")
    iv = f"[{lo:.3g}, {hi:.3g}]" if lo is not None and hi is not None else "[-]"
    sd = f"{p['sd']:.3g}" if p.get("sd") is not None else "-"
    return f"{p['median']:.4g} {iv} sd {sd}"


def report(results: dict) -> str:
    """A plain-text table of every setup and method."""
    lines = []
    for name, entry in results["setups"].items():
        lines.append(f"== {name}: {entry['setup']['spectrum']} {entry['setup']['model']} "
                     f"{entry['setup']['elo']}-{entry['setup']['ehi']} keV, {entry['setup']['stat']}")
        for method, res in entry["methods"].items():
            if res is None:
                lines.append(f"  {method:<14s} (no cached result; run --rerun-references)")
                continue
            ps = params_of(res)
            cols = "  ".join(f"{k} {_fmt(ps[k])}" for k in KEY_PARAMS if k in ps)
            lz = res.get("log_evidence")
            lzs = f"lnZ {lz:.2f}" if lz is not None else ""
            lines.append(f"  {method:<14s} {cols}  {lzs}  calls {res.get('n_calls')}  "
                         f"{res.get('seconds', float('nan')):.1f} s")
        for method, cmp in entry.get("comparison", {}).items():
            lines.append(f"  {method:<14s} vs refs: {json.dumps(cmp)}")
    return "\n".join(lines)


def collect(names: list[str], reference: Path = REFERENCE,
            methods=SIMXRAY_METHODS) -> dict:
    """Collect cached references and simxray methods for ``names``."""
    ref = load_reference(reference)
    out: dict = {"setups": {}, "reference_file": str(reference)}
    for name in names:
        setup = SETUPS[name]
        cached = ref["setups"].get(name)
        entry: dict = {"setup": setup_record(setup), "methods": {}, "comparison": {}}
        if cached is not None:
            why = _stale(cached, setup)
            if why:
                entry["reference_stale"] = why
        for tool in TRUSTED:
            if tool == "bxa" and not setup.bxa:
                continue
            entry["methods"][tool] = None if cached is None else cached.get(tool)
        sherpa, bxa = entry["methods"].get("sherpa"), entry["methods"].get("bxa")
        for method, res in simxray_methods(setup, methods).items():
            entry["methods"][method] = res
            entry["comparison"][method] = compare(res, sherpa, bxa)
        out["setups"][name] = entry
    return out


def run(quick: bool = False) -> dict:
    """Flat figures for ``benchmarks/run.py``: cached references and simxray methods.

    Never reruns the references (``quick`` is accepted for the runner's interface).
    """
    del quick
    figs: dict[str, object] = {}
    res = collect(list(SETUPS))
    for name, entry in res["setups"].items():
        for method, r in entry["methods"].items():
            if r is None:
                figs[f"{name}.{method}"] = "missing"
                continue
            ps = params_of(r)
            for k in KEY_PARAMS:
                if k in ps:
                    figs[f"{name}.{method}.{k}"] = round(ps[k]["median"], 4)
                    if ps[k].get("sd") is not None:
                        figs[f"{name}.{method}.{k}_sd"] = round(ps[k]["sd"], 4)
            figs[f"{name}.{method}.seconds"] = round(float(r.get("seconds", float("nan"))), 1)
            figs[f"{name}.{method}.n_calls"] = r.get("n_calls")
        for method, cmp in entry["comparison"].items():
            figs[f"{name}.{method}.vs_refs"] = cmp
    return figs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    ap.add_argument("--setups", default=",".join(SETUPS),
                    help=f"comma-separated subset of: {', '.join(SETUPS)}")
    ap.add_argument("--reference", type=Path, default=REFERENCE, help="reference cache file")
    ap.add_argument("--methods", default=",".join(SIMXRAY_METHODS),
                    help="simxray methods: exact, auto, snpe, nested, npe (default %(default)s)")
    ap.add_argument("--rerun-references", nargs="?", const="all", default=None,
                    choices=["all", "sherpa", "bxa"],
                    help="recompute the cached Sherpa and/or BXA references (BXA: minutes each)")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.setups.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETUPS]
    if unknown:
        ap.error(f"unknown setup(s) {unknown}; expected some of {list(SETUPS)}")
    if args.json is not None:
        from simxray.io.outputs import check_output

        check_output(args.json, kind="file", overwrite=args.overwrite, field="--json")
    if args.rerun_references:
        tools = ["sherpa", "bxa"] if args.rerun_references == "all" else [args.rerun_references]
        update_references(names, tools, args.reference)
    results = collect(names, args.reference,
                      tuple(m.strip() for m in args.methods.split(",") if m.strip()))
    print(report(results))
    if args.json is not None:
        from simxray.io.outputs import atomic_file
        from simxray.provenance import provenance

        results["provenance"] = provenance(tools=versions())
        with atomic_file(args.json, overwrite=args.overwrite, field="--json") as tmp:
            tmp.write_text(json.dumps(results, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
