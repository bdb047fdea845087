"""Token masking for MS-MAE pre-training (paper 3.2 and 4.1): DiffMask and SameMask.

``visible`` True means the token is shown to the encoder; ``masked`` = token_valid & ~visible is what the
decoder reconstructs. Padding tokens (token_valid False) are neither.
"""

from __future__ import annotations

import torch
from torch import Tensor

MASK_MODES = ("diff", "same")


def make_visible(token_valid: Tensor, ratio: float, mode: str = "diff",
                 generator: torch.Generator | None = None) -> Tensor:
    """token_valid (B, P, Nt) bool -> visible (B, P, Nt) bool.

    Per sample and stream, ``round(ratio * n_valid)`` valid time steps are masked (Python rounding, half
    to even), where n_valid is that stream's count of valid tokens (the same for every stream when the
    validity comes from frames). ``diff`` (DiffMask) draws each stream's time steps independently;
    ``same`` (SameMask) masks the same time steps in every stream. At least one token per stream stays
    visible when the stream has any valid token. ``generator`` makes the draw reproducible.
    """
    if mode not in MASK_MODES:
        raise ValueError(f"mask mode must be one of {MASK_MODES}, got {mode!r}")
    if not 0.0 <= float(ratio) <= 1.0:
        raise ValueError(f"mask ratio must be in [0, 1], got {ratio}")
    if token_valid.ndim != 3:
        raise ValueError(f"token_valid must be (B, P, Nt), got shape {tuple(token_valid.shape)}")
    token_valid = token_valid.to(torch.bool)
    b, p, nt = token_valid.shape
    n_valid = token_valid.sum(dim=2)                                          # (B, P)
    n_mask = torch.round(n_valid.double() * float(ratio)).long()
    n_mask = torch.minimum(n_mask, (n_valid - 1).clamp_min(0))
    if ratio == 0.0 or nt == 0:
        return token_valid.clone()
    gen_device = generator.device if generator is not None else token_valid.device
    noise = torch.rand((b, 1 if mode == "same" else p, nt), generator=generator, device=gen_device)
    noise = noise.to(token_valid.device).expand(b, p, nt)
    # Invalid tokens sort last, so the n_mask lowest-noise valid time steps are masked.
    noise = noise.masked_fill(~token_valid, 2.0)
    rank = noise.argsort(dim=2).argsort(dim=2)                                # (B, P, Nt) rank of each step
    masked = (rank < n_mask[:, :, None]) & token_valid
    return token_valid & ~masked
