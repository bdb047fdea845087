"""Extraction throughput on the real How2Sign clips (1280x720, 24 fps): msmae vs pose-format.

Prints one JSON object per line:

- ``extract_breakdown``: where the time of one clip goes in one process: OpenCV decode + BGR->RGB,
  the MediaPipe Holistic graph (wall and CPU ms per frame);
- ``extract_msmae`` per worker count: end-to-end ``run_extraction`` (process start-up, decoding,
  MediaPipe, writing .pose files): ``frames_per_s``, ``realtime_ratio`` (frames/s over the clips'
  24 fps), ``vs_pose_format`` (over pose-format's ``video_to_pose`` path, one process, its default)
  and ``vs_pose_format_same_workers`` (over pose-format run in as many processes, as its
  ``videos_to_poses --num-workers`` does);
- ``extract_pose_format`` per worker count: pose-format's ``pose_video`` (what ``video_to_pose``
  runs) over the same clips, in the same run;
- ``youtube_asl_estimate``: machine hours for YouTube-ASL's 984 hours of video at the best
  measured rate, and per shard for ``--shard I/N`` over N such machines.

Usage: ``python benchmarks/extract_throughput.py [--clips-limit 6] [--workers 1,2]``.
Skips (one JSON line with ``skipped``) when the shared data or MediaPipe is absent.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSMAE_SHARED_DATA", REPO.parent / "shared" / "data"))
YOUTUBE_ASL_HOURS = 984.0


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def pick_clips(limit: int) -> list[Path]:
    """A spread of clips over the sorted list (several signers), deterministic."""
    clips = sorted((SHARED / "how2sign-clips").glob("*.mp4"))
    step = max(1, len(clips) // max(1, limit))
    return clips[::step][:limit]


def clip_stats(clips: list[Path]) -> tuple[int, float, float]:
    """(frames, seconds of video, fps) from the headers."""
    import cv2

    frames, seconds, rates = 0, 0.0, set()
    for c in clips:
        cap = cv2.VideoCapture(str(c))
        n, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), float(cap.get(cv2.CAP_PROP_FPS))
        cap.release()
        frames += n
        seconds += n / fps
        rates.add(round(fps, 3))
    return frames, seconds, frames / seconds


def breakdown(clip: Path) -> dict:
    """Per-frame cost of decoding and of the MediaPipe graph for one clip, in one process."""
    import cv2

    from msmae.extract.holistic import HolisticModel

    cap = cv2.VideoCapture(str(clip))
    t0, c0 = time.perf_counter(), cpu_seconds()
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    decode_wall, decode_cpu = time.perf_counter() - t0, cpu_seconds() - c0
    with HolisticModel() as model:
        model.process(frames[0])
        model.reset()
        t0, c0 = time.perf_counter(), cpu_seconds()
        for f in frames:
            model.process(f)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    n = len(frames)
    return {"name": "extract_breakdown", "clip": clip.name, "frames": n,
            "decode_ms_per_frame": round(decode_wall / n * 1e3, 2),
            "decode_cpu_ms_per_frame": round(decode_cpu / n * 1e3, 2),
            "holistic_ms_per_frame": round(wall / n * 1e3, 2),
            "holistic_cpu_ms_per_frame": round(cpu / n * 1e3, 2),
            "holistic_cpu_bound_fps_2_cores": round(2 / (cpu / n), 1)}


def run_msmae(clips: list[Path], workers: int, tmp: Path) -> tuple[float, int]:
    from msmae.extract import run_extraction

    inp = tmp / f"in_msmae_{workers}"
    inp.mkdir()
    for c in clips:
        os.symlink(c, inp / c.name)
    t0 = time.perf_counter()
    s = run_extraction([inp], tmp / f"out_msmae_{workers}", workers=workers, progress=False)
    wall = time.perf_counter() - t0
    if s["failed"]:
        raise RuntimeError(f"msmae extraction failed: {s['failed']}")
    return wall, int(s["frames"])


def _pose_format_one(args: tuple[str, str]) -> int:
    """pose-format's own path: ``pose_video`` is exactly what its ``video_to_pose`` runs."""
    from pose_format.bin.pose_estimation import pose_video
    from pose_format.pose import Pose

    src, dst = args
    with contextlib.redirect_stdout(io.StringIO()):
        pose_video(src, dst, "mediapipe", {"model_complexity": 1}, progress=False)
    with open(dst, "rb") as f:
        return int(Pose.read(f.read()).body.data.shape[0])


def run_pose_format(clips: list[Path], workers: int, tmp: Path) -> tuple[float, int]:
    out = tmp / f"out_pf_{workers}"
    out.mkdir()
    jobs = [(str(c), str(out / f"{c.stem}.pose")) for c in clips]
    t0 = time.perf_counter()
    with mp.get_context("spawn").Pool(workers) as pool:  # as videos_to_poses --num-workers N
        frames = sum(pool.map(_pose_format_one, jobs, chunksize=1))
    return time.perf_counter() - t0, frames


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips-limit", type=int, default=6, help="How2Sign clips to use (default 6; 79 = all)")
    ap.add_argument("--workers", default="1,2", help="worker counts to measure (default 1,2)")
    ap.add_argument("--no-pose-format", action="store_true", help="skip the pose-format comparison")
    args = ap.parse_args(argv)

    if not (SHARED / "how2sign-clips").is_dir():
        emit({"name": "extract_throughput", "skipped": f"no real data at {SHARED / 'how2sign-clips'}"})
        return 0
    try:
        import cv2  # noqa: F401
        import mediapipe  # noqa: F401
    except ImportError as e:
        emit({"name": "extract_throughput", "skipped": f"the extract extra is not installed ({e})"})
        return 0
    sys.path.insert(0, str(REPO / "src"))

    clips = pick_clips(args.clips_limit)
    frames, seconds, fps = clip_stats(clips)
    common = {"clips": len(clips), "frames": frames, "video_seconds": round(seconds, 2),
              "video_fps": round(fps, 3), "resolution": "1280x720", "cores": os.cpu_count()}
    emit(breakdown(min(clips, key=lambda c: c.stat().st_size)))
    worker_counts = [int(w) for w in args.workers.split(",")]
    results: dict[str, dict[int, float]] = {"msmae": {}, "pose_format": {}}
    with tempfile.TemporaryDirectory(prefix="msmae-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for w in worker_counts:
            if not args.no_pose_format:
                load = os.getloadavg()[0]
                wall, n = run_pose_format(clips, w, tmp)
                results["pose_format"][w] = n / wall
                emit({"name": "extract_pose_format", "workers": w, "frames_per_s": round(n / wall, 2),
                      "realtime_ratio": round(n / wall / fps, 3), "wall_s": round(wall, 2),
                      "loadavg_before": round(load, 2), **common})
            load = os.getloadavg()[0]
            wall, n = run_msmae(clips, w, tmp)
            results["msmae"][w] = n / wall
            row = {"name": "extract_msmae", "workers": w, "frames_per_s": round(n / wall, 2),
                   "realtime_ratio": round(n / wall / fps, 3), "wall_s": round(wall, 2),
                   "loadavg_before": round(load, 2), **common}
            pf = results["pose_format"]
            if 1 in pf:
                row["vs_pose_format"] = round(n / wall / pf[1], 3)
            if w in pf:
                row["vs_pose_format_same_workers"] = round(n / wall / pf[w], 3)
            emit(row)
    best_w, best = max(results["msmae"].items(), key=lambda kv: kv[1])
    hours = {}
    for src_fps in (24.0, 30.0):
        total_frames = YOUTUBE_ASL_HOURS * 3600 * src_fps
        hours[f"machine_hours_at_{int(src_fps)}fps"] = round(total_frames / best / 3600, 1)
    emit({"name": "youtube_asl_estimate", "video_hours": YOUTUBE_ASL_HOURS, "workers": best_w,
          "frames_per_s": round(best, 2), **hours,
          "days_on_this_machine_at_30fps": round(hours["machine_hours_at_30fps"] / 24, 1),
          "machines_for_one_day_at_30fps": int(-(-hours["machine_hours_at_30fps"] // 24)),
          "note": "2-core machine, 720p How2Sign clips; shard with --shard I/N over N machines: "
                  "hours per machine = machine_hours / N"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
