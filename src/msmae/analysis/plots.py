"""Pictures for people to check the analysis: the attention heatmap with its boundaries and per-stream
panels, a skeleton drawing of one frame, and the strip of skeletons at each segment's middle frame.

Every figure has a fixed size in inches and dpi (no tight cropping), so its pixel size is known in
advance: ``width_in * dpi`` x ``height_in * dpi``. Files are written atomically.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from msmae.utils import atomic_path, plural

# MediaPipe hand landmark connections (wrist 0; thumb 1-4; index 5-8; middle 9-12; ring 13-16; pinky 17-20).
HAND_EDGES = ((0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (5, 6), (6, 7), (7, 8), (5, 9), (9, 10), (10, 11), (11, 12),
              (9, 13), (13, 14), (14, 15), (15, 16), (13, 17), (0, 17), (17, 18), (18, 19), (19, 20))
# Body stream points: 0 left shoulder, 1 right shoulder, 2 left elbow, 3 right elbow, 4 left wrist, 5 right wrist.
BODY_EDGES = ((0, 1), (0, 2), (2, 4), (1, 3), (3, 5))
STREAM_COLORS = {"body": "#555555", "left_hand": "#1f77b4", "right_hand": "#d62728", "face": "#8c8c8c"}
STREAM_TITLES = {"body": "body", "left_hand": "left hand", "right_hand": "right hand", "face": "face"}


def _save(fig, path: str | os.PathLike, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", dpi=dpi)
    plt.close(fig)
    return path


def _figure(width_in: float, height_in: float, dpi: int):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.figure(figsize=(width_in, height_in), dpi=dpi)


# ------------------------------------------------------------------------------ skeleton
def draw_skeleton(ax, coords: np.ndarray, present: np.ndarray, layout, *, linewidth: float = 1.5,
                  face_size: float = 1.5, colors: dict[str, str] | None = None) -> None:
    """Draw one frame: coords (K, 2) and present (K,) in ``layout`` on a matplotlib axis (image
    orientation: y grows downwards). Missing points and the lines touching them are left out; each body
    wrist is joined to its hand's wrist point when both are there."""
    colors = {**STREAM_COLORS, **(colors or {})}
    coords, present = np.asarray(coords), np.asarray(present, dtype=bool)
    sl = layout.slices()

    def lines(name: str, edges) -> None:
        s = sl[name]
        for i, j in edges:
            if present[s.start + i] and present[s.start + j]:
                (x0, y0), (x1, y1) = coords[s.start + i], coords[s.start + j]
                ax.plot([x0, x1], [y0, y1], color=colors[name], lw=linewidth, solid_capstyle="round")
        pts = [k for k in range(s.start, s.stop) if present[k]]
        if pts and name != "face":
            ax.scatter(coords[pts, 0], coords[pts, 1], s=linewidth * 3, color=colors[name], zorder=3)

    if "body" in sl:
        lines("body", BODY_EDGES)
        b = sl["body"]
        for wrist, hand in ((4, "left_hand"), (5, "right_hand")):
            if hand in sl and present[b.start + wrist] and present[sl[hand].start]:
                (x0, y0), (x1, y1) = coords[b.start + wrist], coords[sl[hand].start]
                ax.plot([x0, x1], [y0, y1], color=colors[hand], lw=linewidth * 0.7, ls=":")
    for hand in ("left_hand", "right_hand"):
        if hand in sl:
            lines(hand, HAND_EDGES)
    if "face" in sl:
        f = sl["face"]
        pts = [k for k in range(f.start, f.stop) if present[k]]
        if pts:
            ax.scatter(coords[pts, 0], coords[pts, 1], s=face_size, color=colors["face"], linewidths=0)
    ax.set_aspect("equal")
    if not ax.yaxis_inverted():
        ax.invert_yaxis()


def view_limits(coords: np.ndarray, present: np.ndarray, margin: float = 0.08) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) that hold the present points of a sequence (robust 0.5-99.5 percentiles, padded)."""
    pts = np.asarray(coords)[np.asarray(present, dtype=bool)]
    if pts.size == 0:
        return -1.0, 1.0, -1.0, 1.0
    lo, hi = np.percentile(pts, 0.5, axis=0), np.percentile(pts, 99.5, axis=0)
    span = max(float((hi - lo).max()), 1e-6)
    cx, cy = (lo + hi) / 2
    half = span * (0.5 + margin)
    return cx - half, cx + half, cy - half, cy + half


# ------------------------------------------------------------------------------ attention heatmap
def _heatmap(ax, m: np.ndarray, extent: float, title: str, vmax: float | None = None):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    finite = m[np.isfinite(m)]
    if vmax is None:
        vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    vmin = float(finite.min()) if finite.size else 0.0
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=vmin, vmax=max(vmax, vmin + 1e-12),
                   extent=(0, extent, extent, 0), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    return im


def plot_attention(path: str | os.PathLike, matrix: np.ndarray, *, token_seconds: float,
                   boundaries: Sequence[int] = (), per_stream: np.ndarray | None = None,
                   stream_names: Sequence[str] = (), curve: np.ndarray | None = None,
                   threshold: float | None = None, title: str = "", dpi: int = 100,
                   size_in: tuple[float, float] = (13.0, 6.5)) -> Path:
    """Heatmap of the symmetric attention (Nt, Nt) with axes in seconds, every found segment outlined on
    the diagonal and the boundaries drawn as lines; beside it one panel per stream (P, Nt, Nt) and, in a
    free panel, the boundary contrast ``curve`` (Nt + 1,) with its ``threshold``. Colours are clipped at
    each matrix's 99th percentile so that blocks show beside the bright diagonal."""
    import matplotlib.patches as patches

    m = np.asarray(matrix, dtype=np.float64)
    nt = m.shape[0]
    extent = nt * token_seconds
    edges = [0] + sorted(int(b) for b in boundaries) + [nt]
    fig = _figure(*size_in, dpi)
    panels = (per_stream is not None) or (curve is not None)
    gs = fig.add_gridspec(2, 4 if panels else 2, left=0.05, right=0.98, bottom=0.08, top=0.9, wspace=0.35,
                          hspace=0.4)
    ax = fig.add_subplot(gs[:, :2])
    im = _heatmap(ax, m, extent, f"attention (layer mean of heads and streams, symmetrised), "
                                 f"{plural(len(edges) - 1, 'segment')}")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=7)
    for s, e in zip(edges[:-1], edges[1:]):
        a, b = s * token_seconds, e * token_seconds
        ax.add_patch(patches.Rectangle((a, a), b - a, b - a, fill=False, ec="white", lw=1.2))
    for b in edges[1:-1]:
        for line in (ax.axvline, ax.axhline):
            line(b * token_seconds, color="red", lw=0.8, alpha=0.7)
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("time (s)", fontsize=8)
    slots = [gs[0, 2], gs[0, 3], gs[1, 2], gs[1, 3]] if panels else []
    if per_stream is not None:
        for k, name in enumerate(list(stream_names)[:4 if curve is None else 3]):
            sax = fig.add_subplot(slots.pop(0))
            _heatmap(sax, np.asarray(per_stream[k], dtype=np.float64), extent, STREAM_TITLES.get(name, name))
            for b in edges[1:-1]:
                sax.axvline(b * token_seconds, color="red", lw=0.5, alpha=0.6)
    if curve is not None and slots:
        cax = fig.add_subplot(slots.pop(0))
        x = np.arange(len(curve)) * token_seconds
        cax.plot(x, curve, color="black", lw=1)
        if threshold is not None:
            cax.axhline(threshold, color="gray", ls="--", lw=0.8)
        for b in edges[1:-1]:
            cax.axvline(b * token_seconds, color="red", lw=0.8, alpha=0.7)
        cax.set_xlim(0, extent)
        cax.set_title("boundary contrast", fontsize=9)
        cax.set_xlabel("time (s)", fontsize=8)
        cax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path, dpi)


# ------------------------------------------------------------------------------ segment strip
def plot_segment_strip(path: str | os.PathLike, coords: np.ndarray, present: np.ndarray, layout,
                       segments: Sequence[dict], *, fps: float, columns: int = 8, panel_in: float = 1.8,
                       dpi: int = 100, title: str = "") -> Path:
    """One skeleton per segment, drawn at the segment's middle frame, in rows of ``columns`` panels.

    coords (T, K, 2), present (T, K) in ``layout``; segments as from
    :func:`msmae.analysis.segmentation.segments_from_boundaries` (``start_frame``, ``end_frame`` exclusive).
    The figure is ``max(min(n, columns) * panel_in, 4)`` x ``rows * (panel_in + 0.35) + 0.4`` inches.
    """
    n = max(1, len(segments))
    cols = min(n, columns)
    rows = math.ceil(n / cols)
    fig = _figure(max(cols * panel_in, 4.0), rows * (panel_in + 0.35) + 0.4, dpi)  # >= 4 in: room for the title
    x0, x1, y0, y1 = view_limits(coords, present)
    for i, seg in enumerate(segments):
        ax = fig.add_subplot(rows, cols, i + 1)
        mid = min(max((int(seg["start_frame"]) + int(seg["end_frame"]) - 1) // 2, 0), len(coords) - 1)
        draw_skeleton(ax, coords[mid], present[mid], layout, linewidth=1.0, face_size=0.8)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y1, y0)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{i + 1}  {seg['start_s']:.2f}-{seg['end_s']:.2f} s\nframe {mid}", fontsize=7)
    fig.suptitle(title or f"skeleton at the middle frame of each of {plural(len(segments), 'segment')} ({fps:g} fps)",
                 fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.4 / fig.get_figheight() - 0.02,
                        wspace=0.05, hspace=0.35)
    return _save(fig, path, dpi)
