"""``msmae demo``: the synthetic chain (small settings) writes every output, prints its table and reuses
finished stages on a re-run; the videos chain on real How2Sign clips."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from msmae.cli import main
from msmae.tasks import demo

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_synthetic_demo_end_to_end_and_reuse(tmp_path, capsys):
    out = tmp_path / "demo"
    s = demo.synthetic_demo(out, pretrain_steps=40, islr_epochs=3, sentences=24, num_classes=5, per_class=6,
                            signers=3, progress=False)
    # Every promised file exists and opens.
    for f in ("demo_summary.json", "pretrain/loss.png", "pretrain/metrics.json", "attention/attention.png",
              "attention/segments.eaf", "attention/segments.json", "attention/true_signs.json",
              "islr_finetune/metrics.json", "islr_scratch/metrics.json", "islr_data/manifest.csv"):
        assert (out / f).is_file(), f
    assert (out / "pretrain" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((out / "demo_summary.json").read_text())
    assert saved["data"] == "synthetic" and "SYNTHETIC" in saved["note"]
    # Real figures, not placeholders: metrics come from the runs.
    ft = json.loads((out / "islr_finetune" / "metrics.json").read_text())
    assert saved["islr"]["finetune"]["top1"] == ft["top1"] and 0 <= ft["top1"] <= 1
    assert ft["init"] == str(out / "pretrain")
    assert json.loads((out / "islr_scratch" / "metrics.json").read_text())["init"] == "none"
    # Signer-independent splits: 3 signers -> train / val / test, one signer each.
    assert s["islr"]["clips"] == {"train": 10, "val": 10, "test": 10}
    assert s["pretrain"]["steps"] == 40 and s["pretrain"]["loss_curve"]["points"] == 4
    g = s["segmentation"]
    assert g["true_boundaries"] == 6 and 0.0 <= g["f1"] <= 1.0
    truth = json.loads((out / "attention" / "true_signs.json").read_text())
    assert len(truth["signs"]) == 5 and truth["true_boundaries_frames"] == sorted(truth["true_boundaries_frames"])
    table = demo.format_synthetic(s)
    assert "SYNTHETIC" in table and "from scratch" in table and str(out) in table
    assert f"page: {out / 'attention' / 'view.html'}" in table  # msmae view's page of the held-out sentence
    assert '"islr":[{"run":"islr_finetune"' in (out / "attention" / "view.html").read_text()
    # A re-run reuses every finished stage (nothing is trained again).
    mtime = (out / "pretrain" / "model" / "model.safetensors").stat().st_mtime
    s2 = demo.synthetic_demo(out, pretrain_steps=40, islr_epochs=3, sentences=24, num_classes=5, per_class=6,
                             signers=3, progress=False)
    assert s2["pretrain"]["reused"] and s2["islr"]["finetune"]["reused"] and s2["islr"]["scratch"]["reused"]
    assert (out / "pretrain" / "model" / "model.safetensors").stat().st_mtime == mtime
    assert s2["islr"]["finetune"]["top1"] == s["islr"]["finetune"]["top1"]
    # --fresh deletes only what the demo wrote, and refuses a folder that holds anything else.
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="holds files the demo did not write"):
        demo.synthetic_demo(out, pretrain_steps=40, islr_epochs=3, sentences=24, num_classes=5, per_class=6,
                            signers=3, fresh=True, progress=False)
    assert (out / "notes.txt").read_text() == "mine" and (out / "pretrain" / "model").is_dir()
    (out / "notes.txt").unlink()
    demo._start_fresh(out, demo.SYNTHETIC_ENTRIES)
    assert out.is_dir() and not any(out.iterdir())


def test_demo_command_rejects_bad_options(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "x"), "--pretrain-steps", "0"]) == 1
    assert "--pretrain-steps must be at least 1" in capsys.readouterr().err
    assert main(["demo", "--videos", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


@pytest.mark.slow
def test_videos_demo_on_real_how2sign_clips(tmp_path, capsys):
    pytest.importorskip("mediapipe", reason="the `extract` extra (mediapipe) is not installed")
    clips = SHARED / "how2sign-clips"
    if not clips.is_dir():
        pytest.skip(f"real data not available: {clips}")
    videos = tmp_path / "videos"
    videos.mkdir()
    for v in sorted(clips.glob("*.mp4"))[:2]:
        shutil.copy(v, videos / v.name)
    (videos / "broken.mp4").write_bytes(b"this is not a video")
    out = tmp_path / "out"
    rc = main(["demo", "--videos", str(videos), "--out", str(out), "--pretrain-steps", "6", "--workers", "1",
               "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 1  # the broken file is reported and the exit status says so; the good clips went through
    s = json.loads((out / "demo_summary.json").read_text())
    assert s["extract"]["done"] == 2 and [Path(f["path"]).name for f in s["extract"]["failed"]] == ["broken.mp4"]
    assert s["corpus"]["videos"] == 2 and s["pretrain"]["steps"] == 6
    assert s["attention"]["videos"] == 2
    for v in s["attention"]["per_video"]:
        d = Path(v["out"])
        seg = json.loads((d / "segments.json").read_text())
        assert seg["frames"] == v["frames"] > 0 and len(seg["segments"]) == v["segments"] >= 1
        assert (d / "attention.png").is_file() and (d / "segments.eaf").is_file()
        assert seg["input"].endswith(".mp4")  # the ELAN file links the video, not only the pose file
        assert (d / "view.mp4").is_file() and f"page: {d / 'view.html'}" in printed  # a page per clip, printed
    assert "broken.mp4" in printed and str(out) in printed
