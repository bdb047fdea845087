"""Writers: full MediaPipe Holistic ``.pose`` files and msmae's compact ``.npz``.

``write_holistic_pose`` lays a file out exactly as pose-format's own MediaPipe loader
(``pose_format.utils.holistic.load_holistic``) does, so that every tool of the pose-format
ecosystem opens what ``msmae extract`` writes:

- header version 0.2, dimensions ``width x height x 0``, point format ``XYZC``;
- components ``POSE_LANDMARKS`` (33), ``FACE_LANDMARKS`` (468, or 478 with the refined mesh),
  ``LEFT_HAND_LANDMARKS`` (21), ``RIGHT_HAND_LANDMARKS`` (21), ``POSE_WORLD_LANDMARKS`` (33),
  with pose-format's point names, limbs and colours;
- pixel coordinates (x * width, y * height, z as MediaPipe gives it), one person;
- confidence 0 and coordinates 0 where a part was not detected.

The point tables come from pose-format's holistic module, which imports MediaPipe: writing a
holistic ``.pose`` needs the ``extract`` extra (reading one does not).
"""

from __future__ import annotations

import io
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from msmae.poses.sequence import PoseDataError, PoseSequence
from msmae.utils import atomic_path

# GISLR order of MediaPipe Holistic arrays: face, left hand, pose, right hand.
GISLR_PARTS = ("face", "left_hand", "pose", "right_hand")
NUM_POSE, NUM_HAND, NUM_FACE, NUM_FACE_REFINED = 33, 21, 468, 478

# Smallest confidence stored for a detected point: pose-format treats confidence 0 as "not
# detected", so a detected landmark whose MediaPipe visibility rounds to 0 must stay above it.
MIN_DETECTED_CONFIDENCE = 1e-6

NPZ_FORMAT = "msmae-npz"
NPZ_VERSION = 1


def gislr_offsets(num_face: int = NUM_FACE) -> dict[str, slice]:
    """Part name -> slice of points in a GISLR-order array with ``num_face`` face points."""
    out, start = {}, 0
    for part, n in zip(GISLR_PARTS, (num_face, NUM_HAND, NUM_POSE, NUM_HAND)):
        out[part] = slice(start, start + n)
        start += n
    return out


@lru_cache(maxsize=2)
def _holistic_header(refined_face: bool):
    """pose-format's own holistic components (names, limbs, colours) for the header."""
    try:
        from pose_format.utils.holistic import holistic_components
    except ImportError as e:  # mediapipe is the extract extra
        raise ImportError(
            "writing a MediaPipe Holistic .pose needs MediaPipe's landmark tables: "
            "pip install 'msmae[extract]'") from e
    return holistic_components("XYZC", NUM_FACE_REFINED - NUM_FACE if refined_face else 0)


def write_holistic_pose(path: str | os.PathLike, xyz: np.ndarray, conf: np.ndarray | None = None, *,
                        fps: float, width: int, height: int, refined_face: bool = False,
                        world: np.ndarray | None = None, face: bool = True,
                        extraction: dict | None = None) -> Path:
    """Write MediaPipe Holistic output as a full holistic pose-format ``.pose`` file (atomic).

    xyz:   (T, 543, 3) in GISLR order (face 468, left hand 21, pose 33, right hand 21), or
           (T, 553, 3) with the refined 478-point face when ``refined_face``; x, y normalised image
           coordinates, z as MediaPipe returns it; NaN where a part was not detected.
    conf:  (T, 543 or 553) confidence per point (e.g. MediaPipe's pose visibility), or None for 1
           where detected and 0 where not. Undetected points always get 0; detected points get at
           least ``MIN_DETECTED_CONFIDENCE`` so that presence survives a round trip.
    world: optional (T, 33, 3) MediaPipe ``pose_world_landmarks`` (NaN where undetected), stored
           as pose-format stores them (x * width, y * height, z) with the pose confidence;
           None -> the POSE_WORLD_LANDMARKS component is written as not detected.
    fps, width, height: of the source video (width, height in pixels); with a frame stride, fps is
           the rate of the written frames (source fps / stride).
    face:  False -> no FACE_LANDMARKS component at all (extracted without the face model: the face
           is absent, not zeros); the face points of ``xyz`` are then ignored.
    extraction: optional metadata (``frame_stride``, ``source_fps``, ``streams``...) stored after
           the body (see :mod:`msmae.poses.posemeta`); pose-format ignores it.
    """
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions

    path = Path(path)
    num_face = NUM_FACE_REFINED if refined_face else NUM_FACE
    num_points = num_face + 2 * NUM_HAND + NUM_POSE
    xyz = np.asarray(xyz, dtype=np.float64)
    if xyz.ndim != 3 or xyz.shape[1] != num_points or xyz.shape[2] not in (2, 3):
        raise PoseDataError(
            f"{path}: xyz must have shape (T, {num_points}, 3) in GISLR order"
            f"{' with the refined face' if refined_face else ''}, got {xyz.shape}")
    if xyz.shape[0] == 0:
        raise PoseDataError(f"{path}: nothing to write, xyz has zero frames")
    if not (np.isfinite(fps) and fps > 0):
        raise PoseDataError(f"{path}: fps must be a positive number, got {fps}")
    for name, v in (("width", width), ("height", height)):
        if int(v) != v or not 0 < int(v) <= 65535:
            raise PoseDataError(f"{path}: {name} must be a whole number of pixels in 1..65535, got {v}")
    width, height = int(width), int(height)
    if xyz.shape[2] == 2:
        xyz = np.concatenate([xyz, np.zeros_like(xyz[..., :1])], axis=2)
    frames = xyz.shape[0]

    detected = np.isfinite(xyz[..., :2]).all(axis=2)  # (T, P)
    if conf is None:
        c = detected.astype(np.float64)
    else:
        c = np.asarray(conf, dtype=np.float64)
        if c.shape != detected.shape:
            raise PoseDataError(f"{path}: conf must have shape {detected.shape}, got {c.shape}")
        if not np.isfinite(c[detected]).all():
            raise PoseDataError(f"{path}: conf has NaN/inf at detected points")
        c = np.where(detected, np.maximum(c, MIN_DETECTED_CONFIDENCE), 0.0)
    # pose-format keeps pixel units: x * width, y * height, z unchanged.
    scale = np.array([width, height, 1.0])
    pix = np.where(detected[..., None], xyz * scale, 0.0)

    parts = gislr_offsets(num_face)
    order = [parts["pose"], parts["face"], parts["left_hand"], parts["right_hand"]]
    if not face:
        order.remove(parts["face"])
    data = np.concatenate([pix[:, sl] for sl in order] + [_world_block(path, world, frames, scale)], axis=1)
    wconf = np.zeros((frames, NUM_POSE))
    if world is not None:
        wdet = np.isfinite(np.asarray(world, dtype=np.float64)[..., :2]).all(axis=2)
        wconf = np.where(wdet, np.maximum(c[:, parts["pose"]], MIN_DETECTED_CONFIDENCE), 0.0)
    confidence = np.concatenate([c[:, sl] for sl in order] + [wconf], axis=1)

    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                        components=_components(bool(refined_face), face))
    body = NumPyPoseBody(fps=float(fps), data=data[:, None].astype(np.float32),
                         confidence=confidence[:, None].astype(np.float32))
    buf = io.BytesIO()
    Pose(header, body).write(buf)
    if extraction:
        from msmae.poses.posemeta import encode_trailer

        buf.write(encode_trailer(extraction))
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def _components(refined_face: bool, face: bool) -> list:
    comps = _holistic_header(refined_face)
    return list(comps) if face else [c for c in comps if c.name != "FACE_LANDMARKS"]


def _world_block(path: Path, world: np.ndarray | None, frames: int, scale: np.ndarray) -> np.ndarray:
    """(T, 33, 3) POSE_WORLD_LANDMARKS data in pose-format's units (zeros when absent)."""
    if world is None:
        return np.zeros((frames, NUM_POSE, 3))
    w = np.asarray(world, dtype=np.float64)
    if w.shape != (frames, NUM_POSE, 3):
        raise PoseDataError(f"{path}: world must have shape ({frames}, {NUM_POSE}, 3), got {w.shape}")
    det = np.isfinite(w[..., :2]).all(axis=2)
    return np.where(det[..., None], np.nan_to_num(w) * scale, 0.0)


def write_npz(seq: PoseSequence, path: str | os.PathLike) -> Path:
    """Write a sequence to msmae's compact, lossless ``.npz`` (atomic).

    Keys: ``format`` ("msmae-npz"), ``version``, ``coords`` float32 (T, K, 2), ``present`` bool
    (T, K), ``fps`` float64, ``width``/``height`` (-1 when unknown), ``streams`` (names in layout
    order), ``stream_points`` (the landmark indices of every stream, concatenated, to check
    identity on reading) and ``meta_json``.
    """
    path = Path(path)
    layout = seq.layout
    arrays = {
        "format": np.array(NPZ_FORMAT),
        "version": np.array(NPZ_VERSION, dtype=np.int64),
        "coords": np.ascontiguousarray(seq.coords, dtype=np.float32),
        "present": np.ascontiguousarray(seq.present, dtype=bool),
        "fps": np.array(float(seq.fps), dtype=np.float64),
        "width": np.array(-1 if seq.width is None else int(seq.width), dtype=np.int64),
        "height": np.array(-1 if seq.height is None else int(seq.height), dtype=np.int64),
        "streams": np.array(layout.names),
        "stream_points": np.array([i for s in layout.streams for i in s.indices], dtype=np.int64),
        "meta_json": np.array(json.dumps(seq.meta, default=str)),
    }
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object keeps numpy from appending ".npz" to the temp name
            np.savez_compressed(f, **arrays)
    return path
