"""Timing helper shared by the benchmarks (not a benchmark: ``run.py`` runs ``bench_*.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_wall_cpu(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall and best CPU (process, all threads) seconds over ``repeats`` calls of ``fn``."""
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu
