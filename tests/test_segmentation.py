"""Boundary finder on constructed matrices, segments, the boundary metric and the baselines."""

from __future__ import annotations

import numpy as np
import pytest

from msmae.analysis.segmentation import (SegmenterConfig, boundary_scores, contrast_curve, detrend,
                                         even_boundaries, find_boundaries, match_boundaries, micro_scores,
                                         pick_peaks, relative_threshold, segments_from_boundaries, smooth,
                                         velocity_boundaries, wrist_speed)
from msmae.layout import get_layout


def block_matrix(sizes, within=1.0, across=0.2, decay=0.0, noise=0.0, seed=0) -> np.ndarray:
    """Symmetric matrix with constant blocks on the diagonal, optionally times a distance decay, plus noise."""
    labels = np.repeat(np.arange(len(sizes)), sizes)
    m = np.where(labels[:, None] == labels[None, :], within, across).astype(np.float64)
    n = len(labels)
    d = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    m = m * np.exp(-decay * d)
    if noise:
        e = np.random.default_rng(seed).normal(scale=noise, size=(n, n))
        m = m + (e + e.T) / 2 * m
    return m


def starts(sizes):
    return list(np.cumsum(sizes)[:-1])


# ------------------------------------------------------------------------------ boundary finder
@pytest.mark.parametrize("sizes", [[6, 9, 5, 8], [4, 4, 4], [10, 3, 7, 12, 5]])
def test_finds_the_blocks_of_a_block_diagonal_matrix(sizes):
    m = block_matrix(sizes, decay=0.15, noise=0.05)
    assert find_boundaries(m, half_width=3, min_length=2) == starts(sizes)


def test_the_threshold_is_relative_to_the_clips_own_contrast():
    sizes = [7, 7, 7]
    # Strong or faint, clean blocks are found: the threshold follows the contrast's own level.
    for across in (0.2, 0.6, 0.95):
        assert find_boundaries(block_matrix(sizes, within=1.0, across=across, decay=0.2), half_width=3,
                               min_length=2) == starts(sizes)
    # Contrast below min_contrast is never a boundary: within / across = 1.005 gives about 0.0025.
    faint = block_matrix(sizes, within=1.0, across=0.995)
    assert find_boundaries(faint, half_width=3, min_length=2) == []
    assert find_boundaries(faint, half_width=3, min_length=2, min_contrast=0.001) == starts(sizes)


def test_relative_threshold():
    curve = np.array([np.nan, 0.0, 0.1, 0.0, 0.2, 0.0, 0.1, np.nan])  # median 0.05, MAD 0.05
    assert relative_threshold(curve, 1.0, 0.0) == pytest.approx(0.05 + 1.4826 * 0.05)
    assert relative_threshold(curve, 0.0, 0.0) == pytest.approx(0.05)
    assert relative_threshold(np.zeros(9), 1.0, 0.005) == 0.005
    assert relative_threshold(np.full(3, np.nan), 1.0, 0.005) == 0.005


def test_no_boundaries_on_a_uniform_or_distance_only_matrix():
    n = 30
    assert find_boundaries(np.full((n, n), 0.03), half_width=3, min_length=2) == []
    d = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    toeplitz = np.exp(-0.3 * d)
    assert find_boundaries(toeplitz, half_width=3, min_length=2) == []
    # Without detrending, a distance decay alone gives a flat positive contrast: detrending removes it.
    raw = contrast_curve(toeplitz, 3, detrended=False)
    assert np.nanmin(raw[3:-3]) > 0.1
    assert np.nanmax(np.abs(contrast_curve(toeplitz, 3)[1:-1])) < 1e-9


def test_minimum_segment_length_is_respected():
    sizes = [5, 2, 6, 2, 6]  # two blocks shorter than the larger minimum lengths
    m = block_matrix(sizes, decay=0.1)
    for min_len in (1, 3, 4):
        b = find_boundaries(m, half_width=2, min_length=min_len)
        edges = [0] + b + [sum(sizes)]
        assert min(np.diff(edges)) >= min_len
        assert set(b) <= set(starts(sizes)) | {s + 1 for s in starts(sizes)} | {s - 1 for s in starts(sizes)}
    assert find_boundaries(m, half_width=2, min_length=1) == starts(sizes)


def test_count_forces_that_many_strongest_boundaries():
    sizes = [6, 6, 6, 6]
    m = block_matrix(sizes, within=1.0, across=0.5, decay=0.1)
    m[12:, :12] = m[:12, 12:] = 0.5 * 0.05  # the middle boundary is much stronger
    assert find_boundaries(m, half_width=3, min_length=2, count=1) == [12]
    assert find_boundaries(m, half_width=3, min_length=2, count=3) == [6, 12, 18]
    assert len(find_boundaries(np.full((20, 20), 1.0), half_width=3, min_length=2, count=2)) <= 2


def test_detrend_divides_each_diagonal_by_its_mean():
    m = np.array([[2.0, 1.0, 0.5], [1.0, 4.0, 3.0], [0.5, 3.0, 6.0]])
    d = detrend(m)
    assert np.allclose(np.diagonal(d), [0.5, 1.0, 1.5]) and np.allclose(np.diagonal(d, 1), [0.5, 1.5])
    assert np.allclose(d[0, 2], 1.0) and np.allclose(d, d.T)
    assert np.isnan(detrend(m, max_offset=1)[0, 2])


def test_pick_peaks_local_maxima_threshold_distance_and_ends():
    curve = np.array([np.nan, 0.5, 0.2, 0.9, 0.1, 0.15, 0.8, 0.85, 0.3, np.nan])
    assert pick_peaks(curve, min_distance=1, threshold=0.4) == [1, 3, 7]
    assert pick_peaks(curve, min_distance=2, threshold=0.4) == [3, 7]      # 1 is too close to the start
    assert pick_peaks(curve, min_distance=5, threshold=0.0) == []          # nothing 5 from both ends
    assert pick_peaks(curve, min_distance=1, count=1) == [3]


def test_segmenter_config_in_tokens():
    cfg = SegmenterConfig()
    assert cfg.in_tokens(4 / 30) == (3, 2)   # 30 fps, S = 4: 0.4 s / 0.133 s, 0.3 s / 0.133 s
    assert cfg.in_tokens(8 / 24) == (2, 1)   # the kernel is at least 2 tokens wide
    assert SegmenterConfig(kernel_s=2.0, min_segment_s=1.0).in_tokens(0.25) == (8, 4)
    assert SegmenterConfig(kernel_s=0.01, min_segment_s=0.01).in_tokens(1.0) == (2, 1)
    with pytest.raises(ValueError):
        SegmenterConfig(kernel_s=0)


def test_segments_from_boundaries_in_tokens_frames_and_seconds():
    segs = segments_from_boundaries([3, 7], num_tokens=10, token_frames=8, num_frames=75, fps=25.0)
    assert [(s["start_token"], s["end_token"]) for s in segs] == [(0, 3), (3, 7), (7, 10)]
    assert [(s["start_frame"], s["end_frame"]) for s in segs] == [(0, 24), (24, 56), (56, 75)]
    assert segs[1]["start_s"] == pytest.approx(0.96) and segs[2]["end_s"] == pytest.approx(3.0)
    assert [s["index"] for s in segs] == [0, 1, 2]


# ------------------------------------------------------------------------------ metric
def test_boundary_scores_hand_worked():
    # 10~12 and 35~36 match within 2 frames; 20 and 30 do not.
    s = boundary_scores([10, 20, 35], [12, 30, 36], tolerance=2)
    assert (s["tp"], s["n_pred"], s["n_true"]) == (2, 3, 3)
    assert s["precision"] == pytest.approx(2 / 3) and s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3) and s["mean_offset"] == pytest.approx(1.5)
    # One-to-one: two predictions near one true boundary count once.
    s = boundary_scores([10, 11], [10], tolerance=3)
    assert (s["tp"], s["precision"], s["recall"]) == (1, 0.5, 1.0) and s["f1"] == pytest.approx(2 / 3)
    # The tolerance is inclusive.
    assert boundary_scores([10], [13], tolerance=3)["tp"] == 1 and boundary_scores([10], [14], 3)["tp"] == 0


def test_matching_is_maximal_not_nearest_first():
    # Nearest-first pairs prediction 8 with truth 9 (distance 1) and leaves 11 and 6 unmatched (1 pair);
    # the maximal one-to-one matching is 8~6 and 11~9 (distance 2 each): 2 pairs.
    assert len(match_boundaries([8, 11], [6, 9], tolerance=2)) == 2
    assert boundary_scores([8, 11], [6, 9], tolerance=2)["f1"] == 1.0


def test_boundary_scores_empty_cases_and_micro_average():
    assert boundary_scores([], [], 2)["f1"] == 1.0
    none = boundary_scores([], [5, 9], 2)
    assert (none["precision"], none["recall"], none["f1"]) == (1.0, 0.0, 0.0)
    extra = boundary_scores([5], [], 2)
    assert (extra["precision"], extra["recall"], extra["f1"]) == (0.0, 1.0, 0.0)
    m = micro_scores([boundary_scores([10, 20], [10, 20], 1), boundary_scores([5], [30, 40], 1)])
    assert (m["tp"], m["n_pred"], m["n_true"]) == (2, 3, 4)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------ baselines
def test_even_boundaries():
    assert even_boundaries(100, 4) == [25, 50, 75]
    assert even_boundaries(10, 1) == []
    assert even_boundaries(10, 3) == [3, 7]


def test_wrist_speed_counts_both_body_wrists_and_interpolates_gaps():
    layout = get_layout("body,hands")
    T, K = 6, layout.num_points
    coords = np.zeros((T, K, 2), np.float32)
    present = np.ones((T, K), bool)
    coords[:, 4, 0] = np.arange(T) * 0.1        # left wrist moves 0.1 per frame in x
    coords[:, 5, 1] = np.arange(T) * 0.2        # right wrist 0.2 per frame in y
    assert np.allclose(wrist_speed(coords, present, layout), 0.3)
    present[2:4, 4] = False                     # a gap in the left wrist: interpolated, same speed
    coords[2:4, 4] = 0.0
    assert np.allclose(wrist_speed(coords, present, layout), 0.3)


def test_velocity_boundaries_find_the_stops_between_movements():
    fps = 30.0
    t = np.arange(150)
    speed = np.abs(np.sin(np.pi * t / 30.0)) + 0.02  # a full stop every 30 frames (1 s)
    b = velocity_boundaries(speed, fps=fps, min_segment_s=0.3)
    assert b == [30, 60, 90, 120]
    two = velocity_boundaries(speed, fps=fps, count=2)
    assert len(two) == 2 and set(two) <= set(b)
    assert velocity_boundaries(np.full(100, 0.5), fps=fps) == []  # no dips, no boundaries
    assert np.allclose(smooth(np.ones(20), 2.0), 1.0)
