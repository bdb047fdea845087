"""The ISLR side of ``msmae finetune islr``, ``msmae probe``, ``msmae evaluate`` and ``msmae predict``:
arguments -> :class:`msmae.tasks.islr.IslrConfig`, calls into :mod:`msmae.tasks.islr`, printed results."""

from __future__ import annotations

from pathlib import Path

from msmae.utils import json_text, plural


def add_finetune_arguments(p, *, probe: bool = False) -> None:
    """Arguments of ``msmae finetune islr`` (and of ``msmae probe`` with ``probe=True``)."""
    from msmae.commands._help import ISLR_DATASETS, dataset_help
    from msmae.commands.pretrain import add_config_arguments
    from msmae.data.islr import DATASETS

    p.add_argument("--out", required=True, metavar="RUN", help="run directory")
    p.add_argument("--init", required=True, metavar="CHECKPOINT",
                   help="encoder to start from: a pre-training run or checkpoint directory, or `none` "
                   "(random initialisation" + ("; a random-feature baseline)" if probe else ", i.e. from scratch)"))
    p.add_argument("--dataset", choices=DATASETS, help=dataset_help(ISLR_DATASETS))
    p.add_argument("--annotations", metavar="PATH", help="annotation file or folder (sets data.annotations)")
    p.add_argument("--poses", metavar="DIR", help="folder of pose files, one per video (sets data.poses)")
    add_config_arguments(p, "islr")
    p.add_argument("--resume", action="store_true",
                   help="continue RUN from its last complete checkpoint, exactly (also a run stopped by SIGTERM or "
                   "SIGUSR1, which ends with exit status 75 after a checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(islr_mode="probe" if probe else "finetune")


def config_from_args(args):
    from msmae.config import load_config
    from msmae.tasks.common import absolute_data_paths
    from msmae.tasks.islr import IslrConfig, probe_base

    probe = getattr(args, "islr_mode", "finetune") == "probe"
    overrides = list(args.overrides)
    for flag, key in (("dataset", "data.dataset"), ("annotations", "data.annotations"), ("poses", "data.poses")):
        if getattr(args, flag, None):
            overrides.append(f"{key}={getattr(args, flag)}")
    cfg = load_config(IslrConfig, args.config, overrides, base=probe_base() if probe else None)
    cfg.mode = "probe" if probe else "finetune"
    cfg.init = args.init
    absolute_data_paths(cfg)
    return cfg


def run_finetune(args) -> int:
    """``msmae finetune islr`` and ``msmae probe``."""
    from msmae.commands._runs import run_training_command
    from msmae.config import ConfigError
    from msmae.data.islr import ISLRDataError
    from msmae.poses.sequence import PoseDataError
    from msmae.tasks.islr import finetune
    from msmae.train.checkpoint import CheckpointError

    return run_training_command(
        args, config_from_args=config_from_args, train=finetune,
        errors=(ConfigError, ISLRDataError, CheckpointError, PoseDataError, ValueError, FloatingPointError),
        summary_keys=("split", "top1", "top5", "per_class_top1"))


def run_evaluate(run_dir: Path, split: str, args) -> int:
    """``msmae evaluate RUN --split S``: score the run's best model on a split of its dataset."""
    from msmae.cli import CommandError
    from msmae.config import ConfigError
    from msmae.data.islr import ISLRDataError
    from msmae.tasks.islr import evaluate_run
    from msmae.train.checkpoint import CheckpointError

    try:
        metrics, out_dir = evaluate_run(run_dir, split, out=args.out, annotations=getattr(args, "annotations", None),
                                        poses=getattr(args, "poses", None), batch_size=args.batch_size,
                                        progress=not args.json)
    except (ConfigError, ISLRDataError, CheckpointError, ValueError, KeyError) as e:
        raise CommandError(str(e)) from None
    if args.json:
        print(json_text(metrics))
    else:
        m = metrics
        print(f"{run_dir} on {m['split']} ({m['num_examples']} clips, {m['num_classes']} classes): top-1 "
              f"{m['top1']:.4f}  top-5 {m['top5']:.4f}  per-class top-1 {m['per_class_top1']:.4f}")
        for c in m["confusions"][:5]:
            print(f"  confused: {c['true']} -> {c['predicted']} ({c['count']}x)")
        print(f"written to {out_dir}")
    return 0


def read_input(input_path: Path):
    """The PoseSequence of ``msmae predict INPUT`` (a pose file, or a video read with MediaPipe), or a
    one-line :class:`~msmae.cli.CommandError`."""
    from msmae.cli import CommandError
    from msmae.poses.sequence import PoseDataError
    from msmae.tasks.common import read_input_sequence

    try:
        return read_input_sequence(input_path)
    except ImportError as e:
        raise CommandError(f"{input_path}: extracting keypoints from a video needs MediaPipe "
                           f"(pip install 'msmae[extract]'): {e}") from None
    except PoseDataError as e:  # its message names the file
        raise CommandError(str(e)) from None
    except (OSError, RuntimeError, ValueError) as e:  # MissingModelError, FrameReadError are RuntimeErrors
        raise CommandError(f"{input_path}: {e}") from None


def run_predict(input_path: Path, run_dir: Path, args) -> int:
    """``msmae predict INPUT --model RUN``: top-k glosses with probabilities."""
    from msmae.cli import CommandError
    from msmae.poses.sequence import PoseDataError
    from msmae.tasks.islr import model_from_run, predict_top
    from msmae.train.checkpoint import CheckpointError

    try:
        model, meta = model_from_run(run_dir)
    except (CheckpointError, KeyError) as e:
        raise CommandError(str(e)) from None
    seq = read_input(input_path)
    try:
        preds = predict_top(model, meta, seq, args.top)
    except PoseDataError as e:
        raise CommandError(str(e)) from None
    if args.json:
        print(json_text({"input": str(input_path), "model": str(run_dir), "frames": seq.num_frames,
                          "predictions": preds}))
    else:
        print(f"{input_path} ({plural(seq.num_frames, 'frame')}): top {len(preds)} of "
              f"{plural(len(meta['classes']), 'sign')}")
        width = max(len(p["label"]) for p in preds)
        for p in preds:
            print(f"{p['rank']:>3}. {p['label']:<{width}}  {p['probability']:.4f}")
    return 0
