"""ISLR heads on the multi-stream encoder (paper 4.2 and 4.2.2).

- fine-tuning (``pooling="cls"``): a learnable [CLS] token is prepended to the stream tokens through
  the encoder's ``prefix`` argument (no positional encoding, it attends to every valid token); a
  Linear classifier reads its contextual embedding. Everything trains.
- linear probe (``pooling="mean"``, ``freeze_encoder=True``): the encoder is frozen (no gradients,
  always in eval mode), its contextual embeddings are averaged over all valid tokens, one Linear
  layer classifies. With ``feature_norm`` the pooled features are first standardised by a BatchNorm
  without affine parameters, as MAE's linear probe does: the probe stays linear (the normalisation
  folds into the Linear at evaluation) but trains far better on features of very different scales.

State dict keys: ``encoder.*`` (so :func:`msmae.train.checkpoint.load_encoder` reads any ISLR run),
``cls_token`` (CLS pooling only), ``norm.*`` (feature_norm only: running mean and variance), ``head.*``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from msmae.models.encoder import MultiStreamEncoder

POOLINGS = ("cls", "mean")


class ISLRClassifier(nn.Module):
    """Keypoints (B, T, K, 2) -> class logits (B, num_classes)."""

    def __init__(self, *, encoder: MultiStreamEncoder, num_classes: int, pooling: str = "cls",
                 freeze_encoder: bool = False, dropout: float = 0.0, feature_norm: bool = False) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if num_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {num_classes}")
        self.encoder, self.pooling, self.freeze_encoder = encoder, pooling, freeze_encoder
        dim = encoder.dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if pooling == "cls" else None
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=0.02)
        self.norm = nn.BatchNorm1d(dim, affine=False) if feature_norm else None
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
            self.encoder.eval()

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def train(self, mode: bool = True) -> "ISLRClassifier":
        super().train(mode)
        if self.freeze_encoder:
            self.encoder.eval()  # a frozen encoder never changes behaviour (dropout off)
        return self

    def features(self, coords: Tensor, frame_valid: Tensor) -> Tensor:
        """coords (B, T, K, 2), frame_valid (B, T) bool -> pooled features (B, C)."""
        b = coords.shape[0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            if self.pooling == "cls":
                out = self.encoder(coords, frame_valid, prefix=self.cls_token.expand(b, -1, -1))
                return out.tokens[:, 0]                                           # (B, C)
            out = self.encoder(coords, frame_valid)
            keep = (~out.padding).unsqueeze(-1).to(out.tokens.dtype)              # (B, N, 1)
            return (out.tokens * keep).sum(1) / keep.sum(1).clamp(min=1.0)        # (B, C)

    def forward(self, coords: Tensor, frame_valid: Tensor | None = None) -> Tensor:
        """coords (B, T, K, 2), frame_valid (B, T) bool or None (= all frames) -> logits (B, num_classes)."""
        if frame_valid is None:
            frame_valid = torch.ones(coords.shape[:2], dtype=torch.bool, device=coords.device)
        f = self.features(coords, frame_valid)
        if self.norm is not None:
            f = f.float()
            if self.training and f.shape[0] == 1:  # batch statistics of one sample are undefined: use the running ones
                f = nn.functional.batch_norm(f, self.norm.running_mean, self.norm.running_var, training=False,
                                             eps=self.norm.eps)
            else:
                f = self.norm(f)
        return self.head(self.drop(f))

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
