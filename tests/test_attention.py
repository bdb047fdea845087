"""Attention matrices (appendix F): block selection, head/stream averaging, symmetry, chunking and stitching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msmae.analysis.attention import (chunk_starts, compute_attention, encode_attention, head_average,
                                      intra_stream_blocks, stitch, stream_average, symmetrize, taper)
from msmae.models import MultiStreamEncoder, model_config

torch.set_num_threads(1)


def tiny_encoder(seed: int = 0, streams: str = "body,hands") -> MultiStreamEncoder:
    torch.manual_seed(seed)
    cfg = model_config("tiny", streams=streams, dim=32, depth=2, heads=4, decoder_dim=32, decoder_depth=1,
                       decoder_heads=2)
    return MultiStreamEncoder(config=cfg).eval()


def smooth_coords(t: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(1, k, 2)) + np.cumsum(rng.normal(scale=0.05, size=(t, k, 2)), 0)).astype(np.float32)


# ------------------------------------------------------------------------------ matrix operations
def test_head_average_is_the_mean_over_heads():
    w = np.stack([np.full((4, 4), h, dtype=np.float32) for h in range(1, 5)])  # heads 1, 2, 3, 4
    assert np.allclose(head_average(w), 2.5)
    with pytest.raises(ValueError):
        head_average(np.zeros((4, 4)))


def test_intra_stream_blocks_select_each_streams_submatrix_on_the_time_grid():
    # 3 streams x 4 time steps, stream-major, plus one prefix token (-1) in front.
    n_streams, nt = 3, 4
    s_idx = np.r_[-1, np.repeat(np.arange(n_streams), nt)]
    t_idx = np.r_[-1, np.tile(np.arange(nt), n_streams)]
    n = len(s_idx)
    attn = np.arange(n * n, dtype=np.float64).reshape(n, n)  # every entry different
    blocks, valid = intra_stream_blocks(attn, s_idx, t_idx, num_streams=n_streams, num_tokens=nt)
    assert blocks.shape == (3, 4, 4) and valid.all()
    for p in range(n_streams):
        rows = 1 + p * nt + np.arange(nt)
        assert np.array_equal(blocks[p], attn[np.ix_(rows, rows)])
    # A dropped token (stream 1 at time 2) leaves zeros and valid False, the rest stays on its time step.
    keep = ~((s_idx == 1) & (t_idx == 2))
    blocks2, valid2 = intra_stream_blocks(attn[np.ix_(keep, keep)], s_idx[keep], t_idx[keep], num_streams=3,
                                          num_tokens=4)
    assert not valid2[1, 2] and valid2.sum() == 11
    assert np.all(blocks2[1, 2, :] == 0) and np.all(blocks2[1, :, 2] == 0)
    assert np.array_equal(blocks2[1][np.ix_([0, 1, 3], [0, 1, 3])], blocks[1][np.ix_([0, 1, 3], [0, 1, 3])])
    assert np.array_equal(blocks2[0], blocks[0]) and np.array_equal(blocks2[2], blocks[2])


def test_symmetrize_and_stream_average():
    rng = np.random.default_rng(0)
    a = rng.random((2, 5, 5))
    s = symmetrize(a)
    assert np.allclose(s, np.swapaxes(s, 1, 2))
    assert np.allclose(s[0], (a[0] + a[0].T) / 2)
    assert np.allclose(symmetrize(s), s)  # idempotent
    blocks = np.stack([np.full((3, 3), v) for v in (1.0, 2.0, 6.0)])
    assert np.allclose(stream_average(blocks), 3.0)
    assert np.allclose(stream_average(blocks, [0, 2]), 3.5)
    with pytest.raises(ValueError):
        stream_average(blocks, [])


def test_appendix_f_formula_on_a_constructed_attention_tensor():
    # A_i in R^{3n x 3n}: A_avg = mean_i A_i; A^B, A^LH, A^RH diagonal blocks; (A^B + A^LH + A^RH) / 3; sym.
    rng = np.random.default_rng(1)
    h, n = 4, 6
    A = rng.random((h, 3 * n, 3 * n))
    A /= A.sum(-1, keepdims=True)
    avg = A.mean(0)
    I_b, I_lh, I_rh = np.arange(n), n + np.arange(n), 2 * n + np.arange(n)
    hat = (avg[np.ix_(I_b, I_b)] + avg[np.ix_(I_lh, I_lh)] + avg[np.ix_(I_rh, I_rh)]) / 3
    expected = (hat + hat.T) / 2
    blocks, _ = intra_stream_blocks(head_average(A), np.repeat(np.arange(3), n), np.tile(np.arange(n), 3),
                                    num_streams=3, num_tokens=n)
    assert np.allclose(stream_average(symmetrize(blocks)), expected)
    assert np.allclose(symmetrize(stream_average(blocks)), expected)  # the order does not matter


# ------------------------------------------------------------------------------ with the encoder
def test_encode_attention_matches_the_encoders_own_weights():
    enc = tiny_encoder()
    x = torch.from_numpy(smooth_coords(22, enc.layout.num_points))[None]
    blocks, valid = encode_attention(enc, x, layer=-1)
    out = enc(x, torch.ones(1, 22, dtype=torch.bool), return_attention=(1,))
    w = out.attentions[1][0].detach().numpy()  # (H, N, N), rows are softmax distributions
    assert np.allclose(w.sum(-1), 1.0, atol=1e-5)
    nt = 6  # ceil(22 / 4)
    assert blocks.shape == (1, 3, nt, nt) and valid.all()
    avg = w.mean(0)
    for p in range(3):
        sl = slice(p * nt, (p + 1) * nt)
        assert np.allclose(blocks[0, p], avg[sl, sl], atol=1e-6)
    # Intra-stream blocks hold part of each row's mass: less than 1, more than 0.
    assert np.all(blocks[0].sum(-1) < 1.0) and np.all(blocks[0].sum(-1) > 0.0)


def test_compute_attention_is_appendix_f_and_symmetric():
    enc = tiny_encoder(streams="body,hands,face")
    coords = smooth_coords(37, enc.layout.num_points)
    res = compute_attention(enc, coords, fps=25.0, layer=0, chunk_frames=300)
    assert res.streams == ("body", "left_hand", "right_hand", "face") and res.averaged == res.streams
    assert res.matrix.shape == (10, 10) and res.chunk_starts == [0] and res.layer == 0
    assert np.allclose(res.matrix, res.matrix.T)
    out = enc(torch.from_numpy(coords)[None], torch.ones(1, 37, dtype=torch.bool), return_attention=(0,))
    avg = out.attentions[0][0].detach().numpy().mean(0)
    hat = sum(avg[p * 10:(p + 1) * 10, p * 10:(p + 1) * 10] for p in range(4)) / 4
    assert np.allclose(res.matrix, (hat + hat.T) / 2, atol=1e-6)
    # Averaging only the hands is the mean of those two panels.
    hands = compute_attention(enc, coords, fps=25.0, layer=0, streams=["left_hand", "right_hand"])
    assert np.allclose(hands.matrix, (res.per_stream[1] + res.per_stream[2]) / 2)
    with pytest.raises(ValueError, match="not in the model"):
        compute_attention(enc, coords, fps=25.0, streams=["nose"])
    with pytest.raises(ValueError, match="out of range"):
        compute_attention(enc, coords, fps=25.0, layer=5)


def test_frame_stride_feeds_every_nth_frame_and_scales_token_duration():
    enc = tiny_encoder()
    coords = smooth_coords(50, enc.layout.num_points)
    a = compute_attention(enc, coords, fps=25.0, frame_stride=2)
    b = compute_attention(enc, coords[::2], fps=12.5)
    assert np.allclose(a.matrix, b.matrix)
    assert a.token_frames == 8 and a.num_frames == 50 and a.token_seconds == pytest.approx(8 / 25)


# ------------------------------------------------------------------------------ chunks and stitching
def test_chunk_starts_cover_the_sequence_and_end_at_its_end():
    assert chunk_starts(10, 20, 10) == [0]
    assert chunk_starts(50, 20, 10) == [0, 10, 20, 30]
    assert chunk_starts(55, 20, 10) == [0, 10, 20, 30, 35]
    for nt, c, h in [(101, 30, 15), (75, 75, 37), (9, 4, 3)]:
        starts = chunk_starts(nt, c, h)
        covered = np.zeros(nt, bool)
        for s in starts:
            covered[s:s + c] = True
        assert covered.all() and starts[-1] + c == max(nt, c) and all(b - a <= h for a, b in zip(starts, starts[1:]))


def test_taper_is_positive_and_peaks_in_the_middle():
    w = taper(8)
    assert np.all(w > 0) and w[0] == w[-1] and w.max() == 1.0 and np.argmax(w) in (3, 4)


def test_stitch_of_one_chunk_is_that_chunk_and_uncovered_pairs_are_nan():
    m = np.random.default_rng(0).random((2, 6, 6))
    assert np.allclose(stitch([(0, m)], 6), m)
    two = stitch([(0, m[:, :4, :4]), (4, m[:, :4, :4])], 8)
    assert np.isnan(two[:, 0, 7]).all() and np.isnan(two[:, 7, 0]).all()
    assert np.allclose(two[:, :4, :4], m[:, :4, :4]) and np.allclose(two[:, 4:, 4:], m[:, :4, :4])


def test_stitching_leaves_no_seam_at_chunk_borders():
    # Chunks whose values differ by a constant: a plain average would step at every chunk border; the
    # tapered average moves from one chunk's value to the next in small steps.
    nt, n, hop = 60, 20, 10
    starts = chunk_starts(nt, n, hop)
    chunks = [(o, np.full((n, n), float(c))) for c, o in enumerate(starts)]
    out = stitch(chunks, nt)
    diag = np.diagonal(out)
    steps = np.abs(np.diff(diag))
    # Hard (uniform-weight) averaging for comparison.
    acc, cnt = np.zeros((nt, nt)), np.zeros((nt, nt))
    for o, m in chunks:
        acc[o:o + n, o:o + n] += m
        cnt[o:o + n, o:o + n] += 1
    hard_steps = np.abs(np.diff(np.diagonal(acc) / np.diagonal(cnt)))
    assert hard_steps.max() >= 0.5                   # the seam that plain averaging leaves
    assert steps.max() <= 2.5 / (n / 2)              # about one chunk value per half chunk: no jump
    assert diag[0] == 0.0 and diag[-1] == len(starts) - 1
    assert np.all(np.diff(diag) >= -1e-12)           # and it only moves one way
    band = np.array([out[i, i + 3] for i in range(nt - 3)])
    assert np.abs(np.diff(band)).max() <= 2.5 / (n / 2)


def test_chunked_attention_equals_direct_when_one_chunk_covers_everything():
    enc = tiny_encoder(1)
    coords = smooth_coords(80, enc.layout.num_points, seed=3)
    direct = compute_attention(enc, coords, fps=30.0, chunk_frames=80)
    bigger = compute_attention(enc, coords, fps=30.0, chunk_frames=400)
    assert direct.chunk_starts == [0] and np.allclose(direct.matrix, bigger.matrix)


def test_chunked_attention_of_a_long_input_uses_each_chunks_own_attention():
    enc = tiny_encoder(2)
    T = 90  # 23 tokens (the last one partial); chunks of 8 tokens every 4
    coords = smooth_coords(T, enc.layout.num_points, seed=4)
    res = compute_attention(enc, coords, fps=30.0, chunk_frames=32, overlap=0.5, batch_size=3)
    assert res.num_tokens == 23 and res.chunk_starts == [0, 4, 8, 12, 15]
    assert np.allclose(res.matrix, res.matrix.T, equal_nan=True)
    # Tokens 0-3 are only in the first chunk: there the result is that chunk's own attention.
    first = compute_attention(enc, coords[:32], fps=30.0, chunk_frames=32)
    assert np.allclose(res.matrix[:4, :4], first.matrix[:4, :4], atol=1e-6)
    # The last chunk ends in a partial token (frames 88-89): same as running those frames alone.
    last = compute_attention(enc, coords[15 * 4:], fps=30.0, chunk_frames=32)
    assert np.allclose(res.matrix[-3:, -3:], last.matrix[-3:, -3:], atol=1e-6)
    # Pairs further apart than a chunk were never computed.
    assert np.isnan(res.matrix[0, 20]) and np.isfinite(res.matrix[0, 7])
