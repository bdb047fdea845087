"""Checkpoints: a directory with ``model.safetensors`` (weights), ``config.json`` (the full model
config, the layout, the task and its resolved config) and, for exact resume, ``train_state.pt``
(optimiser, scheduler, step, RNG and data-order state).

Every checkpoint is written into a temporary directory and renamed into place, so a crash never
leaves a half checkpoint; ``RUN/checkpoints/LATEST`` names the newest complete one.

A run directory looks like::

    RUN/config.yaml  RUN/metrics.json  RUN/model/ (final weights)  RUN/checkpoints/step_000500/ ...
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from msmae.train.model_card import hours, write_model_card  # noqa: F401 (tasks use ck.hours)
from msmae.utils import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAIN_STATE = "train_state.pt"
ENCODER_PREFIX = "encoder."


class CheckpointError(ValueError):
    """A path that is not a usable msmae checkpoint, with the reason."""


def save_checkpoint(ckpt_dir: str | Path, *, state_dict: dict[str, torch.Tensor], config: dict,
                    train_state: dict | None = None) -> Path:
    """Write weights + config (+ training state) into ``ckpt_dir`` atomically; returns the path."""
    from safetensors.torch import save_file

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ckpt_dir.name}.", suffix=".tmp", dir=ckpt_dir.parent))
    try:
        # safetensors refuses shared/non-contiguous storage: save plain contiguous copies.
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "msmae", "version": str(FORMAT_VERSION)})
        meta = {"format": FORMAT_VERSION, "kind": "msmae-checkpoint", **config}
        (tmp / CONFIG).write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
        if train_state is not None:
            torch.save(train_state, tmp / TRAIN_STATE)
        old = None
        if ckpt_dir.exists():
            old = ckpt_dir.with_name(f".{ckpt_dir.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(ckpt_dir, old)
        os.replace(tmp, ckpt_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ckpt_dir


def mark_latest(run_dir: str | Path, ckpt_dir: str | Path) -> None:
    atomic_write_text(Path(run_dir) / "checkpoints" / "LATEST", Path(ckpt_dir).name + "\n")


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    ckdir = Path(run_dir) / "checkpoints"
    marker = ckdir / "LATEST"
    if marker.is_file():
        cand = ckdir / marker.read_text().strip()
        if (cand / WEIGHTS).is_file() and (cand / CONFIG).is_file():
            return cand
    # Fall back to the highest step directory that is complete.
    steps = sorted(p for p in ckdir.glob("step_*") if (p / WEIGHTS).is_file() and (p / CONFIG).is_file())
    return steps[-1] if steps else None


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Remove all but the ``keep`` newest ``step_*`` checkpoints (keep <= 0 keeps everything)."""
    if keep <= 0:
        return
    steps = sorted(p for p in (Path(run_dir) / "checkpoints").glob("step_*") if p.is_dir())
    for p in steps[:-keep]:
        shutil.rmtree(p, ignore_errors=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a checkpoint directory, its ``model.safetensors``, or a run directory (its final ``model/``,
    else its latest checkpoint)."""
    p = Path(path)
    if p.is_file() and p.name == WEIGHTS:
        p = p.parent
    if not p.exists():
        raise CheckpointError(f"{path}: no such checkpoint or run directory")
    if (p / WEIGHTS).is_file() and (p / CONFIG).is_file():
        return p
    if (p / "model" / WEIGHTS).is_file():
        return p / "model"
    latest = latest_checkpoint(p)
    if latest is not None:
        return latest
    raise CheckpointError(
        f"{path}: not an msmae checkpoint (expected {WEIGHTS} + {CONFIG}, or a run directory with model/ "
        f"or checkpoints/)")


def read_checkpoint_config(path: str | Path) -> dict:
    ckpt = resolve_checkpoint(path)
    try:
        meta = json.loads((ckpt / CONFIG).read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{ckpt / CONFIG}: not valid JSON ({e})") from None
    if meta.get("kind") != "msmae-checkpoint":
        raise CheckpointError(f"{ckpt / CONFIG}: not an msmae checkpoint config")
    if int(meta.get("format", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{ckpt}: written by a newer msmae (format {meta['format']}); please upgrade")
    return meta


def load_state_dict(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    ckpt = resolve_checkpoint(path)
    try:
        return load_file(str(ckpt / WEIGHTS), device=str(device))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"{ckpt / WEIGHTS}: cannot read weights ({e})") from None


def load_train_state(path: str | Path) -> dict[str, Any]:
    ckpt = resolve_checkpoint(path)
    f = ckpt / TRAIN_STATE
    if not f.is_file():
        raise CheckpointError(f"{ckpt}: has no {TRAIN_STATE}; it cannot be resumed")
    return torch.load(f, map_location="cpu", weights_only=False)


def resume_last(run_dir: str | Path, model, opt, sched, *, strict: bool = True) -> dict[str, Any]:
    """``--resume`` of an epoch-based fine-tuning run: load the model, optimizer and scheduler from
    ``run_dir/checkpoints/last`` -> its progress (``epoch``, ``history``, ``best_epoch``, ``best_score``).
    Without a ``last`` checkpoint, warns and returns a fresh start."""
    last = Path(run_dir) / "checkpoints" / "last"
    if not (last / TRAIN_STATE).is_file():
        log.warning("--resume: no checkpoint in %s; starting from scratch", run_dir)
        return {"epoch": 0, "history": [], "best_epoch": 0, "best_score": None}
    model.load_state_dict(load_state_dict(last), strict=strict)
    st = load_train_state(last)
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    log.info("resumed %s at epoch %d (best so far: epoch %d)", run_dir, st["epoch"], st["best_epoch"])
    return st


def save_last(run_dir: str | Path, *, state_dict: dict[str, torch.Tensor], config: dict, opt, sched,
              **progress) -> Path:
    """Write ``run_dir/checkpoints/last`` with the optimizer, scheduler and ``progress`` (what
    :func:`resume_last` returns) and mark it as the run's latest checkpoint."""
    state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), **progress}
    d = save_checkpoint(Path(run_dir) / "checkpoints" / "last", state_dict=state_dict, config=config,
                        train_state=state)
    mark_latest(run_dir, d)
    return d


def encoder_state(state_dict: dict[str, torch.Tensor], prefix: str = ENCODER_PREFIX) -> dict[str, torch.Tensor]:
    """The encoder's weights from a full model state dict (keys under ``prefix``)."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_encoder(path: str | Path, *, device: str | torch.device = "cpu"):
    """A ready :class:`msmae.models.MultiStreamEncoder` (eval mode) from any msmae checkpoint or run
    directory: pre-training, ISLR or SLT (the encoder they hold). ``encoder.config`` is its
    :class:`~msmae.models.ModelConfig`; ``msmae.layout.get_layout(encoder.config.streams)`` its layout."""
    from msmae.models import ModelConfig, MultiStreamEncoder

    meta = read_checkpoint_config(path)
    if "model" not in meta:
        raise CheckpointError(f"{resolve_checkpoint(path)}: config.json has no model config")
    cfg = ModelConfig.from_dict(meta["model"])
    enc = MultiStreamEncoder(config=cfg)
    sd = encoder_state(load_state_dict(path), meta.get("encoder_prefix", ENCODER_PREFIX))
    if not sd:
        raise CheckpointError(f"{resolve_checkpoint(path)}: holds no encoder weights")
    missing, unexpected = enc.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{resolve_checkpoint(path)}: encoder weights do not match its config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})")
    return enc.to(device).eval()


def write_final_model(run_dir: str | Path, *, state_dict: dict[str, torch.Tensor], config: dict) -> Path:
    """The run's final weights in ``RUN/model`` (what ``load_encoder(RUN)`` and later tasks use), with its
    model card ``README.md`` (rewritten with the final metrics by ``write_model_card(RUN/model, metrics)``)."""
    d = save_checkpoint(Path(run_dir) / "model", state_dict=state_dict, config=config)
    write_model_card(d)
    return d


def write_metrics(run_dir: str | Path, metrics: dict) -> None:
    atomic_write_json(Path(run_dir) / "metrics.json", metrics)
