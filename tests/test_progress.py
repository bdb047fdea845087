"""Progress in a log file: plain lines (no carriage returns), at most one per interval, and a final line; a bar
on a terminal."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = """
import time
from msmae.progress import progress_bar
bar = progress_bar(total=40, desc="work", unit="step")
for i in range(40):
    time.sleep(0.05)
    bar.update(1)
    bar.set_postfix(loss=0.5 / (i + 1))
bar.close()
for _ in progress_bar(range(3), desc="short", unit="clip"):
    pass
"""


@pytest.mark.parametrize("interval, most", [("0.5", 4 + 1), ("30", 1)])
def test_a_log_file_gets_plain_lines_at_the_interval_and_a_final_line(tmp_path, interval, most):
    import msmae

    env = {"PYTHONPATH": str(Path(msmae.__file__).parents[1]), "MSMAE_PROGRESS_INTERVAL": interval, "PATH": ""}
    with open(tmp_path / "log.txt", "w") as log:
        start = time.monotonic()
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=log, check=True, env=env, timeout=120)
        took = time.monotonic() - start
    text = (tmp_path / "log.txt").read_text()
    work = [line for line in text.splitlines() if line.startswith("work:")]
    assert "\r" not in text and "\x1b" not in text
    assert 1 <= len(work) <= min(most, int(took / float(interval)) + 1), text
    assert work[-1].startswith("work: done, 40/40 steps (100%)") and "loss=0.0125" in work[-1]
    assert [line for line in text.splitlines() if line.startswith("short:")] == [
        next(line for line in text.splitlines() if line.startswith("short: done, 3/3 clips (100%)"))]


def test_a_terminal_gets_the_tqdm_bar(monkeypatch):
    from tqdm import tqdm

    from msmae.progress import LogProgress, progress_bar

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    bar = progress_bar(total=3, desc="x")
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert isinstance(progress_bar(total=3, desc="x"), LogProgress)
    assert progress_bar(total=3, desc="x", disable=True).disable


def test_a_failure_inside_the_bar_is_not_reported_done(monkeypatch, capsys):
    from msmae.progress import progress_bar

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with pytest.raises(KeyError):
        with progress_bar(total=4, desc="load", unit="clip") as bar:
            bar.update(1)
            raise KeyError("x")
    assert capsys.readouterr().err.startswith("load: stopped, 1/4 clips (25%)")
