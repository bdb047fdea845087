"""``msmae extract --frame-stride N`` and ``--streams body,hands`` on real How2Sign clips, and the
reliability fixes of extraction: complete-file check on resume, clip names kept inside --out,
workers that die with their parent. Clips are cut to a few dozen frames (MediaPipe is CPU-heavy)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import shared_path

pytest.importorskip("mediapipe", reason="the extract extra (mediapipe) is not installed")
cv2 = pytest.importorskip("cv2")

from msmae.cli import main  # noqa: E402
from msmae.extract import extract_video, run_extraction  # noqa: E402
from msmae.poses.readers import read_sequence  # noqa: E402
from msmae.poses.sequence import PoseDataError  # noqa: E402

CLIP = "_93xgBE3NgA_2-5-rgb_front"  # 1280x720, 24 fps, 59 frames
FACE, LEFT, POSE, RIGHT = slice(0, 468), slice(468, 489), slice(489, 522), slice(522, 543)


def _video() -> Path:
    return shared_path("how2sign-clips", f"{CLIP}.mp4")


def _ref() -> np.ndarray:
    return np.load(shared_path("videos", "reference-holistic", f"{CLIP}.npy"))


def test_stride_2_runs_on_every_other_frame_and_records_it():
    """20 source frames at stride 2 = 10 Holistic frames at 12 fps, close to the same frames of the
    full-rate reference; the .pose records the stride and the source fps and pose-format opens it."""
    ex = extract_video(_video(), stop_frame=20, frame_stride=2)
    ref = _ref()[0:20:2]
    assert ex.num_frames == 10 and ex.fps == pytest.approx(12.0) and ex.source_fps == pytest.approx(24.0)
    np.testing.assert_array_equal(ex.xyz[0], _ref()[0])  # the first frame starts a fresh graph
    for part in (POSE, LEFT, RIGHT, FACE):  # mostly the same detections; coordinates close (tracking differs)
        ours, theirs = np.isfinite(ex.xyz[:, part, 0]).any(1), np.isfinite(ref[:, part, 0]).any(1)
        assert (ours == theirs).mean() >= 0.8
        both = ours & theirs
        err = np.abs(ex.xyz[both][:, part, :2] - ref[both][:, part, :2])
        assert np.median(err) < 0.01, np.median(err)


def test_body_hands_cli_stride_resume_and_readers(tmp_path, capsys):
    """--streams body,hands --frame-stride 2 through the command line: the body and hands are
    MediaPipe's own Holistic landmarks (bit-identical to full Holistic on the same frames), the face
    is absent (no component, not zeros), every reader opens the file, a second run skips it and a
    run with other settings refuses to mix them."""
    clips = tmp_path / "clips.csv"
    clips.write_text(f"path,start,end,name\n{_video()},0,0.75,h2s/first\n")  # 18 frames -> 9
    out = tmp_path / "poses"
    args = ["extract", "--clips", str(clips), "--out", str(out), "--workers", "1", "--no-progress",
            "--frame-stride", "2", "--streams", "body,hands"]
    assert main(args) == 0
    path = out / "h2s" / "first.pose"
    from pose_format import Pose

    pose = Pose.read(path.read_bytes())
    assert [c.name for c in pose.header.components] == [
        "POSE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS", "POSE_WORLD_LANDMARKS"]
    assert pose.body.data.shape[:2] == (9, 1) and float(pose.body.fps) == pytest.approx(12.0)
    from msmae.poses.posemeta import check_pose_file

    meta = check_pose_file(path)
    assert meta["frame_stride"] == 2 and meta["source_fps"] == pytest.approx(24.0)
    assert meta["streams"] == ["body", "left_hand", "right_hand"]

    seq = read_sequence(path)
    assert seq.fps == pytest.approx(12.0) and seq.meta["frame_stride"] == 2
    assert seq.meta["source_fps"] == pytest.approx(24.0)
    face = seq.layout.stream_slice("face")
    assert not seq.present[:, face].any() and len(seq.meta["absent_points"]["face"]) == 112
    assert seq.present[:, :6].all()  # the body is there in every frame

    full = extract_video(_video(), stop_frame=18, frame_stride=2)  # full Holistic, same frames
    ours = extract_video(_video(), stop_frame=18, frame_stride=2, face=False)
    for part in (POSE, LEFT, RIGHT):
        np.testing.assert_array_equal(ours.xyz[:, part], full.xyz[:, part])
    assert np.isnan(ours.xyz[:, FACE]).all() and np.isfinite(full.xyz[:, FACE]).all()

    assert main(["inspect", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    info = info[0] if isinstance(info, list) else info
    assert info["frames"] == 9 and info["present"]["face"] == 0.0

    mtime = path.stat().st_mtime_ns
    assert main(args) == 0
    s = json.loads((out / "extract_summary.json").read_text())
    assert s["skipped"] == ["h2s/first.pose"] and path.stat().st_mtime_ns == mtime
    assert s["settings"]["frame_stride"] == 2
    # the same folder with another stride: reported, the file kept
    assert main(args[:-4]) == 1
    s = json.loads((out / "extract_summary.json").read_text())
    assert "made with --frame-stride 2" in s["failed"][0]["reason"] and path.stat().st_mtime_ns == mtime


def _blank_folders(root: Path, names: list[str], frames: int = 2) -> None:
    for name in names:
        d = root / name
        d.mkdir(parents=True)
        for i in range(frames):
            cv2.imwrite(str(d / f"{i}.png"), np.full((32, 48, 3), 255, np.uint8))


def test_resume_re_extracts_empty_and_truncated_outputs(tmp_path):
    """Issue 17 item 9: a 0-byte or truncated .pose is not 'already extracted'."""
    corpus, out = tmp_path / "in", tmp_path / "out"
    _blank_folders(corpus, ["a", "b", "c", "d"], frames=3)
    run_extraction([corpus], out, workers=0, progress=False)
    good = (out / "a.pose").read_bytes()
    (out / "b.pose").write_bytes(b"")  # 0 bytes (a full disk, a crashed copy)
    (out / "c.pose").write_bytes(good[: len(good) // 2])  # cut inside the frames
    (out / "d.pose").write_bytes(good[:-3])  # cut inside the msmae metadata after the frames
    s = run_extraction([corpus], out, workers=0, progress=False)
    assert s["skipped"] == ["a.pose"] and sorted(s["done"]) == ["b.pose", "c.pose", "d.pose"]
    for name in "abcd":
        assert read_sequence(out / f"{name}.pose").num_frames == 3
    from msmae.poses.posemeta import check_pose_file

    (out / "d.pose").write_bytes(good[:-3])
    with pytest.raises(PoseDataError, match="truncated"):
        check_pose_file(out / "d.pose")


@pytest.mark.parametrize("name", ["../../escaped", "ABSOLUTE", "ok/../../escaped"])
def test_clip_names_cannot_write_outside_out(tmp_path, name, capsys):
    """Issue 17 item 6: a clip name from a clips file is refused when it would leave --out."""
    if name == "ABSOLUTE":
        name = str(tmp_path / "abs-escape")
    _blank_folders(tmp_path / "videos", ["v"])
    clips = tmp_path / "clips.csv"
    clips.write_text(f"path,start,end,name\nvideos/v,,,{name}\nvideos/v,,,fine\n")
    out = tmp_path / "a" / "b" / "out"
    target = Path(name) if name.startswith("/") else (out / f"{name}.pose").resolve()
    assert main(["extract", "--clips", str(clips), "--out", str(out), "--workers", "0", "--no-progress"]) == 1
    assert "refused" in capsys.readouterr().err
    assert not Path(f"{target}.pose").exists() and not target.exists()
    assert not (out / "fine.pose").exists()  # refused before any work


_PARENT = r'''
import os, sys, time
from pathlib import Path

def slow(job):
    Path(sys.argv[1], f"worker-{os.getpid()}").write_text("")
    time.sleep(120)
    return {"status": "done", "frames": 0, "index": job.index, "seconds": 0.0}

if __name__ == "__main__":
    from msmae.extract.runner import _Job, _Options, _Progress, _run_pool
    from msmae.extract.sources import Clip
    jobs = [_Job(index=i, clip=Clip(source=Path(sys.argv[1]), name=f"c{i}"), out=Path(sys.argv[1], f"c{i}.pose"))
            for i in range(2)]
    opts = _Options(model_complexity=1, refine_face=False, frames_fps=25.0, seek=True)
    _run_pool(jobs, opts, 2, _Progress(num_clips=2, enabled=False), {}, task=slow)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_workers_exit_when_the_parent_is_killed(tmp_path):
    """Issue 17 item 10: kill -9 of the main process stops its extraction workers."""
    script = tmp_path / "parent.py"
    script.write_text(_PARENT)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(workers) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.2)
            workers = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
        assert len(workers) == 2, "the workers did not start"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 30  # generous on a loaded machine; they sleep 120 s otherwise
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)], "workers outlived their killed parent"
    finally:
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
