"""``msmae inspect FILE... [--json]``: frames, fps, duration, layout and presence of pose files.

With ``--json`` it prints one JSON object per line (JSON Lines), one per file, with the keys of
DESIGN.md: ``path``, ``frames``, ``fps``, ``duration_s``, ``layout``, ``present`` (stream ->
fraction of that stream's keypoints present over all frames); plus ``width``, ``height``,
``fps_assumed``, ``absent_points``, ``extract_stride`` (null where the file does not record it) and
``source_fps``. Without it, a table. An unreadable file gets a one-line
error on stderr, the other files are still reported, and the exit status is 1.

A run or checkpoint directory among the inputs gets its time scale instead: the frame stride its
encoder was pre-trained with, video frames per token and seconds per token (at ``--fps``, and at
the common frame rates); see :func:`msmae.train.timescale.checkpoint_time_scale` for the keys.
"""

from __future__ import annotations

import argparse
import logging
import sys

from msmae.utils import json_text

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect", help="frames, fps, layout and per-stream presence of pose files",
        description="Read pose files (.pose, GISLR .parquet, MediaPipe .npy, msmae .npz; folders and "
        ".txt/.lst lists expand) and report frames, fps, duration, the layout found and the fraction "
        "of present keypoints per canonical stream. For a run or checkpoint directory: the frame stride its "
        "encoder was pre-trained with and how many video frames and seconds one token spans.")
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="pose files, folders or list files; or run/checkpoint directories")
    p.add_argument("--json", action="store_true", help="one JSON object per file and line (JSON Lines)")
    p.add_argument("--fps", type=float,
                   help="frames per second; GISLR .parquet and .npy do not store it (default 30 there); "
                   "given, it overrides what a file says")
    p.add_argument("--width", type=int, help="source frame width in pixels (overrides the file's)")
    p.add_argument("--height", type=int, help="source frame height in pixels (overrides the file's)")
    p.set_defaults(func=run)


def summarize(seq, path: str) -> dict:
    """The JSON record of one sequence."""
    from msmae.poses.timing import seconds, source_fps_of, stride_recorded

    return {
        "path": path,
        "frames": seq.num_frames,
        "fps": round(float(seq.fps), 4),
        "duration_s": seconds(seq.num_frames, seq.fps),
        "layout": seq.meta.get("source_layout", "unknown"),
        "present": {k: round(v, 6) for k, v in seq.present_fraction().items()},
        "width": seq.width,
        "height": seq.height,
        "fps_assumed": bool(seq.meta.get("fps_assumed", False)),
        # the frame stride the file records it was extracted at (null: not recorded, its fps tells its time)
        "extract_stride": int(seq.meta["frame_stride"]) if stride_recorded(seq.meta) else None,
        "source_fps": round(source_fps_of(seq.fps, seq.meta), 4),
        "absent_points": seq.meta.get("absent_points", {}),
        # streams the file does not hold at all (a body,hands extraction's face): absent, not "0% detected"
        "absent_streams": [name for name, sl in seq.layout.slices().items()
                           if len(seq.meta.get("absent_points", {}).get(name, ())) >= sl.stop - sl.start],
    }


def _is_run(item: str) -> bool:
    from pathlib import Path

    p = Path(item)
    return p.is_dir() and ((p / "model.safetensors").is_file() or (p / "model" / "model.safetensors").is_file()
                           or (p / "checkpoints").is_dir())


def _run_line(r: dict) -> str:
    at = [f"{r['token_s']:.3f} s at {r['fps']:g} fps"] if r["fps"] else \
        [f"{s:.3f} s at {f} fps" for f, s in r["token_s_by_fps"].items()]
    stride = f"frame stride {r['frame_stride']}" + ("" if r["frame_stride_recorded"] else " (not recorded; assumed)")
    frames = f"{r['token_frames']} video frames"
    if r.get("source_fps"):  # keypoints at other rates are read at the encoder's time scale (model_step)
        frames += f" of {r['source_fps']:g} fps video ({r['token_frames'] / r['source_fps']:.3f} s)"
        return (f"{r['path']}: {r['task']} run ({r['streams']}); 1 token = cubelet {r['cubelet']} x {stride} = "
                f"{frames}; keypoints at other rates, read every nearest whole step: {', '.join(at)}")
    return (f"{r['path']}: {r['task']} run ({r['streams']}); 1 token = cubelet {r['cubelet']} x {stride} = "
            f"{frames} = {', '.join(at)}")


def _table(rows: list[dict]) -> str:
    streams = ["body", "left_hand", "right_hand", "face"]
    head = ["path", "frames", "fps", "duration_s", "layout"] + streams
    body = []
    for r in rows:
        fps = f"{r['fps']:g}" + ("*" if r["fps_assumed"] else "")
        body.append([r["path"], str(r["frames"]), fps, f"{r['duration_s']:.2f}", r["layout"]]
                    + ["absent" if s in r["absent_streams"] or s not in r["present"] else f"{r['present'][s]:.3f}"
                       for s in streams])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    lines = ["  ".join(c.ljust(w) if i == 0 or i == 4 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(row, widths))) for row in [head] + body]
    if any(r["fps_assumed"] for r in rows):
        lines.append("* fps not stored in the file: assumed (pass --fps)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from msmae.poses.readers import find_pose_files, read_sequence
    from msmae.poses.sequence import PoseDataError

    rows, failed = [], 0

    def fail(msg: str) -> None:
        nonlocal failed
        failed += 1
        print(f"msmae inspect: error: {msg}", file=sys.stderr)

    for item in args.files:
        if _is_run(item):
            from msmae.train.checkpoint import CheckpointError
            from msmae.train.timescale import checkpoint_time_scale

            try:
                info = checkpoint_time_scale(item, fps=args.fps)
            except CheckpointError as e:
                fail(str(e))
                continue
            print(json_text(info) if args.json else _run_line(info), flush=True)
            continue
        try:
            paths = find_pose_files([item])
        except (PoseDataError, OSError) as e:
            fail(str(e))
            continue
        if not paths:
            fail(f"{item}: no pose files in this folder or list")
        for path in paths:
            try:
                seq = read_sequence(path, fps=args.fps, width=args.width, height=args.height)
            except (PoseDataError, OSError) as e:
                fail(str(e))
                continue
            except Exception as e:  # a reader bug must still not hide the other files
                log.debug("unexpected error reading %s", path, exc_info=True)
                fail(f"{path}: unexpected {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                continue
            row = summarize(seq, str(path))
            if args.json:
                print(json_text(row), flush=True)
            rows.append(row)
    if rows and not args.json:
        print(_table(rows))
    return 1 if failed else 0
