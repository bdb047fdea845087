"""The ``msmae`` command line.

Each sub-command lives in its own module under :mod:`msmae.commands` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the parsed
arguments and returning an exit status. Command modules import heavy libraries (torch,
mediapipe, transformers) inside their ``run`` functions so that ``msmae --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from msmae import __version__
from msmae.commands._help import finish as finish_help

# Order = order in ``msmae --help``.
COMMANDS: dict[str, str] = {
    "inspect": "msmae.commands.inspect",
    "extract": "msmae.commands.extract",
    "pack": "msmae.commands.pack",
    "pretrain": "msmae.commands.pretrain",
    "finetune": "msmae.commands.finetune",
    "probe": "msmae.commands.probe",
    "evaluate": "msmae.commands.evaluate",
    "predict": "msmae.commands.predict",
    "attention": "msmae.commands.attention",
    "view": "msmae.commands.view",
    "score": "msmae.commands.score",
    "demo": "msmae.commands.demo",
    "configs": "msmae.commands.configs",
}


class CommandError(Exception):
    """An expected failure (bad input, missing file): printed as one line, exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msmae",
        description="MS-MAE: multi-stream masked autoencoder for sign-language keypoints. "
        "video -> keypoints -> corpus -> pre-training -> ISLR / SLT -> attention analysis.",
        epilog="Progress goes to stderr: a bar on a terminal; in a log file or a pipe, plain lines at most one "
        "every 30 seconds (MSMAE_PROGRESS_INTERVAL=SECONDS changes that) and a last line when the work ends.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"msmae {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:  # a command not built into this install
            if e.name == module:
                continue
            raise
        mod.register(sub)
    finish_help(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `msmae inspect --json ... | head`: the reader left; Python's documented way out
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the flush at exit would raise again on the closed pipe
        return 1
    except CommandError as e:
        print(f"msmae {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"msmae {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a training run stopped by SIGTERM / SIGUSR1 after its checkpoint
        from msmae.train.preempt import PREEMPTED_EXIT, Preempted

        if not isinstance(e, Preempted):
            raise
        print(f"msmae {args.command}: {e}", file=sys.stderr)
        return PREEMPTED_EXIT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
