"""Automatic sign boundaries on a symmetric token-token attention matrix, the boundary metric, and two
baselines (evenly spaced boundaries; minima of the wrists' speed).

Boundary finder (Foote's checkerboard novelty, made scale-free):

1. *Detrend*: attention falls with the distance ``|i - j|`` between tokens whatever the content, so each
   diagonal is divided by its mean. A matrix that only depends on ``|i - j|`` (no blocks at all) becomes
   all ones.
2. *Contrast* at each border b (between tokens b - 1 and b): with a checkerboard kernel of half-width L
   tokens and a Gaussian taper, W = weighted mean of the two within-side quadrants
   (before x before, after x after), X = weighted mean of the cross quadrant (before x after);
   contrast = (W - X) / (W + X), in [-1, 1], 0 where both sides belong together.
3. *Peaks*: local maxima of the contrast that stand out from the curve's own level, i.e. reach
   median + ``threshold_mads`` robust standard deviations (1.4826 x median absolute deviation) of the
   contrast over the clip, and at least ``min_contrast`` in any case; taken greedily from the highest, at
   least ``min_length`` tokens from each other and from both ends (the minimum segment length).

The threshold is relative because the contrast's scale depends on the model and the layer (in a tiny
model pre-trained on synthetic sentences, the 90th percentile of the contrast is 0.25 in the first layer
and 0.02 in the last; the same relative threshold finds about the right number of boundaries in both).
A matrix without any structure (constant, or depending only on ``|i - j|``) has a contrast of exactly 0 and
gets no boundary; a noisy matrix without blocks still gets some, as any peak picker would give.

L and the minimum length come from durations in seconds and the model's token duration
(S * frame_stride / fps), never from the input; :class:`SegmenterConfig` holds the values. They were
chosen once, on synthetic development sentences that the benchmark does not score
(``benchmarks/segmentation.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from msmae.poses.timing import seconds


@dataclass
class SegmenterConfig:
    """Boundary-finder settings, in seconds so that they mean the same for any fps and token size."""

    kernel_s: float = 0.4        # half-width of the checkerboard kernel (a little under a short sign)
    min_segment_s: float = 0.3   # shortest segment (and shortest distance between boundaries)
    threshold_mads: float = 1.0  # a boundary's contrast must reach median + this many robust SDs of the curve
    min_contrast: float = 0.005  # ... and at least this contrast (W - X) / (W + X) whatever the curve
    detrend: bool = True         # divide each diagonal by its mean before the kernel

    def __post_init__(self) -> None:
        if self.kernel_s <= 0 or self.min_segment_s <= 0:
            raise ValueError(f"kernel_s and min_segment_s must be positive, got {self.kernel_s}, {self.min_segment_s}")
        if self.min_contrast < 0:
            raise ValueError(f"min_contrast must be >= 0, got {self.min_contrast}")

    def in_tokens(self, token_s: float) -> tuple[int, int]:
        """(kernel half-width >= 2, minimum segment length >= 1) in tokens of ``token_s`` seconds each."""
        if token_s <= 0:
            raise ValueError(f"token duration must be positive, got {token_s}")
        return max(2, int(round(self.kernel_s / token_s))), max(1, int(round(self.min_segment_s / token_s)))


# ------------------------------------------------------------------------------ boundary finder
def detrend(a: np.ndarray, max_offset: int | None = None) -> np.ndarray:
    """Divide each diagonal of a (N, N) matrix by its mean (NaN-aware). Diagonals beyond ``max_offset``
    (default: all) are left as NaN; a diagonal whose mean is not positive becomes NaN."""
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    d = np.abs(np.subtract.outer(np.arange(n), np.arange(n)))
    top = n - 1 if max_offset is None else min(max_offset, n - 1)
    means = np.full(n, np.nan)
    for k in range(top + 1):
        diag = np.diagonal(a, k)
        diag = diag[np.isfinite(diag)]
        if diag.size and diag.mean() > 0:
            means[k] = diag.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        return a / means[d]


def _taper(half_width: int) -> np.ndarray:
    """Gaussian weights of the kernel's rows/columns at distance 0.5, 1.5, ... from the border."""
    k = np.arange(half_width) + 0.5
    return np.exp(-0.5 * (k / max(0.5 * half_width, 0.5)) ** 2)


def contrast_curve(a: np.ndarray, half_width: int, *, detrended: bool = True) -> np.ndarray:
    """Checkerboard contrast (N + 1,) at every border b = 0..N (b = border before token b).

    a (N, N) symmetric; the ends (b = 0, N) are NaN; near them the kernel is cut to the tokens that exist.
    """
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    if a.ndim != 2 or a.shape[1] != n:
        raise ValueError(f"expected a square matrix, got {a.shape}")
    if half_width < 1:
        raise ValueError(f"half_width must be at least 1, got {half_width}")
    m = detrend(a, 2 * half_width) if detrended else a
    g = _taper(half_width)
    out = np.full(n + 1, np.nan)
    for b in range(1, n):
        h = min(half_width, b, n - b)
        before = np.arange(b - 1, b - 1 - h, -1)   # distance 0, 1, ... from the border
        after = np.arange(b, b + h)
        w = np.outer(g[:h], g[:h])
        quads = [(m[np.ix_(before, before)], w), (m[np.ix_(after, after)], w)]
        cross = m[np.ix_(before, after)]
        wi = sum(float(np.nansum(q * ww)) for q, ww in quads)
        ni = sum(float((ww * np.isfinite(q)).sum()) for q, ww in quads)
        wx, nx = float(np.nansum(cross * w)), float((w * np.isfinite(cross)).sum())
        if ni == 0 or nx == 0:
            continue
        within, across = wi / ni, wx / nx
        total = within + across
        out[b] = (within - across) / total if total > 0 else 0.0
    return out


def pick_peaks(curve: np.ndarray, *, min_distance: int, threshold: float = -np.inf,
               count: int | None = None) -> list[int]:
    """Positions of local maxima of ``curve`` (NaN = not allowed) that reach ``threshold``, strongest first,
    each at least ``min_distance`` from the others and from both ends (0 and len - 1); at most ``count``.
    Returned sorted."""
    c = np.asarray(curve, dtype=np.float64)
    last = len(c) - 1
    cand = []
    for b in range(1, last):
        v = c[b]
        if not np.isfinite(v) or v < threshold or b < min_distance or last - b < min_distance:
            continue
        left = c[b - 1] if np.isfinite(c[b - 1]) else -np.inf
        right = c[b + 1] if np.isfinite(c[b + 1]) else -np.inf
        if v >= left and v > right:  # a plateau counts once, at its right end
            cand.append(b)
    chosen: list[int] = []
    for b in sorted(cand, key=lambda i: -c[i]):
        if count is not None and len(chosen) >= count:
            break
        if all(abs(b - q) >= min_distance for q in chosen):
            chosen.append(b)
    return sorted(chosen)


def fill_boundaries(curve: np.ndarray, chosen: Sequence[int], *, count: int, min_distance: int) -> list[int]:
    """Exactly ``count`` boundaries at least ``min_distance`` apart and from both ends: ``chosen`` (the peaks)
    completed with the strongest other positions of ``curve``; where those leave no room, the ``count``
    positions of greatest total contrast. Fewer (as many as fit) only when the curve is too short for
    ``count``: it holds at most ``(len(curve) - 1) // min_distance - 1``. Sorted."""
    c = np.asarray(curve, dtype=np.float64)
    last, d = len(c) - 1, max(1, int(min_distance))
    score = np.where(np.isfinite(c), c, -1e9)
    out = list(chosen)
    for b in sorted(range(d, last - d + 1), key=lambda i: -score[i]):
        if len(out) >= count:
            return sorted(out)
        if all(abs(b - q) >= d for q in out):
            out.append(b)
    k = min(count, max(0, last // d - 1))
    if len(out) >= k:
        return sorted(out)
    # best[j, p]: greatest total of j + 1 boundaries, the last at position lo + p, spaced >= d.
    lo, n = d, last - 2 * d + 1
    best = np.full((k, n), -np.inf)
    back = np.zeros((k, n), dtype=np.int64)
    best[0] = score[lo:lo + n]
    for j in range(1, k):
        run = np.maximum.accumulate(best[j - 1])                                    # best up to each position
        arg = np.maximum.accumulate(np.where(best[j - 1] == run, np.arange(n), 0))  # ... and where it is
        best[j, d:] = score[lo + d:lo + n] + run[:n - d]
        back[j, d:] = arg[:n - d]
    p = int(np.argmax(best[k - 1]))
    picked = [p]
    for j in range(k - 1, 0, -1):
        p = int(back[j, p])
        picked.append(p)
    return sorted(lo + q for q in picked)


def relative_threshold(curve: np.ndarray, mads: float = 1.0, floor: float = 0.005) -> float:
    """max(median + mads * 1.4826 * MAD, floor) of the finite values of a curve (floor if there are none)."""
    v = np.asarray(curve, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return floor
    med = float(np.median(v))
    return max(med + mads * 1.4826 * float(np.median(np.abs(v - med))), floor)


def find_boundaries(a: np.ndarray, *, half_width: int, min_length: int, threshold_mads: float = 1.0,
                    min_contrast: float = 0.005, detrended: bool = True, count: int | None = None) -> list[int]:
    """Token indices where a new segment starts (interior only, sorted) in a symmetric (N, N) matrix.
    With ``count`` the ``count`` strongest boundaries are returned whatever their height."""
    curve = contrast_curve(a, half_width, detrended=detrended)
    th = -np.inf if count is not None else relative_threshold(curve, threshold_mads, min_contrast)
    return pick_peaks(curve, min_distance=min_length, threshold=th, count=count)


# ------------------------------------------------------------------------------ segments
def segments_from_boundaries(boundaries: Sequence[int], *, num_tokens: int, token_frames: int, num_frames: int,
                             fps: float) -> list[dict]:
    """Token boundaries -> segments covering the whole input: [{index, start_token, end_token, start_frame,
    end_frame, start_s, end_s}], ends exclusive; token t covers frames [t * token_frames, (t + 1) * token_frames)."""
    edges = [0] + sorted(int(b) for b in boundaries) + [num_tokens]
    out = []
    for i, (s, e) in enumerate(zip(edges[:-1], edges[1:])):
        fs, fe = min(s * token_frames, num_frames), min(e * token_frames, num_frames)
        out.append({"index": i, "start_token": s, "end_token": e, "start_frame": fs, "end_frame": fe,
                    "start_s": seconds(fs, fps), "end_s": seconds(fe, fps)})
    return out


# ------------------------------------------------------------------------------ metric
def match_boundaries(pred: Sequence[float], true: Sequence[float], tolerance: float) -> list[tuple[int, int]]:
    """Largest one-to-one matching of predicted to true boundaries with ``|p - t| <= tolerance``.

    On a line a greedy sweep over both sorted lists is optimal: each true boundary takes the earliest
    unused prediction that is still within reach. Returns (pred index, true index) pairs into the
    sorted lists.
    """
    p = sorted(float(x) for x in pred)
    t = sorted(float(x) for x in true)
    pairs, i = [], 0
    for j, tj in enumerate(t):
        while i < len(p) and p[i] < tj - tolerance:
            i += 1
        if i < len(p) and p[i] <= tj + tolerance:
            pairs.append((i, j))
            i += 1
    return pairs


def sign_boundaries(signs: Sequence[dict]) -> list[float]:
    """True boundaries (frames) of a sentence with known signs (``start_frame``, ``end_frame``): the first
    start, the last end, and between two signs the middle of the transition (n signs -> n + 1)."""
    if not signs:
        return []
    out = [float(signs[0]["start_frame"])]
    for a, b in zip(signs, signs[1:]):
        out.append((a["end_frame"] + b["start_frame"]) / 2.0)
    out.append(float(signs[-1]["end_frame"]))
    return out


def boundary_scores(pred: Sequence[float], true: Sequence[float], tolerance: float) -> dict:
    """Precision, recall and F1 of boundaries (frames) within ``tolerance`` frames, one-to-one.

    An empty prediction has precision 1 (no false boundary); an empty truth has recall 1; F1 is 0 when
    either is 0. Also returns the counts (tp, n_pred, n_true) for micro-averaging and the mean ``|offset|``.
    """
    pairs = match_boundaries(pred, true, tolerance)
    p, t = sorted(pred), sorted(true)
    tp = len(pairs)
    out = _prf(tp, len(p), len(t))
    out["mean_offset"] = float(np.mean([abs(p[i] - t[j]) for i, j in pairs])) if pairs else None
    return out


def _prf(tp: int, n_pred: int, n_true: int) -> dict:
    precision = tp / n_pred if n_pred else 1.0
    recall = tp / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"tp": tp, "n_pred": n_pred, "n_true": n_true, "precision": precision, "recall": recall, "f1": f1}


def micro_scores(scores: Sequence[dict]) -> dict:
    """Precision, recall, F1 over all boundaries of several sequences (sums of tp, n_pred, n_true)."""
    tp = sum(s["tp"] for s in scores)
    return _prf(tp, sum(s["n_pred"] for s in scores), sum(s["n_true"] for s in scores))


# ------------------------------------------------------------------------------ baselines
def even_boundaries(num_frames: int, num_segments: int) -> list[int]:
    """Interior boundaries (frames) that cut ``num_frames`` into ``num_segments`` equal parts."""
    if num_segments < 1:
        raise ValueError(f"num_segments must be at least 1, got {num_segments}")
    return [int(round(k * num_frames / num_segments)) for k in range(1, num_segments)]


def wrist_speed(coords: np.ndarray, present: np.ndarray, layout) -> np.ndarray:
    """Summed speed (T,) of the two body-stream wrists, per frame (units per frame).

    coords (T, K, 2), present (T, K) in ``layout`` (which must have the body stream). Missing wrist
    positions are filled by linear interpolation over time (held at the ends); a wrist never seen adds 0.
    """
    from msmae.layout import LEFT_WRIST, RIGHT_WRIST

    sl = layout.stream_slice("body")
    speed = np.zeros(coords.shape[0], dtype=np.float64)
    for w in (LEFT_WRIST, RIGHT_WRIST):
        k = sl.start + w
        seen = np.flatnonzero(present[:, k])
        if seen.size == 0:
            continue
        xy = np.stack([np.interp(np.arange(coords.shape[0]), seen, coords[seen, k, d]) for d in range(2)], axis=1)
        speed[1:] += np.linalg.norm(np.diff(xy, axis=0), axis=1)
    if speed.size > 1:
        speed[0] = speed[1]
    return speed


def smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing (edge values repeated); sigma in samples, <= 0 returns x."""
    x = np.asarray(x, dtype=np.float64)
    if sigma <= 0 or x.size < 2:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    return np.convolve(np.pad(x, r, mode="edge"), k / k.sum(), mode="valid")


def velocity_boundaries(speed: np.ndarray, *, fps: float, min_segment_s: float = 0.3, smooth_s: float = 0.0,
                        min_depth: float = 0.3, count: int | None = None) -> list[int]:
    """Baseline: boundaries (frames) at minima of the (optionally smoothed) wrist speed.

    Its settings were chosen on the same synthetic development sentences as the attention segmenter's
    (smoothing only removed the brief stops between movements there, so the default is none).

    A minimum's depth is 1 - s(t) / min(highest speed within ``min_segment_s`` before, after): 0 = no dip,
    1 = a full stop between two movements. Minima at least ``min_depth`` deep are taken deepest first,
    at least ``min_segment_s`` apart and from both ends; with ``count``, the ``count`` deepest whatever
    their depth.
    """
    s = smooth(speed, smooth_s * fps)
    n = len(s)
    reach = max(1, int(round(min_segment_s * fps)))
    depth = np.full(n + 1, np.nan)  # indexed like a border: boundary at frame t
    for t in range(1, n - 1):
        if not (s[t] <= s[t - 1] and s[t] < s[t + 1]):
            continue
        peak = min(s[max(0, t - reach):t].max(), s[t + 1:t + 1 + reach].max())
        depth[t] = 1.0 - s[t] / peak if peak > 0 else 0.0
    return pick_peaks(depth, min_distance=reach, threshold=-np.inf if count is not None else min_depth, count=count)
