"""``msmae predict INPUT --model RUN``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("predict", help="top-k signs (ISLR run) or a translation (SLT run) for a video or pose file",
                       description="INPUT is a video (keypoints are extracted on the fly; needs the `extract` "
                       "extra) or any pose file msmae reads (.pose, .parquet, .npy, .npz).")
    p.add_argument("input", metavar="INPUT", help="video or pose file")
    p.add_argument("--model", required=True, metavar="RUN", help="run directory of an ISLR or SLT run")
    p.add_argument("--top", type=int, default=5, help="ISLR: how many glosses to print (default 5)")
    p.add_argument("--beams", type=int, default=None, help="SLT: beam size (default: the run's)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from msmae.cli import CommandError
    from msmae.commands._runs import task_module

    if not Path(args.input).exists():
        raise CommandError(f"{args.input}: no such file")
    mod = task_module(args.model)
    return mod.run_predict(Path(args.input), Path(args.model), args)
