"""``--device``: the torch device a command runs on, checked before any work (one line when it cannot be used)."""

from __future__ import annotations


def resolve_device(name: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is usable, else ``cpu``; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` are
    checked against this machine. Anything else, or a device that is not here, is a one-line
    :class:`~msmae.cli.CommandError`."""
    import torch

    from msmae.cli import CommandError

    name = (name or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise CommandError(f"--device {name}: not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cpu":
        return "cpu"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CommandError(f"--device {name}: CUDA is not available on this machine (torch {torch.__version__}"
                               f"{', built without CUDA' if torch.version.cuda is None else ''}); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise CommandError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s), "
                               f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return str(device)
    if device.type == "mps" and torch.backends.mps.is_available():
        return "mps"
    raise CommandError(f"--device {name}: not available on this machine; use auto, cpu, cuda or cuda:N")
