"""``msmae pack INPUT... --out CORPUS``."""

from __future__ import annotations

import os

from msmae.utils import json_text


def register(sub) -> None:
    p = sub.add_parser(
        "pack", help="pack pose files into a corpus for pre-training",
        description="Read pose sequences (.pose, GISLR .parquet, MediaPipe .npy, msmae .npz; folders are "
        "searched recursively; .txt/.lst list files give one path per line) and pack them, normalised "
        "(mid-shoulder centre, shoulder-width scale), into float16 shards + presence bits + one index "
        "that `msmae pretrain` reads through memory maps. Re-running adds only new or changed files; "
        "unreadable files are reported and skipped (exit status 1 if any).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="pose files, folders or list files")
    p.add_argument("--out", required=True, metavar="CORPUS", help="corpus directory (created or extended)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="reader processes (default: min(4, cores))")
    p.add_argument("--no-normalize", action="store_true",
                   help="store raw isotropic coordinates instead of shoulder-normalised ones")
    p.add_argument("--shard-frames", type=int, default=200_000, help="frames per shard file (default 200000)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from msmae.cli import CommandError
    from msmae.corpus import CorpusError, pack_corpus
    from msmae.poses.sequence import PoseDataError

    if args.workers < 0 or args.shard_frames < 1:
        raise CommandError("--workers must be >= 0 (0 = in this process) and --shard-frames >= 1")
    try:
        s = pack_corpus(args.inputs, args.out, workers=args.workers, normalize=not args.no_normalize,
                        shard_frames=args.shard_frames)
    except (CorpusError, PoseDataError, OSError) as e:  # a missing or unsupported input, an unwritable --out
        raise CommandError(str(e)) from None
    if args.json:
        print(json_text(s.to_dict()))
    else:
        print(f"{args.out}: {len(s.added)} added, {len(s.unchanged)} unchanged, {len(s.failed)} failed; "
              f"corpus now {s.total_videos} videos, {s.total_frames} frames")
        for f in s.failed:
            print(f"  failed: {f['path']}: {f['reason']}")
        if s.no_detection:
            print(f"  {len(s.no_detection)} file(s) without any detected keypoint, not packed: "
                  f"{', '.join(s.no_detection[:5])}{', ...' if len(s.no_detection) > 5 else ''}")
    return 1 if s.failed else 0
