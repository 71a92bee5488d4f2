"""Simulation campaigns: chunked, resumable, seeded HDF5 datasets.

The dataset (layout in ``docs/ARCHITECTURE.md``) is created in full in a temporary
file (datasets allocated up front, contiguous, never resized) and renamed into
place; afterwards each chunk of spectra is written to its rows, the file is
flushed, and only then the root attribute ``n_done`` advances.  A run killed at
any point leaves a valid file whose first ``n_done`` rows are complete; rerunning
the same command continues from there.  A run key (hash of the config, the
responses' checksums, n, seed and chunk size) guards against continuing a file
made with different arguments.

Chunk ``i`` draws everything from ``numpy.random.default_rng(SeedSequence(seed,
spawn_key=(i,)))`` and torch runs single-threaded inside a chunk, so the dataset
is identical whatever the number of workers or the executor (in-process, a local
process pool, or a Dask distributed cluster).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from ..errors import FileFormatError, SimxrayError
from ..provenance import atomic_path, provenance

# Simulators built in this process, keyed by config digest (worker-side cache).
_CACHE: dict[str, object] = {}


def chunk_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for chunk ``index`` of a campaign with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(index),)))


def default_factory(config: Mapping):
    """Build a :class:`~simxray.simulator.simulator.Simulator` from a config dict."""
    from .config import config_from_dict
    from .simulator import Simulator

    return Simulator.from_config(config_from_dict(config, path=config.get("source")))


def _simulator(config: Mapping, factory: Callable | None):
    key = hashlib.sha256(json.dumps(dict(config), sort_keys=True, default=str).encode()).hexdigest()
    key += "" if factory is None else f":{factory.__module__}.{factory.__qualname__}"
    sim = _CACHE.get(key)
    if sim is None:
        sim = (factory or default_factory)(config)
        _CACHE.clear()  # one campaign at a time per process
        _CACHE[key] = sim
    return sim


@contextlib.contextmanager
def _torch_single_thread():
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_chunk(config: Mapping, seed: int, index: int, start: int, stop: int,
              factory: Callable | None = None) -> dict[str, np.ndarray]:
    """Simulate rows [start, stop) of a campaign (chunk ``index``); runs anywhere."""
    sim = _simulator(config, factory)
    with _torch_single_thread():
        out = sim.sample(stop - start, chunk_rng(seed, index))
    out["index"] = np.int64(index)
    return out


# ---------------------------------------------------------------------------
# executors: yield chunk results in index order


def _serial(tasks, config, seed, factory) -> Iterator[dict]:
    for i, a, b in tasks:
        yield run_chunk(config, seed, i, a, b, factory)


def _windowed(submit, tasks, window: int) -> Iterator[dict]:
    pending: collections.deque = collections.deque()
    it = iter(tasks)
    try:
        for t in it:
            pending.append(submit(t))
            if len(pending) >= window:
                break
        while pending:
            fut = pending.popleft()
            res = fut.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(submit(nxt))
            yield res
    finally:
        for f in pending:
            f.cancel()


def _worker_init() -> None:
    """Pool workers ignore Ctrl-C (the parent stops them) and run torch single-threaded."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(ImportError):
        import torch

        torch.set_num_threads(1)


def _process_pool(tasks, config, seed, factory, workers: int) -> Iterator[dict]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ex = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init)
    try:
        yield from _windowed(lambda t: ex.submit(run_chunk, config, seed, *t, factory), tasks,
                             2 * workers)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _dask(tasks, config, seed, factory, scheduler) -> Iterator[dict]:
    try:
        from distributed import Client
    except ImportError:
        raise SimxrayError("--scheduler needs the 'distributed' package (pip install "
                           "simxray[dask])", field="--scheduler") from None
    if isinstance(scheduler, Client):
        client, own = scheduler, False
    else:
        try:
            client, own = Client(scheduler, timeout="20s"), True
        except (OSError, TimeoutError, ValueError) as exc:
            raise SimxrayError(f"cannot connect to the Dask scheduler ({exc}); expected the "
                               "address of a running cluster, e.g. tcp://host:8786",
                               field=f"--scheduler {scheduler}") from None
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        yield from _windowed(
            lambda t: client.submit(run_chunk, config, seed, *t, factory, pure=False),
            tasks, 2 * n_workers + 1)
    finally:
        if own:
            client.close()


# ---------------------------------------------------------------------------
# the dataset


def run_key(config_digest: str, response: Mapping, n: int, seed: int, chunk_size: int) -> str:
    """Hash of everything that determines the dataset's contents (file contents, not paths)."""
    resp = {k: ({kk: vv for kk, vv in v.items() if kk != "path"} if isinstance(v, Mapping) else v)
            for k, v in response.items()}
    blob = json.dumps({"config": config_digest, "response": resp, "n": int(n), "seed": int(seed),
                       "chunk_size": int(chunk_size)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _create(path: Path, sim, n: int, attrs: dict) -> None:
    """Create the full dataset in a temporary file and rename it to ``path``."""
    import h5py

    tmp = atomic_path(path)
    P, C = len(sim.prior.names), sim.n_channels

    def alloc(f, name, shape, dtype):
        # contiguous, allocated at creation, never filled: later writes touch raw data only
        sid = h5py.h5s.create_simple(shape)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        tid = h5py.h5t.py_create(np.dtype(dtype), logical=True)
        h5py.h5d.create(f.id, name.encode(), tid, sid, dcpl=dcpl)

    try:
        with h5py.File(tmp, "w") as f:
            alloc(f, "theta", (n, P), "f4")
            alloc(f, "mu", (n, C), "f4")
            alloc(f, "counts", (n, C), "i4")
            alloc(f, "pileup_fraction", (n,), "f4")
            if sim.background_mu is not None:
                alloc(f, "background", (n, C), "i4")
                f["background"].attrs["expected"] = np.asarray(sim.background_mu, dtype="f8")
            f["theta"].attrs["names"] = list(sim.prior.names)
            f.create_dataset("channel", data=np.asarray(sim.channel, dtype="i4"))
            f.create_dataset("e_min", data=np.asarray(sim.e_min, dtype="f8"))
            f.create_dataset("e_max", data=np.asarray(sim.e_max, dtype="f8"))
            for k, v in attrs.items():
                f.attrs[k] = v
            f.attrs["n_done"] = np.int64(0)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _check_existing(path: Path, key: str, n: int, seed: int, chunk_size: int, digest: str) -> int:
    """n_done of an existing dataset made with the same arguments; raise otherwise."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            a = dict(f.attrs)
    except OSError as exc:
        raise FileFormatError(f"exists but is not a readable simxray dataset ({exc}); remove it or "
                              "choose another --out", path=str(path)) from None
    if "run_key" not in a or "n_done" not in a:
        raise FileFormatError("exists but is not a simxray dataset (no run_key/n_done); remove it "
                              "or choose another --out", path=str(path))
    if a["run_key"] != key:
        diffs = []
        if int(a.get("n", -1)) != n:
            diffs.append(f"n {int(a.get('n', -1))} vs {n}")
        if int(a.get("seed", -1)) != seed:
            diffs.append(f"seed {int(a.get('seed', -1))} vs {seed}")
        if int(a.get("chunk_size", -1)) != chunk_size:
            diffs.append(f"chunk size {int(a.get('chunk_size', -1))} vs {chunk_size}")
        if a.get("config_digest") != digest:
            diffs.append("config differs")
        if not diffs:
            diffs.append("responses differ")
        raise SimxrayError(f"was made with different arguments ({'; '.join(diffs)}); refusing to "
                           "continue it: remove it or choose another --out", path=str(path))
    return int(a["n_done"])


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """Turn SIGTERM into KeyboardInterrupt so that ``kill`` stops cleanly (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_campaign(config, n: int, out: str | os.PathLike, *, seed: int = 0, workers: int = 1,
                 scheduler=None, chunk_size: int | None = None, quiet: bool = False,
                 factory: Callable | None = None, argv: list[str] | None = None) -> dict:
    """Simulate ``n`` spectra from ``config`` (SimConfig or dict) into the HDF5 file ``out``.

    Continues an interrupted file made with the same arguments.  ``workers`` > 1 uses a
    local process pool; ``scheduler`` (address or ``distributed.Client``) a Dask cluster.
    Returns a summary dict (path, n, n_done, seconds, rate in spectra/s).
    """
    import time

    import h5py
    from tqdm import tqdm

    from .config import SimConfig

    if isinstance(config, SimConfig):
        cfg = config.to_dict()
        digest = config.digest()
        chunk = int(chunk_size or config.chunk_size)
    else:
        cfg = dict(config)
        d = {k: v for k, v in cfg.items() if k != "source"}
        digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()
        chunk = int(chunk_size or cfg.get("simulation", {}).get("chunk_size", 256))
    n, seed, workers = int(n), int(seed), int(workers)
    if n < 1:
        raise SimxrayError(f"expected a positive number of spectra, got {n}", field="--n")
    if not 0 <= seed < 2**63:
        raise SimxrayError(f"expected a non-negative integer seed, got {seed}", field="--seed")
    if workers < 1:
        raise SimxrayError(f"expected at least one worker, got {workers}", field="--workers")
    if chunk < 1:
        raise SimxrayError(f"expected a positive chunk size, got {chunk}", field="--chunk-size")
    path = Path(out)
    if path.parent and not path.parent.is_dir():
        raise SimxrayError("output folder does not exist", path=str(path.parent), field="--out")

    sim = _simulator(cfg, factory)
    response = sim.identity()
    key = run_key(digest, response, n, seed, chunk)
    if path.exists():
        n_done = _check_existing(path, key, n, seed, chunk, digest)
    else:
        attrs = {
            "config": json.dumps(cfg),
            "prior": sim.prior.to_json(),
            "model": sim.expression,
            "response": json.dumps(response),
            "provenance": json.dumps(provenance(seed=seed, n=n, chunk_size=chunk, argv=argv,
                                                inputs=response, tables=sim.model.tables())),
            "seed": np.int64(seed),
            "n": np.int64(n),
            "chunk_size": np.int64(chunk),
            "channels": np.asarray(sim.channels, dtype=np.int64),
            "config_digest": digest,
            "run_key": key,
            "mu_includes_background": False,
        }
        _create(path, sim, n, attrs)
        n_done = 0

    total_chunks = -(-n // chunk)
    first = n_done // chunk
    tasks = [(i, i * chunk, min(n, (i + 1) * chunk)) for i in range(first, total_chunks)]
    t0 = time.perf_counter()
    done_here = 0
    if tasks:
        if scheduler is not None:
            results = _dask(tasks, cfg, seed, factory, scheduler)
        elif workers > 1:
            results = _process_pool(tasks, cfg, seed, factory, workers)
        else:
            results = _serial(tasks, cfg, seed, factory)
        bar = tqdm(total=n, initial=first * chunk, unit="spectra", disable=quiet,
                   desc=path.name, dynamic_ncols=True, smoothing=0.1)
        try:
            with _sigterm_as_interrupt(), h5py.File(path, "r+") as f:
                for (i, a, b), res in zip(tasks, results, strict=False):
                    if int(res["index"]) != i:  # pragma: no cover - executor contract
                        raise RuntimeError(f"chunk {res['index']} arrived for {i}")
                    f["theta"][a:b] = res["theta"].astype("f4")
                    f["mu"][a:b] = res["mu"].astype("f4")
                    f["counts"][a:b] = res["counts"].astype("i4")
                    f["pileup_fraction"][a:b] = res["pileup_fraction"].astype("f4")
                    if "background" in f and res.get("background") is not None:
                        f["background"][a:b] = res["background"].astype("i4")
                    f.flush()
                    f.attrs["n_done"] = np.int64(b)
                    f.flush()
                    done_here += b - a
                    bar.update(b - a)
        finally:
            bar.close()
            close = getattr(results, "close", None)
            if close:
                close()
    dt = time.perf_counter() - t0
    return {"path": str(path), "n": n, "n_done": n, "new": done_here, "seconds": dt,
            "rate": done_here / dt if dt > 0 else float("nan"), "resumed_from": first * chunk}


def read_dataset(path: str | os.PathLike) -> dict:
    """Load a complete dataset into memory (theta, mu, counts, names, attrs...)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            n_done = int(f.attrs["n_done"])
            out = {k: f[k][:n_done] for k in ("theta", "mu", "counts", "pileup_fraction", "background")
                   if k in f}
            out["names"] = [str(x) for x in f["theta"].attrs["names"]]
            for k in ("channel", "e_min", "e_max"):
                out[k] = f[k][:]
            out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, KeyError) as exc:
        raise FileFormatError(f"not a readable simxray dataset ({exc})", path=str(path)) from None
    return out
