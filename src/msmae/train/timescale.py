"""The time scale of an encoder: how many video frames one model frame and one token stand for.

The paper is inconsistent here. Section 4.1 samples "300 frames from 600 consecutive frames", i.e.
every 2nd frame (frame stride 2), so a 4-frame cubelet token spans 8 video frames (0.33 s at 24 fps);
the same section's "stride of 4 equals 0.167 s at 24 fps" and appendix F's "each token is 4 frames"
describe stride 1. msmae follows the first reading by default (:data:`PAPER_FRAME_STRIDE`);
``--set data.window=300 --set data.frame_stride=1`` gives the second.

An encoder is only meaningful at the time scale it was pre-trained with, so every task downstream
of a checkpoint uses that checkpoint's stride unless the user sets another one, and is warned when
the two differ (:func:`resolve_frame_stride`).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

PAPER_FRAME_STRIDE = 2  # section 4.1: 300 frames taken from 600 consecutive ones


def checkpoint_frame_stride(meta: dict) -> int | None:
    """The frame stride a checkpoint's encoder was trained with, from its ``config.json`` (``meta``).

    Pre-training: its ``data.frame_stride``. SLT: the stride its sentences were read with
    (``frame_stride``). ISLR samples a fixed number of frames per clip and has no stride of its own,
    so an ISLR checkpoint records the stride of the encoder it started from (``encoder_frame_stride``).
    None where nothing is recorded (an encoder trained from scratch on ISLR, an older checkpoint)."""
    if meta.get("encoder_frame_stride") is not None:
        return int(meta["encoder_frame_stride"])
    task = meta.get("task")
    if task == "slt" and meta.get("frame_stride") is not None:
        return int(meta["frame_stride"])
    if task == "pretrain":
        stride = ((meta.get("task_config") or {}).get("data") or {}).get("frame_stride")
        return int(stride) if stride is not None else None
    return None


def checkpoint_source_fps(meta: dict) -> float | None:
    """The frame rate (source frames per second) the encoder's frame stride counts: a pre-training run records
    its corpus's (``source_fps``), a fine-tuned run that of the encoder it started from
    (``encoder_source_fps``). ``model_fps / frame_stride`` model frames per second is the encoder's time scale
    (see :func:`msmae.poses.timing.model_step`). None where not recorded."""
    fps = meta.get("encoder_source_fps", meta.get("source_fps"))
    if fps is None:
        return None
    if isinstance(fps, bool) or not (isinstance(fps, (int, float)) and 0 < fps < float("inf")):
        raise ValueError(f"source_fps must be a positive frame rate, got {fps!r}")
    return float(fps)


def init_source_fps(init: str | None) -> float | None:
    """:func:`checkpoint_source_fps` of the checkpoint or run a task starts from (None for ``none``)."""
    if not init or str(init).lower() == "none":
        return None
    from msmae.train.checkpoint import read_checkpoint_config

    return checkpoint_source_fps(read_checkpoint_config(init))


def init_frame_stride(init: str | None) -> int | None:
    """:func:`checkpoint_frame_stride` of the checkpoint or run a task starts from (None for ``none``)."""
    if not init or str(init).lower() == "none":
        return None
    from msmae.train.checkpoint import read_checkpoint_config

    return checkpoint_frame_stride(read_checkpoint_config(init))


def resolve_frame_stride(requested: int | None, pretrained: int | None, *, setting: str,
                         default: int = PAPER_FRAME_STRIDE) -> int:
    """The frame stride a downstream task uses: the user's ``requested`` one when given, else the
    encoder's ``pretrained`` one, else ``default`` (the paper's 2). When the user's differs from the
    encoder's, one warning says so (``setting`` names the option, e.g. ``data.frame_stride``)."""
    if requested is None:
        return int(pretrained or default)
    if requested < 1:
        raise ValueError(f"{setting} must be at least 1, got {requested}")
    if pretrained is not None and requested != pretrained:
        log.warning("%s=%d differs from the frame stride %d the encoder was pre-trained with: one model frame "
                    "now stands for %d video frames instead of %d, a time scale the encoder has not seen",
                    setting, requested, pretrained, requested, pretrained)
    return int(requested)


def downstream_frame_stride(requested: int | None, init: str | None, *, setting: str = "data.frame_stride") -> int:
    """:func:`resolve_frame_stride` against the encoder a task starts from (``init``: checkpoint, run or ``none``)."""
    return resolve_frame_stride(requested, init_frame_stride(init), setting=setting)


def time_scale(*, cubelet: int, frame_stride: int, fps: float | None) -> dict:
    """``token_frames`` (video frames per token: cubelet x stride) and ``token_s`` (seconds per token at
    ``fps``; None without a frame rate)."""
    token_frames = int(cubelet) * int(frame_stride)
    return {"cubelet": int(cubelet), "frame_stride": int(frame_stride), "token_frames": token_frames,
            "fps": fps, "token_s": round(token_frames / fps, 6) if fps else None}


COMMON_FPS = (24.0, 25.0, 30.0, 50.0, 60.0)  # frame rates seconds per token are listed for (no --fps given)


def checkpoint_time_scale(path, *, fps: float | None = None) -> dict:
    """The time scale of a run or checkpoint directory (``msmae inspect RUN``): ``task``, ``streams``,
    ``cubelet``, ``frame_stride`` (the encoder's pre-training stride; 1 with ``frame_stride_recorded``
    False where the checkpoint does not say), ``token_frames``, ``token_s`` for keypoints stored at ``fps``
    (None without), ``token_s_by_fps`` at the common frame rates and ``source_fps``, the rate the encoder's
    frames were counted at (None where not recorded). Where it is recorded, seconds per token are those of
    keypoints read at the encoder's time scale (:func:`msmae.poses.timing.model_step`), as attention reads them."""
    from msmae.poses.timing import model_step
    from msmae.train.checkpoint import CONFIG, CheckpointError
    from msmae.train.model_folder import open_model_folder

    folder = open_model_folder(path)  # a malformed config or weight header: one line naming the file
    meta, model = folder.meta, folder.model
    try:
        stride = checkpoint_frame_stride(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder.path / CONFIG}: the recorded frame stride is not an integer ({e})") from None
    try:
        source_fps = checkpoint_source_fps(meta)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{folder.path / CONFIG}: the recorded source frame rate is not valid ({e})") from None
    cubelet = model.cubelet
    scale = time_scale(cubelet=cubelet, frame_stride=stride or 1, fps=fps)

    def token_s(rate: float) -> float:  # keypoints stored at `rate`, read as attention and view read them
        step = model_step(rate, {}, stride or 1, source_fps).step if source_fps else stride or 1
        return round(cubelet * step / rate, 6)

    if fps:
        scale["token_s"] = token_s(fps)
    return {"path": str(path), "kind": "run", "checkpoint": str(folder.path), "task": meta.get("task"),
            "streams": model.streams, **scale, "frame_stride_recorded": stride is not None,
            "source_fps": source_fps,  # the rate its stride counts frames at (None: not recorded)
            "token_s_by_fps": {f"{f:g}": token_s(f) for f in COMMON_FPS}}
