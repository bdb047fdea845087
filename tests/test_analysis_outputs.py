"""Files of the attention analysis (ELAN, PNGs, JSON, .npy) and ``msmae attention`` end to end."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_path
from msmae.analysis.eaf import read_eaf_tier, write_eaf
from msmae.analysis.plots import draw_skeleton, plot_attention, plot_segment_strip
from msmae.cli import main
from msmae.layout import get_layout

torch.set_num_threads(1)
SMALL = ["model.size=tiny", "model.extra={dim: 32, depth: 2, heads: 2, decoder_dim: 32, decoder_depth: 1, "
         "decoder_heads: 2}", "data.window=64", "data.frame_stride=2", "data.num_workers=0",
         "data.eval_windows=4", "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1",
         "train.steps=3", "train.checkpoint_every=0"]


# ------------------------------------------------------------------------------ ELAN
def test_eaf_has_a_sign_tier_with_millisecond_times_and_a_media_descriptor(tmp_path):
    video = tmp_path / "media" / "clip.mp4"
    video.parent.mkdir()
    video.write_bytes(b"")
    path = write_eaf(tmp_path / "out" / "x.eaf", [(0, 480, "1"), (480, 1230, "2"), (1230, 2000, "3")], media=[video])
    root = ET.parse(path).getroot()
    assert root.tag == "ANNOTATION_DOCUMENT" and root.get("FORMAT") == "3.0"
    header = root.find("HEADER")
    assert header.get("TIME_UNITS") == "milliseconds"
    md = header.find("MEDIA_DESCRIPTOR")
    assert md.get("MIME_TYPE") == "video/mp4" and md.get("MEDIA_URL") == video.resolve().as_uri()
    assert md.get("RELATIVE_MEDIA_URL") == "./../media/clip.mp4"
    slots = {s.get("TIME_SLOT_ID"): s.get("TIME_VALUE") for s in root.iter("TIME_SLOT")}
    assert sorted(int(v) for v in slots.values()) == [0, 480, 480, 1230, 1230, 2000]
    tiers = root.findall("TIER")
    assert [t.get("TIER_ID") for t in tiers] == ["SIGN"]
    assert tiers[0].get("LINGUISTIC_TYPE_REF") == root.find("LINGUISTIC_TYPE").get("LINGUISTIC_TYPE_ID")
    assert root.find("LINGUISTIC_TYPE").get("TIME_ALIGNABLE") == "true"
    assert read_eaf_tier(path) == [(0, 480, "1"), (480, 1230, "2"), (1230, 2000, "3")]
    # Element order of the EAF schema: HEADER, TIME_ORDER, TIER..., LINGUISTIC_TYPE, LOCALE, CONSTRAINT.
    tags = [c.tag for c in root]
    assert tags[:4] == ["HEADER", "TIME_ORDER", "TIER", "LINGUISTIC_TYPE"]
    with pytest.raises(ValueError):
        read_eaf_tier(path, "SENTENCE")
    with pytest.raises(ValueError, match="bad time range"):
        write_eaf(tmp_path / "bad.eaf", [(500, 100, "1")])


def test_eaf_follows_the_schema_order_and_names_languages(tmp_path):
    """EAF 3.0: HEADER's MEDIA_DESCRIPTORs (the video first) before its PROPERTY; the document's elements in the
    schema's order; the tier's LANG_REF names a LANGUAGE element; a two-letter code is not labelled ISO 639-3."""
    video, pose = tmp_path / "clip.mp4", tmp_path / "clip.pose"
    video.write_bytes(b"")
    pose.write_bytes(b"")
    root = ET.parse(write_eaf(tmp_path / "x.eaf", [(0, 100, "1")], media=[video, pose], language="de")).getroot()
    assert [c.tag for c in root.find("HEADER")] == ["MEDIA_DESCRIPTOR", "MEDIA_DESCRIPTOR", "PROPERTY"]
    assert root.find("HEADER").find("MEDIA_DESCRIPTOR").get("MIME_TYPE") == "video/mp4"
    order = ["HEADER", "TIME_ORDER", "TIER", "LINGUISTIC_TYPE", "LOCALE", "LANGUAGE", "CONSTRAINT"]
    tags = [c.tag for c in root]
    assert sorted(set(tags), key=order.index) == order and tags == sorted(tags, key=order.index)
    lang = root.find("LANGUAGE")
    assert root.find("TIER").get("LANG_REF") == lang.get("LANG_ID") == "de" and "639-3" not in lang.get("LANG_LABEL")
    assert root.find("LOCALE").get("LANGUAGE_CODE") == "en"
    with pytest.raises(ValueError, match="ISO 639"):
        write_eaf(tmp_path / "y.eaf", [(0, 100, "1")], language="American")


def test_eaf_without_media_has_no_media_descriptor(tmp_path):
    root = ET.parse(write_eaf(tmp_path / "x.eaf", [(0, 100, "1")])).getroot()
    assert root.find("HEADER").find("MEDIA_DESCRIPTOR") is None


# ------------------------------------------------------------------------------ pictures
def _frame(layout, missing: str | None = None):
    rng = np.random.default_rng(0)
    coords = rng.random((layout.num_points, 2))
    present = np.ones(layout.num_points, bool)
    if missing:
        present[layout.stream_slice(missing)] = False
    return coords, present


def test_draw_skeleton_draws_every_bone_of_the_present_points():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout = get_layout("body,hands,face")
    fig, ax = plt.subplots()
    draw_skeleton(ax, *_frame(layout), layout)
    assert len(ax.lines) == 5 + 2 + 2 * 21  # body bones, wrist links, hand bones
    assert ax.yaxis_inverted()
    ax.clear()
    draw_skeleton(ax, *_frame(layout, missing="left_hand"), layout)
    assert len(ax.lines) == 5 + 1 + 21
    plt.close(fig)


def test_attention_png_and_strip_have_the_promised_pixel_size(tmp_path):
    rng = np.random.default_rng(0)
    m = rng.random((12, 12))
    m = (m + m.T) / 2
    per = np.stack([m, m, m])
    p = plot_attention(tmp_path / "a.png", m, token_seconds=0.32, boundaries=[4, 9], per_stream=per,
                       stream_names=["body", "left_hand", "right_hand"], curve=rng.random(13), threshold=0.1,
                       title="t")
    with Image.open(p) as im:
        assert im.size == (1300, 650) and im.format == "PNG"
    layout = get_layout("body,hands")
    T = 30
    coords = rng.random((T, layout.num_points, 2))
    present = np.ones((T, layout.num_points), bool)
    segs = [{"start_frame": a, "end_frame": b, "start_s": a / 25, "end_s": b / 25}
            for a, b in [(0, 5), (5, 12), (12, 20), (20, 30)]]
    s = plot_segment_strip(tmp_path / "s.png", coords, present, layout, segs, fps=25.0, columns=3)
    with Image.open(s) as im:
        assert im.size == (3 * 180, round((2 * (1.8 + 0.35) + 0.4) * 100))


# ------------------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny model pre-trained for a few steps on real DGS poses."""
    from msmae.config import load_config
    from msmae.corpus import pack_corpus
    from msmae.tasks.pretrain import PretrainConfig, pretrain

    dgs = shared_path("dgs-corpus-sentences")
    root = tmp_path_factory.mktemp("attention_run")
    pack_corpus([dgs / f"train_{i}_original.pose" for i in range(1, 7)], root / "corpus", progress=False)
    pretrain(load_config(PretrainConfig, None, SMALL), root / "corpus", root / "run", progress=False)
    return root / "run"


def test_attention_command_on_a_real_pose_file(tiny_run, tmp_path, capsys):
    from msmae.poses.readers import read_sequence

    src = shared_path("dgs-corpus-sentences", "test_3_original.pose")
    out = tmp_path / "att"
    assert main(["attention", str(src), "--model", str(tiny_run), "--out", str(out)]) == 0
    assert "segments" in capsys.readouterr().out
    seq = read_sequence(src)
    info = json.loads((out / "segments.json").read_text())
    assert info["fps"] == 25.0 and info["frames"] == seq.num_frames == 144
    # The run was pre-trained on 64-frame windows at stride 2: 2 x 4 = 8 frames per token, chunks of 32 frames.
    assert info["frame_stride"] == 2 and info["token_frames"] == 8 and info["chunk_tokens"] == 8
    assert info["num_tokens"] == 18 and len(info["chunk_starts"]) > 1
    segs = info["segments"]
    assert segs[0]["start_frame"] == 0 and segs[-1]["end_frame"] == 144
    assert all(a["end_frame"] == b["start_frame"] for a, b in zip(segs, segs[1:]))
    for s in segs:
        assert {"start_frame", "end_frame", "start_s", "end_s", "start_token", "end_token"} <= set(s)
        assert s["start_s"] == pytest.approx(s["start_frame"] / 25.0)
        assert s["end_s"] == pytest.approx(s["end_frame"] / 25.0)
        assert (s["end_token"] - s["start_token"]) >= info["segmenter"]["min_segment_tokens"]
    assert info["boundaries"]["frames"] == [s["start_frame"] for s in segs[1:]]
    m = np.load(out / "attention.npy")
    assert m.shape == (18, 18) and np.allclose(m, m.T, equal_nan=True) and np.isfinite(np.diagonal(m)).all()
    ann = read_eaf_tier(out / "segments.eaf")
    assert [(a, b) for a, b, _ in ann] == [(round(s["start_s"] * 1000), round(s["end_s"] * 1000)) for s in segs]
    md = ET.parse(out / "segments.eaf").getroot().find("HEADER/MEDIA_DESCRIPTOR")
    assert md.get("MIME_TYPE") == "application/pose" and md.get("MEDIA_URL").endswith("test_3_original.pose")
    with Image.open(out / "attention.png") as im:
        assert im.size == (1300, 650)
    with Image.open(out / "segments_strip.png") as im:
        cols = min(len(segs), 8)
        assert im.size[0] == max(cols * 180, 400) and im.size[1] == round((math.ceil(len(segs) / 8) * 2.15 + 0.4) * 100)


def test_attention_command_options_and_errors(tiny_run, tmp_path, capsys):
    src = shared_path("dgs-corpus-sentences", "test_3_original.pose")
    out = tmp_path / "att"
    assert main(["attention", str(src), "--model", str(tiny_run / "model"), "--out", str(out), "--segments", "4",
                 "--frame-stride", "1", "--layer", "0", "--streams", "hands", "--json"]) == 0  # RUN/model alone
    info = json.loads(capsys.readouterr().out)
    assert len(info["segments"]) == 4 and info["layer"] == 0 and info["token_frames"] == 4
    assert info["streams_averaged"] == ["left_hand", "right_hand"] and info["num_tokens"] == 36
    assert json.loads((out / "segments.json").read_text())["segments"] == info["segments"]
    assert main(["attention", str(tmp_path / "nope.pose"), "--model", str(tiny_run), "--out", str(out)]) == 1
    assert "no such file" in capsys.readouterr().err
    assert main(["attention", str(src), "--model", str(tmp_path), "--out", str(out)]) == 1
    assert "not an msmae checkpoint" in capsys.readouterr().err
    assert main(["attention", str(src), "--model", str(tiny_run), "--out", str(out), "--layer", "7"]) == 1
    assert "out of range" in capsys.readouterr().err


def test_attention_command_on_a_video_links_the_video(tiny_run, tmp_path):
    pytest.importorskip("mediapipe")
    video = shared_path("videos", "poseformat_test_video.mp4")
    out = tmp_path / "vid"
    assert main(["attention", str(video), "--model", str(tiny_run), "--out", str(out)]) == 0
    info = json.loads((out / "segments.json").read_text())
    assert info["frames"] == 58 and info["fps"] == pytest.approx(29.92, abs=0.01)
    md = ET.parse(out / "segments.eaf").getroot().find("HEADER/MEDIA_DESCRIPTOR")
    assert md.get("MIME_TYPE") == "video/mp4" and md.get("MEDIA_URL") == video.resolve().as_uri()
    assert (out / "segments_strip.png").is_file() and (out / "attention.png").is_file()


@pytest.mark.slow
def test_attention_command_on_a_real_how2sign_clip_writes_every_output(tiny_run, tmp_path):
    """Issue 7's "done when": every output for a real How2Sign clip (1280x720, 24 fps)."""
    import cv2

    pytest.importorskip("mediapipe")
    video = shared_path("how2sign-clips", "_15CDIexNDM_9-5-rgb_front.mp4")
    cap = cv2.VideoCapture(str(video))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    out = tmp_path / "h2s"
    assert main(["attention", str(video), "--model", str(tiny_run), "--out", str(out)]) == 0
    info = json.loads((out / "segments.json").read_text())
    assert info["fps"] == pytest.approx(24.0, abs=0.01) and info["frames"] == frames
    last = info["segments"][-1]
    assert last["end_frame"] == frames and last["end_s"] == pytest.approx(frames / 24, abs=1e-3)
    assert set(info["files"].values()) == {"attention.npy", "segments.json", "segments.eaf", "attention.png",
                                           "segments_strip.png"}
    m = np.load(out / "attention.npy")
    assert m.shape == (info["num_tokens"],) * 2 and np.allclose(m, m.T, equal_nan=True)
    assert [b - a for a, b, _ in read_eaf_tier(out / "segments.eaf")] == [
        round(s["end_s"] * 1000) - round(s["start_s"] * 1000) for s in info["segments"]]
    for png in ("attention.png", "segments_strip.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 300 and im.size[1] > 200
