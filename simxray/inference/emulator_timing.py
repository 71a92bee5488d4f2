"""Seconds per likelihood evaluation of an emulator against its exact simulator.

Timing runs at the thread settings the caller chose (the CLI's ``--threads``); nothing
here changes torch's threads.  BLAS is held to one thread while timing
(:func:`~.emulator_model.one_blas_thread`, a scoped context)."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from .emulator_model import Emulator, one_blas_thread


def time_per_call(fn, *args, repeats: int = 20, min_time: float = 0.2,
                  clock=time.perf_counter) -> float:
    """Best mean seconds per call of ``fn(*args)`` over three timing rounds (``clock``:
    wall time by default, ``time.process_time`` for CPU time)."""
    fn(*args)
    best = math.inf
    for _ in range(3):
        n, t0 = 0, clock()
        while n < repeats or clock() - t0 < min_time:
            fn(*args)
            n += 1
        best = min(best, (clock() - t0) / n)
    return best


def speed_comparison(emu: Emulator, sim, theta_emu: np.ndarray, theta_sim: np.ndarray,
                     batch: int = 16) -> dict:
    """Seconds per likelihood evaluation (C-stat of one spectrum; per spectrum in a batch of
    ``batch``), at the caller's torch threads (recorded as ``threads``): the emulator as emcee evaluates it (the compiled C-stat of
    :mod:`.fastlike` for a ``counts`` emulator) and through ``expected`` + C-stat (the W-stat
    path), against the exact simulator.  Wall times are the best of three rounds; the
    ``cpu_`` figures are process CPU time, which a busy machine disturbs less."""
    from .fastlike import EmulatorCStat
    from .stats import cstat

    x = np.random.default_rng(0).poisson(sim.expected(theta_sim[:1])[0]).astype(float)
    fast = (EmulatorCStat(emu, x) if emu.target == "counts" and not emu.in_cols
            else lambda t: cstat(x, emu.expected(t)))

    def like_mu(t):
        return cstat(x, emu.expected(t))

    def like_sim(t):
        return cstat(x, sim.expected(t))

    blas = one_blas_thread()
    blas.__enter__()
    out: dict = {"threads": torch.get_num_threads()}
    try:
        for clock, pre in ((time.perf_counter, ""), (time.process_time, "cpu_")):
            for b in (1, batch):
                key = "single" if b == 1 else f"per_spectrum_batch{b}"
                sp = "single" if b == 1 else f"batch{b}"
                e = time_per_call(fast, theta_emu[:b], clock=clock) / b
                m = time_per_call(like_mu, theta_emu[:b], clock=clock) / b
                s_ = time_per_call(like_sim, theta_sim[:b], repeats=5 if b == 1 else 2,
                                   clock=clock) / b
                out[f"{pre}emulator_s_{key}"] = e
                out[f"{pre}emulator_mu_s_{key}"] = m
                out[f"{pre}simulator_s_{key}"] = s_
                out[f"{pre}speedup_{sp}"] = s_ / e
                out[f"{pre}speedup_mu_{sp}"] = s_ / m
    finally:
        blas.__exit__(None, None, None)
    return out
