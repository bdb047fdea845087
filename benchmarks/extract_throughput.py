"""Extraction throughput and quality on the real How2Sign clips (1280x720, 24 fps): msmae vs pose-format.

Prints one JSON object per line (the CPU model and core count are in every speed line):

- ``extract_breakdown``: where the time of one clip goes in one process: OpenCV decode + BGR->RGB,
  the MediaPipe Holistic graph (wall and CPU ms per frame);
- ``extract_model_profile``: what each model inside Holistic costs per frame (pose, the two hands,
  the hand re-crop model, the face), from MediaPipe's own graph profiler, and the CPU time per frame
  of full Holistic and of msmae's body,hands graph on the same frames;
- ``extract_pose_format``: pose-format's ``pose_video`` (what ``video_to_pose`` runs) over the clips
  in as many processes as msmae's workers (``videos_to_poses --num-workers N``), in the same run;
- ``extract_msmae`` per variant (``--frame-stride`` 1 / 2, ``--streams`` all / body,hands):
  end-to-end ``run_extraction``: ``video_frames_per_s`` (source frames covered per second),
  ``realtime_ratio`` (over the clips' 24 fps), ``vs_pose_format_same_workers``; and, because the
  2-core machine this was written on is shared with other jobs, the CPU time of all processes per
  source frame with ``cpu_bound_realtime_2_cores`` (what two dedicated cores would reach) and
  ``cpu_vs_pose_format``;
- ``extract_body_hands_agreement``: body,hands output vs full Holistic on the same frames;
- ``extract_stride_quality``: stride-2 output vs the same frames of a stride-1 extraction, per
  stream: median and 95th-percentile absolute error (pixels), presence agreement, frames lost;
- ``youtube_asl_estimate``: machine hours for YouTube-ASL's 984 hours of video at the measured rates.

Usage: ``python benchmarks/extract_throughput.py [--clips-limit 6] [--quality-clips 20] [--workers 2]``.
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

from msmae.utils import cpu_model

os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSMAE_SHARED_DATA", REPO.parent / "shared" / "data"))
YOUTUBE_ASL_HOURS = 984.0


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def all_cpu_seconds() -> float:
    """CPU seconds of this process and of its finished child processes (pool workers are reaped when
    their pool shuts down, so a run's workers are counted once it returns)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


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


def run_msmae(clips: list[Path], workers: int, tmp: Path, *, frame_stride: int = 1, streams: str = "all",
              tag: str = "") -> tuple[float, int, Path]:
    from msmae.extract import run_extraction

    tag = tag or f"w{workers}_s{frame_stride}_{streams.replace(',', '-')}"
    inp = tmp / f"in_{tag}"
    inp.mkdir()
    for c in clips:
        os.symlink(c, inp / c.name)
    out = tmp / f"out_{tag}"
    t0, c0 = time.perf_counter(), all_cpu_seconds()
    s = run_extraction([inp], out, workers=workers, progress=False, frame_stride=frame_stride, streams=streams)
    wall = time.perf_counter() - t0
    LAST_CPU["s"] = all_cpu_seconds() - c0
    if s["failed"]:
        raise RuntimeError(f"msmae extraction failed: {s['failed']}")
    return wall, int(s["frames"]), out


LAST_CPU = {"s": 0.0}  # CPU seconds of the last timed run (all processes)


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
    t0, c0 = time.perf_counter(), all_cpu_seconds()
    pool = mp.get_context("spawn").Pool(workers)  # as videos_to_poses --num-workers N
    frames = sum(pool.map(_pose_format_one, jobs, chunksize=1))
    pool.close()
    pool.join()  # reaped: their CPU time is counted
    wall = time.perf_counter() - t0
    LAST_CPU["s"] = all_cpu_seconds() - c0
    return wall, frames


def _read_frames(clip: Path, limit: int) -> list:
    import cv2

    cap = cv2.VideoCapture(str(clip))
    frames = []
    while len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def model_profile(clip: Path, limit: int = 48) -> dict:
    """What each model inside Holistic costs per frame, from MediaPipe's own graph profiler
    (``profiler_config.enable_profiler``: per-calculator process time, summed by subgraph), plus the
    wall and CPU time per frame of the full graph and of msmae's body,hands graph on the same frames."""
    import collections
    import glob

    from mediapipe.framework import calculator_pb2, calculator_profile_pb2
    from mediapipe.python.solution_base import SolutionBase

    from msmae.extract.holistic import HOLISTIC_GRAPH, HolisticModel, mediapipe_root

    frames = _read_frames(clip, limit)
    graph = calculator_pb2.CalculatorGraphConfig()
    graph.ParseFromString((mediapipe_root() / HOLISTIC_GRAPH).read_bytes())
    with tempfile.TemporaryDirectory(prefix="msmae-mp-profile-") as logdir:
        graph.profiler_config.enable_profiler = True
        graph.profiler_config.trace_enabled = True
        graph.profiler_config.trace_log_path = logdir + "/"
        graph.profiler_config.trace_log_interval_count = 1_000_000
        sol = SolutionBase(graph_config=graph, side_inputs={
            "model_complexity": 1, "smooth_landmarks": True, "enable_segmentation": False,
            "smooth_segmentation": True, "refine_face_landmarks": False, "use_prev_landmarks": True},
            outputs=["pose_landmarks", "face_landmarks", "left_hand_landmarks", "right_hand_landmarks"])
        for f in frames:
            sol.process({"image": f})
        sol.close()
        per = collections.Counter()
        for path in glob.glob(logdir + "/*.binarypb"):
            prof = calculator_profile_pb2.GraphProfile()
            prof.ParseFromString(Path(path).read_bytes())
            for c in prof.calculator_profiles:
                name = c.name.split("__")[0]
                group = {"poselandmarkcpu": "pose", "handlandmarksleftandrightcpu": "hands",
                         "facelandmarksfromposecpu": "face"}.get(name, "other")
                if group == "hands" and "handrecrop" in c.name:
                    group = "hands_recrop"
                per[group] += c.process_runtime.total  # microseconds
    n = len(frames)
    row = {"name": "extract_model_profile", "clip": clip.name, "frames": n,
           "method": "MediaPipe graph profiler (CalculatorGraphConfig.profiler_config), process time per calculator",
           **{f"{g}_ms_per_frame": round(per[g] / n / 1e3, 2) for g in ("pose", "hands", "hands_recrop", "face",
                                                                         "other")}}
    total = sum(per.values())
    row["face_share_of_graph"] = round(per["face"] / total, 3) if total else None
    for label, face in (("all", True), ("body_hands", False)):
        with HolisticModel(face=face) as model:
            model.process(frames[0])
            model.reset()
            t0, c0 = time.perf_counter(), cpu_seconds()
            for f in frames:
                model.process(f)
            row[f"{label}_wall_ms_per_frame"] = round((time.perf_counter() - t0) / n * 1e3, 2)
            row[f"{label}_cpu_ms_per_frame"] = round((cpu_seconds() - c0) / n * 1e3, 2)
    row["body_hands_cpu_saving"] = round(1 - row["body_hands_cpu_ms_per_frame"] / row["all_cpu_ms_per_frame"], 3)
    return row


def _canonical(path: Path):
    from msmae.poses.readers import read_sequence

    return read_sequence(path)


def quality(full_dir: Path, strided_dir: Path, names: list[str], stride: int, height: int = 720) -> dict:
    """Stride-``stride`` output vs the same frames of a stride-1 extraction, per stream: median and 95th
    percentile absolute coordinate error where both detected (pixels of the frame height: the canonical
    layout's isotropic unit x 720), and presence agreement over (frame, keypoint)."""
    import numpy as np

    from msmae.layout import CANONICAL

    errs = {s.name: [] for s in CANONICAL.streams}
    agree = {s.name: [0, 0] for s in CANONICAL.streams}
    lost = {s.name: [0, 0] for s in CANONICAL.streams}  # frames detected at stride 1 but not at stride n
    for name in names:
        a, b = _canonical(full_dir / f"{name}.pose"), _canonical(strided_dir / f"{name}.pose")
        ca, pa = a.coords[::stride], a.present[::stride]
        n = min(len(ca), b.num_frames)
        ca, pa, cb, pb = ca[:n], pa[:n], b.coords[:n], b.present[:n]
        for s, sl in CANONICAL.slices().items():
            both = pa[:, sl] & pb[:, sl]
            errs[s].append((np.abs(ca[:, sl] - cb[:, sl])[both]).ravel() * height)
            agree[s][0] += int((pa[:, sl] == pb[:, sl]).sum())
            agree[s][1] += pa[:, sl].size
            fa, fb = pa[:, sl].any(1), pb[:, sl].any(1)
            lost[s][0] += int((fa & ~fb).sum())
            lost[s][1] += int(fa.sum())
    out = {"name": "extract_stride_quality", "frame_stride": stride, "clips": len(names),
           "units": "pixels (720-pixel frame height)"}
    for s in errs:
        e = np.concatenate(errs[s]) if errs[s] else np.zeros(0)
        out[s] = {"median_abs_px": round(float(np.median(e)), 3) if e.size else None,
                  "p95_abs_px": round(float(np.percentile(e, 95)), 3) if e.size else None,
                  "presence_agreement": round(agree[s][0] / max(1, agree[s][1]), 4),
                  "frames_lost": f"{lost[s][0]}/{lost[s][1]}"}
    return out


def body_hands_agreement(all_dir: Path, bh_dir: Path, names: list[str]) -> dict:
    """body,hands output vs full Holistic on the same frames (same stride): max abs difference."""
    import numpy as np

    from msmae.layout import CANONICAL

    worst, same_presence, face_present = 0.0, True, 0
    sl = slice(0, CANONICAL.stream_slice("face").start)
    for name in names:
        a, b = _canonical(all_dir / f"{name}.pose"), _canonical(bh_dir / f"{name}.pose")
        same_presence &= bool(np.array_equal(a.present[:, sl], b.present[:, sl]))
        worst = max(worst, float(np.abs(a.coords[:, sl] - b.coords[:, sl]).max()))
        face_present += int(b.present[:, CANONICAL.stream_slice("face")].sum())
    return {"name": "extract_body_hands_agreement", "clips": len(names), "body_hands_max_abs_diff": worst,
            "same_presence": same_presence, "face_points_present": face_present}


def _clock_one(args: tuple[str, bool]) -> tuple[str, bool, object, object]:
    """One clip at stride 1 and at stride 2 (with or without advancing MediaPipe's clock over the
    skipped frames), in its own process."""
    from msmae.extract import extract_video
    from msmae.extract.holistic import HolisticModel

    clip, advance = args
    with HolisticModel() as model:
        if not advance:
            model.skip = lambda frames: None  # every processed frame 33.3 ms after the last
        strided = extract_video(clip, frame_stride=2, model=model).to_sequence()
        full = extract_video(clip, model=model).to_sequence() if advance else None
    return clip, advance, full, strided


def clock_comparison(clips: list[Path], workers: int = 2) -> dict:
    """Stride-2 quality with MediaPipe's clock advanced over skipped frames (msmae's choice: tracking and
    landmark smoothing see the real time between frames) vs not advanced, against stride 1."""
    import numpy as np

    from msmae.layout import CANONICAL

    jobs = [(str(c), adv) for c in clips for adv in (True, False)]
    with mp.get_context("spawn").Pool(workers) as pool:
        res = pool.map(_clock_one, jobs, chunksize=1)
    full = {c: f for c, adv, f, _ in res if adv}
    out = {"name": "extract_stride_clock", "clips": len(clips), "units": "pixels (720-pixel frame height)"}
    for adv in (True, False):
        row = {}
        for s, sl in CANONICAL.slices().items():
            errs, agree, total = [], 0, 0
            for c, a, _, b in res:
                if a != adv:
                    continue
                f = full[c]
                pa, ca = f.present[::2][: b.num_frames], f.coords[::2][: b.num_frames]
                both = pa[:, sl] & b.present[:, sl]
                errs.append(np.abs(ca[:, sl] - b.coords[:, sl])[both].ravel() * 720)
                agree += int((pa[:, sl] == b.present[:, sl]).sum())
                total += pa[:, sl].size
            e = np.concatenate(errs)
            row[s] = {"median_abs_px": round(float(np.median(e)), 3), "p95_abs_px": round(float(np.percentile(e, 95)), 3),
                      "presence_agreement": round(agree / total, 4)}
        out["clock_advanced" if adv else "clock_not_advanced"] = row
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips-limit", type=int, default=6, help="How2Sign clips to time (default 6; 79 = all)")
    ap.add_argument("--quality-clips", type=int, default=20,
                    help="How2Sign clips for the stride quality table (default 20; 79 = all)")
    ap.add_argument("--workers", default="2", help="worker counts to measure (default 2)")
    ap.add_argument("--no-pose-format", action="store_true", help="skip the pose-format comparison")
    ap.add_argument("--no-profile", action="store_true", help="skip the per-model profile")
    ap.add_argument("--clock-clips", type=int, default=0,
                    help="also compare stride 2 with and without advancing MediaPipe's clock over skipped "
                         "frames on this many clips (default 0: skip)")
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
    cpu = cpu_model()
    common = {"clips": len(clips), "frames": frames, "video_seconds": round(seconds, 2),
              "video_fps": round(fps, 3), "resolution": "1280x720", "cores": os.cpu_count(), "cpu": cpu}
    emit(breakdown(min(clips, key=lambda c: c.stat().st_size)))
    if not args.no_profile:
        emit(model_profile(min(clips, key=lambda c: c.stat().st_size)))
    worker_counts = [int(w) for w in args.workers.split(",")]
    variants = [(1, "all"), (2, "all"), (2, "body,hands")]
    best: dict[tuple[int, str], float] = {}
    cpu_cost: dict[tuple[int, str], float] = {}  # CPU seconds per source frame
    with tempfile.TemporaryDirectory(prefix="msmae-bench-") as tmpdir:
        tmp = Path(tmpdir)
        outs: dict[tuple[int, str], Path] = {}
        for w in worker_counts:
            pf, pf_cpu = None, None
            if not args.no_pose_format:
                load = os.getloadavg()[0]
                wall, n = run_pose_format(clips, w, tmp)
                pf = n / wall
                pf_cpu = LAST_CPU["s"] / n
                emit({"name": "extract_pose_format", "workers": w, "frames_per_s": round(pf, 2),
                      "realtime_ratio": round(pf / fps, 3), "wall_s": round(wall, 2),
                      "cpu_ms_per_video_frame": round(pf_cpu * 1e3, 2),
                      "cpu_bound_realtime_2_cores": round(2 / pf_cpu / fps, 3),
                      "loadavg_before": round(load, 2), **common})
            for stride, streams in variants:
                load = os.getloadavg()[0]
                wall, n, out = run_msmae(clips, w, tmp, frame_stride=stride, streams=streams)
                outs[(stride, streams)] = out
                video_per_s = frames / wall  # source frames covered per second (what real time means)
                best[(stride, streams)] = max(best.get((stride, streams), 0.0), video_per_s)
                cpu_cost[(stride, streams)] = LAST_CPU["s"] / frames
                row = {"name": "extract_msmae", "workers": w, "frame_stride": stride, "streams": streams,
                       "holistic_frames_per_s": round(n / wall, 2), "video_frames_per_s": round(video_per_s, 2),
                       "realtime_ratio": round(video_per_s / fps, 3), "wall_s": round(wall, 2),
                       "loadavg_before": round(load, 2), **common}
                cpu_per = LAST_CPU["s"] / frames  # CPU seconds per source frame, all processes
                row.update(cpu_ms_per_video_frame=round(cpu_per * 1e3, 2),
                           cpu_bound_realtime_2_cores=round(2 / cpu_per / fps, 3))
                if pf:
                    row["vs_pose_format_same_workers"] = round(video_per_s / pf, 3)
                    row["cpu_vs_pose_format"] = round(pf_cpu / cpu_per, 3)
                emit(row)
        names = [c.stem for c in clips]
        emit(body_hands_agreement(outs[(2, "all")], outs[(2, "body,hands")], names))
        qclips = pick_clips(args.quality_clips)
        extra = [c for c in qclips if c not in clips]
        if extra:  # stride 1 and stride 2 of the other quality clips (untimed)
            _, _, o1 = run_msmae(extra, max(worker_counts), tmp, tag="q1")
            _, _, o2 = run_msmae(extra, max(worker_counts), tmp, frame_stride=2, tag="q2")
            for c in extra:
                for src, dst in ((o1, outs[(1, "all")]), (o2, outs[(2, "all")])):
                    os.replace(src / f"{c.stem}.pose", dst / f"{c.stem}.pose")
        qnames = sorted({c.stem for c in clips} | {c.stem for c in qclips})
        emit(quality(outs[(1, "all")], outs[(2, "all")], qnames, 2))
    if args.clock_clips:
        emit(clock_comparison(pick_clips(args.clock_clips), max(worker_counts)))
    rate = max(best.values())
    hours = {}
    for key, label in (((1, "all"), "stride1_all"), ((2, "all"), "stride2_all"), ((2, "body,hands"), "stride2_body_hands")):
        if key in best:
            for src_fps in (24.0, 30.0):
                # source frames to cover / source frames per second (the cost per source frame is
                # assumed the same at 30 fps as on these 24 fps 720p clips)
                hours[f"{label}_machine_hours_at_{int(src_fps)}fps"] = round(
                    YOUTUBE_ASL_HOURS * src_fps / best[key], 1)
                hours[f"{label}_cpu_bound_2core_machine_hours_at_{int(src_fps)}fps"] = round(
                    YOUTUBE_ASL_HOURS * src_fps * cpu_cost[key] / 2, 1)
                hours[f"{label}_core_hours_at_{int(src_fps)}fps"] = round(YOUTUBE_ASL_HOURS * src_fps * cpu_cost[key], 1)
    emit({"name": "youtube_asl_estimate", "video_hours": YOUTUBE_ASL_HOURS, "cpu": cpu, "cores": os.cpu_count(),
          "best_video_frames_per_s": round(rate, 2), **hours,
          "note": "machine-hours on a machine like this one (2 cores, shared with other jobs while measured); "
                  "the cost per source frame measured on 24 fps 720p clips is assumed at 30 fps too; "
                  "spread over N machines with --shard auto: hours per machine = machine_hours / N"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
