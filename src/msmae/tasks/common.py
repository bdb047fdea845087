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
