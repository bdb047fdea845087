"""Config sections shared by the training tasks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelSection:
    size: str = "paper"                 # registered size (msmae.models.SIZES): "paper" or "tiny"
    streams: str = "body,hands"         # "body,hands" or "body,hands,face"
    extra: dict[str, Any] = field(default_factory=dict)  # overrides of the size's fields, e.g. {dim: 256}

    def build_config(self):
        from msmae.models import model_config

        return model_config(self.size, streams=self.streams, **self.extra)
