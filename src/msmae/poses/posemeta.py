"""Extraction metadata stored with a ``.pose`` file, and the check that a ``.pose`` file is complete.

pose-format's header has no place for free metadata, and its reader reads exactly the frames the
body declares, ignoring anything after them. ``msmae extract`` therefore appends a small trailer
after the body::

    b"MSMAE-META\\0" | uint32 little-endian length | UTF-8 JSON object

holding how the file was made: ``frame_stride`` (Holistic ran on every n-th source frame),
``source_fps`` (the video's rate; the header's fps is ``source_fps / frame_stride``), ``first_frame``
(index in the source of the first frame), ``streams`` (``body``, ``left_hand``, ``right_hand``,
``face``) and the MediaPipe settings. pose-format (``Pose.read``) opens such files unchanged; a file
rewritten by pose-format loses the trailer and reads as an ordinary file (stride 1).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from msmae.poses.sequence import PoseDataError

MAGIC = b"MSMAE-META\x00"
_LEN = struct.Struct("<I")
MAX_TRAILER = 1 << 20  # a trailer is a few hundred bytes; anything larger is not ours
HEADER_PROBE = 1 << 16  # bytes read to parse a header (a full holistic header is about 15 kB)


def encode_trailer(meta: dict) -> bytes:
    """The bytes appended after a pose-format body."""
    text = json.dumps(meta, sort_keys=True).encode("utf-8")
    return MAGIC + _LEN.pack(len(text)) + text


def decode_trailer(tail: bytes, where: str = "pose file") -> dict | None:
    """Metadata from the bytes after a pose body: None when there are none or they are not an msmae
    trailer; :class:`PoseDataError` when they start like one but are cut short or broken."""
    if not tail or not tail.startswith(MAGIC[:min(len(tail), len(MAGIC))]):
        return None
    if len(tail) < len(MAGIC) + _LEN.size:
        raise PoseDataError(f"{where}: truncated, the msmae metadata after the frames is cut short")
    (n,) = _LEN.unpack_from(tail, len(MAGIC))
    text = tail[len(MAGIC) + _LEN.size:]
    if n > MAX_TRAILER or len(text) < n:
        raise PoseDataError(f"{where}: truncated, the msmae metadata after the frames is cut short")
    try:
        meta = json.loads(text[:n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PoseDataError(f"{where}: the msmae metadata after the frames is not valid JSON") from None
    if not isinstance(meta, dict):
        raise PoseDataError(f"{where}: the msmae metadata after the frames is not an object")
    return meta


def body_end(header, body_offset: int, frames: int, people: int) -> int:
    """Byte offset where a v0.2 pose body ends (header + fps/frames/people + data + confidence)."""
    points = sum(len(c.points) for c in header.components)
    dims = header.num_dims()
    return body_offset + 10 + frames * people * points * (dims + 1) * 4


def check_pose_file(path: str | os.PathLike) -> dict:
    """Check cheaply (header + file size) that ``path`` is a complete pose-format v0.2 file: the
    header, every frame it declares and, when present, the msmae trailer.

    Returns the trailer's metadata (``{}`` when there is none); raises :class:`PoseDataError`
    naming what is wrong (0 bytes, not a pose file, truncated header, body or trailer).
    """
    from pose_format.pose_header import PoseHeader
    from pose_format.utils.reader import BufferReader

    path = Path(path)
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise PoseDataError(f"{path}: not a regular file")
        with open(path, "rb") as f:
            buf = f.read(HEADER_PROBE)
            try:
                reader = BufferReader(buf)
                header = PoseHeader.read(reader)
            except Exception:
                if len(buf) < size:  # a header larger than the probe: read it all
                    buf += f.read()
                    reader = BufferReader(buf)
                    header = PoseHeader.read(reader)
                else:
                    raise
            off = reader.read_offset
            f.seek(off)
            head = f.read(10)
            if len(head) < 10:
                raise PoseDataError(f"{path}: truncated, the body is missing")
            _, frames, people = struct.unpack("<fIH", head)
            end = body_end(header, off, frames, people)
            if size < end:
                raise PoseDataError(f"{path}: truncated, {size} bytes but its {frames} frames need {end}")
            f.seek(end)
            tail = f.read(MAX_TRAILER + len(MAGIC) + _LEN.size)
    except OSError as e:
        raise PoseDataError(f"{path}: cannot read ({e.strerror or e})") from None
    except PoseDataError:
        raise
    except Exception as e:
        if size == 0:
            raise PoseDataError(f"{path}: empty file (0 bytes)") from None
        raise PoseDataError(f"{path}: not a pose file or truncated header ({type(e).__name__})") from None
    if frames == 0:
        raise PoseDataError(f"{path}: the file holds zero frames")
    return decode_trailer(tail, str(path)) or {}
