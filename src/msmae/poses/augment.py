"""Augmentations of pose sequences (numpy, seedable with ``np.random.Generator``).

- spatial: :func:`random_affine`, one random rotation, shear and scale per sequence about the
  origin, as SignCLIP augments 2D keypoints (normal draws with std 0.2 for each, like
  pose-format's ``augment2d``). Sequences are normalised first, so the origin is the mid-shoulder
  point.
- temporal: :func:`random_temporal_sample` / :func:`uniform_temporal_sample` to N frames (ISLR
  training / evaluation) and :func:`random_drop_duplicate` (SLT: 20% of frames deleted or copied).
- :class:`AugmentConfig` (flags + strengths, buildable from YAML) and :class:`Augmenter`, which
  applies the enabled ones in a fixed order.

Missing keypoints stay missing through every transform: ``present`` is carried along unchanged
(frames are only selected or repeated) and missing coordinates stay 0.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from msmae.poses.sequence import PoseDataError, PoseSequence

# SignCLIP's standard deviations (pose-format ``augment2d`` defaults).
ROTATION_STD = 0.2  # radians
SHEAR_STD = 0.2  # shear factor
SCALE_STD = 0.2  # relative change of the vertical scale


def affine_matrix(*, rotation: float = 0.0, shear: float = 0.0, scale: float = 0.0) -> np.ndarray:
    """The 2x2 matrix M (acting on column vectors, p' = M p) of one augmentation.

    rotation: angle in radians, from +x towards +y (in image coordinates, where y points down,
        a positive angle turns clockwise on screen).
    shear: horizontal shear factor, x' = x + shear * y.
    scale: relative vertical stretch, y' = (1 + scale) * y (the horizontal unit is kept, so the
        aspect ratio changes; an overall scale would be undone by normalisation anyway).
    Applied in the order scale, shear, rotation: M = R @ H @ S. All zero gives the identity.
    """
    c, s = np.cos(rotation), np.sin(rotation)
    rot = np.array([[c, -s], [s, c]])
    she = np.array([[1.0, shear], [0.0, 1.0]])
    sca = np.diag([1.0, 1.0 + scale])
    return rot @ she @ sca


def apply_affine(seq: PoseSequence, matrix: np.ndarray) -> PoseSequence:
    """Transform the present points by a 2x2 matrix about the origin; missing points stay 0."""
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 2):
        raise ValueError(f"expected a 2x2 matrix, got shape {matrix.shape}")
    coords = (seq.coords.astype(np.float64) @ matrix.T).astype(np.float32)  # (T, K, 2)
    coords[~seq.present] = 0.0
    return seq.with_arrays(coords, seq.present.copy())


def random_affine(seq: PoseSequence, rng: np.random.Generator, *, rotation: float = ROTATION_STD,
                  shear: float = SHEAR_STD, scale: float = SCALE_STD) -> PoseSequence:
    """One random rotation, shear and scale for the whole sequence, about the origin.

    Each argument is the standard deviation of a normal draw (0 switches that part off; all
    three 0 is the identity). The vertical scale factor is kept at least 0.1.
    """
    for name, v in (("rotation", rotation), ("shear", shear), ("scale", scale)):
        if v < 0:
            raise ValueError(f"{name} strength must be >= 0, got {v}")
    angle = rng.normal(0.0, rotation) if rotation > 0 else 0.0
    k = rng.normal(0.0, shear) if shear > 0 else 0.0
    stretch = max(rng.normal(0.0, scale), -0.9) if scale > 0 else 0.0
    return apply_affine(seq, affine_matrix(rotation=angle, shear=k, scale=stretch))


def _check_frames(seq: PoseSequence, num_frames: int) -> None:
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if seq.num_frames == 0:
        raise PoseDataError(f"{seq.source or 'pose sequence'}: cannot sample frames from an empty sequence")


def random_temporal_indices(length: int, num_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``num_frames`` frames out of ``length``.

    length >= num_frames: a random subset without repeats. Shorter clips: every frame once plus
    ``num_frames - length`` random repeats, so the output always has ``num_frames`` frames.
    """
    if length >= num_frames:
        idx = rng.choice(length, size=num_frames, replace=False)
    else:
        idx = np.concatenate([np.arange(length), rng.integers(0, length, size=num_frames - length)])
    return np.sort(idx).astype(np.int64)


def random_temporal_sample(seq: PoseSequence, num_frames: int, rng: np.random.Generator) -> PoseSequence:
    """``num_frames`` frames in time order at random (see :func:`random_temporal_indices`).

    fps is scaled by num_frames / T so that the duration is kept.
    """
    _check_frames(seq, num_frames)
    out = seq.take_frames(random_temporal_indices(seq.num_frames, num_frames, rng))
    out.fps = seq.fps * num_frames / seq.num_frames
    return out


def uniform_temporal_sample(seq: PoseSequence, num_frames: int) -> PoseSequence:
    """``num_frames`` evenly spread frames (repeats for short clips); fps scaled to keep duration."""
    _check_frames(seq, num_frames)
    return seq.resample(num_frames)


def drop_duplicate_counts(length: int, rng: np.random.Generator, fraction: float = 0.2) -> np.ndarray:
    """How often each of ``length`` frames appears after random deletion/duplication (0, 1 or 2).

    ``round(fraction * length)`` distinct frames are chosen; each is deleted or duplicated with
    equal chance. At least one frame always remains.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    counts = np.ones(length, dtype=np.int64)
    n = int(round(fraction * length))
    if n == 0:
        return counts
    chosen = rng.choice(length, size=n, replace=False)
    delete = rng.random(n) < 0.5
    counts[chosen[delete]] = 0
    counts[chosen[~delete]] = 2
    if counts.sum() == 0:
        counts[chosen[0]] = 1
    return counts


def random_drop_duplicate(seq: PoseSequence, rng: np.random.Generator, fraction: float = 0.2) -> PoseSequence:
    """Randomly delete or duplicate ``fraction`` of the frames (SLT's temporal augmentation).

    Frame order is kept; fps is unchanged (the clip plays a little faster or slower).
    """
    if seq.num_frames == 0:
        return seq.with_arrays(seq.coords.copy(), seq.present.copy())
    counts = drop_duplicate_counts(seq.num_frames, rng, fraction)
    return seq.take_frames(np.repeat(np.arange(seq.num_frames), counts))


TEMPORAL_MODES = ("none", "random", "uniform")


@dataclass(kw_only=True)
class AugmentConfig:
    """Which augmentations run and how strong they are; defaults are the paper's ISLR training
    settings except the temporal ones, which each task switches on."""

    affine: bool = True  # random rotation, shear and scale (SignCLIP), off for JSL in the paper
    rotation: float = ROTATION_STD  # std of the rotation angle, radians
    shear: float = SHEAR_STD  # std of the horizontal shear factor
    scale: float = SCALE_STD  # std of the relative vertical stretch
    drop_duplicate: bool = False  # randomly delete or copy frames (SLT training)
    drop_duplicate_fraction: float = 0.2  # fraction of frames deleted or copied (SLT: 20%)
    temporal: str = "none"  # resample to num_frames: "none", "random" (ISLR training), "uniform"
    num_frames: int = 32  # frames after temporal sampling (ISLR: 32)

    def __post_init__(self) -> None:
        if self.temporal not in TEMPORAL_MODES:
            raise ValueError(f"temporal must be one of {', '.join(TEMPORAL_MODES)}, got {self.temporal!r}")
        for name in ("rotation", "shear", "scale"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.drop_duplicate_fraction <= 1.0:
            raise ValueError(f"drop_duplicate_fraction must be in [0, 1], got {self.drop_duplicate_fraction}")
        if self.num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {self.num_frames}")

    @classmethod
    def from_dict(cls, data: dict | None) -> "AugmentConfig":
        """Build from a YAML mapping; unknown keys are an error naming the known ones."""
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown augmentation keys {unknown}; known: {', '.join(sorted(known))}")
        return cls(**data)


class Augmenter:
    """Applies the enabled augmentations of an :class:`AugmentConfig`, in the order
    drop/duplicate -> temporal sampling -> affine (spatial last, on the fewest frames)."""

    def __init__(self, config: AugmentConfig | None = None) -> None:
        self.config = config or AugmentConfig()

    def __call__(self, seq: PoseSequence, rng: np.random.Generator) -> PoseSequence:
        c = self.config
        if c.drop_duplicate:
            seq = random_drop_duplicate(seq, rng, c.drop_duplicate_fraction)
        if c.temporal == "random":
            seq = random_temporal_sample(seq, c.num_frames, rng)
        elif c.temporal == "uniform":
            seq = uniform_temporal_sample(seq, c.num_frames)
        if c.affine:
            seq = random_affine(seq, rng, rotation=c.rotation, shear=c.shear, scale=c.scale)
        return seq
