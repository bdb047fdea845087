"""The encoder's time scale: downstream tasks take the frame stride it was pre-trained with (ISLR runs record
it, ``msmae attention`` uses it, ``msmae inspect RUN`` reports seconds per token), and a different one is
used only when asked for, with a warning."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from conftest import shared_path

from msmae.analysis.report import run_defaults
from msmae.cli import main
from msmae.train.checkpoint import read_checkpoint_config
from msmae.train.timescale import (PAPER_FRAME_STRIDE, checkpoint_frame_stride, resolve_frame_stride,
                                   time_scale)

torch.set_num_threads(1)
# a tiny encoder pre-trained at stride 3 (neither the paper's 2 nor 1): 4 x 3 = 12 video frames per token
PRETRAIN = ["model.size=tiny", "model.extra={dim: 32, depth: 1, heads: 2, decoder_dim: 32, decoder_depth: 1, "
            "decoder_heads: 2}", "data.window=48", "data.frame_stride=3", "data.num_workers=0",
            "data.eval_windows=4", "train.batch_size=4", "train.warmup_steps=1", "train.steps=2",
            "train.checkpoint_every=0"]


def sets(items):
    return sum((["--set", s] for s in items), [])


def test_checkpoint_frame_stride_of_every_task():
    assert checkpoint_frame_stride({"task": "pretrain", "task_config": {"data": {"frame_stride": 3}}}) == 3
    assert checkpoint_frame_stride({"task": "slt", "frame_stride": 1}) == 1
    assert checkpoint_frame_stride({"task": "islr", "encoder_frame_stride": 2}) == 2
    # not recorded: an ISLR run from scratch, a checkpoint without its task config
    assert checkpoint_frame_stride({"task": "islr", "encoder_frame_stride": None}) is None
    assert checkpoint_frame_stride({"task": "pretrain", "model": {}}) is None


def test_attention_defaults_follow_the_encoder_of_a_finetuned_run():
    # before: only pre-training runs gave their stride; an SLT or ISLR run fell back to 1 (4 frames per token)
    assert run_defaults({"task": "slt", "frame_stride": 2}) == (2, 300)
    assert run_defaults({"task": "islr", "encoder_frame_stride": 3}) == (3, 300)
    assert run_defaults({"task": "pretrain", "task_config": {"data": {"frame_stride": 2, "window": 600}}}) == (2, 300)
    assert run_defaults({"task": "islr"}) == (1, 300)


def test_resolve_frame_stride_warns_only_when_the_user_differs(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_frame_stride(None, 3, setting="data.frame_stride") == 3
        assert resolve_frame_stride(None, None, setting="data.frame_stride") == PAPER_FRAME_STRIDE == 2
        assert resolve_frame_stride(3, 3, setting="data.frame_stride") == 3
        assert resolve_frame_stride(1, None, setting="data.frame_stride") == 1
        assert not caplog.records
        assert resolve_frame_stride(1, 2, setting="--frame-stride") == 1
    assert len(caplog.records) == 1
    assert "--frame-stride=1 differs from the frame stride 2 the encoder was pre-trained with" in caplog.text
    with pytest.raises(ValueError, match="data.frame_stride must be at least 1"):
        resolve_frame_stride(0, 2, setting="data.frame_stride")
    # the paper's first reading: 4 x 2 = 8 frames = 0.333 s at 24 fps; the second (stride 1): 0.167 s
    assert time_scale(cubelet=4, frame_stride=2, fps=24.0)["token_s"] == pytest.approx(1 / 3, abs=1e-6)
    assert time_scale(cubelet=4, frame_stride=1, fps=24.0)["token_s"] == pytest.approx(0.166667, abs=1e-6)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A stride-3 pre-training run on real DGS poses and an ISLR run fine-tuned from it on real DGS clips."""
    from msmae.config import load_config
    from msmae.corpus import pack_corpus
    from msmae.tasks.pretrain import PretrainConfig, pretrain

    dgs = shared_path("dgs-corpus-sentences")
    root = tmp_path_factory.mktemp("timescale")
    pack_corpus([dgs / f"train_{i}_original.pose" for i in range(1, 5)], root / "corpus", progress=False)
    pretrain(load_config(PretrainConfig, None, PRETRAIN), root / "corpus", root / "pre", progress=False)
    rows = ["path,label,split"] + [f"{dgs / f'train_{i}_original.pose'},{'ab'[i % 2]},train" for i in range(1, 7)] \
        + [f"{dgs / f'test_{i}_original.pose'},{'ab'[i % 2]},{'val' if i < 3 else 'test'}" for i in range(1, 5)]
    (root / "islr.csv").write_text("\n".join(rows) + "\n")
    assert main(["finetune", "islr", "--annotations", str(root / "islr.csv"), "--init", str(root / "pre"),
                 "--out", str(root / "islr"), "--no-progress",
                 *sets(["train.epochs=1", "train.batch_size=4", "train.warmup_epochs=1", "data.num_workers=0",
                        "data.load_workers=1"])]) == 0
    return root


def test_islr_run_records_its_encoders_stride_and_attention_uses_it(runs, tmp_path, capsys, caplog):
    assert read_checkpoint_config(runs / "islr")["encoder_frame_stride"] == 3
    src = shared_path("dgs-corpus-sentences", "test_3_original.pose")
    capsys.readouterr()
    with caplog.at_level(logging.WARNING):
        assert main(["attention", str(src), "--model", str(runs / "islr"), "--out", str(tmp_path / "a"),
                     "--json"]) == 0
    assert not [r for r in caplog.records if "frame stride" in r.getMessage()]
    info = json.loads((tmp_path / "a" / "segments.json").read_text())
    assert info["frame_stride"] == 3 and info["token_frames"] == 12
    assert info["token_s"] == pytest.approx(12 / 25.0) and info["num_tokens"] == 12  # 144 frames at 25 fps
    # asked for another stride: used, with one warning
    capsys.readouterr()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["attention", str(src), "--model", str(runs / "islr"), "--out", str(tmp_path / "b"),
                     "--frame-stride", "1"]) == 0
    assert json.loads((tmp_path / "b" / "segments.json").read_text())["token_frames"] == 4
    warned = [r for r in caplog.records if "differs from the frame stride 3" in r.getMessage()]
    assert len(warned) == 1
    assert main(["attention", str(src), "--model", str(runs / "islr"), "--out", str(tmp_path / "c"),
                 "--frame-stride", "0"]) == 1
    assert "--frame-stride must be at least 1" in capsys.readouterr().err


def test_inspect_of_a_run_reports_seconds_per_token(runs, capsys):
    capsys.readouterr()
    assert main(["inspect", str(runs / "pre"), str(runs / "islr"), "--json", "--fps", "25"]) == 0
    pre, islr = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    for r, task in ((pre, "pretrain"), (islr, "islr")):
        assert r["kind"] == "run" and r["task"] == task and r["frame_stride"] == 3 and r["frame_stride_recorded"]
        assert r["token_frames"] == 12 and r["token_s"] == pytest.approx(0.48)
        # the encoder counts 25 fps frames (its corpus): 24 fps keypoints are read every 3rd frame, 30 fps ones
        # every 4th (round(30 x 3 / 25)), as attention reads them
        assert r["source_fps"] == 25.0
        assert r["token_s_by_fps"]["24"] == pytest.approx(0.5) and r["token_s_by_fps"]["30"] == pytest.approx(16 / 30)
    assert main(["inspect", str(runs / "pre")]) == 0
    line = capsys.readouterr().out
    assert "frame stride 3 = 12 video frames of 25 fps video (0.480 s)" in line and "0.500 s at 24 fps" in line
    # pose files and runs mix; a pose file still gets its usual record
    pose = shared_path("dgs-corpus-sentences", "test_3_original.pose")
    assert main(["inspect", str(pose), str(runs / "pre"), "--json"]) == 0
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["frames"] == 144 and second["kind"] == "run" and second["token_s"] is None
