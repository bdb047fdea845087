"""Mixed precision shared by every training loop: fp16 needs its loss scaled (``torch.amp.GradScaler``) so
that small gradients do not underflow to zero; bf16 and fp32 do not. The scaler's state (plain numbers) is
saved with each checkpoint, so that a resumed run scales exactly as an uninterrupted one."""

from __future__ import annotations

from typing import Iterable

import torch


def grad_scaler(amp_dtype: torch.dtype | None, device: torch.device) -> torch.amp.GradScaler:
    """A GradScaler that is enabled only for fp16 autocast (a pass-through otherwise)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def optimizer_step(opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler, params: Iterable[torch.Tensor],
                   grad_clip: float = 0.0) -> None:
    """Unscale (fp16), clip to ``grad_clip`` (0 = off), step (skipped by the scaler when a gradient is not
    finite), then update the scale. Call after ``scaler.scale(loss).backward()``."""
    if grad_clip > 0:
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(list(params), grad_clip)
    scaler.step(opt)
    scaler.update()


def scaler_state(scaler: torch.amp.GradScaler) -> dict:
    """The scaler's state as plain numbers (``{}`` when disabled): loadable with ``weights_only=True``."""
    return {k: (float(v) if isinstance(v, float) else int(v)) for k, v in scaler.state_dict().items()}


def load_scaler_state(scaler: torch.amp.GradScaler, state: dict | None) -> None:
    """Restore :func:`scaler_state` (a checkpoint written without one, or by an fp32/bf16 run, leaves the
    scaler as it is)."""
    if state and scaler.is_enabled():
        scaler.load_state_dict(dict(state))
