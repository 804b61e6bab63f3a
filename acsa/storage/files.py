"""Small file helpers shared by the stages: atomic output folders and files, JSON and safetensors files.

Every output is written whole or not at all. `atomic_output_dir(out)` yields a temporary sibling folder
`.OUT.tmp-PID` and, when the stage succeeds, swaps it in for OUT (OUT -> `.OUT.old-PID`, the temporary
folder -> OUT, the old one removed). It holds a lock (`.OUT.lock`, flock) from start to end, so a second run
into the same OUT stops at once instead of deleting the first run's work. On start it clears what dead runs
left, and only theirs (the PID in a name says whose): a temporary folder is removed, and an interrupted swap
(OUT missing, `.OUT.old-PID` present) is undone by renaming the old output back.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from acsa.errors import DataError, NonFiniteError, OutputBusyError, one_line

log = logging.getLogger(__name__)


# ---- atomic outputs ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_output_dir(out: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `out`; on success it replaces `out`, on error it is removed (module
    docstring). A stage that fails therefore leaves neither a partial `out` nor a stray temporary folder
    behind; a second run into `out` while this one works raises OutputBusyError."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out.parent / f".{out.name}.lock", out):
        _clear_leftovers(out)
        tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
        tmp.mkdir()
        try:
            yield tmp
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        _remove(old)


@contextlib.contextmanager
def atomic_output_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix) to write; on success it replaces `path`, on error
    it is removed. The temporary file is created on entry, so an unwritable place fails before any work."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        if _dead(stale.with_suffix("")):  # left by a run that was killed
            stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    tmp.touch()
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


@contextlib.contextmanager
def durable_file(path: Path) -> Iterator[Path]:
    """Yield a fresh temporary path beside `path` (`.NAME.XXXXXXXX.tmp`) to write; on success give it an
    output's usual permissions, flush it to disk and rename it over `path`, then flush the folder, so that
    after a crash `path` is the old file or the new one, whole. On error the temporary file is removed.
    For files that are replaced while readers may hold the folder open (checkpoints, a search index)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, new_file_mode())  # mkstemp creates 0600
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable; not possible on every platform, hence best effort."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def held_lock(lock: Path, busy: Exception) -> Iterator[None]:
    """Hold `lock` (flock on a file that stays: a folder's `.lock`) for this process; raise `busy` at once
    when another process holds it. The kernel releases it when the process dies, even on SIGKILL, so a
    crashed run never blocks the next one. Not POSIX: no lock."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with open(lock, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise busy from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _locked(lock: Path, out: Path) -> Iterator[None]:
    """Hold `lock` (flock, released by the kernel when the process dies, even on SIGKILL); raise
    OutputBusyError at once when another process holds it. The file is removed on release."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    while True:
        handle = open(lock, "a")  # noqa: SIM115 - held until the end of the block
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise OutputBusyError(f"{out}: another run is writing it (it holds {lock})") from None
        try:  # the previous holder may have removed the file after we opened it: lock the one that is there
            if os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        handle.close()
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)  # still held: a process that opened it re-checks the inode
        handle.close()


_PID_SUFFIX = re.compile(r"\.(tmp|old)-(\d+)$")


def _dead(path: Path) -> bool:
    """True when the process whose id ends `path`'s name (`.OUT.tmp-PID`) no longer runs (or is this one)."""
    match = _PID_SUFFIX.search(path.name)
    if match is None:
        return False
    pid = int(match.group(2))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's live process
        return False
    return False


def _clear_leftovers(out: Path) -> None:
    """Under the lock: undo an interrupted swap, then remove what dead runs left (module docstring)."""
    named = out.parent.glob(f".{glob.escape(out.name)}.*-*")
    leftovers = [p for p in named if _PID_SUFFIX.search(p.name) and _dead(p)]
    olds = sorted((p for p in leftovers if ".old-" in p.name), key=lambda p: p.stat().st_mtime)
    if olds and not out.exists():
        log.warning("%s: restoring it from %s (a run was killed while replacing it)", out, olds[-1].name)
        os.replace(olds.pop(), out)
    for path in leftovers:
        if path.exists() and path not in olds:
            log.info("removing %s, left by a run that was killed", path)
        _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# ---- JSON --------------------------------------------------------------------------------------------------


def _first_non_finite(obj: Any, where: str = "") -> tuple[str, float] | None:
    """(dotted path, value) of the first NaN or infinite float in a JSON-ready structure, or None."""
    if isinstance(obj, float):
        return None if math.isfinite(obj) else (where, obj)
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list | tuple) else ()
    for key, value in items:
        inner = f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key)
        found = _first_non_finite(value, inner)
        if found is not None:
            return found
    return None


def write_json(path: Path, obj: Any, indent: int | None = 2) -> None:
    """Write strict JSON atomically (temporary file, then rename). A NaN or infinite number is refused
    (NonFiniteError naming it): JSON has no such values and strict parsers reject Python's `NaN`."""
    path = Path(path)
    try:
        text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    except ValueError:
        found = _first_non_finite(obj)
        if found is None:
            raise
        raise NonFiniteError(
            f"{path}: {found[0]} is {found[1]}; refusing to write a non-finite number"
        ) from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def parse_json(text: str, source: Path | str) -> Any:
    """JSON text -> Python; malformed or too deeply nested text is a one-line DataError naming `source`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{source}: not valid JSON (line {err.lineno} column {err.colno}: {err.msg})"
        ) from None
    except RecursionError:
        raise DataError(f"{source}: not valid JSON (nested too deeply)") from None


def read_json(path: Path) -> Any:
    """A JSON file written by a stage; missing, unreadable or malformed: a one-line error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (run the stage that produces it: dvc repro)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({one_line(err)})") from None
    return parse_json(text, path)


def sha256_of(*paths: Path) -> str:
    """SHA-256 hex digest of the files' bytes, read in order as one stream (one file: its usual digest)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# ---- safetensors -------------------------------------------------------------------------------------------


def new_file_mode() -> int:
    """The mode open() gives a new file: 0o666 less the process umask (0o644 under the usual umask 022)."""
    try:  # Linux: read it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def save_tensors(tensors: dict[str, Any], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write torch tensors or numpy arrays as a safetensors file with the permissions of any other output
    (safetensors itself creates 0o600 files); a failed write (a full disk) is an OSError naming `path`."""
    from safetensors import SafetensorError

    path = Path(path)
    if any(type(value).__module__ == "numpy" for value in tensors.values()):
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as err:
        raise OSError(f"{path}: cannot write ({one_line(err)})") from None
    os.chmod(path, new_file_mode())
