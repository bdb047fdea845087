"""Shared test fixtures.

Real data lives beside the checkout in ``../shared/data`` (override with ``MSMAE_SHARED_DATA``).
It is research-only data that is never copied into this repository; tests that need it skip
with a clear reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MSMAE_SHARED_DATA", REPO.parent / "shared" / "data"))

# Small CPUs: keep torch from oversubscribing.
os.environ.setdefault("OMP_NUM_THREADS", "2")
os.environ.setdefault("MPLBACKEND", "Agg")


def shared_path(*parts: str) -> Path:
    """Path inside the shared real data, skipping the calling test when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} (set MSMAE_SHARED_DATA to the shared data folder)")
    return p


@pytest.fixture
def shared_data() -> Path:
    return shared_path()


# ------------------------------------------------------------------ inputs are never changed
SMALL_FILE = 4 << 20  # files up to this size are hashed whole; larger ones by size, mtime and their first MiB


def file_state(path: Path) -> tuple:
    """What a command must never change about an input: mode, link count, size, mtime and content."""
    import hashlib

    st = os.lstat(path)
    if not os.path.isfile(path) or os.path.islink(path):
        return (st.st_mode, st.st_nlink, st.st_size, st.st_mtime_ns, None)
    h = hashlib.blake2b(digest_size=16)
    try:
        with open(path, "rb") as f:
            h.update(f.read(SMALL_FILE if st.st_size <= SMALL_FILE else 1 << 20))
    except OSError as e:  # a file we may not read is compared by the rest of its state, not a crash of the run
        return (st.st_mode, st.st_nlink, st.st_size, st.st_mtime_ns, f"unreadable: {e.strerror}")
    return (st.st_mode, st.st_nlink, st.st_size, st.st_mtime_ns, h.hexdigest())


def tree_state(root: Path) -> dict[str, tuple]:
    """:func:`file_state` of every file and folder under ``root`` (relative path -> state)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            try:
                out[str(p.relative_to(root))] = file_state(p)
            except FileNotFoundError:  # removed while walking: absent, which the comparison reports
                pass
    return out


def state_changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """One line per path whose state differs (added, removed, or mode / links / size / mtime / content)."""
    fields = ("mode", "links", "size", "mtime", "content")
    lines = []
    for path in sorted(set(before) | set(after)):
        a, b = before.get(path), after.get(path)
        if a is None or b is None:
            lines.append(f"{path}: {'added' if a is None else 'removed'}")
        elif a != b:
            diff = [f"{f} {x!r} -> {y!r}" if f != "mode" else f"mode {oct(x)} -> {oct(y)}"
                    for f, x, y in zip(fields, a, b) if x != y]
            lines.append(f"{path}: {', '.join(diff)}")
    return lines


def pytest_sessionstart(session):
    if SHARED_DATA.is_dir():
        session.config._msmae_shared_state = tree_state(SHARED_DATA)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when any test changed the shared real data (mode, links, size, mtime or content)."""
    before = getattr(session.config, "_msmae_shared_state", None)
    if before is None:
        return
    changed = state_changes(before, tree_state(SHARED_DATA))
    if changed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = f"the test run changed {len(changed)} path(s) of {SHARED_DATA}:\n  " + "\n  ".join(changed[:20])
        if reporter is not None:
            reporter.write_line("ERROR: " + text, red=True)
        else:
            print("ERROR: " + text)
        session.exitstatus = 1
