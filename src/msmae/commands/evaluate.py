"""``msmae evaluate RUN --split test``."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="score a trained ISLR or SLT run on a split; writes metrics",
                       description="Score the best checkpoint of an ISLR or SLT run on one split of the data it "
                       "was trained with (its config stores absolute paths; --annotations/--poses point elsewhere). "
                       "ISLR: top-1, top-5, per-class top-1; SLT: BLEU-1, BLEU-4, ROUGE-L with "
                       "hypotheses.txt/references.txt.")
    p.add_argument("run", metavar="RUN", help="run directory of `msmae finetune` or `msmae probe`")
    p.add_argument("--split", default="test", help="split to score (default: test)")
    p.add_argument("--out", metavar="DIR", help="where to write metrics (default: RUN/eval_<split>/)")
    p.add_argument("--annotations", metavar="PATH", help="the dataset's annotation file or folder, if it moved")
    p.add_argument("--poses", metavar="DIR", help="the folder of pose files, if it moved")
    p.add_argument("--batch-size", type=int, default=None, help="evaluation batch size")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from msmae.commands._runs import task_module

    mod = task_module(args.run)
    return mod.run_evaluate(Path(args.run), args.split, args)
