"""``msmae pretrain --data CORPUS --out RUN``."""

from __future__ import annotations

import json

from msmae.utils import json_text


def add_config_arguments(p, task: str) -> None:
    """``--config YAML`` and repeated ``--set key=value`` (shared by the training commands); the example of
    ``--set`` is a key of ``task``'s config."""
    from msmae.commands._help import SET_EXAMPLES

    p.add_argument("--config", metavar="NAME|YAML",
                   help="a shipped config by name (e.g. pretrain/paper, wlasl, slt/p14t; `msmae configs` lists "
                   "them) or your own YAML file of overrides (a file that exists wins over a name)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config value by its dotted path, e.g. --set model.size=tiny "
                   f"--set {SET_EXAMPLES[task]} (repeatable; applied after --config)")


def register(sub) -> None:
    p = sub.add_parser(
        "pretrain", help="MS-MAE self-supervised pre-training on a packed corpus",
        description="Masked multi-stream reconstruction (paper 4.1). Defaults are the paper's: 600-frame windows, "
        "every 2nd frame, cubelets of 4 frames, 8x8 encoder / 4x8 decoder of width 512, mask ratio 0.5 DiffMask, "
        "AdamW (0.9, 0.95) lr 8e-4, 2K warm-up + cosine, 120K steps. Multi-GPU / multi-node: launch with "
        "`torchrun --nproc_per_node N [--nnodes M ...] -m msmae pretrain ...` (DDP; NCCL on GPUs, gloo on CPU). "
        "Writes RUN/config.yaml, RUN/checkpoints/, RUN/model/, RUN/tb/ (TensorBoard), RUN/log.csv, RUN/loss.png, "
        "RUN/metrics.json, and RUN/batches.jsonl with --set train.record_batches=true (each rank's videos and window "
        "starts at every step). Each rank reads its own random part of the videos in its own order "
        "(docs/data-order.md).")
    p.add_argument("--data", required=True, metavar="CORPUS", help="corpus directory made by `msmae pack`")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory")
    add_config_arguments(p, "pretrain")
    p.add_argument("--resume", action="store_true",
                   help="continue from RUN's latest checkpoint (same data order and losses as an uninterrupted run); "
                   "SIGTERM or SIGUSR1 stop a run after the step in flight with a checkpoint and exit status 75")
    p.add_argument("--init", metavar="CHECKPOINT",
                   help="continual pre-training: start from the encoder of this checkpoint or run directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from msmae.cli import CommandError
    from msmae.commands._runs import refuse_existing_run
    from msmae.config import ConfigError, load_config
    from msmae.corpus import CorpusError
    from msmae.tasks.pretrain import PretrainConfig, pretrain
    from msmae.train.checkpoint import CheckpointError

    try:
        cfg = load_config(PretrainConfig, args.config, args.overrides)
        if args.init:
            cfg.init = args.init
        out = Path(args.out)
        refuse_existing_run(out, args.resume)
        metrics = pretrain(cfg, args.data, out, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, CorpusError, CheckpointError, ValueError, FloatingPointError) as e:
        raise CommandError(str(e)) from None
    if metrics:
        print(json_text({k: metrics[k] for k in ("steps", "final_loss", "eval_loss", "mean_baseline_loss",
                                                   "samples_per_s")}))
        print(f"run written to {args.out}")
    return 0
