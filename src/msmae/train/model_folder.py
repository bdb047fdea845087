"""A model folder checked before use: the one owner of "is this folder a usable model".

Every command and library function that loads weights (``load_encoder``, the ISLR classifier, the SLT
translator) goes through :func:`open_model_folder` and :meth:`ModelFolder.check_shapes` before it builds or
allocates anything:

- ``config.json`` is a JSON object of an msmae checkpoint, of a format this msmae reads, with a ``model`` section
  whose sizes are valid and not absurd (:class:`msmae.models.ModelConfig` refuses more than ``MAX_WEIGHTS``);
- ``model.safetensors`` has a readable header whose tensors lie inside the file and hold exactly their shape's
  bytes (read without loading them), so the file's size bounds what the config may have built;
- every tensor the config implies has the shape the file holds (the model is built on the ``meta`` device,
  which allocates nothing, and its shapes are compared with the header's);
- when the weights are read (:func:`msmae.train.checkpoint.load_state_dict`), they are all finite.

Each failure is a :class:`~msmae.train.checkpoint.CheckpointError` of one line naming the file.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

HEADER_MAX_BYTES = 100_000_000  # safetensors' own limit on the JSON header
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
               "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


@dataclass
class ModelFolder:
    """A checked model folder: its path, ``config.json`` (``meta``), model config and weights header."""

    path: Path
    meta: dict
    model: object                                   # msmae.models.ModelConfig
    shapes: dict[str, tuple[int, ...]]              # tensor name -> shape, from the safetensors header

    def check_shapes(self, build: Callable[[], torch.nn.Module], prefix: str = "") -> None:
        """Build ``build()`` on the meta device (no memory) and refuse a weight file whose tensors under
        ``prefix`` are not exactly those of the model the config describes, with their shapes."""
        from msmae.train.checkpoint import WEIGHTS, CheckpointError

        with torch.device("meta"):
            module = build()
        expected = {prefix + k: tuple(v.shape) for k, v in module.state_dict().items()}
        held = {k for k in self.shapes if k.startswith(prefix)}
        m = self.model
        config = f"config.json (dim {m.dim}, depth {m.depth}, heads {m.heads}, streams {m.streams})"
        missing, unexpected = sorted(expected.keys() - held), sorted(held - expected.keys())
        if missing or unexpected:
            raise CheckpointError(
                f"{self.path / WEIGHTS}: the weights do not match {config}: "
                + "; ".join(f"{len(names)} tensors {what} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
                            for what, names in (("missing", missing), ("unexpected", unexpected)) if names))
        wrong = [(k, self.shapes[k], shape) for k, shape in expected.items() if self.shapes[k] != shape]
        if wrong:
            name, got, want = wrong[0]
            more = f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
            raise CheckpointError(f"{self.path / WEIGHTS}: {name} has shape {list(got)} but {config} needs "
                                  f"{list(want)}{more}: the weights do not match their config")


def open_model_folder(path: str | Path) -> ModelFolder:
    """The checked model folder of a checkpoint, its ``model.safetensors`` or a run directory (see
    :func:`msmae.train.checkpoint.resolve_checkpoint`)."""
    from msmae.models import ModelConfig
    from msmae.train.checkpoint import CONFIG, WEIGHTS, CheckpointError, read_checkpoint_config, resolve_checkpoint

    ckpt = resolve_checkpoint(path)
    meta = read_checkpoint_config(ckpt)
    if "model" not in meta:
        raise CheckpointError(f"{ckpt / CONFIG}: has no model config")
    try:
        model = ModelConfig.from_dict(meta["model"])
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt / CONFIG}: {e}") from None
    return ModelFolder(ckpt, meta, model, read_weight_shapes(ckpt / WEIGHTS))


def read_weight_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a safetensors file's header, without reading the tensors; refuses a header
    that is not one, or tensors that would lie outside the file."""
    from msmae.train.checkpoint import CheckpointError

    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if not 2 <= n <= min(HEADER_MAX_BYTES, size - 8):
                raise ValueError(f"header length {n} does not fit a file of {size} bytes")
            header = json.loads(f.read(n))
        if not isinstance(header, dict):
            raise ValueError("the header is not a JSON object")
        shapes, end = {}, size - 8 - n
        for name, info in header.items():
            if name == "__metadata__":
                continue
            shape, (start, stop) = tuple(int(d) for d in info["shape"]), info["data_offsets"]
            if min(shape, default=1) < 0 or not 0 <= int(start) <= int(stop) <= end:
                raise ValueError(f"tensor {name} lies outside the file")
            # the bytes it holds are exactly its shape's: the file's size then bounds the model built from it
            if int(stop) - int(start) != math.prod(shape) * DTYPE_BYTES[info["dtype"]]:
                raise ValueError(f"tensor {name} of shape {list(shape)} does not hold {int(stop) - int(start)} bytes")
            shapes[name] = shape
    except (OSError, struct.error, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors weight file ({e})") from None
    return shapes


def non_finite(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or infinity."""
    return [k for k, v in state_dict.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]

