"""Normalisation of a pose sequence (DESIGN.md "Keypoints").

Coordinates arrive isotropic (x and y in one unit, see :mod:`msmae.poses.sequence`). The default
normalisation moves the origin to the mid-shoulder point and divides by the shoulder width, both
averaged over the frames where *both* shoulders are present, so one similarity transform is
applied to the whole clip (the signer's movement relative to the body is kept).

Fallbacks, each with a logged warning:

- the layout has no ``body`` stream, the shoulders are never present together, or their mean
  width is degenerate (~0): centre on the mean of all present points and scale by their robust
  spread (median distance from that centre, times :data:`SPREAD_TO_SHOULDER_WIDTH` so the result
  is in roughly the same units) -> method ``"fallback"``;
- nothing present at all: the sequence is returned unchanged -> method ``"none"``.

Missing points stay missing: ``present`` is never changed and their coordinates stay 0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from msmae.layout import LEFT_SHOULDER, RIGHT_SHOULDER
from msmae.poses.sequence import PoseSequence

log = logging.getLogger(__name__)

# Shoulder width / median distance of the present points from their mean, measured on six real
# MediaPipe Holistic clips (How2Sign, LSA64): 1.3-5.3 depending on layout and clip, about 2 in
# the middle. It only brings the fallback's unit near a shoulder width; it is not exact.
SPREAD_TO_SHOULDER_WIDTH = 2.0
# A mean shoulder width below this fraction of the points' spread counts as degenerate.
MIN_RELATIVE_WIDTH = 1e-3

METHODS = ("shoulders", "spread", "none")


@dataclass(frozen=True)
class NormalizationParams:
    """A similarity transform ``(coords - centre) / scale`` and how it was found."""

    centre: tuple[float, float]  # (x, y) in the input's units
    scale: float  # input units per output unit (the shoulder width for method "shoulders")
    method: str  # "shoulders", "fallback" or "none"
    frames_used: int  # frames that contributed (both shoulders present, or any point present)

    def to_dict(self) -> dict:
        return {"method": self.method, "centre": [float(self.centre[0]), float(self.centre[1])],
                "scale": float(self.scale), "frames_used": int(self.frames_used)}


def _spread_params(seq: PoseSequence) -> NormalizationParams | None:
    """Mean of all present points and their robust spread; None when nothing is present."""
    pts = seq.coords[seq.present].astype(np.float64)  # (P, 2)
    if len(pts) == 0:
        return None
    centre = pts.mean(axis=0)
    spread = float(np.median(np.linalg.norm(pts - centre, axis=1))) * SPREAD_TO_SHOULDER_WIDTH
    if not spread > 0:  # every present point at one place: keep the unit, only centre
        spread = 1.0
    frames = int(seq.present.any(axis=1).sum())
    return NormalizationParams((float(centre[0]), float(centre[1])), spread, "fallback", frames)


def _shoulder_params(seq: PoseSequence) -> tuple[NormalizationParams | None, str]:
    """Mid-shoulder centre and mean shoulder width, or (None, why not)."""
    if "body" not in seq.layout.names:
        return None, f"layout {seq.layout.spec!r} has no body stream"
    sl = seq.layout.stream_slice("body")
    ls, rs = sl.start + LEFT_SHOULDER, sl.start + RIGHT_SHOULDER
    both = seq.present[:, ls] & seq.present[:, rs]  # (T,)
    n = int(both.sum())
    if n == 0:
        return None, "the shoulders are never both present"
    left = seq.coords[both, ls].astype(np.float64)  # (n, 2)
    right = seq.coords[both, rs].astype(np.float64)
    centre = ((left + right) / 2).mean(axis=0)
    width = float(np.linalg.norm(left - right, axis=1).mean())
    spread = _spread_params(seq)
    if not width > 0 or (spread is not None and width < MIN_RELATIVE_WIDTH * spread.scale):
        return None, f"the mean shoulder width is degenerate ({width:.3g})"
    return NormalizationParams((float(centre[0]), float(centre[1])), width, "shoulders", n), ""


def normalization_params(seq: PoseSequence, *, method: str = "shoulders") -> NormalizationParams:
    """Find the transform :func:`normalize` applies (see the module docstring).

    method: ``"shoulders"`` (default, with the fallback), ``"spread"`` (always the fallback's
    centre and spread) or ``"none"`` (identity).
    """
    if method not in METHODS:
        raise ValueError(f"unknown normalisation method {method!r}; choose from {', '.join(METHODS)}")
    where = seq.source or "pose sequence"
    if method == "none":
        return NormalizationParams((0.0, 0.0), 1.0, "none", 0)
    if method == "shoulders":
        params, why = _shoulder_params(seq)
        if params is not None:
            return params
    else:
        why = "method 'spread' was asked for"
    fallback = _spread_params(seq)
    if fallback is None:
        log.warning("%s: no keypoint is present in any frame; left unnormalised", where)
        return NormalizationParams((0.0, 0.0), 1.0, "none", 0)
    if method == "shoulders":
        log.warning("%s: %s; normalising by the centre and spread of all present points instead",
                    where, why)
    return fallback


def apply_normalization(seq: PoseSequence, params: NormalizationParams) -> PoseSequence:
    """``(coords - centre) / scale`` on present points; ``meta["normalization"]`` records it."""
    centre = np.asarray(params.centre, dtype=np.float64)
    coords = ((seq.coords - centre) / params.scale).astype(np.float32)  # (T, K, 2)
    coords[~seq.present] = 0.0
    out = seq.with_arrays(coords, seq.present.copy())
    out.meta["normalization"] = params.to_dict()
    return out


def normalize(seq: PoseSequence, *, method: str = "shoulders") -> PoseSequence:
    """Centre on the mid-shoulder point and divide by the shoulder width (averaged over the frames
    where both shoulders are present), with the fallbacks of the module docstring.

    Returns a new sequence (coords (T, K, 2), present unchanged) whose ``meta["normalization"]``
    holds ``method``, ``centre`` [x, y] and ``scale`` in the input's units, and ``frames_used``.
    """
    return apply_normalization(seq, normalization_params(seq, method=method))


def denormalize(seq: PoseSequence) -> PoseSequence:
    """Undo :func:`normalize` using ``meta["normalization"]`` (e.g. to draw over the video)."""
    info = seq.meta.get("normalization")
    if not info:
        raise ValueError(f"{seq.source or 'pose sequence'}: has no meta['normalization'] to undo")
    centre = np.asarray(info["centre"], dtype=np.float64)
    coords = (seq.coords.astype(np.float64) * float(info["scale"]) + centre).astype(np.float32)
    coords[~seq.present] = 0.0
    out = seq.with_arrays(coords, seq.present.copy())
    del out.meta["normalization"]
    return out
