"""Run simxray's benchmarks and print their figures.

    python benchmarks/run.py [--only NAME[,NAME]] [--quick] [--json FILE]

Every ``benchmarks/bench_*.py`` module exposing ``run(quick: bool) -> dict`` is a
benchmark; NAME is the part after ``bench_``.  A benchmark returns flat figures; by
convention a comparison reports ``simxray_spectra_per_s``, ``reference_spectra_per_s``
and ``ratio`` (simxray / reference), which the summary table collects.  ``--json``
writes every figure with provenance (atomically).  Exit status 1 if a benchmark failed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SUMMARY_KEYS = ("simxray_spectra_per_s", "reference_spectra_per_s", "ratio")


def discover() -> dict[str, Path]:
    """{name: path} of the ``bench_*.py`` modules, sorted by name."""
    return {p.stem[len("bench_"):]: p for p in sorted(HERE.glob("bench_*.py"))}


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(f"simxray_bench_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    if not callable(getattr(mod, "run", None)):
        raise AttributeError(f"{path.name} has no run(quick) function")
    return mod


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, default=str)
    return str(v)


def print_results(results: dict[str, dict], out=sys.stdout) -> None:
    """One block of ``key  value`` rows per benchmark, then the rate summary."""
    for name, figs in results.items():
        print(f"\n== {name} " + "=" * max(0, 60 - len(name)), file=out)
        width = max((len(k) for k in figs), default=0)
        for k, v in figs.items():
            print(f"  {k:<{width}}  {_fmt(v)}", file=out)
    rows = [(n, f) for n, f in results.items() if any(k in f for k in SUMMARY_KEYS)]
    if rows:
        print("\nsummary (spectra per second)", file=out)
        print(f"  {'benchmark':<16} {'simxray':>12} {'reference':>12} {'ratio':>8}", file=out)
        for n, f in rows:
            cells = [_fmt(f.get(k, "-")) for k in SUMMARY_KEYS]
            print(f"  {n:<16} {cells[0]:>12} {cells[1]:>12} {cells[2]:>8}", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated benchmark names (the part after bench_)")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--json", metavar="FILE", help="write all figures to FILE (JSON)")
    args = ap.parse_args(argv)

    found = discover()
    names = list(found)
    if args.only:
        names = [n.strip().removeprefix("bench_") for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in found]
        if unknown:
            print(f"benchmarks/run.py: error: unknown benchmark {', '.join(unknown)}; expected one of "
                  f"{', '.join(found)}", file=sys.stderr)
            return 2
    if args.json and not Path(args.json).resolve().parent.is_dir():
        print(f"benchmarks/run.py: error: {args.json}: folder does not exist", file=sys.stderr)
        return 2

    results: dict[str, dict] = {}
    failed = False
    for name in names:
        print(f"[{name}] running{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            figs = dict(load(name, found[name]).run(quick=args.quick))
        except Exception as exc:  # report and go on with the others
            failed = True
            traceback.print_exc()
            figs = {"error": f"{type(exc).__name__}: {exc}"}
        figs["wall_s"] = round(time.perf_counter() - t0, 2)
        results[name] = figs
    print_results(results)

    if args.json:
        from simxray.provenance import atomic_path, provenance

        doc = {"provenance": provenance(command=" ".join(["benchmarks/run.py", *(argv or sys.argv[1:])]),
                                        cpu_count=os.cpu_count()),
               "quick": bool(args.quick), "results": results}
        tmp = atomic_path(args.json)
        try:
            tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
            os.replace(tmp, args.json)
        finally:
            if tmp.exists():
                tmp.unlink()
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
