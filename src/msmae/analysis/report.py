"""One pose sequence -> attention, boundaries and segments -> the files of ``msmae attention``.

``analyze`` does the computing (library use, benchmarks); ``write_report`` writes ``attention.npy``,
``segments.json``, ``segments.eaf``, ``attention.png`` and ``segments_strip.png`` into a folder.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from msmae.analysis.attention import AttentionResult, compute_attention
from msmae.analysis.segmentation import (SegmenterConfig, contrast_curve, fill_boundaries, pick_peaks,
                                         relative_threshold, segments_from_boundaries)
from msmae.poses.sequence import PoseSequence
from msmae.poses.timing import seconds
from msmae.utils import plural

log = logging.getLogger(__name__)

FILES = {"matrix": "attention.npy", "segments": "segments.json", "eaf": "segments.eaf",
         "heatmap": "attention.png", "strip": "segments_strip.png"}


@dataclass
class Analysis:
    """Everything ``msmae attention`` finds for one sequence."""

    attention: AttentionResult
    segmenter: SegmenterConfig
    kernel_tokens: int             # checkerboard half-width in tokens
    min_segment_tokens: int        # minimum segment length in tokens
    curve: np.ndarray              # (Nt + 1,) boundary contrast at every token border
    threshold: float               # the contrast a boundary had to reach in this clip
    boundaries: list[int]          # token indices where a segment starts (interior)
    forced_count: int | None       # segments asked for (None: thresholded)
    segments: list[dict]           # see msmae.analysis.segmentation.segments_from_boundaries
    time: dict | None = None       # how stored frames became model frames (see analyze)


def run_defaults(checkpoint_config: dict) -> tuple[int, int]:
    """(frame_stride, chunk_frames) of a run: the frame stride its encoder was pre-trained with (any task;
    1 where the checkpoint does not record it) and, for a pre-training run, its window in model frames
    (else 300)."""
    from msmae.train.timescale import checkpoint_frame_stride

    stride = max(1, checkpoint_frame_stride(checkpoint_config) or 1)
    data = (checkpoint_config.get("task_config") or {}).get("data") or {}
    if checkpoint_config.get("task") == "pretrain" and "window" in data:
        return stride, max(1, int(data["window"]) // stride)
    return stride, 300


def segment(attention: AttentionResult, segmenter: SegmenterConfig | None = None,
            count: int | None = None) -> Analysis:
    """Boundaries and segments on an attention result (``count`` forces that many segments)."""
    seg = segmenter or SegmenterConfig()
    half, min_len = seg.in_tokens(attention.token_seconds)
    curve = contrast_curve(attention.matrix, half, detrended=seg.detrend)
    k = None if count is None else max(0, int(count) - 1)
    th = relative_threshold(curve, seg.threshold_mads, seg.min_contrast)
    bounds = pick_peaks(curve, min_distance=min_len, threshold=-np.inf if k is not None else th, count=k)
    if k is not None and len(bounds) < k:
        bounds = fill_boundaries(curve, bounds, count=k, min_distance=min_len)
        if len(bounds) < k:
            raise ValueError(
                f"{plural(count, 'segment')} asked for: this clip ({plural(attention.num_tokens, 'token')} of "
                f"{attention.token_seconds:.3f} s) holds at most {plural(len(bounds) + 1, 'segment')} of at least "
                f"{seg.min_segment_s:g} s (min_segment_s); ask for fewer, or a shorter min_segment_s")
    segs = segments_from_boundaries(bounds, num_tokens=attention.num_tokens, token_frames=attention.token_frames,
                                    num_frames=attention.num_frames, fps=attention.fps)
    log.debug("%d boundaries at tokens %s (contrast threshold %.4f)", len(bounds), bounds, th)
    for s in segs:
        b = s["start_token"]
        s["contrast"] = None if b == 0 else round(float(curve[b]), 4)  # strength of the boundary it starts at
    return Analysis(attention=attention, segmenter=seg, kernel_tokens=half, min_segment_tokens=min_len,
                    curve=curve, threshold=th, boundaries=bounds, forced_count=count, segments=segs)


def analyze(encoder, seq: PoseSequence, *, layer: int = -1, frame_stride: int = 1, chunk_frames: int = 300,
            overlap: float = 0.5, streams: Sequence[str] | None = None, segmenter: SegmenterConfig | None = None,
            count: int | None = None, progress: bool = False, model_fps: float | None = None) -> Analysis:
    """Attention and segments of a normalised sequence (any layout holding the encoder's streams).

    ``frame_stride`` and ``model_fps`` are the encoder's time scale (its pre-training stride, counted in source
    frames at ``model_fps``; :func:`msmae.train.timescale.checkpoint_source_fps`): the stored frames the
    encoder reads are chosen by :func:`msmae.poses.timing.model_step`, so that a stride-2 extraction and the
    full-rate keypoints of one clip give the same seconds."""
    from msmae.poses.timing import model_step, source_fps_of, stride_recorded

    step = model_step(seq.fps, seq.meta, frame_stride, model_fps)
    (log.debug if step.exact else log.warning)("%s: %s", seq.source or "sequence", step.note)
    x = seq.select(encoder.layout) if seq.layout != encoder.layout else seq
    if not x.present.any():  # as ISLR refuses an empty clip: no attention, segments or ELAN file from nothing
        raise ValueError(f"no keypoint of {encoder.layout.spec} is present in any frame: nothing to analyse")
    att = compute_attention(encoder, x.coords, fps=seq.fps, layer=layer, frame_stride=step.step,
                            chunk_frames=chunk_frames, overlap=overlap, streams=streams, progress=progress)
    result = segment(att, segmenter, count)
    result.time = {"model_frame_stride": int(frame_stride), "model_fps": model_fps,
                   "extract_stride": int(seq.meta["frame_stride"]) if stride_recorded(seq.meta) else None,
                   "source_fps": source_fps_of(seq.fps, seq.meta), "exact": step.exact, "note": step.note}
    return result


def summary(result: Analysis, *, source: str | None = None, model: str | None = None) -> dict:
    """The ``segments.json`` object."""
    att = result.attention
    b_frames = [s["start_frame"] for s in result.segments[1:]]
    return {
        "input": source, "model": model,
        "fps": att.fps, "frames": att.num_frames, "duration_s": seconds(att.num_frames, att.fps),
        "layer": att.layer, "cubelet": att.cubelet, "frame_stride": att.frame_stride,
        "token_frames": att.token_frames, "token_s": round(att.token_seconds, 6), "num_tokens": att.num_tokens,
        "streams": list(att.streams), "streams_averaged": list(att.averaged),
        "chunk_tokens": att.chunk_tokens, "chunk_starts": att.chunk_starts,
        "segmenter": {**asdict(result.segmenter), "kernel_tokens": result.kernel_tokens,
                      "min_segment_tokens": result.min_segment_tokens, "threshold": round(result.threshold, 6),
                      "forced_count": result.forced_count},
        "boundaries": {"tokens": list(result.boundaries), "frames": b_frames,
                       "seconds": [seconds(f, att.fps) for f in b_frames]},
        "segments": result.segments,
        "time": result.time,
        "end_exclusive": True,
    }


def write_report(out_dir: str | os.PathLike, result: Analysis, display: PoseSequence, *,
                 source: str | None = None, model: str | None = None,
                 media: Sequence[str | os.PathLike] = (), language: str = "und") -> dict[str, Path]:
    """Write the five files into ``out_dir``; ``display`` is the normalised sequence drawn in the strip
    (source frames, any layout). ``media`` files are linked from the ELAN file (the video first, the one ELAN
    plays), whose tier is in ``language`` (ISO 639-3). Returns name -> path."""
    from msmae.analysis.eaf import write_eaf
    from msmae.analysis.plots import plot_attention, plot_segment_strip
    from msmae.utils import atomic_path, atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    att = result.attention
    paths = {k: out / v for k, v in FILES.items()}
    with atomic_path(paths["matrix"], suffix=".npy") as tmp:
        with open(tmp, "wb") as f:
            np.save(f, att.matrix.astype(np.float32))
    info = summary(result, source=source, model=model)
    info["files"] = {k: v.name for k, v in paths.items()}
    atomic_write_json(paths["segments"], info)
    write_eaf(paths["eaf"], [(int(round(s["start_s"] * 1000)), int(round(s["end_s"] * 1000)), str(s["index"] + 1))
                             for s in result.segments], media=media, language=language)
    name = Path(source).name if source else "input"
    plot_attention(paths["heatmap"], att.matrix, token_seconds=att.token_seconds, boundaries=result.boundaries,
                   per_stream=att.per_stream, stream_names=att.streams, curve=result.curve,
                   threshold=None if result.forced_count is not None else result.threshold,
                   title=f"{name}: layer {att.layer}, {att.num_frames} frames at {att.fps:g} fps, "
                         f"1 token = {att.token_frames} frames ({att.token_seconds:.3f} s)")
    plot_segment_strip(paths["strip"], display.coords, display.present, display.layout, result.segments,
                       fps=att.fps, title=f"{name}: skeleton at the middle of each segment")
    return paths
