"""Run directories: which task made one, refusing to overwrite one by mistake, and the shared shape of
`msmae finetune` (config -> run directory -> one-line errors -> summary)."""

from __future__ import annotations

import importlib
from pathlib import Path


def task_module(run_dir: str | Path):
    """The task module (msmae.tasks.islr / .slt) that made ``run_dir``."""
    from msmae.cli import CommandError
    from msmae.train.checkpoint import CheckpointError, read_checkpoint_config

    try:
        task = read_checkpoint_config(run_dir).get("task")
    except CheckpointError as e:
        raise CommandError(str(e)) from None
    if task not in ("islr", "slt"):
        raise CommandError(f"{run_dir}: a {task!r} run; evaluate/predict need an ISLR or SLT run "
                           f"(`msmae finetune islr|slt` or `msmae probe`)")
    return importlib.import_module(f"msmae.tasks.{task}")


def refuse_existing_run(out: str | Path, resume: bool) -> None:
    """A new (not ``--resume``) training run must not overwrite any output of an earlier one."""
    from msmae.cli import CommandError
    from msmae.train.checkpoint import RunExistsError, check_new_run

    try:
        check_new_run(out, resume=resume)
    except RunExistsError as e:
        raise CommandError(str(e)) from None


def absolute_data_paths(cfg) -> None:
    """Make ``cfg.data.annotations`` / ``cfg.data.poses`` (and an SLT run's ``translator.mbart``) absolute, so
    that the config saved with a run still finds its data from another working directory. Paths that do not
    exist are left as given: the error that follows names what the user wrote (and a hub name stays
    recognisable as one)."""
    import os

    for section, name in (("data", "annotations"), ("data", "poses"), ("translator", "mbart")):
        sec = getattr(cfg, section, None)
        value = getattr(sec, name, None) if sec is not None else None
        if value and os.path.exists(os.path.expanduser(value)):
            setattr(sec, name, os.path.abspath(os.path.expanduser(value)))


def override_data(cfg, args) -> None:
    """``msmae evaluate --annotations/--poses``: score a run on data that moved or on another copy."""
    for name in ("annotations", "poses"):
        if getattr(args, name, None):
            setattr(cfg.data, name, getattr(args, name))
    absolute_data_paths(cfg)


def run_training_command(args, *, config_from_args, train, errors: tuple, summary_keys: tuple,
                         one_line=str) -> int:
    """The body of ``msmae finetune islr|slt`` and ``msmae probe``.

    ``config_from_args(args)`` builds the config, ``train(cfg, out, resume=, progress=)`` writes the run and
    returns its metrics; the ``errors`` it may raise become one-line ``CommandError`` messages (``one_line``
    words them). Prints the metrics named in ``summary_keys`` (those present) as one JSON line.
    """
    import json

    from msmae.cli import CommandError

    try:
        cfg = config_from_args(args)
        refuse_existing_run(args.out, args.resume)
        metrics = train(cfg, Path(args.out), resume=args.resume, progress=not args.no_progress)
    except errors as e:
        raise CommandError(one_line(e)) from None
    if metrics:
        print(json.dumps({k: metrics[k] for k in summary_keys if k in metrics}, ensure_ascii=False))
        print(f"run written to {args.out}")
    return 0
