"""Readers: every supported source -> a `PoseSequence` in the canonical layout (160 points).

Points are mapped by landmark identity (component + landmark name or index), never by
position in the file; a point the source lacks or did not detect is ``present=False``.

| suffix       | source                                                | fps / frame size    |
| ------------ | ----------------------------------------------------- | ------------------- |
| ``.pose``    | pose-format, MediaPipe Holistic (543, 553, 576 or 586 | from the header     |
|              | points) or a reduced holistic subset (e.g. 178)       |                     |
| ``.parquet`` | Kaggle GISLR landmarks (543 rows per frame)           | not stored          |
| ``.npy``     | MediaPipe Holistic array (T, 543, 3), GISLR order     | not stored          |
| ``.npz``     | msmae's own compact format (``write_npz``)            | stored              |

Where a source does not store fps or frame size, pass them (``read_sequence(p, fps=24,
width=1280, height=720)``), or keep the video beside it: a video with the same stem in the file's
folder or its parent gives them (read with OpenCV, ``meta["frame_info_from"]``). Otherwise fps is
taken as ``DEFAULT_FPS`` (30, a usual camera rate; GISLR does not publish its rate) with
``meta["fps_assumed"] = True``, and the frame as square (x and y keep MediaPipe's normalised
scale). Values passed explicitly override what a file says. Coordinates follow DESIGN.md: normalised (x, y) ->
(x * width / height, y); pixel (x, y) -> (x / height, y / height).
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import Iterable

import numpy as np

from msmae.layout import BODY_POINT_NAMES, CANONICAL, STREAMS_BY_NAME, Layout, get_layout
from msmae.poses.beside import fill_from_video
from msmae.poses.sequence import PoseDataError, PoseSequence
from msmae.poses.writers import NPZ_FORMAT, NPZ_VERSION, NUM_FACE, NUM_FACE_REFINED, gislr_offsets
from msmae.utils import list_file_entries

log = logging.getLogger(__name__)

SUPPORTED_SUFFIXES: tuple[str, ...] = (".pose", ".parquet", ".npy", ".npz")
LIST_SUFFIXES: tuple[str, ...] = (".txt", ".lst")
DEFAULT_FPS = 30.0

# MediaPipe hand landmark names, index order (pose-format names hand points this way).
HAND_POINT_NAMES: tuple[str, ...] = (
    "WRIST", "THUMB_CMC", "THUMB_MCP", "THUMB_IP", "THUMB_TIP",
    "INDEX_FINGER_MCP", "INDEX_FINGER_PIP", "INDEX_FINGER_DIP", "INDEX_FINGER_TIP",
    "MIDDLE_FINGER_MCP", "MIDDLE_FINGER_PIP", "MIDDLE_FINGER_DIP", "MIDDLE_FINGER_TIP",
    "RING_FINGER_MCP", "RING_FINGER_PIP", "RING_FINGER_DIP", "RING_FINGER_TIP",
    "PINKY_MCP", "PINKY_PIP", "PINKY_DIP", "PINKY_TIP",
)
_POSE_NAME_TO_INDEX = dict(zip(BODY_POINT_NAMES, STREAMS_BY_NAME["body"].indices))
# Canonical stream -> pose-format component name.
POSE_COMPONENTS = {"body": "POSE_LANDMARKS", "left_hand": "LEFT_HAND_LANDMARKS",
                   "right_hand": "RIGHT_HAND_LANDMARKS", "face": "FACE_LANDMARKS"}
# Full holistic component sizes (face: plain or refined mesh).
_FULL_SIZES = {"POSE_LANDMARKS": (33,), "FACE_LANDMARKS": (NUM_FACE, NUM_FACE_REFINED),
               "LEFT_HAND_LANDMARKS": (21,), "RIGHT_HAND_LANDMARKS": (21,), "POSE_WORLD_LANDMARKS": (33,)}


# ---------------------------------------------------------------------------------------- dispatch
def read_sequence(path: str | os.PathLike, *, fps: float | None = None, width: int | None = None,
                  height: int | None = None) -> PoseSequence:
    """Read any supported file into the canonical layout (160 points).

    ``meta["source_layout"]`` describes what was found (``holistic-586``,
    ``reduced-holistic-178``, ``gislr-parquet``, ``mediapipe-npy``, ``msmae-npz``) and
    ``meta["absent_points"]`` lists canonical landmark indices the source does not have.
    """
    path = Path(path)
    for name, v in (("fps", fps), ("width", width), ("height", height)):
        if v is not None and not (np.isfinite(v) and v > 0):
            raise PoseDataError(f"{path}: {name} must be a positive number, got {v}")
    if not path.exists():
        raise PoseDataError(f"{path}: no such file")
    if path.is_dir():
        raise PoseDataError(f"{path}: is a folder, not a pose file")
    if not path.is_file():  # a FIFO, socket or device would block or never end
        raise PoseDataError(f"{path}: not a regular file (a pipe, socket or device); pose files are read from disk")
    suffix = path.suffix.lower()
    if suffix == ".pose":
        return read_pose(path, fps=fps, width=width, height=height)
    if suffix == ".parquet":
        return read_gislr_parquet(path, fps=fps, width=width, height=height)
    if suffix == ".npy":
        return read_holistic_npy(path, fps=fps, width=width, height=height)
    if suffix == ".npz":
        seq = to_canonical(read_npz(path))
        if fps is not None:
            seq.fps = float(fps)
        seq.width = seq.width if width is None else int(width)
        seq.height = seq.height if height is None else int(height)
        return seq
    raise PoseDataError(f"{path}: unsupported file type {path.suffix!r} "
                        f"(supported: {', '.join(SUPPORTED_SUFFIXES)})")


def find_pose_files(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files, folders (recursive, sorted) and list files into pose files, in order.

    A list file (``.txt`` / ``.lst``) holds one path per line, relative to the list file's
    folder (absolute paths allowed); blank lines and lines starting with ``#`` are skipped.
    A path named directly or in a list must exist; duplicates are dropped.
    """
    out: dict[Path, None] = {}

    def add(p: Path, seen_lists: tuple[Path, ...]) -> None:
        if p.is_dir():
            for f in sorted(p.rglob("*"), key=lambda q: str(q)):
                if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES and not f.name.startswith("."):
                    out.setdefault(f, None)
        elif not p.exists():
            where = f" (listed in {seen_lists[-1]})" if seen_lists else ""
            raise PoseDataError(f"{p}: no such file or folder{where}")
        elif p.suffix.lower() in LIST_SUFFIXES:
            if p.resolve() in seen_lists:
                raise PoseDataError(f"{p}: list file includes itself")
            for q in list_file_entries(p):
                add(q, seen_lists + (p.resolve(),))
        elif p.suffix.lower() in SUPPORTED_SUFFIXES:
            out.setdefault(p, None)
        else:
            raise PoseDataError(f"{p}: unsupported file type {p.suffix!r} (supported: "
                                f"{', '.join(SUPPORTED_SUFFIXES)}, folders, {', '.join(LIST_SUFFIXES)} lists)")

    for item in inputs:
        add(Path(item), ())
    return list(out)


def to_canonical(seq: PoseSequence) -> PoseSequence:
    """Widen a sequence in a sub-layout (e.g. ``body,hands``) to the canonical 160 points."""
    if seq.layout == CANONICAL:
        return seq
    idx = seq.layout.indices_in(CANONICAL)
    coords = np.zeros((seq.num_frames, CANONICAL.num_points, 2), np.float32)
    present = np.zeros((seq.num_frames, CANONICAL.num_points), bool)
    coords[:, idx], present[:, idx] = seq.coords, seq.present
    out = seq.with_arrays(coords, present, layout=CANONICAL)
    absent = dict(out.meta.get("absent_points", {}))
    for s in CANONICAL.streams:
        if s.name not in seq.layout.names:
            absent[s.name] = list(s.indices)
    out.meta["absent_points"] = absent
    return out


# ---------------------------------------------------------------------------- MediaPipe arrays
def _gislr_index(num_face: int) -> np.ndarray:
    """(160,) position in a GISLR-order array of each canonical point."""
    parts = gislr_offsets(num_face)
    start = {"body": parts["pose"].start, "left_hand": parts["left_hand"].start,
             "right_hand": parts["right_hand"].start, "face": parts["face"].start}
    return np.concatenate([start[s.name] + np.asarray(s.indices) for s in CANONICAL.streams])


def holistic_to_sequence(xyz: np.ndarray, *, fps: float, width: int | None = None, height: int | None = None,
                         source: str | None = None) -> PoseSequence:
    """MediaPipe Holistic landmarks in GISLR order -> canonical `PoseSequence`.

    xyz: (T, 543, >=2) face 468, left hand 21, pose 33, right hand 21 (or (T, 553, >=2) with the
         refined 478-point face); x, y normalised image coordinates; NaN where not detected.
    width, height: source frame size; unknown -> treated as square (x keeps its scale).
    """
    where = source or "holistic array"
    xyz = np.asarray(xyz)
    if xyz.ndim != 3 or xyz.shape[1] not in (543, 553) or xyz.shape[2] < 2:
        raise PoseDataError(f"{where}: expected MediaPipe Holistic landmarks of shape (T, 543, 3) in "
                            f"GISLR order (face, left hand, pose, right hand), got {xyz.shape}")
    if not np.issubdtype(xyz.dtype, np.floating):
        raise PoseDataError(f"{where}: landmarks must be floating point, got {xyz.dtype}")
    if xyz.shape[0] == 0:
        raise PoseDataError(f"{where}: zero frames")
    num_face = NUM_FACE if xyz.shape[1] == 543 else NUM_FACE_REFINED
    picked = xyz[:, _gislr_index(num_face), :2].astype(np.float64)  # (T, 160, 2)
    present = np.isfinite(picked).all(axis=2)
    aspect = width / height if (width and height) else 1.0
    coords = np.where(present[..., None], picked * np.array([aspect, 1.0]), 0.0).astype(np.float32)
    return PoseSequence(coords=coords, present=present, fps=float(fps), layout=CANONICAL,
                        width=width, height=height, source=source, meta={})


def read_holistic_npy(path: str | os.PathLike, *, fps: float | None = None, width: int | None = None,
                      height: int | None = None) -> PoseSequence:
    """A MediaPipe Holistic ``.npy`` array (T, 543, 3) in GISLR order, NaN where undetected."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise PoseDataError(f"{path}: cannot read ({e.strerror or e})") from None
    if magic != b"\x93NUMPY":
        raise PoseDataError(f"{path}: not a readable .npy array (not a NumPy file: no \\x93NUMPY signature)")
    try:
        xyz = np.load(path, allow_pickle=False)
    except Exception as e:  # numpy says "cannot reshape", "Failed to interpret", ...
        raise PoseDataError(f"{path}: not a readable .npy array ({_first_line(e)})") from None
    fps, width, height, video = fill_from_video(path, fps, width, height)
    seq = holistic_to_sequence(xyz, fps=fps or DEFAULT_FPS, width=width, height=height, source=str(path))
    seq.meta.update(source_layout="mediapipe-npy", fps_assumed=fps is None, absent_points={})
    if video:
        seq.meta["frame_info_from"] = video
    return seq


def read_gislr_parquet(path: str | os.PathLike, *, fps: float | None = None, width: int | None = None,
                       height: int | None = None) -> PoseSequence:
    """A Kaggle GISLR landmark parquet (columns frame, type, landmark_index, x, y, z).

    Rows are placed by their ``type`` and ``landmark_index`` columns, not by row order; frames
    are the distinct ``frame`` values in increasing order. NaN x/y = not detected.
    """
    path = Path(path)
    try:
        import pyarrow.parquet as pq
    except ImportError as e:
        raise PoseDataError(f"{path}: reading parquet needs pyarrow ({_first_line(e)})") from None
    cols = ["frame", "type", "landmark_index", "x", "y"]
    try:
        schema = pq.read_schema(path)
    except Exception as e:
        raise PoseDataError(f"{path}: not a readable parquet file ({_first_line(e)})") from None
    missing = [c for c in cols if c not in schema.names]
    if missing:
        raise PoseDataError(f"{path}: not a GISLR landmark file, columns {missing} are missing "
                            f"(found {schema.names})")
    try:
        df = pq.read_table(path, columns=cols).to_pandas()
        frame = df["frame"].to_numpy(np.int64)
        kind = df["type"].astype(str).to_numpy()
        index = df["landmark_index"].to_numpy(np.int64)
        xy = df[["x", "y"]].to_numpy(np.float64)
    except Exception as e:
        raise PoseDataError(f"{path}: cannot read GISLR columns ({_first_line(e)})") from None
    if len(frame) == 0:
        raise PoseDataError(f"{path}: zero frames")
    parts = gislr_offsets(NUM_FACE)
    types, kind_code = np.unique(kind, return_inverse=True)
    unknown = [t for t in types if t not in parts]
    if unknown:
        raise PoseDataError(f"{path}: unknown landmark types {unknown} (expected {list(parts)})")
    start = np.array([parts[t].start for t in types])[kind_code]
    size = np.array([parts[t].stop - parts[t].start for t in types])[kind_code]
    bad = (index < 0) | (index >= size)
    if bad.any():
        raise PoseDataError(f"{path}: {int(bad.sum())} rows have a landmark_index outside their type's range")
    frames, row_frame = np.unique(frame, return_inverse=True)
    point = start + index
    xyz = np.full((len(frames), 543, 2), np.nan)
    flat = row_frame * 543 + point
    if len(np.unique(flat)) != len(flat):
        raise PoseDataError(f"{path}: the same (frame, type, landmark_index) appears more than once")
    xyz.reshape(-1, 2)[flat] = xy
    fps, width, height, video = fill_from_video(path, fps, width, height)
    seq = holistic_to_sequence(xyz, fps=fps or DEFAULT_FPS, width=width, height=height, source=str(path))
    seq.meta.update(source_layout="gislr-parquet", fps_assumed=fps is None, absent_points={},
                    first_frame=int(frames[0]))
    if video:
        seq.meta["frame_info_from"] = video
    return seq


# ----------------------------------------------------------------------------- pose-format files
def _component_point_index(component: str, name: str) -> int | None:
    """Landmark index of a pose-format point name inside its MediaPipe component."""
    if name.isdigit():
        return int(name)
    if component == "POSE_LANDMARKS":
        return _POSE_NAME_TO_INDEX.get(name)
    if component in ("LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS") and name in HAND_POINT_NAMES:
        return HAND_POINT_NAMES.index(name)
    return None


def _parse_pose_bytes(path: Path, buf: bytes):
    """pose-format header + body, with a clear error for anything that is not a whole file."""
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader
    from pose_format.utils.reader import BufferReader

    if len(buf) < 4:
        raise PoseDataError(f"{path}: not a pose file ({len(buf)} bytes)")
    version = struct.unpack("<f", buf[:4])[0]
    if not any(abs(version - v) < 1e-6 for v in (0.1, 0.2)):
        raise PoseDataError(f"{path}: not a pose-format file (header version {version:.4g}, "
                            f"expected 0.1 or 0.2)")
    reader = BufferReader(buf)
    try:
        header = PoseHeader.read(reader)
    except Exception as e:
        raise PoseDataError(f"{path}: not a pose file or truncated header ({_first_line(e)})") from None
    points = sum(len(c.points) for c in header.components)
    dims = header.num_dims() if header.components else 0
    if points == 0 or dims < 2:
        raise PoseDataError(f"{path}: header has no points (components: "
                            f"{[c.name for c in header.components]})")
    head = 10 if round(version, 3) == 0.2 else 6  # fps, frames, people
    left = len(buf) - reader.read_offset
    if left < head:
        raise PoseDataError(f"{path}: truncated, the body is missing")
    if round(version, 3) == 0.2:
        _, frames, people = struct.unpack_from("<fIH", buf, reader.read_offset)
        need = head + frames * people * points * (dims + 1) * 4
        if left < need:
            raise PoseDataError(f"{path}: truncated, body has {left} bytes but its "
                                f"{frames} frames need {need}")
    else:
        people = struct.unpack_from("<H", buf, reader.read_offset + 4)[0]
        frame_bytes = people * points * (dims + 1) * 4
        if frame_bytes and (left - head) % frame_bytes:
            raise PoseDataError(f"{path}: truncated, the body ends inside a frame")
    if people == 0:
        raise PoseDataError(f"{path}: the file holds no person")
    try:
        body = NumPyPoseBody.read(header, reader)
    except Exception as e:
        raise PoseDataError(f"{path}: corrupt or truncated pose body ({_first_line(e)})") from None
    return header, body, reader.read_offset


def describe_pose_layout(components: dict[str, int]) -> str:
    """``holistic-<N>`` for a full MediaPipe Holistic file, else ``reduced-holistic-<N>``."""
    total = sum(components.values())
    main = ("POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS")
    full = all(c in components for c in main) and all(
        n in _FULL_SIZES.get(c, ()) for c, n in components.items())
    return f"{'holistic' if full else 'reduced-holistic'}-{total}"


def read_pose(path: str | os.PathLike, *, fps: float | None = None, width: int | None = None,
              height: int | None = None) -> PoseSequence:
    """A pose-format ``.pose`` file of MediaPipe Holistic landmarks (full or reduced).

    Components are found by name (POSE_LANDMARKS, FACE_LANDMARKS, LEFT_HAND_LANDMARKS,
    RIGHT_HAND_LANDMARKS; POSE_WORLD_LANDMARKS is ignored) and points by their names (pose and
    hand landmark names, or mesh indices for the face). Confidence 0 = not detected. The first
    person is read. Pixel coordinates become isotropic units by dividing by the frame height.
    """
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise PoseDataError(f"{path}: cannot read ({e.strerror or e})") from None
    header, body, end = _parse_pose_bytes(path, buf)
    from msmae.poses.posemeta import decode_trailer

    extraction = decode_trailer(buf[end:], str(path)) if round(header.version, 3) == 0.2 else None
    names = [c.name for c in header.components]
    if not any(c in names for c in POSE_COMPONENTS.values()):
        raise PoseDataError(f"{path}: unknown layout, components {names} are not MediaPipe Holistic "
                            f"(expected some of {list(POSE_COMPONENTS.values())})")
    starts, offset = {}, 0
    for c in header.components:
        starts.setdefault(c.name, (offset, c.points))
        offset += len(c.points)

    src = np.full(CANONICAL.num_points, -1, np.int64)  # position in the file, -1 = absent
    absent: dict[str, list[int]] = {}
    k = 0
    for stream in CANONICAL.streams:
        comp = POSE_COMPONENTS[stream.name]
        lookup = {}
        if comp in starts:
            start, points = starts[comp]
            for j, name in enumerate(points):
                lookup.setdefault(_component_point_index(comp, str(name)), start + j)
        for lm in stream.indices:
            src[k] = lookup.get(lm, -1)
            if src[k] < 0:
                absent.setdefault(stream.name, []).append(int(lm))
            k += 1
    if absent:
        log.debug("%s: source lacks canonical points %s", path, absent)

    data = np.asarray(body.data.data)[:, 0]  # (T, P, D) pixels
    conf = np.asarray(body.confidence)[:, 0]  # (T, P)
    if data.shape[0] == 0:
        raise PoseDataError(f"{path}: zero frames")
    fps_file = float(body.fps)
    w = int(width) if width is not None else int(header.dimensions.width)
    h = int(height) if height is not None else int(header.dimensions.height)
    if h <= 0:
        raise PoseDataError(f"{path}: header frame height is {h}; pass height= (and width=) to read it")
    have = src >= 0
    picked = np.zeros((data.shape[0], CANONICAL.num_points, 2))
    picked[:, have] = data[:, src[have], :2]
    present = np.zeros(picked.shape[:2], bool)
    present[:, have] = conf[:, src[have]] > 0
    present &= np.isfinite(picked).all(axis=2)
    coords = np.where(present[..., None], picked / h, 0.0).astype(np.float32)
    # v0.2 stores fps as float32 (29.97 -> 29.969999...): round off the storage noise.
    seq_fps = float(fps) if fps is not None else round(fps_file, 4)
    if not seq_fps > 0:
        raise PoseDataError(f"{path}: header fps is {fps_file}; pass fps= to read it")
    components = {c.name: len(c.points) for c in header.components}
    meta = {"source_layout": describe_pose_layout(components), "components": components,
            "absent_points": absent, "fps_assumed": False}
    if extraction:
        meta["extraction"] = extraction
        meta["frame_stride"] = int(extraction.get("frame_stride", 1))
        if extraction.get("source_fps"):
            meta["source_fps"] = float(extraction["source_fps"])
    if body.data.shape[1] > 1:
        meta["people"] = int(body.data.shape[1])
        log.warning("%s: %d people in the file, reading the first", path, body.data.shape[1])
    return PoseSequence(coords=coords, present=present, fps=seq_fps, layout=CANONICAL,
                        width=w or None, height=h, source=str(path), meta=meta)


# ----------------------------------------------------------------------------------- msmae .npz
_NPZ_KEYS = ("format", "version", "coords", "present", "fps", "width", "height", "streams", "stream_points")


def read_npz(path: str | os.PathLike) -> PoseSequence:
    """msmae's compact ``.npz`` (see `msmae.poses.writers.write_npz`), in its stored layout."""
    path = Path(path)
    from msmae.poses.npz_members import read_npz_members

    d = read_npz_members(path, _NPZ_KEYS + ("meta_json",), required=_NPZ_KEYS)
    if str(d["format"]) != NPZ_FORMAT:
        raise PoseDataError(f"{path}: format is {str(d['format'])!r}, expected {NPZ_FORMAT!r}")
    if int(d["version"]) > NPZ_VERSION:
        raise PoseDataError(f"{path}: written by a newer msmae (npz version {int(d['version'])}, "
                            f"this one reads up to {NPZ_VERSION})")
    try:
        layout: Layout = get_layout([str(s) for s in d["streams"]])
    except ValueError as e:
        raise PoseDataError(f"{path}: unknown layout ({e})") from None
    stored = [int(i) for i in d["stream_points"]]
    expected = [i for s in layout.streams for i in s.indices]
    if stored != expected:
        raise PoseDataError(f"{path}: stream landmark indices differ from this msmae's layout "
                            f"{layout.spec!r}; the file was written with another keypoint definition")
    coords, present = d["coords"], d["present"]
    if coords.ndim != 3 or coords.shape[1:] != (layout.num_points, 2) or present.shape != coords.shape[:2]:
        raise PoseDataError(f"{path}: wrong shape, coords {coords.shape} / present {present.shape} "
                            f"for layout {layout.spec!r} ({layout.num_points} points)")
    if coords.shape[0] == 0:
        raise PoseDataError(f"{path}: zero frames")
    meta = {}
    if "meta_json" in d:
        try:
            meta = json.loads(str(d["meta_json"]))
        except json.JSONDecodeError:
            log.warning("%s: unreadable meta_json ignored", path)
    if "source_layout" in meta:
        meta["origin_layout"] = meta["source_layout"]  # what the npz was made from
    meta["source_layout"] = "msmae-npz"
    meta.setdefault("absent_points", {})
    meta.setdefault("fps_assumed", False)
    width, height = int(d["width"]), int(d["height"])
    return PoseSequence(coords=coords, present=present.astype(bool), fps=float(d["fps"]), layout=layout,
                        width=None if width < 0 else width, height=None if height < 0 else height,
                        source=str(path), meta=meta)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
