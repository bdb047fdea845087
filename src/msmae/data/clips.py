"""Prepared clips of pose files (read, cut, normalised, the model's streams) and the dataset that samples
them for ISLR training and evaluation (SLT's sentences: :mod:`msmae.data.sentences`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np

from msmae.data.common import epoch_and_index


@dataclass
class Clip:
    """A prepared clip: normalised keypoints of the model's streams, ready for sampling.

    coords:  float16 (T, K, 2) normalised coordinates (0 where not present).
    present: bool (T, K).
    """

    coords: np.ndarray
    present: np.ndarray
    fps: float
    layout: object = None  # the msmae.layout.Layout of the K points

    @property
    def num_frames(self) -> int:
        return int(self.coords.shape[0])


def prepare_clip(seq, *, layout, normalize: str = "shoulders") -> Clip:
    """A canonical :class:`~msmae.poses.PoseSequence` (already cut) -> :class:`Clip` of ``layout``'s
    streams, normalised over the clip's own frames. Raises ``PoseDataError`` for an empty clip."""
    from msmae.poses.normalize import normalize as _normalize
    from msmae.poses.sequence import PoseDataError

    where = seq.source or "clip"
    if seq.num_frames == 0:
        raise PoseDataError(f"{where}: empty clip (zero frames)")
    seq = seq.select(layout)
    if not seq.present.any():
        raise PoseDataError(f"{where}: empty clip (no keypoint of {layout.spec} is present in any frame)")
    seq = _normalize(seq, method=normalize)
    coords = seq.coords.astype(np.float16)
    if not np.isfinite(coords[seq.present]).all():
        raise PoseDataError(f"{where}: coordinates overflow after normalisation")
    return Clip(coords, seq.present.copy(), float(seq.fps), seq.layout)


def load_clip(example, *, layout, normalize: str = "shoulders") -> Clip:
    """Read an example's pose file, cut its frame range, normalise and keep ``layout``'s streams."""
    from msmae.poses.readers import read_sequence
    from msmae.poses.sequence import PoseDataError

    seq = read_sequence(example.pose_path)
    if example.unit == "frame" and example.range_fps is None and seq.meta.get("frame_stride", 1) > 1:
        example = replace(example, range_fps=seq.meta["source_fps"])  # ranges count source frames
    first, stop = example.frame_bounds(seq.fps)
    if first > 0 or stop is not None:
        if first >= seq.num_frames:
            raise PoseDataError(f"{example.pose_path}: empty clip (range starts at frame {first}, "
                                f"the file has {seq.num_frames} frames)")
        seq = seq.slice_frames(first, stop)
    return prepare_clip(seq, layout=layout, normalize=normalize)


def _load_one(args) -> tuple[Clip | None, str | None]:
    example, layout_spec, normalize = args
    from msmae.layout import get_layout

    try:
        return load_clip(example, layout=get_layout(layout_spec), normalize=normalize), None
    except Exception as e:  # reported with the example, never silently dropped
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        kind = "empty clip" if "empty clip" in msg else "unreadable pose file"
        return None, f"{kind}: {msg}"


def load_clips(examples: Sequence, *, layout, normalize: str = "shoulders", workers: int = 1,
               progress: bool = True, desc: str = "clips") -> tuple[list[Clip | None], list[tuple[str, str]]]:
    """Load every example's clip (in ``workers`` processes). Returns the clips (None where one could
    not be used) and the ``(id, reason)`` of each failure (empty clip, unreadable pose file)."""
    from msmae.data.common import load_in_workers

    jobs = [(e, layout.spec, normalize) for e in examples]
    results: list[tuple[Clip | None, str | None]] = load_in_workers(
        _load_one, jobs, workers=workers, min_parallel=8, progress=progress, desc=desc)
    clips = [c for c, _ in results]
    problems = [(e.id, err) for e, (_, err) in zip(examples, results) if err is not None]
    return clips, problems


class ClipDataset:
    """Map-style dataset of clips -> ``{"coords": float32 (N, K, 2), "label": int, "index": int}``.

    Training (``train=True``): N frames drawn at random in time order (repeats for short clips), then
    one random rotation/shear/scale when ``affine``; each item's randomness is a function of
    (seed, epoch, index): the epoch comes with the key (``(epoch, index)``, as
    :class:`msmae.train.loop.EpochSampler` passes it, reaching persistent workers) or from :meth:`set_epoch`. Evaluation: N evenly spread frames.
    """

    def __init__(self, clips: Sequence[Clip], labels: Sequence[int], *, num_frames: int = 32, train: bool = False,
                 affine: bool = True, rotation: float = 0.2, shear: float = 0.2, scale: float = 0.2,
                 seed: int = 0) -> None:
        if len(clips) != len(labels):
            raise ValueError(f"{len(clips)} clips but {len(labels)} labels")
        self.clips, self.labels = list(clips), np.asarray(labels, dtype=np.int64)
        self.num_frames, self.train, self.seed = num_frames, train, seed
        self.affine = dict(rotation=rotation, shear=shear, scale=scale) if (train and affine) else None
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frames(self, i: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Frame indices of item ``i`` (random when training, else uniform)."""
        from msmae.poses.augment import random_temporal_indices
        from msmae.poses.sequence import uniform_indices

        t = self.clips[i].num_frames
        if self.train:
            return random_temporal_indices(t, self.num_frames, rng)
        return uniform_indices(t, self.num_frames)

    def __getitem__(self, key) -> dict:
        from msmae.poses.augment import random_affine
        from msmae.poses.sequence import PoseSequence

        epoch, i = epoch_and_index(key, self.epoch)
        clip = self.clips[i]
        rng = np.random.default_rng([self.seed, epoch, i]) if self.train else None
        idx = self.frames(i, rng)
        coords = clip.coords[idx].astype(np.float32)          # (N, K, 2)
        if self.affine is not None:
            seq = PoseSequence(coords, clip.present[idx], clip.fps, clip.layout)
            coords = random_affine(seq, rng, **self.affine).coords
        return {"coords": coords, "label": int(self.labels[i]), "index": i}
