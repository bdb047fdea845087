"""``msmae finetune islr ...`` and ``msmae finetune slt ...``."""

from __future__ import annotations

import importlib

TASKS = {
    "islr": ("msmae.commands.islr", "isolated sign recognition: [CLS] + classifier on the encoder (paper 4.2)"),
    "slt": ("msmae.commands.slt", "sign language translation: encoder + mBART-50 with LoRA (paper 4.3)"),
}


def register(sub) -> None:
    p = sub.add_parser("finetune", help="fine-tune a pre-trained encoder for ISLR or SLT",
                       description="Fine-tune (or train from scratch with --init none) for a downstream task.")
    tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, (module, help_) in TASKS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        tp = tasks.add_parser(name, help=help_, description=help_)
        mod.add_finetune_arguments(tp)
        tp.set_defaults(func=mod.run_finetune)
