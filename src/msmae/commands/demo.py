"""``msmae demo [--videos DIR]``: the main job end to end (what ``make demo`` runs)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "demo", help="the whole chain in minutes on a CPU: synthetic data by default, or your own videos",
        description="Without --videos: on SYNTHETIC data (a procedurally generated signer, no download), "
        "pre-trains a tiny MS-MAE, fine-tunes isolated sign recognition and trains the same classifier from "
        "scratch, prints their top-1/top-5, then finds sign boundaries in the attention of a held-out synthetic "
        "sentence and scores them against the true ones. With --videos DIR: extracts MediaPipe Holistic "
        "keypoints from every video in DIR (the `extract` extra), packs them, pre-trains a tiny MS-MAE on them "
        "and writes attention heatmaps, segments.json and an ELAN file per video (no labels needed). "
        "Everything goes into one folder (--out); a re-run reuses finished stages.")
    p.add_argument("--videos", metavar="DIR", help="a folder of your own videos (or a video, or a list file)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: demo-output, or demo-output-videos)")
    p.add_argument("--pretrain-steps", type=int, default=None,
                   help="pre-training steps (default: 600 synthetic, 300 on videos)")
    p.add_argument("--islr-epochs", type=int, default=40, help="ISLR epochs of each classifier (default 40)")
    p.add_argument("--workers", type=int, default=None, help="extraction workers with --videos (default: cores)")
    p.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2),
                   help="MediaPipe Holistic model complexity with --videos (default 1, the one in the wheel)")
    p.add_argument("--max-attention", type=int, default=None, metavar="N",
                   help="with --videos: attention outputs for the first N videos only (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fresh", action="store_true",
                   help="delete what an earlier demo wrote into the output folder first, instead of reusing it "
                   "(refused if the folder holds anything else)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from msmae.cli import CommandError
    from msmae.corpus import CorpusError
    from msmae.tasks import demo

    progress = not args.no_progress
    for name in ("pretrain_steps", "islr_epochs"):
        v = getattr(args, name)
        if v is not None and v < 1:
            raise CommandError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    if args.videos is None:
        out = Path(args.out or "demo-output")
        try:
            s = demo.synthetic_demo(out, pretrain_steps=args.pretrain_steps or 600, islr_epochs=args.islr_epochs,
                                    seed=args.seed, fresh=args.fresh, progress=progress)
        except (ValueError, CorpusError) as e:
            raise CommandError(str(e)) from None
        print(demo.format_synthetic(s))
        return 0
    src = Path(args.videos)
    if not src.exists():
        raise CommandError(f"{src}: no such file or folder")
    try:
        from msmae.extract import InputError, MissingModelError
    except ImportError as e:
        raise CommandError(f"--videos needs the `extract` extra (pip install 'msmae[extract]'): {e}") from None
    out = Path(args.out or "demo-output-videos")
    try:
        s = demo.videos_demo(src, out, pretrain_steps=args.pretrain_steps or 300, workers=args.workers,
                             model_complexity=args.model_complexity, max_attention=args.max_attention,
                             seed=args.seed, fresh=args.fresh, progress=progress)
    except (InputError, MissingModelError, ValueError, CorpusError) as e:
        raise CommandError(str(e)) from None
    print(demo.format_videos(s))
    return 1 if s["extract"]["failed"] else 0
