"""``msmae view``: read a clip, ask each given run what it can say about it, write the page.

A pre-training run gives the attention heatmap and the automatic segments (as ``msmae attention`` computes them);
an ISLR run the top-k signs of the whole clip and of every segment; an SLT run the translation. The page itself
is built by :mod:`msmae.analysis.view`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

log = logging.getLogger(__name__)


# Pose files that store their own frame rate: a .pose or .npz keeps it whatever video is shown with it (a stride-2
# extraction holds half the video's frames per second; its frames are timed by its own rate, msmae.poses.timing).
STORES_TIME = (".pose", ".npz")


class ViewError(ValueError):
    """Input, run or option that cannot be used; the message is one line naming the problem."""


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def read_clip(path: str | os.PathLike, *, video: str | os.PathLike | None = None, fps: float | None = None,
              width: int | None = None, height: int | None = None):
    """(PoseSequence as read, the video to show or None, notes).

    ``path`` is a video or frame folder (keypoints extracted with MediaPipe Holistic, the ``extract`` extra) or
    a pose file; ``video`` the video a pose file was extracted from (its fps and frame size are used for a file
    that does not store them, .npy and .parquet; a .pose or .npz keeps its own fps, the truth about its time).
    A pose file without ``video`` shows a video with the same name beside it, if there is one.
    """
    from msmae.extract.frames import is_video
    from msmae.poses.beside import find_video_beside
    from msmae.poses.readers import read_sequence
    from msmae.poses.sequence import PoseDataError

    path = Path(path)
    if not path.exists():
        raise ViewError(f"{path}: no such file")
    notes: list[str] = []
    if is_video(path) or path.is_dir():
        if video is not None:
            raise ViewError(f"{path} is a video already: --video is for pose files")
        try:
            from msmae.extract import video_to_sequence
        except ImportError as e:
            raise ViewError(f"{path}: reading a video needs the `extract` extra (pip install 'msmae[extract]'): "
                            f"{e}") from None
        kwargs = {"fps": fps} if fps and path.is_dir() else {}
        log.info("%s: extracting keypoints with MediaPipe Holistic", path)
        try:
            seq = video_to_sequence(path, **kwargs)
        except Exception as e:  # frame reading, MediaPipe, missing model files: one line for the user
            raise ViewError(f"{path}: keypoint extraction failed: {_first_line(e)}") from None
        return seq, (path if path.is_file() else None), notes
    info = None
    if video is not None:
        video = Path(video)
        info = _probe(video)
        if path.suffix.lower() not in STORES_TIME:  # .npy, .parquet: the video's rate and size unless given
            fps, width, height = fps or info.fps, width or info.width, height or info.height
    try:
        seq = read_sequence(path, fps=fps, width=width, height=height)
    except PoseDataError as e:
        raise ViewError(str(e)) from None
    if seq.meta.get("fps_assumed"):
        notes.append(f"{path.name} stores no frame rate and none was given: {seq.fps:g} fps assumed, every time in "
                     f"seconds depends on it (pass --fps or --video)")
    if video is None:
        found = seq.meta.get("frame_info_from") or find_video_beside(path)
        if found is not None:
            video = Path(found)
            notes.append(f"video {video.name}: found beside the pose file")
    elif info.num_frames:
        video_s, pose_s = info.num_frames / info.fps, seq.duration_s
        if abs(video_s - pose_s) > 2.5 / min(info.fps, seq.fps):
            notes.append(f"the video lasts {video_s:.2f} s, the keypoints {pose_s:.2f} s: is it the same clip?")
    return seq, video, notes


def _probe(video: Path):
    from msmae.extract.frames import probe_video

    if not video.is_file():
        raise ViewError(f"--video {video}: no such file")
    try:
        return probe_video(video)
    except Exception as e:
        raise ViewError(f"--video {video}: {_first_line(e)}") from None


def _attention(run: Path, meta: dict, seq, *, layer: int, count: int | None, device: str, progress: bool):
    from msmae.analysis.report import analyze, run_defaults
    from msmae.poses.normalize import normalize
    from msmae.train.checkpoint import CheckpointError, load_encoder
    from msmae.train.timescale import checkpoint_source_fps

    try:
        encoder = load_encoder(run, device=device)
    except CheckpointError as e:
        raise ViewError(str(e)) from None
    stride, chunk = run_defaults(meta)
    try:
        x = normalize(seq).select(encoder.layout)
        return analyze(encoder, x, layer=layer, frame_stride=stride, chunk_frames=chunk, count=count,
                       progress=progress, model_fps=checkpoint_source_fps(meta))
    except ValueError as e:
        raise ViewError(f"{run}: {_first_line(e)}") from None


def islr_predictions(run: Path, seq, segments: Sequence[dict] = (), top: int = 5) -> dict:
    """Top-``top`` signs of an ISLR run for the whole clip and for each segment (frames [start, end))."""
    from msmae.poses.sequence import PoseDataError
    from msmae.tasks.islr import model_from_run, predict_top
    from msmae.train.checkpoint import CheckpointError

    try:
        model, meta = model_from_run(run)  # predict_top runs on the CPU
    except (CheckpointError, KeyError) as e:
        raise ViewError(f"{run}: {_first_line(e)}") from None
    try:
        clip = predict_top(model, meta, seq, top)
        per_segment = [predict_top(model, meta, seq.slice_frames(s["start_frame"], s["end_frame"]), top)
                       for s in segments]
    except (PoseDataError, ValueError) as e:
        raise ViewError(f"{run}: {_first_line(e)}") from None
    return {"run": run.name or str(run), "path": str(run), "classes": len(meta["classes"]), "clip": clip,
            "segments": per_segment}


def _slt(run: Path, seq, *, device: str, beams: int | None) -> dict:
    from msmae.poses.sequence import PoseDataError
    from msmae.tasks.slt import prepare_input, translate, translator_from_run

    try:
        model, tokenizer, meta = translator_from_run(run, device=device)
        t = meta["task_config"]["translator"]
    except ImportError as e:
        raise ViewError(f"{run}: an SLT run needs the `slt` extra (pip install 'msmae[slt]'): {e}") from None
    except (OSError, KeyError, ValueError) as e:  # CheckpointError is a ValueError or OSError subclass
        raise ViewError(f"{run}: {_first_line(e)}") from None
    try:
        clip = prepare_input(model, meta, seq)
        text = translate(model, tokenizer, [clip], lang=meta["language"], num_beams=beams or int(t["num_beams"]),
                         max_new_tokens=int(t["max_new_tokens"]), length_penalty=float(t["length_penalty"]),
                         device=device)[0]
    except (PoseDataError, ValueError) as e:
        raise ViewError(f"{run}: {_first_line(e)}") from None
    return {"run": run.name or str(run), "path": str(run), "language": meta["language"], "text": text}


def make_view(input_path: str | os.PathLike, out: str | os.PathLike, *, models: Sequence[str | os.PathLike] = (),
              video: str | os.PathLike | None = None, fps: float | None = None, width: int | None = None,
              height: int | None = None, layer: int = -1, segments: int | None = None, top: int = 5,
              beams: int | None = None, device: str = "cpu", progress: bool = False) -> dict:
    """Write ``out/view.html`` for one clip and return what it shows: {"page", "bytes", "frames", "fps", "video",
    "segments", "islr", "slt"}.

    models: run or checkpoint directories, each a pre-training run (at most one: heatmap and segments), an ISLR
    run or an SLT run; segments: find exactly that many segments instead of thresholding the boundary contrast.
    """
    from msmae.analysis.view import write_view
    from msmae.train.checkpoint import CheckpointError, read_checkpoint_config

    if top < 1:
        raise ViewError(f"--top must be at least 1, got {top}")
    if segments is not None and segments < 1:
        raise ViewError(f"--segments must be at least 1, got {segments}")
    runs: dict[str, list[tuple[Path, dict]]] = {"pretrain": [], "islr": [], "slt": []}
    for m in models:
        try:
            meta = read_checkpoint_config(m)
        except CheckpointError as e:
            raise ViewError(str(e)) from None
        task = meta.get("task")
        if task not in runs:
            raise ViewError(f"{m}: a {task!r} run; view takes pre-training, ISLR and SLT runs")
        runs[task].append((Path(m), meta))
    if len(runs["pretrain"]) > 1:
        raise ViewError("give at most one pre-training run: the page has one heatmap and one set of segments")

    seq, video, notes = read_clip(input_path, video=video, fps=fps, width=width, height=height)
    if seq.num_frames == 0:
        raise ViewError(f"{input_path}: no frames")
    analysis = None
    if runs["pretrain"]:
        run, meta = runs["pretrain"][0]
        analysis = _attention(run, meta, seq, layer=layer, count=segments, device=device, progress=progress)
    else:
        notes.append("no pre-training run given: no attention heatmap and no segments")
    segs = analysis.segments if analysis is not None else []
    islr = [islr_predictions(run, seq, segs, top) for run, _ in runs["islr"]]
    slt = [_slt(run, seq, device=device, beams=beams) for run, _ in runs["slt"]]
    shown = [{"task": task, "run": str(run)} for task, rs in runs.items() for run, _ in rs]
    page = write_view(out, seq, video=video, analysis=analysis, islr=islr, slt=slt, source=str(input_path),
                      models=shown, notes=notes)
    return {"page": str(page), "bytes": page.stat().st_size, "frames": seq.num_frames, "fps": seq.fps,
            "video": str(video) if video else None, "segments": segs, "islr": islr, "slt": slt}
