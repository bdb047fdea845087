"""``msmae probe``: linear probe of a frozen encoder for ISLR (paper 4.2.2)."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "probe", help="linear probe: frozen encoder, average pooling, one Linear layer (ISLR)",
        description="Evaluate a pre-trained encoder without fine-tuning it (paper 4.2.2): the encoder is frozen, "
        "its contextual embeddings are averaged over all valid tokens and one Linear layer is trained. Same data "
        "options, configs and run directory as `msmae finetune islr` (--config wlasl etc.: `msmae configs`); the learning rate "
        "defaults to 1e-3 (the paper does not give the probe's). Evaluate and predict with `msmae evaluate RUN` "
        "and `msmae predict INPUT --model RUN`.")
    from msmae.tasks.islr import add_finetune_arguments

    add_finetune_arguments(p, probe=True)
    p.set_defaults(func=run)


def run(args) -> int:
    from msmae.tasks.islr import run_finetune

    return run_finetune(args)
