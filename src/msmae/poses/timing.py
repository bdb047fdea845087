"""Frame sampling that keeps the time scale of a config whatever rate the keypoints were extracted at.

Configs count frames of full-rate keypoints: pre-training reads a window of 600 frames and keeps every
2nd (``data.window``, ``data.frame_stride``), SLT keeps every 2nd frame. A file extracted with
``msmae extract --frame-stride N`` already holds every N-th source frame (its ``.pose`` records N,
and a packed corpus records it per video in ``index.csv``), so the same config must read
``window / N`` stored frames every ``frame_stride / N``-th: the same seconds per window and the
same seconds per token as full-rate keypoints sampled by the config.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Sampling:
    """What to read from keypoints extracted every ``extract_stride``-th source frame."""

    window: int  # stored frames per window
    stride: int  # keep every ``stride``-th stored frame
    extract_stride: int  # the extraction's frame stride (1 = every source frame)
    exact: bool  # True when seconds per kept frame equal the config's
    note: str  # one line saying what was chosen


def sampling_for_stride(window: int, frame_stride: int, extract_stride: int = 1) -> Sampling:
    """Config values (counted in source frames) -> values in stored frames of a stride-``extract_stride``
    extraction. Exact when ``frame_stride`` is a multiple of ``extract_stride``; otherwise every stored
    frame is kept (the closest possible, finer than the config) and ``note`` says so."""
    e = int(extract_stride)
    if e < 1 or window < 1 or frame_stride < 1:
        raise ValueError(f"window, frame_stride and the extraction stride must be >= 1, got "
                         f"{window}, {frame_stride}, {extract_stride}")
    if e == 1:
        return Sampling(window, frame_stride, 1, True,
                        f"window {window} frames, every {frame_stride} (keypoints at the source rate)")
    stride = max(1, frame_stride // e)
    win = max(1, math.ceil(window / e))
    exact = frame_stride % e == 0
    note = (f"keypoints extracted every {e} source frames: window {window} -> {win} stored frames, "
            f"frame stride {frame_stride} -> {stride}")
    if not exact:
        note += (f" (not exact: the config keeps every {frame_stride} source frames, these files have "
                 f"one every {e}; each kept frame is {e / frame_stride:.2f}x the config's time step)")
    else:
        note += " (same seconds per window and per token as the config on full-rate keypoints)"
    return Sampling(win, stride, e, exact, note)


def sampling_for_corpus(extract_strides: Iterable[int], window: int, frame_stride: int) -> Sampling:
    """One :class:`Sampling` for a corpus whose videos were extracted with these strides (all equal;
    a corpus mixing strides is refused, since one window length cannot fit both)."""
    counts = Counter(int(s) for s in extract_strides)
    if len(counts) > 1:
        parts = ", ".join(f"{n} videos at stride {s}" for s, n in sorted(counts.items()))
        raise ValueError(f"the corpus mixes extraction frame strides ({parts}); pack files of one "
                         f"--frame-stride into one corpus")
    return sampling_for_stride(window, frame_stride, next(iter(counts), 1))


def extract_stride_of(meta: dict) -> int:
    """The extraction frame stride a sequence's ``meta`` records (1 when none)."""
    return int(meta.get("frame_stride", 1) or 1)


def stride_for_sequence(meta: dict, frame_stride: int) -> int:
    """The frame stride to apply to a sequence with ``meta`` so that it matches ``frame_stride`` in source
    frames (e.g. 2 on full-rate keypoints, 1 on a stride-2 extraction)."""
    return sampling_for_stride(1, frame_stride, extract_stride_of(meta)).stride
