"""Stream embedding (paper eqs. 1-3): per-frame Linear, Conv1D cubelets, shared positional encoding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msmae.layout import HAND_STREAMS, Layout


def stream_group(name: str) -> str:
    """The module group of a stream: the two hands share one group (one Linear, one Conv1D, one head)."""
    return "hand" if name in HAND_STREAMS else name


def stream_groups(layout: Layout) -> dict[str, list[int]]:
    """Module group -> indices of the layout's streams in it, in layout order (the hands are consecutive)."""
    groups: dict[str, list[int]] = {}
    for p, s in enumerate(layout.streams):
        groups.setdefault(stream_group(s.name), []).append(p)
    return groups


def sinusoidal_encoding(length: int, dim: int, *, device=None, dtype=torch.float32) -> Tensor:
    """The Transformer's sine/cosine positional encoding for positions 0..length-1 -> (length, dim)."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim, device=device, dtype=torch.float32)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe.to(dtype)


def pad_frames(x: Tensor, cubelet: int) -> Tensor:
    """Pad dim 1 (time) of x (B, T, ...) with zeros up to a multiple of ``cubelet``."""
    extra = (-x.shape[1]) % cubelet
    if not extra:
        return x
    return torch.cat([x, x.new_zeros((x.shape[0], extra) + tuple(x.shape[2:]))], dim=1)


def token_valid_from_frames(frame_valid: Tensor, cubelet: int) -> Tensor:
    """frame_valid (B, T) bool -> (B, Nt) bool: a token is valid if any of its S frames is valid."""
    fv = pad_frames(frame_valid, cubelet)
    return fv.view(fv.shape[0], -1, cubelet).any(dim=2)


class StreamEmbedding(nn.Module):
    """Keypoints (B, T, K, 2) -> cubelet tokens (B, P, Nt, C), Nt = ceil(T / S).

    Per frame and stream, the K_p*2 coordinates are flattened and projected by ``linear[group]``;
    ``conv[group]`` (kernel = stride = S) turns S frames into one token; the same sinusoidal positional
    encoding is added to every stream. Streams come out in layout order.
    """

    def __init__(self, *, layout: Layout, dim: int, cubelet: int) -> None:
        super().__init__()
        self.layout, self.dim, self.cubelet = layout, dim, cubelet
        groups = stream_groups(layout)
        self.linear = nn.ModuleDict({g: nn.Linear(layout.streams[m[0]].size * 2, dim) for g, m in groups.items()})
        self.conv = nn.ModuleDict({g: nn.Conv1d(dim, dim, kernel_size=cubelet, stride=cubelet) for g in groups})
        # Streams grouped by shared modules, so that both hands go through one matmul.
        self._groups = {g: [(p, layout.stream_slice(layout.streams[p].name)) for p in m] for g, m in groups.items()}

    def _cubelets(self, group: str, x: Tensor) -> Tensor:
        # x: (B, G, T, C) with T a multiple of S -> (B, G, Nt, C). Conv1D with kernel = stride = S is a
        # Linear over each block of S frames: one matmul on a contiguous view instead of a conv call.
        conv = self.conv[group]
        b, g, t, c = x.shape
        w = conv.weight.permute(0, 2, 1).reshape(c, self.cubelet * c)  # [o, s*C + i] = W[o, i, s]
        return F.linear(x.reshape(b, g, t // self.cubelet, self.cubelet * c), w, conv.bias)

    def forward(self, coords: Tensor, frame_valid: Tensor) -> tuple[Tensor, Tensor]:
        """coords (B, T, K, 2), frame_valid (B, T) bool -> tokens (B, P, Nt, C), token_valid (B, P, Nt)."""
        b, t, k, d = coords.shape
        if k != self.layout.num_points or d != 2:
            raise ValueError(
                f"coords must be (B, T, {self.layout.num_points}, 2) for layout {self.layout.spec!r}, "
                f"got {tuple(coords.shape)}")
        if frame_valid.shape != (b, t):
            raise ValueError(f"frame_valid must be (B, T) = {(b, t)}, got {tuple(frame_valid.shape)}")
        # Padding frames carry nothing, whatever the caller left in them.
        coords = pad_frames(coords * frame_valid[:, :, None, None].to(coords.dtype), self.cubelet)
        nt = coords.shape[1] // self.cubelet
        out: list[Tensor | None] = [None] * len(self.layout.streams)
        for group, members in self._groups.items():
            x = torch.stack([coords[:, :, sl].flatten(2) for _, sl in members], dim=1)  # (B, G, T, K_p*2)
            y = self._cubelets(group, self.linear[group](x))                             # (B, G, Nt, C)
            for j, (p, _) in enumerate(members):
                out[p] = y[:, j]
        tokens = torch.stack(out, dim=1)  # (B, P, Nt, C)
        tokens = tokens + sinusoidal_encoding(nt, self.dim, device=tokens.device, dtype=tokens.dtype)
        token_valid = token_valid_from_frames(frame_valid, self.cubelet)
        return tokens, token_valid[:, None, :].expand(b, len(self.layout.streams), nt).contiguous()
