"""`PoseSequence`: keypoints of one video in a msmae layout.

Coordinates are isotropic: x and y share one unit (for MediaPipe's normalised image
coordinates, x is multiplied by width/height; for pixel coordinates both are divided by the
height), so distances mean the same along both axes before normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from msmae.layout import CANONICAL, Layout, get_layout


class PoseDataError(ValueError):
    """A pose file or array that cannot be used, with a message naming the source and the problem."""


@dataclass
class PoseSequence:
    """Keypoints of one clip.

    coords:  float32 (T, K, 2), x and y in isotropic units; 0 where not present.
    present: bool (T, K), True where the source detected the keypoint.
    fps:     frames per second of the source.
    layout:  which canonical streams the K points are.
    width, height: source frame size in pixels when known.
    source:  a path or name for messages.
    """

    coords: np.ndarray
    present: np.ndarray
    fps: float
    layout: Layout = CANONICAL
    width: int | None = None
    height: int | None = None
    source: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.coords = np.asarray(self.coords, dtype=np.float32)
        self.present = np.asarray(self.present, dtype=bool)
        where = self.source or "pose sequence"
        if self.coords.ndim != 3 or self.coords.shape[2] != 2:
            raise PoseDataError(f"{where}: coords must have shape (T, K, 2), got {self.coords.shape}")
        if self.present.shape != self.coords.shape[:2]:
            raise PoseDataError(
                f"{where}: present must have shape {self.coords.shape[:2]}, got {self.present.shape}")
        if self.coords.shape[1] != self.layout.num_points:
            raise PoseDataError(
                f"{where}: layout {self.layout.spec!r} has {self.layout.num_points} points, "
                f"coords have {self.coords.shape[1]}")
        if not (np.isfinite(self.fps) and self.fps > 0):
            raise PoseDataError(f"{where}: fps must be a positive number, got {self.fps}")
        bad = ~np.isfinite(self.coords).all(axis=2) & self.present
        if bad.any():
            raise PoseDataError(
                f"{where}: {int(bad.sum())} keypoints are marked present but have NaN/inf coordinates")
        # Missing points carry no value: keep them exactly zero so that nothing leaks from them.
        self.coords[~self.present] = 0.0

    # ------------------------------------------------------------------ basic properties
    @property
    def num_frames(self) -> int:
        return int(self.coords.shape[0])

    def __len__(self) -> int:
        return self.num_frames

    @property
    def duration_s(self) -> float:
        return self.num_frames / float(self.fps)

    def stream(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(coords (T, K_p, 2), present (T, K_p)) of one stream (views, not copies)."""
        sl = self.layout.stream_slice(name)
        return self.coords[:, sl], self.present[:, sl]

    def present_fraction(self) -> dict[str, float]:
        """Stream name -> fraction of that stream's keypoints present over all frames."""
        out = {}
        for name, sl in self.layout.slices().items():
            p = self.present[:, sl]
            out[name] = float(p.mean()) if p.size else 0.0
        return out

    # ------------------------------------------------------------------ transforms (new objects)
    def with_arrays(self, coords: np.ndarray, present: np.ndarray, **changes) -> "PoseSequence":
        return replace(self, coords=coords, present=present, meta=dict(self.meta), **changes)

    def slice_frames(self, start: int | None = None, stop: int | None = None) -> "PoseSequence":
        """Frames [start, stop) (Python slice semantics)."""
        sl = slice(start, stop)
        return self.with_arrays(self.coords[sl].copy(), self.present[sl].copy())

    def __getitem__(self, item: slice) -> "PoseSequence":
        if not isinstance(item, slice):
            raise TypeError("index a PoseSequence with a frame slice, e.g. seq[10:50]")
        return self.with_arrays(self.coords[item].copy(), self.present[item].copy())

    def take_frames(self, indices: Sequence[int] | np.ndarray) -> "PoseSequence":
        """Frames at the given indices (repeats allowed); fps is kept."""
        idx = np.asarray(indices, dtype=np.int64)
        return self.with_arrays(self.coords[idx].copy(), self.present[idx].copy())

    def select(self, streams: str | Iterable[str] | Layout) -> "PoseSequence":
        """Keep only some streams, e.g. ``seq.select("body,hands")``."""
        target = get_layout(streams)
        idx = target.indices_in(self.layout)
        return self.with_arrays(self.coords[:, idx].copy(), self.present[:, idx].copy(), layout=target)

    def resample(self, num_frames: int) -> "PoseSequence":
        """Uniformly resample to ``num_frames`` frames (nearest frame; fps scaled so duration holds)."""
        if num_frames <= 0:
            raise ValueError("num_frames must be positive")
        if self.num_frames == 0:
            raise PoseDataError(f"{self.source or 'pose sequence'}: cannot resample an empty sequence")
        idx = uniform_indices(self.num_frames, num_frames)
        out = self.take_frames(idx)
        out.fps = self.fps * num_frames / self.num_frames
        return out

    @staticmethod
    def concatenate(seqs: Sequence["PoseSequence"]) -> "PoseSequence":
        """Join sequences along time. They must share layout and frame rate (resample first otherwise)."""
        if not seqs:
            raise ValueError("nothing to concatenate")
        first = seqs[0]
        for s in seqs[1:]:
            if s.layout != first.layout:
                raise ValueError(f"layouts differ: {first.layout.spec} vs {s.layout.spec}")
            if abs(s.fps - first.fps) > 1e-6 * first.fps:
                raise ValueError(f"frame rates differ: {first.fps:g} vs {s.fps:g} fps")
        return first.with_arrays(
            np.concatenate([s.coords for s in seqs]), np.concatenate([s.present for s in seqs]))


def uniform_indices(length: int, num: int) -> np.ndarray:
    """``num`` frame indices spread evenly over ``length`` frames (centre of each bin)."""
    return np.minimum(((np.arange(num) + 0.5) * length / num).astype(np.int64), length - 1)
