"""Simulation campaigns: chunked, resumable, seeded HDF5 datasets with one writer.

The dataset (layout in ``docs/ARCHITECTURE.md``) is created in full in a temporary
file (datasets allocated up front, contiguous, never resized) and renamed into
place; afterwards each chunk of spectra is written to its rows, the file is
flushed, and only then the root attribute ``n_done`` advances.  A run killed at
any point leaves a valid file whose first ``n_done`` rows are complete; rerunning
the same command continues from there.  A run key (hash of the config, the
responses' checksums, n, seed and chunk size) guards against continuing a file
made with different arguments; it is checked again every time the file is opened.

One writer per file: a run holds an OS lock (``fcntl.flock``) on the sidecar
``.NAME.lock`` for its whole duration; a second writer fails at once with a one-line
:class:`~simxray.errors.LockedError` naming the owner's PID.  Readers
(:func:`dataset_rows`, :func:`read_dataset`) honour ``n_done``: an unfinished file is
read up to ``n_done`` with a warning, a file with no finished rows or one being written
is an error.  Worker processes die with their parent (``PR_SET_PDEATHSIG`` on Linux, a
parent-PID watchdog elsewhere).

Chunk ``i`` draws everything from ``numpy.random.default_rng(SeedSequence(seed,
spawn_key=(i,)))``, so the dataset is identical whatever the number of workers or
the executor (in-process, a local process pool, or a Dask distributed cluster).

Length: a campaign's single-writer lock, resumable chunked HDF5 writing, worker processes that die with their parent and the Dask path must agree on one file layout, so they live together.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np

from ..errors import FileFormatError, LockedError, OutputError, ParameterError, SimxrayError
from ..io.outputs import check_output
from ..provenance import provenance

LOG = logging.getLogger(__name__)

# How long to wait for a Dask scheduler before giving up (distributed's timeout string).
DASK_CONNECT_TIMEOUT = "20s"

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


def run_chunk(config: Mapping, seed: int, index: int, start: int, stop: int,
              factory: Callable | None = None) -> dict[str, np.ndarray]:
    """Simulate rows [start, stop) of a campaign (chunk ``index``); runs anywhere."""
    sim = _simulator(config, factory)
    out = sim.sample(stop - start, chunk_rng(seed, index))
    out["index"] = np.int64(index)
    return out


# ---------------------------------------------------------------------------
# one writer per campaign file


def lock_path(path: str | os.PathLike) -> Path:
    """The sidecar lock file of a campaign file: ``.NAME.lock`` in the same folder."""
    p = Path(path)
    return p.with_name(f".{p.name}.lock")


def _owner_text(fd: int) -> str:
    with contextlib.suppress(OSError):
        os.lseek(fd, 0, os.SEEK_SET)
        return os.read(fd, 4096).decode(errors="replace").strip()
    return ""


def _owner_pid(text: str) -> int | None:
    first = text.split("\n", 1)[0].strip()
    return int(first) if first.isdigit() else None


def writer_pid(path: str | os.PathLike) -> int | None:
    """PID of the live process writing the campaign ``path`` (None when nobody holds its lock).

    Never creates or removes anything (readers may not own the folder).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fd = os.open(lock_path(path), os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _owner_pid(_owner_text(fd)) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _busy_message(pid: int | None) -> str:
    who = f"PID {pid}" if pid and pid > 0 else "a process whose PID is not yet recorded"
    return (f"is being written by another simxray simulate ({who}); wait for it to finish, "
            "or choose another --out")


@contextlib.contextmanager
def campaign_lock(path: str | os.PathLike, argv: list[str] | None = None) -> Iterator[Path]:
    """Hold the exclusive writer lock of campaign ``path`` for the block.

    Raises :class:`LockedError` (naming the owner's PID) when another live process holds it.
    The lock file is removed when the block ends; a killed owner leaves it behind, unlocked
    (the kernel drops the lock), and the next writer takes it over.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no locking
        yield Path(path)
        return
    lp = lock_path(path)
    while True:
        try:
            fd = os.open(lp, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot create the lock file {lp.name} ({exc.strerror}); expected a "
                              "writable folder", path=str(path), field="--out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = _owner_text(fd)
            if not text:                      # the owner has not written its PID yet
                time.sleep(0.1)
                text = _owner_text(fd)
            os.close(fd)
            raise LockedError(_busy_message(_owner_pid(text)), path=str(path),
                              field="--out") from None
        # the file we locked must still be the one at lp (an owner unlinks it when done)
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lp))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{' '.join(argv or sys.argv)}\n".encode())
        os.fsync(fd)
        yield Path(path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lp)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _die_with_parent(parent: int) -> None:
    """Make this (worker) process exit when ``parent`` dies, even by SIGKILL."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)   # PR_SET_PDEATHSIG = 1
            if os.getppid() != parent:                      # died before prctl took effect
                os._exit(1)
            return

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(1.0)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="simxray-parent-watchdog", daemon=True).start()


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


def _worker_init(parent: int) -> None:
    """Pool workers ignore Ctrl-C (the parent stops them), die with the parent and run torch
    single-threaded (OMP_NUM_THREADS=1 before the first chunk imports torch)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"


def _process_pool(tasks, config, seed, factory, workers: int) -> Iterator[dict]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ex = ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init, initargs=(os.getpid(),))
    try:
        yield from _windowed(lambda t: ex.submit(run_chunk, config, seed, *t, factory), tasks,
                             2 * workers)
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _connect(scheduler):
    """(client, owned) for a Dask scheduler address or an existing ``distributed.Client``."""
    try:
        from distributed import Client
    except ImportError:
        raise SimxrayError("--scheduler needs the 'distributed' package (pip install "
                           "simxray[dask])", field="--scheduler") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(scheduler, timeout=DASK_CONNECT_TIMEOUT), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise SimxrayError(f"cannot connect to the Dask scheduler ({' '.join(str(exc).split())[:200]});"
                           " expected the address of a running cluster, e.g. tcp://host:8786",
                           field=f"--scheduler {scheduler}") from None


def _dask(tasks, config, seed, factory, client) -> Iterator[dict]:
    n_workers = max(1, len(client.scheduler_info().get("workers", {})))
    yield from _windowed(
        lambda t: client.submit(run_chunk, config, seed, *t, factory, pure=False),
        tasks, 2 * n_workers + 1)


# ---------------------------------------------------------------------------
# the dataset


def run_key(config_digest: str, response: Mapping, n: int, seed: int, chunk_size: int) -> str:
    """Hash of everything that determines the dataset's contents (file contents, not paths)."""
    resp = {k: ({kk: vv for kk, vv in v.items() if kk != "path"} if isinstance(v, Mapping) else v)
            for k, v in response.items()}
    blob = json.dumps({"config": config_digest, "response": resp, "n": int(n), "seed": int(seed),
                       "chunk_size": int(chunk_size)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _tmp_path(path: Path) -> Path:
    """The creation temporary of ``path`` (only the lock holder writes it)."""
    return path.with_name(f".{path.name}.creating.tmp")


def _create(path: Path, sim, n: int, attrs: dict) -> None:
    """Create the full dataset in a temporary file and rename it to ``path`` (lock held)."""
    import h5py

    tmp = _tmp_path(path)
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
            cov_names = list(getattr(sim, "covariate_names", []) or [])
            if cov_names:                 # per-simulation exposure / frame time (s)
                alloc(f, "covariates", (n, len(cov_names)), "f8")
                f["covariates"].attrs["names"] = cov_names
                f["covariates"].attrs["units"] = ["s"] * len(cov_names)
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


def _open_h5(path: Path, mode: str):
    """h5py.File(path, mode) with one-line errors (busy, unreadable)."""
    import h5py

    try:
        return h5py.File(path, mode)
    except OSError as exc:
        pid = writer_pid(path)
        if pid is not None and pid != os.getpid():
            raise LockedError(_busy_message(pid), path=str(path)) from None
        text = " ".join(str(exc).split())
        if "lock" in text.lower():
            raise SimxrayError("is open in another program (HDF5 file lock); close it and "
                               "rerun", path=str(path)) from None
        raise FileFormatError(f"not a readable simxray dataset ({text[:200]})",
                              path=str(path)) from None


def _check_existing(path: Path, key: str, n: int, seed: int, chunk_size: int, digest: str) -> int:
    """n_done of an existing dataset made with the same arguments; raise otherwise."""
    with _open_h5(path, "r") as f:
        a = dict(f.attrs)
    if "run_key" not in a or "n_done" not in a:
        raise FileFormatError("exists but is not a simxray dataset (no run_key/n_done); choose "
                              "another --out, or pass --overwrite to replace it", path=str(path))
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
        raise OutputError(f"was made with different arguments ({'; '.join(diffs)}); refusing to "
                          "continue it: choose another --out, or pass --overwrite to replace it",
                          path=str(path), field="--out")
    return int(a["n_done"])


class _Interrupts:
    """SIGINT and SIGTERM stop a campaign between chunks, without a traceback.

    While the writer waits for the next chunk (``waiting()``) a signal raises
    KeyboardInterrupt at once; while it writes into the HDF5 file it only sets a flag, and
    ``check()`` after the chunk raises.  Raising inside h5py would land, now and then, in one
    of its weakref finalisers, where Python prints the exception and drops it, and the run
    would go on to the end.
    """

    def __init__(self) -> None:
        self.hit = False
        self.now = False
        self.old: dict = {}

    def _handler(self, signum, frame) -> None:
        self.hit = True
        if self.now:
            self.now = False
            raise KeyboardInterrupt

    def check(self) -> None:
        if self.hit:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def waiting(self):
        self.check()
        self.now = True
        try:
            yield
        finally:
            self.now = False

    def __enter__(self) -> _Interrupts:
        if threading.current_thread() is threading.main_thread():
            self.old = {sig: signal.signal(sig, self._handler)
                        for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, h in self.old.items():
            signal.signal(sig, h)


class _Progress:
    """A tqdm bar on a terminal; otherwise a log line every ``every`` s (debug: every chunk)."""

    def __init__(self, name: str, total: int, initial: int, bar: bool, every: float = 10.0):
        self.name, self.total, self.done, self.every = name, total, initial, every
        self.last = time.monotonic()
        self.bar = None
        if bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="spectra", desc=name,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, k: int) -> None:
        self.done += k
        if self.bar is not None:
            self.bar.update(k)
            return
        now = time.monotonic()
        level = logging.INFO if now - self.last >= self.every else logging.DEBUG
        if level == logging.INFO:
            self.last = now
        LOG.log(level, "%s: %d/%d spectra", self.name, self.done, self.total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_campaign(config, n: int, out: str | os.PathLike, *, seed: int = 0, workers: int = 1,
                 scheduler=None, chunk_size: int | None = None, quiet: bool = False,
                 factory: Callable | None = None, argv: list[str] | None = None,
                 overwrite: bool = False, progress: bool | None = None,
                 inputs: tuple = ()) -> dict:
    """Simulate ``n`` spectra from ``config`` (SimConfig or dict) into the HDF5 file ``out``.

    Continues an interrupted file made with the same arguments; ``overwrite`` starts afresh
    (replacing an existing file).  ``workers`` > 1 uses a local process pool; ``scheduler``
    (address or ``distributed.Client``) a Dask cluster.  ``progress``: a tqdm bar (default:
    when not ``quiet`` and stderr is a terminal; otherwise log lines).  ``inputs``: files the
    output may not be.  Returns a summary dict (path, n, n_done, new, seconds, rate in
    spectra/s, resumed_from).  Raises :class:`LockedError` when another process writes ``out``.
    """
    from .config import SimConfig

    if isinstance(config, SimConfig):
        cfg = config.to_dict()
        digest = config.digest()
        chunk = config.chunk_size if chunk_size is None else chunk_size
    else:
        cfg = dict(config)
        d = {k: v for k, v in cfg.items() if k != "source"}
        digest = hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()
        chunk = cfg.get("simulation", {}).get("chunk_size", 256) if chunk_size is None else chunk_size
    for name, v in (("--n", n), ("--seed", seed), ("--workers", workers), ("--chunk-size", chunk)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ParameterError(f"expected an integer, got {v!r}", field=name)
    n, seed, workers, chunk = int(n), int(seed), int(workers), int(chunk)
    if n < 1:
        raise ParameterError(f"expected a positive number of spectra, got {n}", field="--n")
    if not 0 <= seed < 2**63:
        raise ParameterError(f"expected a non-negative integer seed, got {seed}", field="--seed")
    if workers < 1:
        raise ParameterError(f"expected at least one worker, got {workers}", field="--workers")
    if chunk < 1:
        raise ParameterError(f"expected a positive chunk size, got {chunk}", field="--chunk-size")
    if scheduler is not None and workers > 1:
        raise ParameterError("local worker processes are not used with --scheduler; expected "
                             "one of --workers and --scheduler", field="--workers")
    path = check_output(out, kind="file", overwrite=True, inputs=inputs)
    if progress is None:
        progress = not quiet and sys.stderr.isatty()

    with campaign_lock(path, argv):
        with contextlib.suppress(OSError):         # left by a run killed while creating
            _tmp_path(path).unlink()
        sim = _simulator(cfg, factory)
        response = sim.identity()
        key = run_key(digest, response, n, seed, chunk)
        exists = path.exists()
        n_done = 0
        if exists and not overwrite:
            n_done = _check_existing(path, key, n, seed, chunk, digest)
        client = own = None
        total_chunks = -(-n // chunk)
        first = n if n_done >= n else n_done // chunk
        tasks = [(i, i * chunk, min(n, (i + 1) * chunk)) for i in range(first, total_chunks)]
        if tasks and scheduler is not None:       # connect before creating anything
            client, own = _connect(scheduler)
        created = False
        try:
            if not exists or overwrite:
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
                created = True
            res = _write_chunks(path, key, tasks, cfg, seed, factory, workers, client, n, chunk,
                                first, progress)
        except BaseException:
            # nothing to resume: leave nothing (only when the file says so; a file that
            # cannot be read at this moment may hold finished rows and is kept)
            if created and _n_done(path) == 0:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        finally:
            if own:
                client.close()
    return res


def _n_done(path: Path) -> int | None:
    """The file's finished rows; None when it cannot be read (then nobody may delete it)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs.get("n_done", 0))
    except OSError:
        return None


def _write_chunks(path: Path, key: str, tasks, cfg, seed, factory, workers, client, n, chunk,
                  first, progress) -> dict:
    t0 = time.perf_counter()
    done_here = 0
    if tasks:
        if client is not None:
            results = _dask(tasks, cfg, seed, factory, client)
        elif workers > 1:
            results = _process_pool(tasks, cfg, seed, factory, workers)
        else:
            results = _serial(tasks, cfg, seed, factory)
        bar = _Progress(path.name, n, first * chunk, progress)
        try:
            with _Interrupts() as stop, _open_h5(path, "r+") as f:
                if f.attrs.get("run_key") != key:     # not the file this run checked/created
                    raise OutputError("changed under this run (its run key differs); refusing "
                                      "to write into it", path=str(path), field="--out")
                if int(f.attrs["n_done"]) < first * chunk:
                    raise OutputError("changed under this run (n_done went back)",
                                      path=str(path), field="--out")
                chunks = iter(results)
                for i, a, b in tasks:
                    with stop.waiting():
                        res = next(chunks, None)
                    if res is None or int(res["index"]) != i:  # pragma: no cover - executor
                        raise RuntimeError(f"chunk {i} did not arrive")
                    f["theta"][a:b] = res["theta"].astype("f4")
                    f["mu"][a:b] = res["mu"].astype("f4")
                    f["counts"][a:b] = res["counts"].astype("i4")
                    f["pileup_fraction"][a:b] = res["pileup_fraction"].astype("f4")
                    if "covariates" in f:
                        f["covariates"][a:b] = np.asarray(res["covariates"], dtype="f8")
                    if "background" in f and res.get("background") is not None:
                        f["background"][a:b] = res["background"].astype("i4")
                    f.flush()
                    f.attrs["n_done"] = np.int64(b)
                    f.flush()
                    done_here += b - a
                    bar.update(b - a)
                    stop.check()
        finally:
            bar.close()
            close = getattr(results, "close", None)
            if close:
                close()
    dt = time.perf_counter() - t0
    return {"path": str(path), "n": n, "n_done": n, "new": done_here, "seconds": dt,
            "rate": done_here / dt if dt > 0 else float("nan"),
            "resumed_from": min(first * chunk, n)}


# ---------------------------------------------------------------------------
# readers: every reader honours n_done


def dataset_rows(path: str | os.PathLike, *, min_rows: int = 1, what: str = "spectra") -> tuple[int, int]:
    """(n_done, n) of a campaign file for a reader; the rows ``[0, n_done)`` are finished.

    Raises :class:`LockedError` while a simulate run writes the file, FileFormatError when it
    is not a campaign or has fewer than ``min_rows`` finished rows; warns (one line) when the
    campaign is unfinished, so that the reader uses only its finished rows.
    """
    p = Path(path)
    if not p.is_file():
        raise FileFormatError("file not found; expected an HDF5 dataset written by 'simxray "
                              "simulate'", path=str(p))
    pid = writer_pid(p)
    if pid is not None:
        raise LockedError(_busy_message(pid).replace("or choose another --out",
                                                     "then rerun this command"), path=str(p))
    with _open_h5(p, "r") as f:
        if "n_done" not in f.attrs or "theta" not in f:
            raise FileFormatError("not a simxray dataset (no n_done attribute or theta); expected "
                                  "a file written by 'simxray simulate'", path=str(p))
        n_done = int(f.attrs["n_done"])
        n = int(f.attrs.get("n", f["theta"].shape[0]))
    if n_done < min_rows:
        raise FileFormatError(f"unfinished campaign with {n_done} of {n} {what} done; expected at "
                              f"least {min_rows} (rerun its 'simxray simulate' command to finish "
                              "it)", path=str(p), field="n_done")
    if n_done < n:
        warnings.warn(f"{p}: unfinished campaign: using its {n_done} finished of {n} {what} "
                      "(rerun its 'simxray simulate' command to finish it)", stacklevel=2)
    return n_done, n


def read_dataset(path: str | os.PathLike) -> dict:
    """Load a dataset's finished rows into memory (theta, mu, counts, names, attrs...).

    An unfinished campaign gives its first ``n_done`` rows and a warning (see
    :func:`dataset_rows`).
    """
    import h5py

    n_done, _ = dataset_rows(path)
    try:
        with h5py.File(path, "r") as f:
            out = {k: f[k][:n_done] for k in ("theta", "mu", "counts", "pileup_fraction", "background",
                                              "covariates") if k in f}
            out["names"] = [str(x) for x in f["theta"].attrs["names"]]
            if "covariates" in f:
                out["covariate_names"] = [str(x) for x in f["covariates"].attrs["names"]]
            for k in ("channel", "e_min", "e_max"):
                out[k] = f[k][:]
            out["attrs"] = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, KeyError) as exc:
        raise FileFormatError(f"not a readable simxray dataset ({exc})", path=str(path)) from None
    return out
