"""Small shared helpers: atomic writes (with the user's umask), JSON, list files, and worker processes that
exit with their parent or leave stop signals to it."""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

_UMASK_LOCK = threading.Lock()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "", mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    A crash or exception leaves ``path`` untouched and removes the temporary file, so a reader
    never sees a half-written file. The file gets ``mode`` where given, else what a plain ``open()`` gives.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        st = os.lstat(tmp_path) if tmp_path.exists() else None
        # mkstemp makes it owner-only (0600): give it what a plain open() would. Never through a link: a
        # file with another name (a hard link to the user's file, a symlink) is not ours to chmod.
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            os.chmod(tmp_path, 0o666 & ~current_umask() if mode is None else mode)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def current_umask() -> int:
    """The process's umask (read without changing it where Linux allows)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def make_dir_like_mkdir(path: str | os.PathLike) -> None:
    """Give a folder made by ``tempfile.mkdtemp`` (0700) the permissions ``os.mkdir`` would have given it."""
    os.chmod(path, 0o777 & ~current_umask())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, indent: int = 2) -> None:
    atomic_write_text(path, json_text(obj, indent=indent) + "\n")


def json_text(obj: Any, *, indent: int | None = None, default: Any = None) -> str:
    """Strict JSON of ``obj`` for every file and line msmae writes: JSON has no NaN or infinity (Python's
    ``json`` would write the invalid ``NaN``), so a non-finite number is written as ``null``, on purpose and
    in one place; numpy values and paths become plain ones (other objects go to ``default``, if given)."""
    return json.dumps(_finite(obj), indent=indent, ensure_ascii=False, allow_nan=False,
                      default=default or _json_default)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if type(obj).__module__ == "numpy":
        return _finite(_json_default(obj))
    return obj


def _json_default(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def plural(n: int, word: str) -> str:
    """``1 segment``, ``2 segments``, ``0 segments``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def list_file_entries(path: Path) -> list[Path]:
    """The paths a list file names, one per line (blank lines and ``#`` comments skipped), relative ones
    taken relative to the list's folder."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            q = Path(line)
            out.append(q if q.is_absolute() else Path(path).parent / q)
    return out


def exit_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Worker-process initializer: end this process as soon as ``parent_pid`` is gone (``kill -9`` of
    the parent included), instead of lingering on a queue that will never be fed.

    Use as ``ProcessPoolExecutor(..., initializer=exit_with_parent, initargs=(os.getpid(),))``. A daemon
    thread polls: the parent is gone when this worker was re-parented, or when ``parent_pid`` no longer
    exists or is a zombie (with a fork server, the worker's own parent is not the pool's process).
    """
    first_ppid = os.getppid()
    if first_ppid == parent_pid and sys.platform.startswith("linux"):
        try:  # Linux's parent-death signal: immediate, where the pool's process is our own parent
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass

    def gone() -> bool:
        if os.getppid() != first_ppid:
            return True
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return _is_zombie(parent_pid)

    if gone():  # the parent died before this worker even started
        os._exit(1)

    def watch() -> None:
        import time

        while not gone():
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="msmae-parent-watchdog", daemon=True).start()


STOP_SIGNALS = ("SIGTERM", "SIGUSR1")  # what stops a training run after the step in flight (msmae.train.preempt)


def leave_stop_signals_to_parent(worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn``: this worker ignores SIGTERM and SIGUSR1, which the training process
    handles (it finishes its step and writes a checkpoint). Schedulers and ``torchrun`` signal every process
    of a job or process group; a worker that died of it would make the DataLoader fail the step in flight.
    The worker still ends when the training process does (the DataLoader's own watchdog)."""
    for name in STOP_SIGNALS:
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_IGN)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return os.path.isdir("/proc/self")  # Linux, and the pid is gone
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def cpu_model() -> str:
    """The CPU's model name (for benchmark output: speed figures only compare on one CPU)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine() or "unknown"
