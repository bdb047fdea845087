"""Pre-norm Transformer block whose attention can return its weights (fused SDPA otherwise)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head self-attention.

    ``attn_mask`` is (B, 1, 1, N) or (B, 1, N, N) bool, True = may attend (key-padding mask). With
    ``need_weights`` the plain path computes softmax(QK^T / sqrt(d)) explicitly and returns the weights
    (B, heads, N, N) in float32; otherwise F.scaled_dot_product_attention runs and None is returned.

    One exception, for speed: when gradients flow through CPU tensors, the plain path runs (without
    keeping weights) because PyTorch's CPU flash-attention backward is several times slower than autograd
    through two batched matmuls and a softmax at these sequence lengths (see benchmarks/pretrain_throughput.py).
    That path goes through the batch a few samples at a time, so that each chunk's score matrix
    (about ``SCORE_TILE`` elements) stays in cache between its matmuls and softmax, forward and backward.
    """

    SCORE_TILE = 1 << 21

    def __init__(self, *, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        assert dim % heads == 0, f"dim {dim} is not divisible by heads {heads}"
        self.heads, self.head_dim, self.dropout = heads, dim // heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        b, n, c = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.heads, self.head_dim)
        p = self.dropout if self.training else 0.0
        if x.requires_grad and x.device.type == "cpu" and not need_weights:
            return self.proj(self._chunked(qkv, attn_mask, p).view(b, n, c)), None
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                                    # (B, h, N, d) each
        if not need_weights:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
            return self.proj(out.transpose(1, 2).reshape(b, n, c)), None
        probs = self._scores(q, k, attn_mask).float().softmax(dim=-1)          # (B, h, N, N)
        out = F.dropout(probs, p, self.training).to(v.dtype) @ v
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), probs

    def _chunked(self, qkv: Tensor, attn_mask: Tensor | None, p: float) -> Tensor:
        """qkv (B, N, 3, h, d) -> attention outputs (B, N, h, d), a few samples at a time.

        ``split`` (not slicing) and ``unbind`` so that autograd joins the chunks' gradients with one stack
        per chunk and one cat, straight into the layout of the qkv projection's output.
        """
        b, n = qkv.shape[:2]
        step = max(1, self.SCORE_TILE // (self.heads * n * n))
        masks = attn_mask.split(step) if attn_mask is not None else [None] * -(-b // step)
        outs = []
        for part, mask in zip(qkv.split(step), masks):
            q, k, v = (t.transpose(1, 2) for t in part.unbind(2))              # (b_i, h, N, d)
            probs = F.dropout(self._scores(q, k, mask).softmax(dim=-1), p, self.training)
            outs.append((probs @ v).transpose(1, 2))                            # (b_i, N, h, d)
        return torch.cat(outs)

    def _scores(self, q: Tensor, k: Tensor, attn_mask: Tensor | None) -> Tensor:
        scores = (q * self.head_dim ** -0.5) @ k.transpose(-2, -1)              # (B, h, N, N)
        return scores if attn_mask is None else scores.masked_fill(~attn_mask, float("-inf"))


class Block(nn.Module):
    """x + Attn(LN(x)), then x + MLP(LN(x)); MLP = Linear(C, rC) -> GELU -> Linear(rC, C)."""

    def __init__(self, *, dim: int, heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(round(dim * mlp_ratio))
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim=dim, heads=heads, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, N, C) -> (B, N, C), weights (B, heads, N, N) or None."""
        a, weights = self.attn(self.norm1(x), attn_mask, need_weights)
        x = x + self.drop(a)
        x = x + self.drop(self.mlp(self.norm2(x)))
        return x, weights


def key_padding_mask(padding: Tensor) -> Tensor | None:
    """padding (B, N) bool, True = not a real token -> attn_mask (B, 1, 1, N), True = attend; None if no padding.

    A sample made only of padding keeps its first key so that softmax stays finite (its outputs are padding).
    """
    if not bool(padding.any()):
        return None
    attend = ~padding
    empty = ~attend.any(dim=1)
    if bool(empty.any()):
        attend = attend.clone()
        attend[empty, 0] = True
    return attend[:, None, None, :]
