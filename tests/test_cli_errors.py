"""One-line errors, not tracebacks: `view --out` naming a file or holding a view.html folder, a `--device` that is
not here, and `inspect --json | head` (the reader leaving early)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from msmae.cli import main
from test_model_folder import _clips, _folder


def _one_line_error(capsys, command: str, *words: str) -> None:
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"msmae {command}: error: ") and err.count("\n") == 1, err
    assert all(w in err for w in words), err


def test_view_out_naming_a_file_or_holding_a_page_folder(tmp_path, capsys):
    _, clip = _clips(tmp_path)
    (tmp_path / "taken.html").write_text("mine")
    assert main(["view", str(clip), "--out", str(tmp_path / "taken.html")]) == 1
    _one_line_error(capsys, "view", "is a file, not a folder")
    assert (tmp_path / "taken.html").read_text() == "mine"
    (tmp_path / "out" / "view.html").mkdir(parents=True)
    assert main(["view", str(clip), "--out", str(tmp_path / "out")]) == 1
    _one_line_error(capsys, "view", "view.html is a folder")
    assert main(["view", str(clip), "--out", str(tmp_path / "fine")]) == 0


@pytest.mark.parametrize("command", ["view", "attention"])
@pytest.mark.parametrize("device, says", [("cuda", "CUDA is not available"), ("cuda:0", "CUDA is not available"),
                                          ("bogus", "not a device"), ("cuda:7", None)])
def test_a_device_that_is_not_here_is_one_line(tmp_path, capsys, monkeypatch, command, device, says):
    _, clip = _clips(tmp_path)
    model = _folder(tmp_path / "pre")
    if says is not None and device.startswith("cuda"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    elif says is None:  # a GPU index past the machine's GPUs
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
        says = "this machine has 1 GPU(s)"
    assert main([command, str(clip), "--model", str(model), "--out", str(tmp_path / "o"), "--device", device]) == 1
    _one_line_error(capsys, command, f"--device {device}", says)
    assert not (tmp_path / "o").exists()


def test_inspect_json_into_a_reader_that_leaves_early(tmp_path):
    import msmae

    import shutil

    _, clip = _clips(tmp_path)
    (tmp_path / "many").mkdir()
    for i in range(600):  # 600 lines of JSON: far more than a pipe holds
        shutil.copyfile(clip, tmp_path / "many" / f"{i:03d}.npz")
    env = {**os.environ, "PYTHONPATH": str(Path(msmae.__file__).parents[1])}
    r = subprocess.run(f"{sys.executable} -m msmae inspect --json {tmp_path / 'many'} | head -n 1",
                       shell=True, capture_output=True, text=True, env=env, timeout=300)
    assert r.stdout.count("\n") == 1 and '"frames": 12' in r.stdout
    assert r.stderr == "", r.stderr


@pytest.mark.parametrize("device, says", [("bogus", "not a device"), ("cuda", "CUDA is not available")])
def test_a_training_device_that_is_not_here_is_one_line_and_writes_no_run(tmp_path, capsys, monkeypatch, device, says):
    """``--set train.device=...`` goes through the same check as ``--device`` (no traceback, no run folder)."""
    from conftest import shared_path

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["pack", str(shared_path("dgs-corpus-sentences")), "--out", str(tmp_path / "corpus")]) == 0
    capsys.readouterr()
    run = tmp_path / "run"
    assert main(["pretrain", "--data", str(tmp_path / "corpus"), "--out", str(run), "--config", "pretrain/tiny",
                 "--set", "train.steps=2", "--set", f"train.device={device}", "--no-progress"]) == 1
    _one_line_error(capsys, "pretrain", f"train.device {device}", says)
    assert not run.exists()
