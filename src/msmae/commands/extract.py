"""``msmae extract INPUT... --out DIR``: MediaPipe Holistic on videos and frame folders -> .pose files."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

DESCRIPTION = """\
Run MediaPipe Holistic (mediapipe 0.10.14, static_image_mode=False, frames read with OpenCV and
converted BGR->RGB, no resizing) over videos and frame folders and write one full holistic .pose
per clip (pose, face, both hands and pose world landmarks with x, y, z and confidence; fps and
width/height in the header), readable by pose-format and by msmae.

INPUT is a video file, a folder (searched recursively: every video is a clip, every folder that
directly holds PNG/JPG images is a frame-folder clip, as PHOENIX-2014T and CSL-Daily ship them),
or a list file (.txt/.lst/.list, one path per line, relative to the list's folder). Outputs
mirror the input tree: OUT/<path relative to the input folder>.pose.

--clips FILE extracts ranges of the videos found in the INPUT folders (default: FILE's folder):

- How2Sign re-aligned CSV (tab- or comma-separated): VIDEO_NAME, SENTENCE_NAME (= output name),
  START_REALIGNED, END_REALIGNED in seconds;
- WLASL_v0.3.json: video <video_id>.mp4 (else the raw YouTube download named by the url's id),
  frame_start/frame_end 1-based inclusive, frame_end -1 = to the end; output <video_id>.pose.
  If the folder holds start_kit's already-cut videos/, extract it without --clips;
- plain CSV path,start,end,name (header optional): start and end in SECONDS, empty = from the
  beginning / to the end; name optional (default <file stem>_<start>-<end>).

A clip holds the frames i with start <= i/fps < end. Rows whose video is missing are listed
under "missing" in the summary and do not fail the run.

Clip names are paths relative to OUT; a name that is absolute or holds '..' is refused (the run
stops before extracting anything), so nothing is ever written outside OUT.

Resume and overwrite: a clip whose OUT/<name>.pose exists and is complete (header and every frame
it declares) is skipped; a 0-byte or truncated one is extracted again. One made with another
--frame-stride or --streams is reported as failed and kept; --overwrite extracts it again. A
second run over the same inputs therefore does nothing.

Rate and streams: --frame-stride N runs Holistic on every N-th frame only (the frames between are
decoded but not converted) and writes a .pose at the source fps / N; the .pose records N and the
source fps after its frames (pose-format still opens it), and `msmae pack`, `pretrain`, `finetune
islr|slt` read such files at the same time scale as full-rate ones (pre-training's window of 600
frames, every 2nd, becomes 300 stored frames, every one: logged). --streams body,hands runs
Holistic's own graph without its face nodes (hands still located from the pose): same body and
hand landmarks as full Holistic, no face component in the .pose.

The run writes OUT/extract_summary.json (with --shard: extract_summary.shard-I-of-N.json) with
"done", "skipped", "failed" = [{path, reason}] and "missing"; a broken video is reported there
and the others go on. Exit status: 0 when nothing failed, 1 when a clip failed or the inputs
cannot be used.

Cluster arrays: --shard I/N (I from 0) takes the clips whose name hashes to I modulo N; all
shards may write into the same OUT folder. --shard auto takes I and N from the array job's
environment (SLURM_ARRAY_TASK_ID/COUNT/MIN/STEP, or Grid Engine's SGE_TASK_ID/FIRST/LAST/STEPSIZE).
--status (with --out, and the same INPUTs/--clips to know every clip) reports the whole
extraction across all shard summaries: done / failed / missing clips, shards without a summary;
exit status 0 only when nothing is failed or missing. docs/cluster.md has job scripts.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "extract", help="MediaPipe Holistic on videos / frame folders -> .pose files (parallel, resumable)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help="video files, folders, frame folders or list files (with --clips: the folders "
                        "holding the videos; default the clips file's folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder for the .pose files")
    p.add_argument("--clips", metavar="FILE",
                   help="How2Sign CSV, WLASL_v0.3.json or plain CSV path,start,end,name (seconds)")
    p.add_argument("--fps", type=float, default=25.0,
                   help="frame rate of frame folders (default 25, as PHOENIX-2014T and CSL-Daily); "
                        "videos use their own")
    p.add_argument("--workers", type=int, default=None,
                   help="worker processes, one MediaPipe graph each, parallel over clips "
                        "(default: the number of CPU cores; 0 = in this process)")
    p.add_argument("--shard", metavar="I/N",
                   help="only shard I of N (I = 0..N-1), for cluster array jobs; 'auto' = from the "
                        "SLURM or Grid Engine array variables")
    p.add_argument("--frame-stride", type=int, default=1, metavar="N",
                   help="run Holistic on every N-th frame only; the .pose fps is the source fps / N "
                        "(default 1; 2 = the rate pre-training reads)")
    p.add_argument("--streams", default="all", metavar="SET",
                   help="'all' (default: full Holistic) or 'body,hands' (Holistic without its face model)")
    p.add_argument("--status", action="store_true",
                   help="do not extract: report done / failed / missing clips of the extraction in --out "
                        "across all shard summaries (exit 1 while anything is failed or missing)")
    p.add_argument("--overwrite", action="store_true",
                   help="extract clips again even when their .pose exists (default: skip complete ones "
                        "made with the same --frame-stride and --streams)")
    p.add_argument("--model-complexity", type=int, choices=(0, 1, 2), default=1,
                   help="pose landmark model: 0 lite, 1 full (default, ships with mediapipe), 2 heavy "
                        "(the paper's choice). 0 and 2 need pose_landmark_lite/heavy.tflite installed "
                        "by hand; the error message says where")
    p.add_argument("--refine-face", action="store_true",
                   help="refined face mesh with irises (478 face points instead of 468)")
    p.add_argument("--no-seek", dest="seek", action="store_false",
                   help="reach a clip's start by decoding from the beginning of the video instead of "
                        "seeking (slower; for files whose seeking is unreliable)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from msmae.cli import CommandError
    from msmae.extract import InputError, MissingModelError, parse_shard, run_extraction
    from msmae.extract.runner import summary_path

    if args.status:
        return _status(args)
    try:
        if args.shard == "auto":
            from msmae.extract.cluster import shard_from_env

            shard, where = shard_from_env()
            log.info("--shard auto: shard %d/%d (%s)", shard[0], shard[1], where)
        else:
            shard = parse_shard(args.shard) if args.shard else None
        if args.workers is not None and args.workers < 0:
            raise InputError(f"--workers must be >= 0, got {args.workers}")
        summary = run_extraction(args.inputs, args.out, workers=args.workers, shard=shard,
                                 clips=args.clips, frames_fps=args.fps,
                                 model_complexity=args.model_complexity, refine_face=args.refine_face,
                                 overwrite=args.overwrite, seek=args.seek, progress=args.progress,
                                 frame_stride=args.frame_stride, streams=args.streams)
    except (InputError, MissingModelError, ValueError, OSError) as e:  # OSError: e.g. --out is a file
        raise CommandError(str(e)) from None
    failed = summary["failed"]
    for f in failed:
        log.error("failed: %s: %s", f["path"], f["reason"])
    missing = f", {len(summary['missing'])} without a video" if summary["missing"] else ""
    print(f"done {len(summary['done'])}, skipped {len(summary['skipped'])} (already extracted), "
          f"failed {len(failed)}{missing}; {summary['frames']} frames in {summary['seconds']:.1f} s "
          f"({summary['frames_per_s']:.1f} frames/s); summary: {summary_path(Path(args.out), shard)}")
    return 1 if failed else 0



def _status(args: argparse.Namespace) -> int:
    import json

    from msmae.cli import CommandError
    from msmae.extract import InputError
    from msmae.extract.cluster import extraction_status
    from msmae.extract.runner import collect_clips

    try:
        expected = [c.name for c in collect_clips(args.inputs, args.clips)[0]] if (args.inputs or args.clips) else None
        st = extraction_status(args.out, expected)
    except (InputError, ValueError, OSError) as e:
        raise CommandError(str(e)) from None
    for f in st["failed"]:
        print(f"failed: {f['name']}: {f['reason']}")
    for name in st["missing"][:20]:
        print(f"missing: {name}")
    if len(st["missing"]) > 20:
        print(f"missing: ... and {len(st['missing']) - 20} more")
    for sh in st["missing_shards"]:
        print(f"missing shard summary: {sh}")
    for sh in st["incomplete_shards"]:
        print(f"shard {sh} was interrupted or did not run every clip")
    state = "complete" if st["complete"] else "INCOMPLETE"
    print(f"{state}: done {len(st['done'])}, failed {len(st['failed'])}, missing {len(st['missing'])}"
          f"{'' if expected is not None else ' (of the clips the summaries name; give the INPUTs to check all)'}"
          f"; {st['summaries']} summaries, {len(st['missing_shards'])} shard(s) without one")
    log.debug("%s", json.dumps(st))
    return 0 if st["complete"] else 1
