"""``msmae extract`` on real videos: agreement with the reference keypoints, frame folders,
clip ranges, resume, a broken file among good ones, missing model files, shards.

Processing is expensive on small CPUs (about 50 ms of CPU per 720p frame), so the tests use the
short clips and, where the point is not the whole clip, only their first frames.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path

pytest.importorskip("mediapipe", reason="the extract extra (mediapipe) is not installed")
cv2 = pytest.importorskip("cv2")

from msmae.cli import main  # noqa: E402
from msmae.extract import (  # noqa: E402
    FrameReadError, HolisticModel, MissingModelError, check_model_files, extract_video, required_model_files,
    run_extraction)
from msmae.extract.holistic import mediapipe_root  # noqa: E402
from msmae.layout import CANONICAL  # noqa: E402
from msmae.poses.readers import holistic_to_sequence, read_sequence  # noqa: E402

SHORT = "poseformat_test_video"  # 540x720, 29.92 fps, 58 frames
H2S = ("_93xgBE3NgA_2-5-rgb_front", "_15CDIexNDM_4-5-rgb_front")  # 1280x720, 24 fps, 59 and 71 frames
# Same MediaPipe build, same settings, same OpenCV frames: the landmarks are bit-identical. Through
# a .pose file (float32 pixels) they come back to within float32 rounding.
TOL_ARRAY = 0.0
TOL_POSE_FILE = 1e-6


def _ref(name: str) -> np.ndarray:
    return np.load(shared_path("videos", "reference-holistic", f"{name}.npy"))


def _video(name: str) -> Path:
    if name.startswith("_"):
        return shared_path("how2sign-clips", f"{name}.mp4")
    return shared_path("videos", f"{name}.mp4")


def _assert_matches(xyz: np.ndarray, ref: np.ndarray, tol: float = TOL_ARRAY) -> float:
    """Same detections (NaN pattern) and coordinates within ``tol``; returns the max difference."""
    assert xyz.shape == ref.shape
    assert np.array_equal(np.isnan(xyz), np.isnan(ref)), "detected parts differ from the reference"
    both = ~np.isnan(ref)
    diff = float(np.abs(xyz[both] - ref[both]).max())
    assert diff <= tol, diff
    return diff


def _assert_pose_file_matches(path: Path, ref: np.ndarray, width: int, height: int, fps: float) -> None:
    """Read a written .pose with msmae and compare with the reference in the canonical layout."""
    seq = read_sequence(path)
    want = holistic_to_sequence(ref, fps=fps, width=width, height=height)
    assert (seq.width, seq.height) == (width, height)
    assert seq.fps == pytest.approx(fps, abs=1e-3)  # the .pose header keeps fps as float32
    assert np.array_equal(seq.present, want.present)
    assert float(np.abs(seq.coords - want.coords).max()) <= TOL_POSE_FILE


def _write_frames(video: Path, folder: Path, indices: range, pattern: str) -> None:
    """Decode ``video`` with OpenCV and save the chosen frames losslessly as PNG."""
    folder.mkdir(parents=True)
    cap = cv2.VideoCapture(str(video))
    i = 0
    while i < indices.stop:
        ok, bgr = cap.read()
        assert ok
        if i in indices:
            cv2.imwrite(str(folder / pattern.format(i + 1)), bgr)
        i += 1
    cap.release()


@pytest.fixture(scope="module")
def model():
    m = HolisticModel()
    yield m
    m.close()


def test_reference_agreement_and_sequence(model):
    """Whole clip, library API: bit-identical to the reference; one call to a PoseSequence."""
    ex = extract_video(_video(SHORT), model=model)
    ref = _ref(SHORT)
    assert (ex.width, ex.height, ex.num_frames) == (540, 720, 58)
    assert ex.fps == pytest.approx(29.9167, abs=1e-3)
    _assert_matches(ex.xyz, ref)
    det = ~np.isnan(ref[..., 0])
    assert np.array_equal(ex.conf > 0, det)
    pose = slice(468 + 21, 468 + 21 + 33)
    assert np.all((ex.conf[:, pose][det[:, pose]] >= 0) & (ex.conf[:, pose][det[:, pose]] <= 1))
    assert np.all(ex.conf[:, :468][det[:, :468]] == 1.0)
    assert np.array_equal(np.isnan(ex.world[..., 0]), ~det[:, pose])
    seq = ex.to_sequence()
    assert seq.layout == CANONICAL and seq.num_frames == 58
    want = holistic_to_sequence(ref, fps=ex.fps, width=540, height=720)
    assert np.array_equal(seq.present, want.present) and np.array_equal(seq.coords, want.coords)
    # the model was reset between calls: a second run over the start of the clip gives the same
    again = extract_video(_video(SHORT), stop_frame=12, model=model)
    _assert_matches(again.xyz, ref[:12])


def test_cli_how2sign_clips_resume(tmp_path):
    """Two real How2Sign clips through one worker (so the model is reset between them), then a
    second run that does nothing."""
    inp = tmp_path / "in"
    inp.mkdir()
    for name in H2S:
        os.symlink(_video(name), inp / f"{name}.mp4")
    out = tmp_path / "poses"
    assert main(["extract", str(inp), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    summary = json.loads((out / "extract_summary.json").read_text())
    assert sorted(summary["done"]) == sorted(f"{n}.pose" for n in H2S)
    assert summary["skipped"] == [] and summary["failed"] == []
    assert summary["frames"] == 59 + 71
    for name in H2S:
        _assert_pose_file_matches(out / f"{name}.pose", _ref(name), 1280, 720, 24.0)
    # pose-format reads the file too, with the full holistic layout
    from pose_format import Pose

    pose = Pose.read((out / f"{H2S[0]}.pose").read_bytes())
    assert [c.name for c in pose.header.components] == [
        "POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS", "POSE_WORLD_LANDMARKS"]
    assert pose.body.data.shape == (59, 1, 576, 3)

    mtimes = {p: p.stat().st_mtime_ns for p in out.glob("*.pose")}
    assert main(["extract", str(inp), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    summary = json.loads((out / "extract_summary.json").read_text())
    assert summary["done"] == [] and sorted(summary["skipped"]) == sorted(f"{n}.pose" for n in H2S)
    assert summary["frames"] == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*.pose")} == mtimes
    assert not list(out.glob(".*.tmp"))


def test_frame_folder_matches_video(tmp_path):
    """PNG frames of a real video (unpadded numbers: natural order matters) give the video's
    keypoints; the folder's fps comes from --fps."""
    frames = tmp_path / "frames" / "sentence1"
    _write_frames(_video(SHORT), frames, range(0, 20), "images{}.png")
    out = tmp_path / "out"
    summary = run_extraction([tmp_path / "frames"], out, workers=0, frames_fps=25.0, progress=False)
    assert summary["done"] == ["sentence1.pose"]
    seq = read_sequence(out / "sentence1.pose")
    assert seq.fps == 25.0 and seq.num_frames == 20
    _assert_pose_file_matches(out / "sentence1.pose", _ref(SHORT)[:20], 540, 720, 25.0)


def test_clip_ranges_each_format(tmp_path):
    """How2Sign (tab-separated), WLASL JSON and plain CSV ranges of a real video; a range that
    starts mid-video (reached by seeking) equals extracting the same frames from PNGs."""
    video = _video(SHORT)
    fps = 29.916666666666668
    ref = _ref(SHORT)
    folder = video.parent

    h2s = tmp_path / "h2s.csv"
    h2s.write_text("VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE\n"
                   f"x\t{SHORT}\tx_0\tsentA\t0.0\t0.5\tHello.\n")
    wlasl = tmp_path / "WLASL_v0.3.json"
    wlasl.write_text(json.dumps([{"gloss": "hi", "instances": [
        {"video_id": SHORT, "frame_start": 1, "frame_end": 10, "url": "http://example.org/v.mp4"}]}]))
    plain = tmp_path / "clips.csv"
    plain.write_text(f"path,start,end,name\n{video},1.0,1.5,mid\n")

    out = tmp_path / "out"
    got = {}
    for f in (h2s, wlasl, plain):
        s = run_extraction([folder], out, clips=f, workers=0, progress=False)
        assert s["failed"] == [] and len(s["done"]) == 1
        got[f.name] = s["done"][0]
    assert got == {"h2s.csv": "sentA.pose", "WLASL_v0.3.json": f"{SHORT}.pose", "clips.csv": "mid.pose"}
    # [0, 0.5 s) at 29.92 fps = frames 0..14; WLASL 1..10 inclusive = frames 0..9
    _assert_pose_file_matches(out / "sentA.pose", ref[:15], 540, 720, fps)
    _assert_pose_file_matches(out / f"{SHORT}.pose", ref[:10], 540, 720, fps)
    # [1.0, 1.5 s) = frames 30..44 (tracking starts there, so compare with the same frames as PNGs)
    mid = read_sequence(out / "mid.pose")
    assert mid.num_frames == 15
    _write_frames(video, tmp_path / "png" / "mid", range(30, 45), "{:04d}.png")
    s = run_extraction([tmp_path / "png"], tmp_path / "out_png", workers=0, frames_fps=fps, progress=False)
    png = read_sequence(tmp_path / "out_png" / "mid.pose")
    assert np.array_equal(mid.present, png.present) and np.abs(mid.coords - png.coords).max() <= TOL_POSE_FILE
    # the same range decoded from the start instead of seeking is identical
    no_seek = extract_video(video, start_s=1.0, end_s=1.5, seek=False)
    seek = extract_video(video, start_s=1.0, end_s=1.5)
    assert no_seek.first_frame == seek.first_frame == 30
    _assert_matches(seek.xyz, no_seek.xyz)


def test_broken_files_among_good_ones(tmp_path):
    """A non-video .mp4 and a truncated one fail with reasons; the good clip is extracted; exit 1."""
    inp = tmp_path / "in"
    inp.mkdir()
    good = _video(SHORT)
    os.symlink(good, inp / "good.mp4")
    (inp / "garbage.mp4").write_bytes(os.urandom(20000))
    (inp / "truncated.mp4").write_bytes(good.read_bytes()[:150000])  # decodes 19 of 58 frames
    out = tmp_path / "out"
    code = main(["extract", str(inp), "--out", str(out), "--workers", "2", "--no-progress"])
    assert code == 1
    summary = json.loads((out / "extract_summary.json").read_text())
    assert summary["done"] == ["good.pose"]
    reasons = {Path(f["path"]).name: f["reason"] for f in summary["failed"]}
    assert set(reasons) == {"garbage.mp4", "truncated.mp4"}
    assert "cannot open video" in reasons["garbage.mp4"]
    assert "decoding stopped after 19 of 58 frames" in reasons["truncated.mp4"]
    assert sorted(p.name for p in out.iterdir()) == ["extract_summary.json", "good.pose"]  # no half files
    _assert_pose_file_matches(out / "good.pose", _ref(SHORT), 540, 720, 29.916666666666668)


def test_library_errors_name_the_file(tmp_path, model):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(FrameReadError, match="bad.mp4: cannot open video"):
        extract_video(bad, model=model)
    with pytest.raises(FrameReadError, match=r"clip starts at frame 300 but the video ends at frame 58"):
        extract_video(_video(SHORT), start_s=10.0, end_s=11.0, model=model)
    with pytest.raises(FrameReadError, match=r"the clip has no frames; the source has 58 frames"):
        extract_video(_video(SHORT), start_frame=5, stop_frame=5, model=model)
    folder = tmp_path / "frames"
    folder.mkdir()
    cv2.imwrite(str(folder / "1.png"), np.zeros((64, 64, 3), np.uint8))
    cv2.imwrite(str(folder / "2.png"), np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(FrameReadError, match="2.png: image size 64x32 differs"):
        extract_video(folder, model=model)


def test_model_files_and_missing_model_error(tmp_path, capsys):
    files = required_model_files(1)
    assert "mediapipe/modules/pose_landmark/pose_landmark_full.tflite" in files
    assert "mediapipe/modules/face_landmark/face_landmark.tflite" in files
    assert "mediapipe/modules/face_landmark/face_landmark_with_attention.tflite" in required_model_files(1, True)
    check_model_files(1)  # ships with the wheel
    heavy = mediapipe_root() / "mediapipe/modules/pose_landmark/pose_landmark_heavy.tflite"
    if heavy.exists():
        pytest.skip(f"{heavy} is installed here, so model_complexity=2 works")
    with pytest.raises(MissingModelError, match="pose_landmark_heavy.tflite"):
        check_model_files(2)
    out = tmp_path / "out"
    code = main(["extract", str(_video(SHORT)), "--out", str(out), "--model-complexity", "2"])
    err = capsys.readouterr().err
    assert code == 1
    assert str(heavy) in err and "https://storage.googleapis.com/mediapipe-assets/pose_landmark_heavy.tflite" in err
    assert not out.exists()  # failed before any work
    assert not heavy.exists()  # and never downloaded


def test_shards_split_a_corpus(tmp_path):
    """--shard I/N runs over one output folder produce every clip exactly once."""
    corpus = tmp_path / "corpus"
    for k in range(6):  # tiny blank frame folders: fast, nothing detected
        d = corpus / f"s{k}"
        d.mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(d / f"{i}.png"), np.full((48, 64, 3), 255, np.uint8))
    out = tmp_path / "out"
    done = []
    for i in range(3):
        code = main(["extract", str(corpus), "--out", str(out), "--shard", f"{i}/3", "--workers", "0",
                     "--no-progress"])
        assert code == 0
        s = json.loads((out / f"extract_summary.shard-{i}-of-3.json").read_text())
        assert s["shard"] == f"{i}/3" and s["skipped"] == []
        done += s["done"]
    assert sorted(done) == [f"s{k}.pose" for k in range(6)]
    seq = read_sequence(out / "s0.pose")
    assert seq.num_frames == 2 and not seq.present.any()
    # a stale temporary file of an interrupted run is cleaned up when its clip is redone
    stale = out / ".s0.pose.abc123.tmp"
    stale.write_bytes(b"half")
    s = run_extraction([corpus], out, workers=0, overwrite=True, progress=False)
    assert len(s["done"]) == 6 and not stale.exists()


def _crash_on_name(job):
    """A pool task that kills its worker process on the clip named "crash" (as a native crash would)."""
    from msmae.extract.runner import _run_job

    if job.clip.name == "crash":
        os._exit(3)
    return _run_job(job)


def test_worker_crash_is_isolated(tmp_path):
    """A worker process that dies takes no innocent clip with it: the clips it may have been on
    are retried alone, and only the culprit is reported failed."""
    from msmae.extract.runner import _Job, _Options, _Progress, _run_alone, _run_pool
    from msmae.extract.sources import Clip

    jobs = []
    for k, name in enumerate(["a", "crash", "b", "c"]):
        d = tmp_path / "in" / name
        d.mkdir(parents=True)
        cv2.imwrite(str(d / "0.png"), np.full((48, 64, 3), 255, np.uint8))
        jobs.append(_Job(index=k, clip=Clip(source=d, name=name), out=tmp_path / "out" / f"{name}.pose"))
    options = _Options(model_complexity=1, refine_face=False, frames_fps=25.0, seek=True)
    bar = _Progress(num_clips=len(jobs), enabled=False)
    results: dict = {}
    suspects = _run_pool(jobs, options, 2, bar, results, task=_crash_on_name)
    assert "crash" in {j.clip.name for j in suspects}
    for job in suspects:
        _run_alone(job, options, bar, results, task=_crash_on_name)
    status = {jobs[i].clip.name: r["status"] for i, r in results.items()}
    assert status == {"a": "done", "crash": "failed", "b": "done", "c": "done"}
    assert "died" in results[1]["reason"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.pose", "b.pose", "c.pose"]
