"""MS-MAE pre-training model (paper 3.2): mask tokens per stream, encode the visible ones, decode all,
reconstruct the masked cubelets' keypoints.

Shapes: B batch, T frames, K keypoints (layout order), P streams, Nt tokens per stream, S = cubelet.
Predictions, targets and weights are kept in frame layout (B, Nt, S, K, ...): ``x.reshape(B, Nt * S, K, ...)``
gives per-frame keypoints, and stream p's keypoints of token t are ``x[:, t, :, layout.stream_slice(p)]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from msmae.models.attention import Block, key_padding_mask
from msmae.models.config import ModelConfig
from msmae.models.embed import pad_frames, sinusoidal_encoding, stream_groups
from msmae.models.encoder import EncoderOutput, MultiStreamEncoder, gather_tokens, init_weights
from msmae.models.masking import make_visible


@dataclass
class MAEOutput:
    loss: Tensor          # () float32: squared error summed over counted coordinates / their count
    pred: Tensor          # (B, Nt, S, K, 2) reconstruction of every token, in frame layout
    target: Tensor        # (B, Nt, S, K, 2) float32 input keypoints, frames padded to Nt * S
    weight: Tensor        # (B, Nt, S, K) float32, 1 = keypoint counted in the loss (masked, present, valid)
    visible: Tensor       # (B, P, Nt) bool, token shown to the encoder
    masked: Tensor        # (B, P, Nt) bool, token reconstructed (valid and not visible)
    token_valid: Tensor   # (B, P, Nt) bool, False = padding token
    count: Tensor         # () float32: number of counted coordinates (2 per counted keypoint)


class MSMAE(nn.Module):
    """Asymmetric multi-stream masked autoencoder.

    The decoder projects encoder outputs to its width, puts them back at their places, puts the learnable
    ``mask_token`` at every masked place, adds its own positional encoding (the sinusoidal time encoding plus
    a learned per-stream embedding, so that mask tokens know which stream they stand for: the encoder's
    shared time encoding alone cannot tell a masked left-hand token from a masked right-hand one), runs a
    lighter Transformer over all valid tokens and maps each stream's tokens through ``heads[group]`` to
    S x K_p x 2 values. The two hands share their head, as they share their embedding.
    """

    def __init__(self, *, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.layout = config.layout
        self.encoder = MultiStreamEncoder(config=config)
        dd = config.decoder_dim
        self.decoder_embed = nn.Linear(config.dim, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_stream_embed = nn.Parameter(torch.zeros(len(self.layout.streams), dd))
        self.decoder_blocks = nn.ModuleList([
            Block(dim=dd, heads=config.decoder_heads, mlp_ratio=config.mlp_ratio, dropout=config.dropout)
            for _ in range(config.decoder_depth)])
        self.decoder_norm = nn.LayerNorm(dd)
        # Streams grouped by shared head (both hands through one matmul).
        self._head_groups = stream_groups(self.layout)
        self.heads = nn.ModuleDict({g: nn.Linear(dd, config.cubelet * self.layout.streams[m[0]].size * 2)
                                    for g, m in self._head_groups.items()})
        for m in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.heads):
            m.apply(init_weights)
        nn.init.normal_(self.mask_token, std=0.02)
        nn.init.normal_(self.decoder_stream_embed, std=0.02)
        # Each keypoint's stream index, to spread the per-stream token mask over keypoints.
        point_stream = torch.cat([torch.full((s.size,), p) for p, s in enumerate(self.layout.streams)])
        self.register_buffer("point_stream", point_stream, persistent=False)   # (K,) long

    # ------------------------------------------------------------------ the three stages
    def forward(self, coords: Tensor, present: Tensor, frame_valid: Tensor, *, mask_ratio: float = 0.5,
                mask_mode: str = "diff", generator: torch.Generator | None = None) -> MAEOutput:
        """coords (B, T, K, 2) (0 where not present), present (B, T, K) bool, frame_valid (B, T) bool."""
        self._check_inputs(coords, present, frame_valid)
        token_valid = self.encoder.token_valid(frame_valid)
        visible = make_visible(token_valid, mask_ratio, mask_mode, generator)
        enc = self.forward_encoder(coords, frame_valid, visible)
        pred = self.forward_decoder(enc, token_valid)
        masked = token_valid & ~visible
        loss, target, weight, count = self.forward_loss(coords, present, frame_valid, pred, masked)
        return MAEOutput(loss=loss, pred=pred, target=target, weight=weight, visible=visible, masked=masked,
                         token_valid=token_valid, count=count)

    def forward_encoder(self, coords: Tensor, frame_valid: Tensor, visible: Tensor) -> EncoderOutput:
        """Encode only the visible valid tokens -> EncoderOutput with (B, N_visible, C) tokens."""
        return self.encoder(coords, frame_valid, visible=visible)

    def forward_decoder(self, enc: EncoderOutput, token_valid: Tensor) -> Tensor:
        """Encoded visible tokens + mask tokens -> predictions (B, Nt, S, K, 2) in frame layout."""
        b, p, nt = token_valid.shape
        dd = self.config.decoder_dim
        x = self.decoder_embed(enc.tokens)                                         # (B, N, Cd)
        real = enc.stream_index >= 0
        rows = torch.arange(b, device=x.device)[:, None] * (p * nt)
        flat = (enc.stream_index * nt + enc.time_index + rows)[real]
        grid = self.mask_token.to(x.dtype).view(1, dd).expand(b * p * nt, dd).index_copy(0, flat, x[real])
        pos = sinusoidal_encoding(nt, dd, device=x.device)[None] + self.decoder_stream_embed[:, None]   # (P, Nt, Cd)
        grid = grid.view(b, p * nt, dd) + pos.reshape(1, p * nt, dd).to(grid.dtype)
        valid = token_valid.reshape(b, p * nt)
        y, padding, where = gather_tokens(grid, valid)                             # padding tokens dropped
        attn_mask = key_padding_mask(padding)
        for block in self.decoder_blocks:
            y, _ = block(y, attn_mask)
        y = self.decoder_norm(y)
        if not bool(valid.all()):  # put the decoded valid tokens back on the full grid
            keep = where >= 0
            idx = (where + torch.arange(b, device=y.device)[:, None] * (p * nt))[keep]
            y = y.new_zeros(b * p * nt, dd).index_copy(0, idx, y[keep]).view(b, p * nt, dd)
        y = y.view(b, p, nt, dd)
        s = self.config.cubelet
        parts: list[Tensor | None] = [None] * p
        for group, members in self._head_groups.items():
            out = self.heads[group](y[:, members[0]:members[-1] + 1])   # members are consecutive
            for j, i in enumerate(members):                     # (B, Nt, S * K_p * 2) -> (B, Nt, S, K_p, 2)
                parts[i] = out[:, j].view(b, nt, s, self.layout.streams[i].size, 2)
        return torch.cat(parts, dim=3)                          # (B, Nt, S, K, 2), streams in layout order

    def forward_loss(self, coords: Tensor, present: Tensor, frame_valid: Tensor, pred: Tensor,
                     masked: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Masked-token MSE over present keypoints of valid frames, in float32.

        pred (B, Nt, S, K, 2), masked (B, P, Nt) -> loss (), target (B, Nt, S, K, 2), weight (B, Nt, S, K),
        count () (coordinates counted). A token with nothing present adds nothing; with nothing counted the
        loss is 0 (still differentiable).
        """
        counted = present.to(torch.bool) & frame_valid.to(torch.bool)[:, :, None]   # (B, T, K)
        target = self.cubelets(coords.float())                                     # (B, Nt, S, K, 2)
        point_masked = masked[:, self.point_stream].transpose(1, 2)[:, :, None]     # (B, Nt, 1, K)
        weight = (self.cubelets(counted) & point_masked).float()                   # (B, Nt, S, K)
        sq = (pred.float() - target).pow(2).sum(dim=-1)                            # (B, Nt, S, K)
        count = weight.sum() * 2.0
        loss = (sq * weight).sum() / count.clamp_min(1.0)
        return loss, target, weight, count

    # ------------------------------------------------------------------ helpers
    def cubelets(self, x: Tensor) -> Tensor:
        """Per-frame values (B, T, K, ...) -> per-token blocks (B, Nt, S, K, ...) (frames padded with zeros)."""
        x = pad_frames(x, self.config.cubelet)
        return x.reshape(x.shape[0], -1, self.config.cubelet, *x.shape[2:])

    def stream_losses(self, out: MAEOutput) -> dict[str, float]:
        """Per-stream loss of a forward's output (for logging): stream name -> SSE / counted coordinates."""
        sq = (out.pred.detach().float() - out.target).pow(2).sum(dim=-1) * out.weight
        res = {}
        for stream in self.layout.streams:
            sl = self.layout.stream_slice(stream.name)
            n = float(out.weight[..., sl].sum()) * 2.0
            res[stream.name] = float(sq[..., sl].sum()) / n if n else 0.0
        return res

    def _check_inputs(self, coords: Tensor, present: Tensor, frame_valid: Tensor) -> None:
        k = self.layout.num_points
        if coords.ndim != 4 or coords.shape[2:] != (k, 2):
            raise ValueError(f"coords must be (B, T, {k}, 2) for layout {self.layout.spec!r}, "
                             f"got {tuple(coords.shape)}")
        if present.shape != coords.shape[:3]:
            raise ValueError(f"present must be (B, T, K) = {tuple(coords.shape[:3])}, got {tuple(present.shape)}")
        if frame_valid.shape != coords.shape[:2]:
            raise ValueError(
                f"frame_valid must be (B, T) = {tuple(coords.shape[:2])}, got {tuple(frame_valid.shape)}")
