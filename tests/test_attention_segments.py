"""``attention --segments N`` gives exactly N segments or says why not; a clip without any detected keypoint gets
no segments and no ELAN file (as ISLR refuses it); counts are worded right ("1 segment")."""

from __future__ import annotations

import json

import numpy as np
import pytest

from msmae.cli import main
from msmae.layout import get_layout
from msmae.poses import PoseSequence, write_npz
from test_model_folder import _folder

BH = get_layout("body,hands")


def _clip(path, frames: int = 200, present: bool = True):
    rng = np.random.default_rng(0)
    c = rng.normal(0, 1, (frames, BH.num_points, 2)).astype(np.float32)
    write_npz(PoseSequence(c, np.full(c.shape[:2], present), 25.0, BH), path)
    return path


@pytest.mark.parametrize("command", ["attention", "view"])
@pytest.mark.parametrize("n", [1, 2, 12, 25])
def test_segments_n_gives_exactly_n(tmp_path, capsys, command, n):
    clip, model = _clip(tmp_path / "c.npz"), _folder(tmp_path / "pre")
    assert main([command, str(clip), "--model", str(model), "--out", str(tmp_path / "o"), "--segments", str(n),
                 "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["segments"]) == n
    starts = [s["start_token"] for s in info["segments"]]
    assert starts[0] == 0 and all(b - a >= 2 for a, b in zip(starts, starts[1:]))  # 0.3 s = 2 tokens of 0.16 s


def test_segments_n_words_its_count(tmp_path, capsys):
    clip, model = _clip(tmp_path / "c.npz"), _folder(tmp_path / "pre")
    assert main(["attention", str(clip), "--model", str(model), "--out", str(tmp_path / "o"), "--segments", "1"]) == 0
    assert "; 1 segment\n" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["attention", "view"])
def test_more_segments_than_the_clip_holds_says_why(tmp_path, capsys, command):
    clip, model = _clip(tmp_path / "c.npz"), _folder(tmp_path / "pre")
    assert main([command, str(clip), "--model", str(model), "--out", str(tmp_path / "o"), "--segments", "26"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "26 segments asked for" in err and "at most 25 segments" in err
    assert not (tmp_path / "o" / "segments.json").exists() and not (tmp_path / "o" / "segments.eaf").exists()


@pytest.mark.parametrize("command", ["attention", "view"])
def test_a_clip_without_any_keypoint_is_refused(tmp_path, capsys, command):
    clip, model = _clip(tmp_path / "empty.npz", present=False), _folder(tmp_path / "pre")
    assert main([command, str(clip), "--model", str(model), "--out", str(tmp_path / "o")]) == 1
    out, err = capsys.readouterr()
    assert "no keypoint of body,hands is present in any frame" in err and err.count("\n") == 1
    assert str(clip) in err or command == "view"  # view's message names the run it was analysing
    assert not list((tmp_path / "o").glob("segments.*")) and not (tmp_path / "o" / "view.html").exists()
