"""Run directories: which task made one, refusing to overwrite one by mistake, and the shared shape of
`msmae finetune` (config -> run directory -> one-line errors -> summary)."""

from __future__ import annotations

import importlib
from pathlib import Path

from msmae.tasks.common import absolute_data_paths  # noqa: F401 (its old home; now a library function)


def task_module(run_dir: str | Path):
    """The command module (msmae.commands.islr / .slt) of the task that made ``run_dir``."""
    from msmae.cli import CommandError
    from msmae.train.checkpoint import CheckpointError, read_checkpoint_config

    try:
        task = read_checkpoint_config(run_dir).get("task")
    except CheckpointError as e:
        raise CommandError(str(e)) from None
    if task not in ("islr", "slt"):
        raise CommandError(f"{run_dir}: a {task!r} run; evaluate/predict need an ISLR or SLT run "
                           f"(`msmae finetune islr|slt` or `msmae probe`)")
    return importlib.import_module(f"msmae.commands.{task}")


def refuse_existing_run(out: str | Path, resume: bool) -> None:
    """A new (not ``--resume``) training run must not overwrite any output of an earlier one."""
    from msmae.cli import CommandError
    from msmae.train.checkpoint import RunExistsError, check_new_run

    try:
        check_new_run(out, resume=resume)
    except RunExistsError as e:
        raise CommandError(str(e)) from None


def run_training_command(args, *, config_from_args, train, errors: tuple, summary_keys: tuple,
                         one_line=str) -> int:
    """The body of ``msmae finetune islr|slt`` and ``msmae probe``.

    ``config_from_args(args)`` builds the config, ``train(cfg, out, resume=, progress=)`` writes the run and
    returns its metrics; the ``errors`` it may raise become one-line ``CommandError`` messages (``one_line``
    words them). Prints the metrics named in ``summary_keys`` (those present) as one JSON line.
    """
    from msmae.utils import json_text

    from msmae.cli import CommandError

    try:
        cfg = config_from_args(args)
        refuse_existing_run(args.out, args.resume)
        metrics = train(cfg, Path(args.out), resume=args.resume, progress=not args.no_progress)
    except errors as e:
        raise CommandError(one_line(e)) from None
    if metrics:
        print(json_text({k: metrics[k] for k in summary_keys if k in metrics}))
        print(f"run written to {args.out}")
    return 0
