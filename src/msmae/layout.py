"""The canonical keypoint layout (paper appendix A, DESIGN.md "Keypoints").

Every part of msmae speaks this layout. A pose sequence has K keypoints made of up to four
streams, always in this order:

- ``body``: MediaPipe Pose landmarks 11, 12, 13, 14, 15, 16 (shoulders, elbows, wrists), 6 points
- ``left_hand``: MediaPipe hand landmarks 0..20, 21 points
- ``right_hand``: MediaPipe hand landmarks 0..20, 21 points
- ``face``: 112 face-mesh indices (contour 20, mouth 40, nose 10, eyes 42), in that order

"left" and "right" are MediaPipe's ``left_hand_landmarks`` / ``right_hand_landmarks`` (the
signer's left and right as MediaPipe Holistic labels them), never re-guessed from position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

# MediaPipe Pose landmark indices of the upper body used by the paper.
BODY_POSE_INDICES: tuple[int, ...] = (11, 12, 13, 14, 15, 16)
BODY_POINT_NAMES: tuple[str, ...] = (
    "LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST",
)
HAND_INDICES: tuple[int, ...] = tuple(range(21))

# Face-mesh indices from appendix A (the final version truncates the eye list; the earlier
# draft gives all 42 eye points).
FACE_CONTOUR = (234, 93, 132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365,
                397, 288, 361, 323)
FACE_MOUTH = (0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146, 61, 185, 40,
              39, 37, 13, 312, 311, 310, 415, 308, 324, 318, 402, 317, 14, 87, 178, 88, 95, 78,
              191, 80, 81, 82)
FACE_NOSE = (98, 97, 2, 326, 327, 1, 4, 5, 195, 197)
FACE_EYES = (46, 53, 52, 65, 55, 285, 295, 282, 283, 276, 33, 246, 161, 160, 159, 158, 157, 173,
             133, 155, 154, 153, 145, 144, 163, 7, 362, 398, 384, 385, 386, 387, 388, 466, 263,
             249, 390, 373, 374, 380, 381, 382)
FACE_MESH_INDICES: tuple[int, ...] = FACE_CONTOUR + FACE_MOUTH + FACE_NOSE + FACE_EYES

# Indices inside the body stream of the two shoulders (used by normalisation).
LEFT_SHOULDER, RIGHT_SHOULDER = 0, 1
# Indices inside the body stream of the wrists (used by analysis baselines).
LEFT_WRIST, RIGHT_WRIST = 4, 5


@dataclass(frozen=True)
class Stream:
    """One stream of the canonical layout.

    ``source`` names the MediaPipe component the points come from (``pose``, ``left_hand``,
    ``right_hand``, ``face``) and ``indices`` are the landmark indices inside that component.
    """

    name: str
    source: str
    indices: tuple[int, ...]

    @property
    def size(self) -> int:
        return len(self.indices)


BODY = Stream("body", "pose", BODY_POSE_INDICES)
LEFT_HAND = Stream("left_hand", "left_hand", HAND_INDICES)
RIGHT_HAND = Stream("right_hand", "right_hand", HAND_INDICES)
FACE = Stream("face", "face", FACE_MESH_INDICES)
ALL_STREAMS: tuple[Stream, ...] = (BODY, LEFT_HAND, RIGHT_HAND, FACE)
STREAMS_BY_NAME = {s.name: s for s in ALL_STREAMS}
# Streams that share one Linear and one Conv1D in the model.
HAND_STREAMS = ("left_hand", "right_hand")


@dataclass(frozen=True)
class Layout:
    """An ordered selection of canonical streams, e.g. ``body,hands`` (48 points) or
    ``body,hands,face`` (160 points)."""

    streams: tuple[Stream, ...]

    def __post_init__(self) -> None:
        names = [s.name for s in self.streams]
        order = [s.name for s in ALL_STREAMS]
        if not names:
            raise ValueError("a layout needs at least one stream")
        if len(set(names)) != len(names) or names != sorted(names, key=order.index):
            raise ValueError(f"streams must be distinct and in canonical order {order}, got {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.streams)

    @property
    def num_points(self) -> int:
        return sum(s.size for s in self.streams)

    @property
    def spec(self) -> str:
        """The short spelling accepted by :func:`get_layout` (``body,hands,face``)."""
        names = list(self.names)
        if "left_hand" in names and "right_hand" in names:
            i = names.index("left_hand")
            names[i : i + 2] = ["hands"]
        return ",".join(names)

    def slices(self) -> dict[str, slice]:
        """Stream name -> slice of keypoint indices in this layout."""
        out, start = {}, 0
        for s in self.streams:
            out[s.name] = slice(start, start + s.size)
            start += s.size
        return out

    def stream_slice(self, name: str) -> slice:
        try:
            return self.slices()[name]
        except KeyError:
            raise KeyError(f"stream {name!r} is not in layout {self.spec!r}") from None

    def indices_in(self, other: "Layout") -> list[int]:
        """Keypoint indices of this layout's points inside ``other`` (a superset)."""
        sl = other.slices()
        missing = [n for n in self.names if n not in sl]
        if missing:
            raise ValueError(f"layout {other.spec!r} lacks streams {missing}")
        out: list[int] = []
        for n in self.names:
            out.extend(range(sl[n].start, sl[n].stop))
        return out

    def to_dict(self) -> dict:
        return {"streams": list(self.names), "points": {s.name: list(s.indices) for s in self.streams}}

    def __str__(self) -> str:  # pragma: no cover - cosmetic
        return self.spec


def get_layout(spec: str | Iterable[str] | Layout = "body,hands,face") -> Layout:
    """Build a layout from ``"body,hands"``, ``"body,hands,face"``, or a list of stream names.

    ``hands`` expands to ``left_hand,right_hand``. Order is always canonical.
    """
    if isinstance(spec, Layout):
        return spec
    parts: Sequence[str] = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for p in (x.strip() for x in parts):
        if not p:
            continue
        if p == "hands":
            names += ["left_hand", "right_hand"]
        elif p in STREAMS_BY_NAME:
            names.append(p)
        else:
            raise ValueError(
                f"unknown stream {p!r}; choose from body, hands, left_hand, right_hand, face")
    order = [s.name for s in ALL_STREAMS]
    names = sorted(set(names), key=order.index)
    return Layout(tuple(STREAMS_BY_NAME[n] for n in names))


CANONICAL = get_layout("body,hands,face")
"""The full four-stream layout every reader produces (160 points)."""
