"""Run directories: which task made one, and refusing to overwrite one by mistake."""

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
    """A new (not ``--resume``) training run must not overwrite the checkpoints of an earlier one."""
    from msmae.cli import CommandError

    ckpts = Path(out) / "checkpoints"
    if not resume and ckpts.is_dir() and any(ckpts.iterdir()):
        raise CommandError(f"{out} already holds checkpoints: pass --resume to continue it, or choose a new --out")


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
