"""Extract one clip: frames -> MediaPipe Holistic -> arrays, a ``.pose`` file or a `PoseSequence`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from msmae.extract.frames import FrameReadError, probe, read_rgb_frames
from msmae.extract.holistic import HolisticModel
from msmae.extract.sources import Clip
from msmae.poses.sequence import PoseSequence

log = logging.getLogger(__name__)

DEFAULT_FRAMES_FPS = 25.0  # PHOENIX-2014T and CSL-Daily frame folders are 25 fps
PROGRESS_EVERY = 8  # frames between progress callbacks


@dataclass
class Extraction:
    """MediaPipe Holistic output of one clip.

    xyz:   float32 (T, K, 3), K = 543 (553 with the refined face), GISLR order: face, left hand,
           pose, right hand; x, y normalised image coordinates, z as MediaPipe gives it; NaN where
           a part was not detected.
    conf:  float32 (T, K): pose visibility, 1 for detected face and hand points, 0 where not detected.
    world: float32 (T, 33, 3) pose world landmarks (metres, hip-centred), NaN where no pose.
    fps: of the extracted frames (source fps / frame_stride); width, height of the source.
    frame_stride: Holistic ran on every n-th source frame; source_fps: the source's rate.
    face: False when extracted without the face model (the face points are NaN and the
          ``.pose`` has no face component).
    """

    xyz: np.ndarray
    conf: np.ndarray
    world: np.ndarray
    fps: float
    width: int
    height: int
    source: str
    first_frame: int = 0  # index in the source of the first extracted frame
    refined_face: bool = False
    frame_stride: int = 1
    source_fps: float | None = None
    face: bool = True
    model_complexity: int = 1

    def metadata(self) -> dict:
        """What the ``.pose`` trailer records (see :mod:`msmae.poses.posemeta`)."""
        streams = ["body", "left_hand", "right_hand"] + (["face"] if self.face else [])
        return {"format": "msmae-extract", "version": 1, "frame_stride": self.frame_stride,
                "source_fps": float(self.source_fps or self.fps * self.frame_stride),
                "first_frame": self.first_frame, "streams": streams,
                "model_complexity": self.model_complexity, "refine_face": self.refined_face}

    @property
    def num_frames(self) -> int:
        return int(self.xyz.shape[0])

    def to_sequence(self) -> PoseSequence:
        """The canonical 160-point `PoseSequence` (isotropic x, y; present where detected)."""
        from msmae.poses.readers import holistic_to_sequence

        seq = holistic_to_sequence(self.xyz, fps=self.fps, width=self.width, height=self.height,
                                   source=self.source)
        seq.meta.update(source_layout=f"holistic-{self.xyz.shape[1]}", first_frame=self.first_frame,
                        absent_points={}, frame_stride=self.frame_stride, extraction=self.metadata(),
                        source_fps=float(self.source_fps or self.fps * self.frame_stride))
        if not self.face:
            from msmae.layout import STREAMS_BY_NAME

            seq.meta["absent_points"] = {"face": list(STREAMS_BY_NAME["face"].indices)}
        return seq

    def write(self, path: str | os.PathLike) -> Path:
        """Write a full holistic pose-format ``.pose`` (atomically)."""
        from msmae.poses.writers import write_holistic_pose

        return write_holistic_pose(path, self.xyz, self.conf, fps=self.fps, width=self.width,
                                   height=self.height, refined_face=self.refined_face, world=self.world,
                                   face=self.face, extraction=self.metadata())


def extract_clip(clip: Clip, model: HolisticModel, *, frames_fps: float = DEFAULT_FRAMES_FPS,
                 seek: bool = True, on_frames: Callable[[int], None] | None = None,
                 frame_stride: int = 1) -> Extraction:
    """Run ``model`` over the frames of ``clip`` (the model is reset first).

    frame_stride: run the model on every n-th frame of the clip only (the first, n+1-th, ...); the
        frames in between are decoded but not converted, and the model's clock advances over them.
        The result's fps is the source fps / n.
    on_frames: called with the number of frames processed since the last call (progress).
    Raises :class:`FrameReadError` for an unreadable source or an empty range.
    """
    info = probe(clip.source, frames_fps)
    start, stop = clip.frames(info.fps)
    model.reset()
    xyzs, confs, worlds = [], [], []
    pending = 0
    size = None  # (height, width) of the decoded frames (a rotated phone video differs from its header)
    if frame_stride < 1:
        raise ValueError(f"frame_stride must be >= 1, got {frame_stride}")
    for rgb in read_rgb_frames(clip.source, start=start, stop=stop, seek=seek, step=frame_stride):
        if size is None:
            size = rgb.shape[:2]
        elif rgb.shape[:2] != size:
            at = start + len(xyzs) * frame_stride
            raise FrameReadError(f"{clip.source}: frame {at} is {rgb.shape[1]}x{rgb.shape[0]}, "
                                 f"earlier frames are {size[1]}x{size[0]}")
        if xyzs:
            model.skip(frame_stride - 1)
        xyz, conf, world = model.process(rgb)
        xyzs.append(xyz)
        confs.append(conf)
        worlds.append(world)
        pending += 1
        if on_frames is not None and pending >= PROGRESS_EVERY:
            on_frames(pending)
            pending = 0
    if on_frames is not None and pending:
        on_frames(pending)
    if not xyzs:
        have = f"{info.num_frames} frames ({info.num_frames / info.fps:.2f} s at {info.fps:g} fps)"
        if start > 0 or stop is not None:
            raise FrameReadError(f"{clip.describe()}: the clip has no frames; the source has {have}")
        raise FrameReadError(f"{clip.source}: no frame could be decoded (header says {have})")
    if not clip.is_frames and info.num_frames > 0:
        # Decoding that stops well before the header's frame count = a truncated or corrupt file
        # (header counts of some containers are estimates, hence the tolerance).
        expected = min(info.num_frames, stop if stop is not None else info.num_frames) - start
        got = len(xyzs) * frame_stride
        if got < expected - max(3, 0.05 * expected):
            raise FrameReadError(f"{clip.source}: decoding stopped after {got} of {expected} frames "
                                 f"(truncated or corrupt video)")
    return Extraction(xyz=np.stack(xyzs), conf=np.stack(confs), world=np.stack(worlds),
                      fps=info.fps / frame_stride, width=int(size[1]), height=int(size[0]),
                      source=str(clip.source), first_frame=start, refined_face=model.settings.refine_face,
                      frame_stride=frame_stride, source_fps=info.fps, face=model.settings.face,
                      model_complexity=model.settings.model_complexity)


def extract_video(path: str | os.PathLike, *, start_s: float | None = None, end_s: float | None = None,
                  start_frame: int | None = None, stop_frame: int | None = None,
                  fps: float = DEFAULT_FRAMES_FPS, model_complexity: int = 1, refine_face: bool = False,
                  seek: bool = True, model: HolisticModel | None = None, frame_stride: int = 1,
                  face: bool = True) -> Extraction:
    """MediaPipe Holistic on one video file or frame folder, in this process.

    start_s, end_s: optional time range in seconds, ``[start_s, end_s)``; or start_frame,
        stop_frame: a 0-based frame range ``[start_frame, stop_frame)``.
    fps: frame rate of a frame folder (videos use their own).
    frame_stride: Holistic on every n-th frame only (the result's fps is the source's / n).
    face: False = Holistic without its face model (body and hands only).
    model: a :class:`HolisticModel` to reuse across calls (its settings win over
        ``model_complexity`` / ``refine_face``); by default one is built and closed here.
    """
    if (start_s is not None or end_s is not None) and (start_frame is not None or stop_frame is not None):
        raise ValueError("give a range in seconds or in frames, not both")
    clip = Clip(source=Path(path), name=Path(path).stem, start_s=start_s, end_s=end_s,
                start_frame=start_frame, stop_frame=stop_frame)
    own = model is None
    if own:
        model = HolisticModel(model_complexity=model_complexity, refine_face=refine_face, face=face)
    try:
        return extract_clip(clip, model, frames_fps=fps, seek=seek, frame_stride=frame_stride)
    finally:
        if own:
            model.close()


def video_to_sequence(path: str | os.PathLike, **kwargs) -> PoseSequence:
    """One call from a video (or frame folder) to a canonical `PoseSequence`; arguments as
    :func:`extract_video`."""
    return extract_video(path, **kwargs).to_sequence()
