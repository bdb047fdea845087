"""One offline HTML page per clip (``view.html``): the video with the skeleton msmae read drawn over it (or the
skeleton alone), the automatic segments on a timeline, a presence strip per stream, the attention heatmap with
the playhead on both axes, and what ISLR and SLT runs make of the clip.

The page is one file with its script and style inline (``view_template.html``, shipped with the package) and
nothing fetched from the network, so it opens from ``file://``. Only the video, when there is one, lies beside it
(``view.<suffix>``, a copy of the user's file: never a link, so the user's file is never changed).

Keypoints travel compactly: coordinates quantised to int16 on a grid of ``span / 2048`` (``span`` = the
larger side of the box holding 99% of the present points: a quarter pixel for a signer 500 px wide), missing
points holding their last value, differenced over time, split into low and high byte planes and deflated (zlib),
then base64; presence as bits, deflated. The page inflates them with the browser's ``DecompressionStream``
(Chromium 80+, Firefox 113+, Safari 16.4+). The heatmap is a PNG (data URI) of at most ``HEATMAP_MAX_PIXELS``
square, token blocks averaged where the clip has more tokens than that.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import os
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Sequence

import numpy as np

from msmae.poses.sequence import PoseSequence

log = logging.getLogger(__name__)

PAGE = "view.html"
QUANT_LEVELS = 2048        # grid steps across the larger side of the keypoints' (robust) bounding box
HEATMAP_MAX_PIXELS = 1200  # the heatmap PNG is at most this many pixels square


# ------------------------------------------------------------------------------ keypoints
def encode_keypoints(coords: np.ndarray, present: np.ndarray) -> dict:
    """coords (T, K, 2), present (T, K) -> the page's compact keypoints (see the module docstring).

    Returns {"encoding", "frames", "points", "origin": [x, y], "step", "coords": base64, "present": base64}.
    """
    coords = np.asarray(coords, dtype=np.float64)
    present = np.asarray(present, dtype=bool)
    t, k = present.shape
    pts = coords[present]
    lo = np.percentile(pts, 0.5, axis=0) if pts.size else np.zeros(2)
    hi = np.percentile(pts, 99.5, axis=0) if pts.size else np.ones(2)
    step = max(float((hi - lo).max()), 1e-6) / QUANT_LEVELS
    origin = (lo + hi) / 2
    q = np.zeros((t, k, 2), dtype=np.int64)
    # +-32767 steps from the middle = 16 robust spans either way: only wild detections are clipped.
    q[present] = np.clip(np.rint((pts - origin) / step), -32767, 32767).astype(np.int64)
    # A missing point holds its last value (its first seen value before that): its deltas are 0.
    if t:
        idx = np.where(present, np.arange(t)[:, None], -1)
        idx = np.maximum.accumulate(idx, axis=0)
        first = np.argmax(present, axis=0)                  # (K,) first frame with the point (0 if never)
        idx = np.where(idx < 0, first[None, :], idx)
        q = q[idx, np.arange(k)[None, :]]
    delta = np.diff(q, axis=0, prepend=np.zeros((1, k, 2), dtype=np.int64)).astype(np.int16)  # wraps mod 2^16
    planes = delta.astype("<i2").view(np.uint8).reshape(-1, 2)  # low bytes, then high bytes: deflates better
    data = planes[:, 0].tobytes() + planes[:, 1].tobytes()
    bits = np.packbits(present.reshape(-1))                 # big-endian bit order within a byte
    return {"encoding": "int16-delta-planes-deflate", "frames": int(t), "points": int(k),
            "origin": [float(origin[0]), float(origin[1])], "step": step,
            "coords": base64.b64encode(_deflate(data)).decode("ascii"),
            "present": base64.b64encode(_deflate(bits.tobytes())).decode("ascii")}


def decode_keypoints(enc: dict) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`encode_keypoints` (what the page computes): (coords (T, K, 2) float32, 0 where
    missing, present (T, K) bool)."""
    import zlib

    t, k = int(enc["frames"]), int(enc["points"])
    raw = np.frombuffer(zlib.decompress(base64.b64decode(enc["coords"])), dtype=np.uint8)
    n = t * k * 2
    delta = (raw[:n].astype(np.uint16) | (raw[n:].astype(np.uint16) << 8)).view(np.int16).reshape(t, k, 2)
    q = np.cumsum(delta.astype(np.int64), axis=0).astype(np.int16).astype(np.float64)
    bits = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(enc["present"])), dtype=np.uint8))
    present = bits[: t * k].reshape(t, k).astype(bool)
    coords = (np.asarray(enc["origin"])[None, None] + q * enc["step"]).astype(np.float32)
    coords[~present] = 0.0
    return coords, present


def _deflate(data: bytes) -> bytes:
    import zlib

    return zlib.compress(data, 6)  # level 9 is 4x slower for 1% less


# ------------------------------------------------------------------------------ heatmap
def heatmap_png(matrix: np.ndarray, max_pixels: int = HEATMAP_MAX_PIXELS) -> tuple[bytes, int]:
    """(PNG bytes, tokens per pixel) of a (Nt, Nt) attention matrix: viridis, clipped at the 99th percentile as
    in ``attention.png``, NaN (never computed) light grey. Longer matrices are averaged over f x f token blocks
    (f = ceil(Nt / max_pixels)); pixel p covers tokens [p f, (p + 1) f)."""
    import matplotlib
    from PIL import Image

    m = np.asarray(matrix, dtype=np.float64)
    n = m.shape[0]
    f = max(1, math.ceil(n / max_pixels))
    if f > 1:
        pad = (-n) % f
        m = np.pad(m, ((0, pad), (0, pad)), constant_values=np.nan)
        p = m.shape[0] // f
        with np.errstate(invalid="ignore"), _quiet_nanmean():
            m = np.nanmean(m.reshape(p, f, p, f).transpose(0, 2, 1, 3).reshape(p, p, f * f), axis=2)
    finite = m[np.isfinite(m)]
    vmin = float(finite.min()) if finite.size else 0.0
    vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#dddddd")
    norm = matplotlib.colors.Normalize(vmin=vmin, vmax=max(vmax, vmin + 1e-12), clip=True)
    rgba = cmap(norm(np.ma.masked_invalid(m)), bytes=True)
    buf = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buf, format="PNG", optimize=True)
    return buf.getvalue(), f


class _quiet_nanmean:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)  # "Mean of empty slice" where a block is all NaN

    def __exit__(self, *exc):
        return self._w.__exit__(*exc)


# ------------------------------------------------------------------------------ the page
def _skeleton_spec(layout) -> tuple[list[dict], list[list]]:
    """Streams (name, title, first point, size, colour, bones, dots) and the body-wrist -> hand-wrist links."""
    from msmae.analysis.plots import BODY_EDGES, HAND_EDGES, STREAM_TITLES

    colors = {"body": "#f0f0f0", "left_hand": "#4aa3ff", "right_hand": "#ff5a4f", "face": "#ffd34d"}
    sl = layout.slices()
    streams = []
    for name, s in sl.items():
        edges = BODY_EDGES if name == "body" else HAND_EDGES if name in ("left_hand", "right_hand") else ()
        streams.append({"name": name, "title": STREAM_TITLES.get(name, name), "start": s.start,
                        "size": s.stop - s.start, "color": colors.get(name, "#cccccc"),
                        "edges": [list(e) for e in edges], "dots": name != "body"})
    links = []
    if "body" in sl:
        for wrist, hand in ((4, "left_hand"), (5, "right_hand")):
            if hand in sl:
                links.append([sl["body"].start + wrist, sl[hand].start, colors[hand]])
    return streams, links


def page_data(seq: PoseSequence, *, analysis=None, islr: Sequence[dict] = (), slt: Sequence[dict] = (),
              video: str | None = None, title: str | None = None, source: str | None = None,
              models: Sequence[dict] = (), notes: Sequence[str] = ()) -> dict:
    """Everything the page shows, as one JSON-able dict.

    seq: the clip's keypoints as read (not normalised: drawn over the video in its pixel frame, x and y in
    units of the frame height); analysis: a :class:`msmae.analysis.report.Analysis` (heatmap and segments) or
    None; islr: [{"run", "classes", "clip": [{rank, label, probability}], "segments": [[...] per segment]}];
    slt: [{"run", "language", "text"}]; video: the video's file name relative to the page; models:
    [{"run", "task"}] shown in the header; notes: lines shown under it.
    """
    from msmae.analysis.plots import view_limits

    streams, links = _skeleton_spec(seq.layout)
    x0, x1, y0, y1 = view_limits(seq.coords, seq.present)
    data = {
        "version": 1, "title": title or (Path(source).name if source else "msmae view"), "source": source,
        "fps": float(seq.fps), "frames": seq.num_frames, "width": seq.width, "height": seq.height,
        "video": video, "streams": streams, "links": links, "bounds": [x0, x1, y0, y1],
        "keypoints": encode_keypoints(seq.coords, seq.present),
        "segments": [], "attention": None, "islr": list(islr), "slt": list(slt),
        "models": list(models), "notes": list(notes),
    }
    if analysis is not None:
        att = analysis.attention
        png, per_pixel = heatmap_png(att.matrix)
        data["segments"] = [{k: s[k] for k in ("index", "start_frame", "end_frame", "start_s", "end_s",
                                               "start_token", "end_token")} for s in analysis.segments]
        data["attention"] = {"png": "data:image/png;base64," + base64.b64encode(png).decode("ascii"),
                             "tokens": att.num_tokens, "tokens_per_pixel": per_pixel,
                             "pixels": math.ceil(att.num_tokens / per_pixel), "token_frames": att.token_frames,
                             "token_s": att.token_seconds, "layer": att.layer, "streams": list(att.averaged),
                             "chunk_tokens": att.chunk_tokens}
    return data


def render_page(data: dict) -> str:
    """The HTML text of the page for :func:`page_data`'s dict."""
    template = resources.files("msmae.analysis").joinpath("view_template.html").read_text(encoding="utf-8")
    # "<" only occurs inside JSON strings, where \u003c means the same: no "</script>" can end the block early.
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    fill = {"TITLE": html.escape(str(data.get("title") or "msmae view")), "DATA": blob}
    # One pass: a title or file name holding a placeholder's text is not filled in again.
    return re.sub(r"__MSMAE_(TITLE|DATA)__", lambda m: fill[m.group(1)], template)


def place_video(video: str | os.PathLike, out_dir: str | os.PathLike) -> str:
    """Copy ``video`` beside the page as ``view.<suffix>`` (replaced atomically) and return that name.

    A copy, never a hard link: a link shares the user's inode, so setting the page's permissions would change
    the user's file. The copy gets the permissions a new file gets (the umask), but no read permission the
    user's file does not give (a private 0600 video gives a private copy), as ``cp`` does; the user's file
    keeps its mode, content, times and link count."""
    from msmae.utils import atomic_path, current_umask

    src = Path(video)
    name = "view" + src.suffix.lower()
    dst = Path(out_dir) / name
    if dst.exists() and os.path.samefile(src, dst) and os.stat(dst).st_nlink == 1:
        return name  # the page's own video (a hard link an older msmae made is replaced by a copy below)
    mode = 0o666 & ~current_umask() & (os.stat(src).st_mode | 0o200)  # writable by its owner, to be replaced
    with atomic_path(dst, suffix=src.suffix, mode=mode) as tmp:
        shutil.copyfile(src, tmp)
    return name


def write_view(out_dir: str | os.PathLike, seq: PoseSequence, *, video: str | os.PathLike | None = None,
               **kwargs) -> Path:
    """Write ``out_dir/view.html`` (and the video beside it, see :func:`place_video`); returns the page's path.
    Keyword arguments are those of :func:`page_data`."""
    from msmae.utils import atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    name = place_video(video, out) if video is not None else None
    page = out / PAGE
    atomic_write_text(page, render_page(page_data(seq, video=name, **kwargs)))
    log.debug("wrote %s (%d bytes)", page, page.stat().st_size)
    return page
