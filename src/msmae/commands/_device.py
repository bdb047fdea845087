"""``--device``: the torch device a command runs on, checked before any work (one line when it cannot be used)."""

from __future__ import annotations


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are
    checked against this machine (:func:`msmae.train.distributed.check_device`). Anything else, or a device
    that is not here, is a one-line :class:`~msmae.cli.CommandError`."""
    import torch

    from msmae.cli import CommandError
    from msmae.train.distributed import check_device

    name = (name or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = check_device(name)
    except ValueError as e:
        hint = "; use --device cpu" if str(e).startswith("CUDA is not available") else ""
        raise CommandError(f"--device {name}: {e}{hint}") from None
    return device.type if device.type in ("cpu", "mps") else str(device)
