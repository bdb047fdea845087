"""The multi-stream encoder (paper 3.1): stream embedding + pre-norm Transformer + final LayerNorm."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import Tensor, nn

from msmae.models.attention import Block, key_padding_mask
from msmae.models.config import ModelConfig
from msmae.models.embed import StreamEmbedding, token_valid_from_frames


@dataclass
class EncoderOutput:
    """What the encoder returns; N counts prefix tokens, then the kept stream tokens (stream order, then time)."""

    tokens: Tensor                 # (B, N, C) encoder outputs (prefix tokens first, if any)
    padding: Tensor                # (B, N) bool, True = padding (not a real token)
    stream_index: Tensor           # (B, N) long, stream id per token (-1 for prefix and padding tokens)
    time_index: Tensor             # (B, N) long, token time step (-1 for prefix and padding tokens)
    attentions: dict[int, Tensor] = field(default_factory=dict)  # layer -> (B, heads, N, N), requested only


def gather_tokens(x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pack the kept tokens of each sample to the front, in their original order.

    x (B, M, C), keep (B, M) bool -> packed (B, N, C) with N = max kept count, padding (B, N) bool,
    position (B, N) long (index into M; -1 at padding). Without dropped tokens, x is returned as is.
    """
    b, m, c = x.shape
    if bool(keep.all()):
        pos = torch.arange(m, device=x.device).expand(b, m)
        return x, torch.zeros(b, m, dtype=torch.bool, device=x.device), pos
    counts = keep.sum(dim=1)
    n = int(counts.max())
    # Stable sort of "dropped" flags puts kept tokens first, in order.
    pos = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :n]        # (B, N)
    flat = (pos + torch.arange(b, device=x.device)[:, None] * m).reshape(-1)
    packed = x.reshape(b * m, c).index_select(0, flat).view(b, n, c)               # one contiguous gather
    padding = torch.arange(n, device=x.device)[None, :] >= counts[:, None]
    return packed, padding, pos.masked_fill(padding, -1)


class MultiStreamEncoder(nn.Module):
    """Keypoints (B, T, K, 2) -> contextual tokens; only valid (and visible) tokens enter the Transformer."""

    def __init__(self, *, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.layout = config.layout
        self.embed = StreamEmbedding(layout=self.layout, dim=config.dim, cubelet=config.cubelet)
        self.blocks = nn.ModuleList([
            Block(dim=config.dim, heads=config.heads, mlp_ratio=config.mlp_ratio, dropout=config.dropout)
            for _ in range(config.depth)])
        self.norm = nn.LayerNorm(config.dim)
        self.apply(init_weights)

    @property
    def num_streams(self) -> int:
        return len(self.layout.streams)

    @property
    def dim(self) -> int:
        return self.config.dim

    def token_valid(self, frame_valid: Tensor) -> Tensor:
        """frame_valid (B, T) bool -> token_valid (B, P, Nt) bool, without embedding anything."""
        tv = token_valid_from_frames(frame_valid, self.config.cubelet)
        return tv[:, None, :].expand(tv.shape[0], self.num_streams, tv.shape[1]).contiguous()

    def tokenize(self, coords: Tensor, frame_valid: Tensor) -> tuple[Tensor, Tensor]:
        """coords (B, T, K, 2), frame_valid (B, T) -> tokens (B, P, Nt, C) (positions added), token_valid (B, P, Nt).

        T is padded up to a multiple of S with invalid frames; a token is valid if any of its frames is.
        """
        return self.embed(coords, frame_valid)

    def forward(self, coords: Tensor, frame_valid: Tensor, *, visible: Tensor | None = None,
                prefix: Tensor | None = None, return_attention: Iterable[int] = ()) -> EncoderOutput:
        """Encode keypoints.

        coords (B, T, K, 2) in the config's layout; frame_valid (B, T) bool (False = padding frame);
        visible (B, P, Nt) bool or None (= all valid tokens); prefix (B, n0, C) tokens prepended without
        positional encoding (e.g. a [CLS]); return_attention: layer indices (negative from the end).
        """
        tokens, token_valid = self.tokenize(coords, frame_valid)
        return self.forward_tokens(tokens, token_valid, visible=visible, prefix=prefix,
                                   return_attention=return_attention)

    def forward_tokens(self, tokens: Tensor, token_valid: Tensor, *, visible: Tensor | None = None,
                       prefix: Tensor | None = None, return_attention: Iterable[int] = ()) -> EncoderOutput:
        """The Transformer part of :meth:`forward` on already embedded tokens (B, P, Nt, C)."""
        b, p, nt, c = tokens.shape
        keep = token_valid
        if visible is not None:
            if visible.shape != token_valid.shape:
                raise ValueError(
                    f"visible must be (B, P, Nt) = {tuple(token_valid.shape)}, got {tuple(visible.shape)}")
            keep = token_valid & visible.to(torch.bool)
        x, padding, pos = gather_tokens(tokens.reshape(b, p * nt, c), keep.reshape(b, p * nt))
        stream_index = torch.where(pos >= 0, pos // nt, pos)
        time_index = torch.where(pos >= 0, pos % nt, pos)
        if prefix is not None:
            if prefix.ndim != 3 or prefix.shape[0] != b or prefix.shape[2] != c:
                raise ValueError(f"prefix must be (B, n0, C) = ({b}, n0, {c}), got {tuple(prefix.shape)}")
            n0 = prefix.shape[1]
            x = torch.cat([prefix.to(x.dtype), x], dim=1)
            padding = torch.cat([padding.new_zeros(b, n0), padding], dim=1)
            minus = stream_index.new_full((b, n0), -1)
            stream_index = torch.cat([minus, stream_index], dim=1)
            time_index = torch.cat([minus, time_index], dim=1)
        x, attentions = self.run_blocks(x, padding, return_attention)
        return EncoderOutput(tokens=x, padding=padding, stream_index=stream_index, time_index=time_index,
                             attentions=attentions)

    def run_blocks(self, x: Tensor, padding: Tensor,
                   return_attention: Iterable[int] = ()) -> tuple[Tensor, dict[int, Tensor]]:
        """x (B, N, C), padding (B, N) -> normed outputs (B, N, C), {layer: weights (B, heads, N, N)}."""
        depth = len(self.blocks)
        wanted: set[int] = set()
        for i in return_attention:
            if not -depth <= int(i) < depth:
                raise ValueError(f"return_attention: layer {i} out of range for an encoder of depth {depth}")
            wanted.add(int(i) % depth)
        attn_mask = key_padding_mask(padding)
        attentions: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks):
            x, w = block(x, attn_mask, need_weights=i in wanted)
            if w is not None:
                attentions[i] = w
        return self.norm(x), attentions

    def per_stream(self, out: EncoderOutput, nt: int) -> tuple[Tensor, Tensor]:
        """Put stream tokens back on their grid: -> tokens (B, P, Nt, C) (zeros where absent), valid (B, P, Nt).

        Prefix and padding tokens are left out; with ``visible=None`` and no prefix every valid token is there.
        """
        b, n, c = out.tokens.shape
        p = self.num_streams
        real = out.stream_index >= 0
        rows = torch.arange(b, device=real.device)[:, None] * (p * nt)
        flat = (out.stream_index * nt + out.time_index + rows)[real]
        grid = out.tokens.new_zeros(b * p * nt, c).index_copy(0, flat, out.tokens[real])
        valid = torch.zeros(b * p * nt, dtype=torch.bool, device=real.device)
        valid[flat] = True
        return grid.view(b, p, nt, c), valid.view(b, p, nt)


def init_weights(module: nn.Module) -> None:
    """MAE-style initialisation: Xavier-uniform Linear/Conv weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Conv1d)):
        nn.init.xavier_uniform_(module.weight.view(module.weight.shape[0], -1))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
