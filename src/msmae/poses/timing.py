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


def mixed_rates(source_rates: Iterable[float], tolerance: float = 1.5) -> str | None:
    """One line when some videos' source rates (fps x recorded extraction stride) stand ``tolerance`` times or
    more from the median: the typical sign of a stride-2 ``.pose`` whose note was lost (it counts as a 12 fps
    source among 24 fps ones), which one window length in frames cannot serve. None when they agree."""
    rates = sorted(float(r) for r in source_rates)
    if not rates:
        return None
    mid = rates[len(rates) // 2]
    odd = Counter(round(r, 3) for r in rates if max(r / mid, mid / r) >= tolerance)
    if not odd:
        return None
    parts = ", ".join(f"{n} at {r:g} fps" for r, n in sorted(odd.items()))
    return (f"source frame rates differ: {parts} against a median of {mid:g} fps; a window of frames covers "
            f"different seconds in them (a .pose rewritten by pose-format loses its --frame-stride note and counts "
            f"at its own fps: extract it again, or pack files of one rate together)")


def extract_stride_of(meta: dict) -> int:
    """The extraction frame stride a sequence's ``meta`` records (1 when none)."""
    return int(meta.get("frame_stride", 1) or 1)


def stride_recorded(meta: dict) -> bool:
    """Whether the sequence says which frame stride it was extracted at (an ``msmae extract`` ``.pose`` with
    its note, an ``.npz`` written from one, a packed corpus entry). A ``.pose`` rewritten by pose-format, a
    ``.npy`` or a ``.parquet`` does not: only its fps (stored frames per second) tells its time."""
    return meta.get("frame_stride") is not None


@dataclass(frozen=True)
class Step:
    """Which stored frames of a sequence a model reads: every ``step``-th."""

    step: int
    exact: bool   # True when the model frames per second equal the model's own
    note: str     # one line saying how ``step`` was chosen (for a log line or a warning)


def model_step(fps: float, meta: dict, frame_stride: int, model_fps: float | None = None) -> Step:
    """The step, in stored frames, at which a model reads a sequence of ``fps`` stored frames per second.

    The model was trained reading every ``frame_stride``-th frame of keypoints at ``model_fps`` frames per
    second (its source rate), i.e. ``model_fps / frame_stride`` model frames per second. The sequence's fps is
    the truth about its time, so where the model's rate is known the step is ``fps * frame_stride / model_fps``
    rounded (a stride-2 extraction at 12 fps of a 24 fps video, model at stride 2 of 24 fps: step 1), whether
    or not the file records its extraction stride. Where the model's rate is not known (a checkpoint from
    before it was recorded), the sequence's recorded extraction stride divides the model's
    (:func:`sampling_for_stride`); with neither, the sequence is taken as full-rate keypoints and ``exact`` is
    False so that the caller says so.
    """
    frame_stride = int(frame_stride)
    if frame_stride < 1 or not fps > 0:
        raise ValueError(f"frame stride and fps must be positive, got {frame_stride} and {fps}")
    if model_fps:
        ratio = fps * frame_stride / float(model_fps)
        step = max(1, int(round(ratio)))
        exact = abs(ratio - step) <= 0.05 * step
        rate = fps / step
        note = (f"{fps:g} fps keypoints, read every {step} frame(s): {rate:g} model frames per second, the model's "
                f"{model_fps / frame_stride:g} ({model_fps:g} fps, every {frame_stride})")
        if not exact:
            note += f" (not exact: each model frame is {(step / fps) / (frame_stride / model_fps):.2f}x its time step)"
        return Step(step, exact, note)
    if stride_recorded(meta):
        s = sampling_for_stride(1, frame_stride, extract_stride_of(meta))
        return Step(s.stride, s.exact, s.note)
    exact = frame_stride == 1
    note = (f"every {frame_stride} frame(s) of these {fps:g} fps keypoints" if exact else
            f"neither the keypoints nor the model record a frame rate to compare: the {fps:g} fps keypoints are "
            f"taken as extracted from every source frame, read every {frame_stride} frames")
    return Step(frame_stride, exact, note)


def stride_for_sequence(meta: dict, frame_stride: int, *, fps: float | None = None,
                        model_fps: float | None = None) -> int:
    """The frame stride to apply to a sequence with ``meta`` (and ``fps``) so that it matches ``frame_stride``
    in source frames of the model's rate (e.g. 2 on full-rate keypoints, 1 on a stride-2 extraction); see
    :func:`model_step`."""
    if fps is None or not model_fps:
        return sampling_for_stride(1, frame_stride, extract_stride_of(meta)).stride
    return model_step(fps, meta, frame_stride, model_fps).step


def seconds(frame: float, fps: float) -> float:
    """Seconds from the start of a sequence at stored frame ``frame`` (``fps`` stored frames per second),
    rounded to 0.1 ms. Every time msmae writes (segments, ELAN, the page, inspect) comes from here."""
    return round(float(frame) / float(fps), 4)


def source_fps_of(fps: float, meta: dict) -> float:
    """The rate of the video a sequence was extracted from: what its note records, else ``fps`` times its
    recorded extraction stride (``fps`` itself for a file without a note)."""
    return float(meta.get("source_fps") or fps * extract_stride_of(meta))
