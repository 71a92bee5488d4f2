"""One output-path policy for every command: checked before work, atomic, never an input.

Every command that writes a file or a folder goes through this module:

* :func:`check_output` runs *before* any work: the parent folder must exist and be
  writable, an existing path must be of the expected kind (file or folder), it must not
  be one of the command's inputs, and an earlier output is replaced only with
  ``overwrite=True`` (the CLI's ``--overwrite``).  Problems raise
  :class:`~simxray.errors.OutputError` (one line, exit code 2).
* :func:`atomic_file` / :func:`atomic_dir` yield a temporary sibling to write to and move
  it into place only when the block finishes without an exception; on every exit path
  (exception, ``KeyboardInterrupt``, SIGTERM turned into ``SystemExit``) the temporary is
  removed, so nothing half-written is ever left under the final name or beside it.
* Nothing is ever written under the installed package's own folder
  (:func:`inside_package` is refused).

Example
-------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_file(d / "a.txt") as tmp:
...     _ = tmp.write_text("hello")
>>> (d / "a.txt").read_text()
'hello'
>>> sorted(p.name for p in d.iterdir())
['a.txt']
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..errors import OutputError

PACKAGE_DIR = Path(__file__).resolve().parent.parent


def inside_package(path: str | os.PathLike) -> bool:
    """True when ``path`` lies inside the installed simxray package folder."""
    try:
        Path(path).resolve().relative_to(PACKAGE_DIR)
        return True
    except ValueError:
        return False


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _can_create(folder: Path) -> bool:
    """Whether a file can really be created in ``folder`` (a probe, removed at once): catches
    read-only mounts and pseudo-filesystems that ``os.access`` reports writable to root."""
    probe = folder / f".simxray-probe.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


def check_output(path: str | os.PathLike, *, kind: str = "file", overwrite: bool = False,
                 inputs: Iterable[str | os.PathLike | None] = (), field: str = "--out",
                 allow_package: bool = False) -> Path:
    """Validate an output path before any work is done; return it as a :class:`Path`.

    kind : ``"file"`` or ``"dir"`` (what will be written there).
    overwrite : allow replacing an existing output of the same kind.
    inputs : the command's input files; the output may be none of them.
    """
    if kind not in ("file", "dir"):
        raise ValueError(f"kind must be 'file' or 'dir', got {kind!r}")
    if path is None or str(path) == "":
        raise OutputError("expected an output path", field=field)
    p = Path(path).expanduser()
    what = "a folder" if kind == "dir" else "a file"
    for inp in inputs:
        if inp is not None and str(inp) not in ("", "default", "none") and _same(p, Path(inp)):
            raise OutputError(f"is also an input of this command; expected {what} path that "
                              "is not one of its inputs", path=str(p), field=field)
    if not allow_package and inside_package(p):
        raise OutputError("is inside the installed simxray package; expected an output "
                          "path outside it", path=str(p), field=field)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.exists():
        raise OutputError(f"parent folder {parent} does not exist; expected {what} path in an "
                          "existing folder", path=str(p), field=field)
    if not parent.is_dir():
        raise OutputError(f"{parent} is not a folder", path=str(p), field=field)
    if not os.access(parent, os.W_OK | os.X_OK) or not _can_create(parent):
        raise OutputError(f"folder {parent} is not writable; expected a writable location",
                          path=str(p), field=field)
    if p.exists() or p.is_symlink():
        if kind == "file" and p.is_dir():
            raise OutputError("is an existing folder; expected a file path", path=str(p),
                              field=field)
        if kind == "dir" and not p.is_dir():
            raise OutputError("is an existing file; expected a folder path", path=str(p),
                              field=field)
        if kind == "dir" and p.is_dir() and not any(p.iterdir()):
            return p                     # an empty folder is no earlier output
        if not overwrite:
            raise OutputError("exists; pass --overwrite to replace it", path=str(p), field=field)
        if kind == "dir" and not os.access(p, os.W_OK | os.X_OK):
            raise OutputError("is not writable", path=str(p), field=field)
    return p


def _tmp_sibling(p: Path) -> Path:
    return p.with_name(f".{p.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")


def _remove(p: Path) -> None:
    try:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            p.unlink()
    except OSError:
        pass


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, *, overwrite: bool = True,
                inputs: Iterable[str | os.PathLike | None] = (), field: str = "--out",
                check: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it to ``path`` when the block succeeds.

    The temporary is removed on every failure (exceptions and interrupts included).
    """
    p = check_output(path, kind="file", overwrite=overwrite, inputs=inputs,
                     field=field) if check else Path(path)
    tmp = _tmp_sibling(p)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError("nothing was written", path=str(p), field=field)
        os.replace(tmp, p)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, *, overwrite: bool = False,
               inputs: Iterable[str | os.PathLike | None] = (), field: str = "--out",
               check: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``path``; it replaces ``path`` when the block
    succeeds (an earlier output there is removed only then, and only with ``overwrite``).

    On failure the temporary folder is removed and an earlier ``path`` is left untouched.
    """
    p = check_output(path, kind="dir", overwrite=overwrite, inputs=inputs,
                     field=field) if check else Path(path)
    tmp = _tmp_sibling(p)
    tmp.mkdir()
    old = None
    try:
        yield tmp
        if p.exists():
            old = _tmp_sibling(p)
            os.replace(p, old)
        os.replace(tmp, p)
    except BaseException:
        _remove(tmp)
        if old is not None and old.exists() and not p.exists():
            os.replace(old, p)
        raise
    if old is not None:
        _remove(old)


def default_output(beside: str | os.PathLike, suffix: str) -> Path:
    """The default output path for an input: ``<input stem><suffix>`` in the input's
    folder, or in the current folder when the input lies inside the package.

    >>> default_output("/data/obs/src.pi", "_fit").name
    'src_fit'
    """
    b = Path(beside)
    name = b.name
    for ext in (".gz", ".fits", ".fit", ".pha", ".pi", ".h5", ".hdf5", ".evt", ".toml"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    base = Path.cwd() if inside_package(b) else b.resolve().parent
    return base / f"{name}{suffix}"


__all__ = ["check_output", "atomic_file", "atomic_dir", "default_output", "inside_package",
           "PACKAGE_DIR"]
