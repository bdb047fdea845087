"""The encoder's attention as a token-by-token matrix, exactly as in the paper's appendix F.

For one pose sequence, layer l's attention weights A_i (N x N, one per head i) are averaged over heads;
the intra-stream blocks A[I_p, I_p] of every stream p (body, left hand, right hand, and face when the
model has it) are taken and averaged over streams; the result is symmetrised, (A + A^T) / 2. Token t of
every stream stands for the same S frames, so the matrix is Nt x Nt with Nt = ceil(T / S).

Long inputs: the model was pre-trained on fixed windows (300 frames), so a long sequence is cut into
overlapping chunks of that size whose start is a multiple of S (their tokens sit on the global token
grid). Each chunk's per-stream matrices are placed onto the global matrix and averaged where chunks
overlap, weighting token pair (i, j) of chunk c by w_c(i) * w_c(j) with a triangular taper w_c that is
largest in the chunk's middle and falls to nearly zero at its ends. Every chunk's contribution therefore
fades in and out smoothly, so chunk borders leave no seam; a sequence that fits in one chunk gives exactly
the direct matrix. Token pairs that never share a chunk (further apart than a chunk) are NaN.

Shapes: T frames, K keypoints, P streams, N tokens in the encoder (P * Nt), Nt tokens per stream, H heads.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from msmae.progress import progress_bar

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------ matrix operations
def head_average(weights: np.ndarray) -> np.ndarray:
    """(H, N, N) attention of one sample -> (N, N) mean over heads (A_avg of appendix F)."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.ndim != 3 or weights.shape[1] != weights.shape[2]:
        raise ValueError(f"weights must be (heads, N, N), got {weights.shape}")
    return weights.mean(axis=0)


def intra_stream_blocks(attn: np.ndarray, stream_index: np.ndarray, time_index: np.ndarray, *,
                        num_streams: int, num_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """The intra-stream blocks A[I_p, I_p] of a token-token matrix, on the time grid.

    attn (N, N); stream_index, time_index (N,) the stream and time step of each token (-1 for prefix or
    padding tokens, which are left out) -> blocks (P, Nt, Nt) with blocks[p, t, u] = attention of stream
    p's token at time t to the same stream's token at time u (0 where a token is absent), and
    valid (P, Nt) bool, True where stream p has a token at time t.
    """
    attn = np.asarray(attn, dtype=np.float64)
    stream_index, time_index = np.asarray(stream_index), np.asarray(time_index)
    blocks = np.zeros((num_streams, num_tokens, num_tokens), dtype=np.float64)
    valid = np.zeros((num_streams, num_tokens), dtype=bool)
    for p in range(num_streams):
        idx = np.flatnonzero(stream_index == p)
        t = time_index[idx]
        if t.size and (t.min() < 0 or t.max() >= num_tokens):
            raise ValueError(f"stream {p}: time indices outside 0..{num_tokens - 1}")
        blocks[p][np.ix_(t, t)] = attn[np.ix_(idx, idx)]
        valid[p, t] = True
    return blocks, valid


def symmetrize(a: np.ndarray) -> np.ndarray:
    """(A + A^T) / 2 over the last two axes."""
    a = np.asarray(a)
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def stream_average(blocks: np.ndarray, streams: Sequence[int] | None = None) -> np.ndarray:
    """(P, Nt, Nt) per-stream blocks -> (Nt, Nt) their mean over ``streams`` (default all): A-hat."""
    blocks = np.asarray(blocks)
    sel = list(range(blocks.shape[0])) if streams is None else list(streams)
    if not sel:
        raise ValueError("average over at least one stream")
    return blocks[sel].mean(axis=0)


# ------------------------------------------------------------------------------ chunks and stitching
def chunk_starts(num_tokens: int, chunk_tokens: int, hop_tokens: int) -> list[int]:
    """Token offsets of chunks of ``chunk_tokens`` covering ``num_tokens``; the last one ends at the end."""
    if chunk_tokens < 1 or hop_tokens < 1:
        raise ValueError(f"chunk and hop must be at least one token, got {chunk_tokens} and {hop_tokens}")
    if num_tokens <= chunk_tokens:
        return [0]
    starts = list(range(0, num_tokens - chunk_tokens + 1, hop_tokens))
    if starts[-1] + chunk_tokens < num_tokens:
        starts.append(num_tokens - chunk_tokens)
    return starts


def taper(n: int) -> np.ndarray:
    """Triangular weights (n,) > 0, largest in the middle: min(k + 1, n - k) / ceil(n / 2)."""
    k = np.arange(n, dtype=np.float64)
    return np.minimum(k + 1, n - k) / math.ceil(n / 2)


def stitch(chunks: Sequence[tuple[int, np.ndarray]], num_tokens: int) -> np.ndarray:
    """Overlap-weighted average of chunk matrices on the global token grid.

    chunks: (token offset o, matrices (..., n, n)) pairs; chunk c covers global tokens [o, o + n).
    Returns (..., Nt, Nt): sum_c w_c(i) w_c(j) M_c[i, j] / sum_c w_c(i) w_c(j), NaN where no chunk
    holds both tokens. With one chunk covering everything it returns that chunk's matrices unchanged.
    """
    if not chunks:
        raise ValueError("nothing to stitch")
    lead = np.asarray(chunks[0][1]).shape[:-2]
    acc = np.zeros(lead + (num_tokens, num_tokens), dtype=np.float64)
    wsum = np.zeros((num_tokens, num_tokens), dtype=np.float64)
    for o, m in chunks:
        m = np.asarray(m, dtype=np.float64)
        n = m.shape[-1]
        if m.shape[-2] != n or m.shape[:-2] != lead:
            raise ValueError(f"chunk at {o}: matrices {m.shape} do not fit {lead} + (n, n)")
        if o < 0 or o + n > num_tokens:
            raise ValueError(f"chunk [{o}, {o + n}) lies outside 0..{num_tokens}")
        w = taper(n)
        ww = np.outer(w, w)
        acc[..., o:o + n, o:o + n] += ww * m
        wsum[o:o + n, o:o + n] += ww
    with np.errstate(invalid="ignore", divide="ignore"):
        out = acc / wsum
    out[..., wsum == 0] = np.nan
    return out


# ------------------------------------------------------------------------------ the model
@dataclass
class AttentionResult:
    """The appendix-F attention of one sequence and what it needs to be read in frames and seconds."""

    matrix: np.ndarray              # (Nt, Nt) float64: A-hat_sym, symmetric; NaN where never computed
    per_stream: np.ndarray          # (P, Nt, Nt) float64: each stream's symmetrised intra-stream block
    token_valid: np.ndarray         # (P, Nt) bool: stream p had a token at time t in some chunk
    streams: tuple[str, ...]        # the model's stream names, order of ``per_stream``
    averaged: tuple[str, ...]       # the streams averaged into ``matrix``
    layer: int                      # encoder layer (0-based)
    cubelet: int                    # S: model frames per token
    frame_stride: int               # every frame_stride-th input frame was given to the model
    num_frames: int                 # T: frames of the input sequence (before the stride)
    fps: float                      # frames per second of the input
    chunk_tokens: int               # tokens per chunk
    chunk_starts: list[int] = field(default_factory=list)  # token offset of every chunk

    @property
    def num_tokens(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def token_frames(self) -> int:
        """Input frames per token: S * frame_stride."""
        return self.cubelet * self.frame_stride

    @property
    def token_seconds(self) -> float:
        return self.token_frames / self.fps


def encode_attention(encoder, coords: torch.Tensor, frame_valid: torch.Tensor | None = None, *,
                     layer: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Per-stream head-averaged attention of a batch of clips.

    coords (B, T, K, 2) in the encoder's layout; frame_valid (B, T) bool (default: all valid) ->
    blocks (B, P, Nt, Nt) float64, valid (B, P, Nt) bool (see :func:`intra_stream_blocks`).
    """
    b, t = coords.shape[:2]
    if frame_valid is None:
        frame_valid = torch.ones(b, t, dtype=torch.bool, device=coords.device)
    with torch.no_grad():
        out = encoder(coords, frame_valid, return_attention=(layer,))
    weights = next(iter(out.attentions.values())).float().cpu().numpy()  # (B, H, N, N)
    nt = math.ceil(t / encoder.config.cubelet)
    p = len(encoder.layout.streams)
    s_idx, t_idx = out.stream_index.cpu().numpy(), out.time_index.cpu().numpy()
    blocks, valid = zip(*(intra_stream_blocks(head_average(weights[i]), s_idx[i], t_idx[i], num_streams=p,
                                              num_tokens=nt) for i in range(b)))
    return np.stack(blocks), np.stack(valid)


def compute_attention(encoder, coords: np.ndarray, *, fps: float, layer: int = -1, frame_stride: int = 1,
                      chunk_frames: int = 300, overlap: float = 0.5, streams: Sequence[str] | None = None,
                      batch_size: int = 8, progress: bool = False) -> AttentionResult:
    """Appendix-F attention of one sequence, in overlapping chunks.

    coords (T, K, 2) float32, normalised, in the encoder's layout (missing points 0); fps of the input;
    layer: encoder layer (negative from the end); frame_stride: feed every n-th frame (the pre-training
    stride); chunk_frames: model frames per chunk (after the stride; rounded down to a multiple of S);
    overlap: fraction of a chunk shared with the next; streams: names averaged into ``matrix`` (default
    all of the model's).
    """
    cfg = encoder.config
    names = tuple(encoder.layout.names)
    depth = len(encoder.blocks)
    if not -depth <= layer < depth:
        raise ValueError(f"layer {layer} out of range for an encoder of depth {depth} (use 0..{depth - 1} or -1)")
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be at least 1, got {frame_stride}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    coords = np.asarray(coords, dtype=np.float32)
    if coords.ndim != 3 or coords.shape[1:] != (encoder.layout.num_points, 2):
        raise ValueError(f"coords must be (T, {encoder.layout.num_points}, 2) for layout "
                         f"{encoder.layout.spec!r}, got {coords.shape}")
    if coords.shape[0] == 0:
        raise ValueError("the sequence has no frames")
    averaged = names if streams is None else tuple(streams)
    unknown = [s for s in averaged if s not in names]
    if unknown or not averaged:
        raise ValueError(f"streams {list(unknown) or '[]'} are not in the model's streams {list(names)}")

    S = cfg.cubelet
    x = coords[::frame_stride]
    nt = math.ceil(x.shape[0] / S)
    chunk_tokens = max(1, chunk_frames // S)
    hop = max(1, int(round(chunk_tokens * (1.0 - overlap))))
    starts = chunk_starts(nt, chunk_tokens, hop)
    n = min(chunk_tokens, nt)
    device = next(encoder.parameters()).device
    pieces: list[tuple[int, np.ndarray]] = []
    valid = np.zeros((len(names), nt), dtype=bool)
    bar = progress_bar(total=len(starts), desc="attention", unit="chunk", disable=not progress or len(starts) < 2)
    for i in range(0, len(starts), batch_size):
        group = starts[i:i + batch_size]
        # Every chunk has n tokens; the one holding the last frame may end in padding frames.
        batch = np.zeros((len(group), n * S) + x.shape[1:], dtype=np.float32)
        fv = np.zeros((len(group), n * S), dtype=bool)
        for j, o in enumerate(group):
            piece = x[o * S:(o + n) * S]
            batch[j, :len(piece)], fv[j, :len(piece)] = piece, True
        blocks, v = encode_attention(encoder, torch.from_numpy(batch).to(device), torch.from_numpy(fv).to(device),
                                     layer=layer)
        for o, bl, vv in zip(group, blocks, v):
            pieces.append((o, symmetrize(bl)))
            valid[:, o:o + n] |= vv
        bar.update(len(group))
    bar.close()
    per_stream = stitch(pieces, nt)
    matrix = stream_average(per_stream, [names.index(s) for s in averaged])
    log.debug("attention: %d frames -> %d tokens in %d chunk(s) of %d tokens", coords.shape[0], nt, len(starts), n)
    return AttentionResult(matrix=matrix, per_stream=per_stream, token_valid=valid, streams=names,
                           averaged=averaged, layer=layer % depth, cubelet=S, frame_stride=frame_stride,
                           num_frames=int(coords.shape[0]), fps=float(fps), chunk_tokens=n, chunk_starts=starts)
