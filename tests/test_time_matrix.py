"""One owner for time: the same real clip, as full-rate or stride-2 keypoints, with all streams or body,hands
only, as a .pose (with or without msmae's stride note) or a .npy read with --fps, gives the same seconds in every
command: inspect, pack, pretrain's sampling, attention (segments.json and the ELAN file), view and the SLT input.

The clip is a real How2Sign clip (MediaPipe Holistic reference landmarks, 24 fps, 1280x720); the variants are
written with msmae's own writers, the stride-2 ones by keeping every 2nd frame at 12 fps as
``msmae extract --frame-stride 2`` does."""

from __future__ import annotations

import csv
import json
import logging
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_path

from msmae.cli import main

torch.set_num_threads(1)
CLIP = "_15CDIexNDM_4-5-rgb_front"  # 71 frames at 24 fps; the first 70 are used (35 at stride 2)
FRAMES, FPS = 70, 24.0
TOKEN_S = 4 * 2 / FPS  # cubelet 4, the encoder pre-trained at frame stride 2 of 24 fps keypoints
DURATION_S = round(FRAMES / FPS, 4)
PRETRAIN = ["model.size=tiny", "model.streams=body,hands",
            "model.extra={dim: 32, depth: 1, heads: 2, decoder_dim: 32, decoder_depth: 1, decoder_heads: 2}",
            "data.window=48", "data.frame_stride=2", "data.num_workers=0", "data.eval_windows=2",
            "train.batch_size=2", "train.warmup_steps=1", "train.steps=2", "train.checkpoint_every=0"]
VARIANTS = [(stride, streams, fmt) for stride in (1, 2) for streams in ("all", "body,hands")
            for fmt in ("pose", "bare.pose", "npy")]


def sets(items):
    return sum((["--set", s] for s in items), [])


def _write(root: Path, xyz: np.ndarray, stride: int, streams: str, fmt: str) -> Path:
    """One variant of the clip; ``bare.pose`` is the .pose rewritten by pose-format, which drops msmae's note."""
    from msmae.poses.writers import write_holistic_pose

    x = xyz[::stride].copy()
    name = root / f"s{stride}-{streams.replace(',', '-')}"
    if fmt == "npy":
        if streams != "all":
            x[:, :468] = np.nan  # GISLR order: the face first, not detected
        path = name.with_suffix(".npy")
        np.save(path, x)
        return path
    note = {"frame_stride": stride, "source_fps": FPS,
            "streams": ["body", "left_hand", "right_hand"] + (["face"] if streams == "all" else [])}
    path = write_holistic_pose(name.with_suffix(".note.pose" if fmt == "bare.pose" else ".pose"), x,
                               fps=FPS / stride, width=1280, height=720, face=streams == "all", extraction=note)
    if fmt == "bare.pose":
        from pose_format import Pose

        pose = Pose.read(path.read_bytes())
        bare = name.with_suffix(".bare.pose")
        with open(bare, "wb") as f:
            pose.write(f)
        assert len(bare.read_bytes()) < len(path.read_bytes())  # the note is gone
        path.unlink()
        path = bare
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    pytest.importorskip("pose_format")
    xyz = np.load(shared_path("videos", "reference-holistic", f"{CLIP}.npy"))[:FRAMES]
    root = tmp_path_factory.mktemp("time")
    (root / "clips").mkdir()
    files = {v: _write(root / "clips", xyz, *v) for v in VARIANTS}
    # one tiny encoder for the whole matrix, pre-trained at stride 2 on the full-rate .pose
    assert main(["pack", str(files[(1, "all", "pose")]), "--out", str(root / "corpus")]) == 0
    assert main(["pretrain", "--data", str(root / "corpus"), "--out", str(root / "pre"), "--no-progress",
                 *sets(PRETRAIN)]) == 0
    return root, files


def _fps_args(path: Path, stride: int) -> list[str]:
    return ["--fps", str(FPS / stride)] if path.suffix == ".npy" else []


def _ids(v):
    return f"stride{v[0]}-{v[1]}-{v[2]}"


def test_the_encoder_records_its_time_scale(clips, capsys):
    from msmae.train.checkpoint import read_checkpoint_config
    from msmae.train.timescale import checkpoint_frame_stride, checkpoint_source_fps

    meta = read_checkpoint_config(clips[0] / "pre")
    assert checkpoint_frame_stride(meta) == 2 and checkpoint_source_fps(meta) == FPS
    assert main(["inspect", str(clips[0] / "pre"), "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["source_fps"] == FPS and rec["token_s_by_fps"]["24"] == pytest.approx(TOKEN_S, abs=1e-6)
    # the seconds per token attention gives at other rates: a 60 fps clip read every 5th frame, not every 2nd
    assert rec["token_s_by_fps"]["60"] == pytest.approx(4 * 5 / 60, abs=1e-6)
    assert main(["inspect", str(clips[0] / "pre"), "--json", "--fps", "12"]) == 0  # a stride-2 extraction
    assert json.loads(capsys.readouterr().out)["token_s"] == pytest.approx(TOKEN_S, abs=1e-6)


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_every_command_gives_the_same_seconds(clips, variant, tmp_path, capsys):
    from msmae.analysis.eaf import read_eaf_tier
    from msmae.tasks.view import make_view

    root, files = clips
    stride, streams, fmt = variant
    path = files[variant]
    fps = _fps_args(path, stride)

    capsys.readouterr()
    assert main(["inspect", str(path), "--json", *fps]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["duration_s"] == DURATION_S and rec["frames"] == FRAMES // stride
    assert rec["extract_stride"] == (stride if fmt == "pose" else None)

    # attention: seconds per token, the clip's length and the segments' times; the ELAN file holds the same
    out = tmp_path / "att"
    assert main(["attention", str(path), "--model", str(root / "pre"), "--out", str(out), "--segments", "3",
                 *fps]) == 0
    info = json.loads((out / "segments.json").read_text())
    assert info["token_s"] == pytest.approx(TOKEN_S, abs=1e-6), info["time"]
    assert info["duration_s"] == DURATION_S and info["num_tokens"] == 9  # 35 model frames, the last token padded
    assert info["time"]["exact"] and info["time"]["model_fps"] == FPS
    times = [(s["start_s"], s["end_s"]) for s in info["segments"]]
    assert times[0][0] == 0 and times[-1][1] == DURATION_S
    assert all(abs(a / TOKEN_S - round(a / TOKEN_S)) < 1e-3 for a, _ in times)  # on token borders
    eaf = read_eaf_tier(out / "segments.eaf")
    assert [t / 1000 for a, b, _ in eaf for t in (a, b)] == pytest.approx([t for ab in times for t in ab], abs=5e-4)

    # view: the page plays the keypoints at their own rate and shows the same segments
    shown = make_view(path, tmp_path / "view", models=[root / "pre"], segments=3,
                      fps=FPS / stride if fmt == "npy" else None)
    assert shown["fps"] == pytest.approx(FPS / stride) and shown["frames"] / shown["fps"] == pytest.approx(
        FRAMES / FPS)
    assert [(s["start_s"], s["end_s"]) for s in shown["segments"]] == times

    # SLT (finetune and predict read sentences through prepare_sequence): the same model frames per second
    from msmae.data.sentences import prepare_sequence
    from msmae.layout import get_layout
    from msmae.poses.readers import read_sequence

    seq = read_sequence(path, fps=FPS / stride if fmt == "npy" else None)
    clip = prepare_sequence(seq, layout=get_layout("body,hands"), normalize="shoulders", frame_stride=2,
                            max_frames=1024, model_fps=FPS)
    assert clip.fps == pytest.approx(FPS / 2) and clip.num_frames == FRAMES // 2


def test_the_variants_agree_on_the_segments(clips, tmp_path):
    """Every variant feeds the encoder the same body and hand keypoints at the same model frames: the same
    segments come out (the .npy and .pose differ only by float32 rounding of pixel coordinates)."""
    root, files = clips
    found = {}
    for variant, path in files.items():
        out = tmp_path / _ids(variant)
        assert main(["attention", str(path), "--model", str(root / "pre"), "--out", str(out), "--segments", "3",
                     *_fps_args(path, variant[0])]) == 0
        info = json.loads((out / "segments.json").read_text())
        found[_ids(variant)] = [(s["start_s"], s["end_s"]) for s in info["segments"]]
    assert len({tuple(v) for v in found.values()}) == 1, found


@pytest.mark.parametrize("stride", (1, 2))
@pytest.mark.parametrize("streams", ("all", "body,hands"))
def test_pack_and_pretraining_windows_cover_the_same_seconds(clips, tmp_path, stride, streams):
    """pack records each file's rate and stride; pre-training's window and model frame span the same seconds.
    (``pack`` has no --fps: a .npy is packed at the rate of the video beside it, so it is not in this row.)"""
    from msmae.corpus import PackedCorpus
    from msmae.tasks.pretrain import _sampling, corpus_source_fps

    _, files = clips
    assert main(["pack", str(files[(stride, streams, "pose")]), "--out", str(tmp_path / "c")]) == 0
    with open(tmp_path / "c" / "index.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert int(row["length"]) / float(row["fps"]) == pytest.approx(FRAMES / FPS)
    corpus = PackedCorpus(tmp_path / "c")
    window, step = _sampling(corpus, 48, 2)
    e = corpus.entries[0]
    assert window / e.fps == pytest.approx(48 / FPS) and step / e.fps == pytest.approx(2 / FPS)
    assert corpus_source_fps(corpus) == FPS


def test_stride2_keypoints_are_not_strided_twice(clips, tmp_path):
    """Issue: a stride-2 .pose reported 0.667 s per token where the full-rate .pose gives 0.333 (the model
    saw every 4th source frame)."""
    root, files = clips
    for variant in ((1, "all", "pose"), (2, "all", "pose")):
        out = tmp_path / _ids(variant)
        assert main(["attention", str(files[variant]), "--model", str(root / "pre"), "--out", str(out)]) == 0
        info = json.loads((out / "segments.json").read_text())
        assert info["token_s"] == pytest.approx(1 / 3, abs=1e-6) and info["num_tokens"] == 9


def test_view_keeps_the_pose_files_rate_over_the_videos(clips, tmp_path):
    """``view X.pose --video X.mp4`` on a stride-2 extraction: the page runs at 12 keypoint frames per second,
    not the video's 24 (which played it at twice the speed and halved every segment time)."""
    from test_view import page_json

    from msmae.tasks.view import make_view

    root, files = clips
    video = shared_path("how2sign-clips", f"{CLIP}.mp4")
    shown = make_view(files[(2, "all", "pose")], tmp_path / "v", models=[root / "pre"], video=video)
    assert shown["fps"] == pytest.approx(12.0) and shown["video"] == str(video)
    data = page_json(Path(shown["page"]))
    assert data["fps"] == pytest.approx(12.0)
    assert not [n for n in data.get("notes", []) if "same clip" in n]  # 35 frames at 12 fps = 71 at 24, nearly
    # a .npy does not store a rate: the video's is used, unless --fps says otherwise
    shown = make_view(files[(1, "all", "npy")], tmp_path / "n", models=[root / "pre"], video=video)
    assert shown["fps"] == pytest.approx(24.0)


def test_a_pose_without_its_stride_note_is_read_at_its_own_rate_or_said_so(clips, tmp_path, caplog):
    """The note of a stride-2 .pose is lost when pose-format rewrites it. With an encoder that records its rate
    the header's fps gives the time scale (tested above); with an older checkpoint that does not, the
    stride-1 assumption is said in a warning and in segments.json, never silently."""
    root, files = clips
    old = tmp_path / "old"
    shutil.copytree(root / "pre", old)
    for cfg in old.rglob("config.json"):
        meta = json.loads(cfg.read_text())
        meta.pop("source_fps", None)
        cfg.write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        assert main(["attention", str(files[(2, "all", "bare.pose")]), "--model", str(old), "--out",
                     str(tmp_path / "a")]) == 0
    info = json.loads((tmp_path / "a" / "segments.json").read_text())
    assert info["time"]["exact"] is False and info["time"]["extract_stride"] is None
    assert [r for r in caplog.records if "neither the keypoints nor the model record" in r.getMessage()]
    # the file with its note needs no rate from the model
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["attention", str(files[(2, "all", "pose")]), "--model", str(old), "--out",
                     str(tmp_path / "b")]) == 0
    info = json.loads((tmp_path / "b" / "segments.json").read_text())
    assert info["token_s"] == pytest.approx(1 / 3, abs=1e-6) and info["time"]["exact"]
    assert not [r for r in caplog.records if "record" in r.getMessage()]


def _header(eaf: Path):
    root = ET.parse(eaf).getroot()
    media = [(m.get("MIME_TYPE"), m.get("MEDIA_URL")) for m in root.iter("MEDIA_DESCRIPTOR")]
    locale = root.find("LOCALE")
    langs = [lang.get("LANG_ID") for lang in root.iter("LANGUAGE")]
    tier = root.find("TIER")
    return media, locale.get("LANGUAGE_CODE"), locale.get("COUNTRY_CODE"), langs, tier.get("LANG_REF")


def test_elan_links_the_video_and_names_languages_by_iso_639(clips, tmp_path, capsys):
    root, files = clips
    video = shared_path("how2sign-clips", f"{CLIP}.mp4")
    # a same-named video beside the .pose
    beside = tmp_path / "clips"
    beside.mkdir()
    pose = beside / f"{CLIP}.pose"
    shutil.copyfile(files[(2, "all", "pose")], pose)
    (beside / f"{CLIP}.mp4").symlink_to(video)
    assert main(["attention", str(pose), "--model", str(root / "pre"), "--out", str(tmp_path / "a")]) == 0
    media, code, country, langs, ref = _header(tmp_path / "a" / "segments.eaf")
    assert media == [("video/mp4", (beside / f"{CLIP}.mp4").resolve().as_uri()),
                     ("application/pose", pose.resolve().as_uri())]
    assert (code, country, langs, ref) == ("en", "US", ["und"], "und")
    assert (tmp_path / "a" / "view.mp4").is_file()  # the page shows it too
    # --video names it, whatever lies beside the file; --language names the signed language
    other = files[(1, "all", "pose")]
    assert main(["attention", str(other), "--model", str(root / "pre"), "--out", str(tmp_path / "b"),
                 "--video", str(video), "--language", "ase"]) == 0
    media, code, _, langs, ref = _header(tmp_path / "b" / "segments.eaf")
    assert media[0] == ("video/mp4", video.resolve().as_uri()) and (code, langs, ref) == ("en", ["ase"], "ase")
    capsys.readouterr()
    assert main(["attention", str(other), "--model", str(root / "pre"), "--out", str(tmp_path / "c"),
                 "--language", "American"]) == 1
    err = capsys.readouterr().err
    assert "--language" in err and "ISO 639" in err and len(err.strip().splitlines()) == 1
    assert main(["attention", str(video), "--model", str(root / "pre"), "--out", str(tmp_path / "d"),
                 "--video", str(video)]) == 1


def test_pretraining_says_when_a_corpus_mixes_rates(clips, tmp_path, caplog):
    """A stride-2 .pose that lost its note packs as a 12 fps source beside 24 fps ones: said, not silent."""
    from msmae.corpus import PackedCorpus
    from msmae.tasks.pretrain import _sampling

    _, files = clips
    for name, parts in (("mixed", [(1, "all", "pose"), (2, "all", "bare.pose")]),
                        ("same", [(1, "all", "pose"), (2, "all", "pose")])):
        assert main(["pack", *(str(files[v]) for v in parts), "--out", str(tmp_path / name)]) == 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="msmae.tasks.pretrain"):
        with pytest.raises(Exception, match="mixes extraction frame strides"):
            _sampling(PackedCorpus(tmp_path / "same"), 48, 2)  # strides that are recorded and differ: refused
        _sampling(PackedCorpus(tmp_path / "mixed"), 48, 2)
    assert [r for r in caplog.records if "1 at 12 fps against a median of 24 fps" in r.getMessage()]


def test_model_step_arithmetic():
    from msmae.poses.timing import model_step

    assert model_step(24.0, {}, 2, 24.0).step == 2 and model_step(12.0, {}, 2, 24.0).step == 1
    assert model_step(12.0, {"frame_stride": 2}, 2).step == 1 and model_step(24.0, {}, 2).step == 2
    assert not model_step(12.0, {}, 2).exact  # neither side says: taken as full rate, with exact False
    s = model_step(60.0, {"frame_stride": 1}, 2, 24.0)  # LSA64 at 60 fps: every 5th frame, 12 per second
    assert s.step == 5 and s.exact and "12 model frames per second" in s.note
    s = model_step(30.0, {}, 2, 24.0)  # 30 fps: every 2nd (15 per second, not 12): said
    assert s.step == 2 and not s.exact and "not exact" in s.note


def test_the_recorded_source_rate_is_one_the_corpus_has():
    """The encoder's rate is the frame-weighted median of its videos' source rates: never a rate between two
    (24 and 30 fps videos do not make a 27 fps encoder)."""
    from types import SimpleNamespace

    from msmae.tasks.pretrain import corpus_source_fps

    def corpus(*videos):
        return SimpleNamespace(entries=[SimpleNamespace(fps=f, frame_stride=s, length=n) for f, s, n in videos])

    assert corpus_source_fps(corpus((24.0, 1, 100), (30.0, 1, 100))) in (24.0, 30.0)
    assert corpus_source_fps(corpus((24.0, 1, 10), (15.0, 2, 100), (60.0, 1, 20))) == 30.0  # mostly 30 fps video
    assert corpus_source_fps(corpus()) is None


def test_a_guessed_frame_rate_is_said(tmp_path):
    """A .npy stores no rate: without --fps or a video, view and attention say the rate is assumed."""
    from msmae.tasks.view import read_clip

    path = tmp_path / "clip.npy"
    np.save(path, np.random.default_rng(0).random((8, 543, 3)).astype(np.float32))
    _, _, notes = read_clip(path)
    assert [n for n in notes if "fps assumed" in n and "--fps" in n]
    _, _, notes = read_clip(path, fps=25.0)
    assert not [n for n in notes if "assumed" in n]


def test_slt_says_once_when_its_sentences_cannot_match_the_encoders_rate(clips, caplog):
    """24 fps sentences under an encoder pre-trained at stride 2 of 30 fps video (15 model frames per second) are
    read at 12: one warning for the split, none when the rates match."""
    from msmae.data.sentences import load_split
    from msmae.data.slt import SLTExample
    from msmae.layout import get_layout

    _, files = clips
    examples = [SLTExample(f"s{i}", files[(1, "all", "pose")], "a sentence", "train") for i in range(3)]
    for model_fps, warned in ((30.0, True), (24.0, False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="msmae.data.sentences"):
            sd, problems = load_split(examples, layout=get_layout("body,hands"), frame_stride=2, model_fps=model_fps,
                                      progress=False, desc="read train")
        assert len(sd.clips) == 3 and not problems
        said = [r.getMessage() for r in caplog.records]
        assert len(said) == int(warned) and (not warned or "3 of 3 clips read at 12 model frames" in said[0]), said
