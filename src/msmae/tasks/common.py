"""Config sections and model set-up shared by the training tasks."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class ModelSection:
    size: str = "paper"                 # registered size (msmae.models.SIZES): "paper" or "tiny"
    streams: str = "body,hands"         # "body,hands" or "body,hands,face"
    extra: dict[str, Any] = field(default_factory=dict)  # overrides of the size's fields, e.g. {dim: 256}

    def build_config(self):
        from msmae.models import model_config

        return model_config(self.size, streams=self.streams, **self.extra)


def build_encoder(init: str, model: ModelSection, *, seed: int = 0):
    """The encoder to start from: a checkpoint's (``init`` = path) or a fresh one (``init`` = "none")."""
    import torch

    from msmae.models import MultiStreamEncoder
    from msmae.train.checkpoint import load_encoder

    if init.lower() == "none":
        torch.manual_seed(seed)
        return MultiStreamEncoder(config=model.build_config())
    enc = load_encoder(init)
    log.info("encoder initialised from %s (%s, streams %s); the model section of the config is not used",
             init, {k: enc.config.to_dict()[k] for k in ("dim", "depth", "heads")}, enc.config.streams)
    return enc


def absolute_data_paths(cfg) -> None:
    """Make ``cfg.data.annotations`` / ``cfg.data.poses`` (and an SLT run's ``translator.mbart``) absolute, so
    that the config saved with a run still finds its data from another working directory. Paths that do not
    exist are left as given: the error that follows names what the user wrote (and a hub name stays
    recognisable as one)."""
    import os

    for section, name in (("data", "annotations"), ("data", "poses"), ("translator", "mbart")):
        sec = getattr(cfg, section, None)
        value = getattr(sec, name, None) if sec is not None else None
        if value and os.path.exists(os.path.expanduser(value)):
            setattr(sec, name, os.path.abspath(os.path.expanduser(value)))


def override_data(cfg, *, annotations: str | None = None, poses: str | None = None) -> None:
    """Point a trained run's config at data that moved, or at another copy (``None`` keeps the saved path)."""
    if annotations:
        cfg.data.annotations = annotations
    if poses:
        cfg.data.poses = poses
    absolute_data_paths(cfg)


def read_input_sequence(path):
    """A video or frame folder (keypoints extracted on the fly with MediaPipe Holistic, the ``extract``
    extra) or any pose file msmae reads -> canonical PoseSequence."""
    from pathlib import Path

    from msmae.media import is_video
    from msmae.poses.readers import read_sequence

    path = Path(path)
    if not (is_video(path) or path.is_dir()):
        return read_sequence(path)
    from msmae.extract import video_to_sequence

    log.info("%s: extracting keypoints with MediaPipe Holistic", path)
    return video_to_sequence(path)
