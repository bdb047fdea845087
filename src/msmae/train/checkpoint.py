"""Checkpoints: a directory with ``model.safetensors`` (weights), ``config.json`` (the full model
config, the layout, the task and its resolved config) and, for exact resume, ``train_state.pt``
(optimiser, scheduler, step, RNG and data-order state).

Every checkpoint is written into a temporary directory, its files and the directory flushed to disk
(fsync), and renamed into place, so a crash or a power cut never leaves a half checkpoint;
``RUN/checkpoints/LATEST`` names the newest complete one.

A run directory looks like::

    RUN/config.yaml  RUN/metrics.json  RUN/model/ (final weights)  RUN/checkpoints/step_000500/ ...
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from msmae.train.model_card import hours, write_model_card  # noqa: F401 (tasks use ck.hours)
from msmae.utils import atomic_write_json, atomic_write_text, current_umask, json_text, make_dir_like_mkdir

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TRAIN_STATE = "train_state.pt"
SWITCHED = ("last", "best")   # checkpoints/<name> that a run rewrites: links switched in one rename
RUN_OUTPUTS = ("model", "metrics.json", "config.yaml", "checkpoints")  # what makes a folder an earlier run
ENCODER_PREFIX = "encoder."


class CheckpointError(ValueError):
    """A path that is not a usable msmae checkpoint, with the reason."""


def _write_temp_checkpoint(parent: Path, name: str, state_dict: dict[str, torch.Tensor], config: dict,
                           train_state: dict | None) -> Path:
    """A complete checkpoint in a new temporary folder of ``parent`` (the caller renames it into place)."""
    from safetensors.torch import save_file

    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    try:
        make_dir_like_mkdir(tmp)  # mkdtemp makes it owner-only; a run folder follows the user's umask
        # safetensors refuses shared/non-contiguous storage: save plain contiguous copies.
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "msmae", "version": str(FORMAT_VERSION)})
        meta = {"format": FORMAT_VERSION, "kind": "msmae-checkpoint", **config}
        (tmp / CONFIG).write_text(json_text(meta, indent=2, default=str) + "\n", encoding="utf-8")
        if train_state is not None:
            torch.save(_loadable(train_state), tmp / TRAIN_STATE)
        for f in tmp.iterdir():  # safetensors writes owner-only files
            os.chmod(f, 0o666 & ~current_umask())
            _fsync(f)
        _fsync(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tmp


def _fsync(path: Path) -> None:
    """Flush a file's or a directory's content (its entries) to disk. A file that cannot be flushed (a write
    error) fails the checkpoint; a directory on a file system that cannot flush one is only logged."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as e:  # some file systems cannot fsync a directory: the rename is still atomic there
        if not (path.is_dir() and e.errno in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF)):
            raise
        log.debug("fsync unsupported for %s", path)
    finally:
        os.close(fd)


def _loadable(obj: Any) -> Any:
    """``obj`` with only what ``torch.load(weights_only=True)`` accepts: tensors, numbers, strings, None,
    lists/tuples/dicts of them (numpy values become Python numbers or tensors, other objects strings)."""
    if isinstance(obj, dict):
        return {k: _loadable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_loadable(v) for v in obj)
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return obj  # exact types: numpy.float64 is a float subclass that weights_only refuses
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return torch.from_numpy(np.ascontiguousarray(obj))
    except ImportError:  # pragma: no cover
        pass
    return str(obj)


def save_checkpoint(ckpt_dir: str | Path, *, state_dict: dict[str, torch.Tensor], config: dict,
                    train_state: dict | None = None) -> Path:
    """Write weights + config (+ training state) into ``ckpt_dir`` atomically; returns the path.

    ``RUN/checkpoints/last`` and ``RUN/checkpoints/best`` (the checkpoints a fine-tuning run rewrites every
    epoch) are links to a numbered folder (``last-0007``): the new checkpoint goes into a new folder and the
    link is switched in one rename, so at every moment ``last`` is a complete checkpoint. The version before
    of ``last`` is kept, for ``--resume`` to fall back to should the newest be damaged.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.parent.mkdir(parents=True, exist_ok=True)
    if ckpt_dir.name in SWITCHED and ckpt_dir.parent.name == "checkpoints":
        return _save_switched(ckpt_dir, state_dict, config, train_state)
    tmp = _write_temp_checkpoint(ckpt_dir.parent, ckpt_dir.name, state_dict, config, train_state)
    try:
        old = None
        if ckpt_dir.exists():
            old = ckpt_dir.with_name(f".{ckpt_dir.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(ckpt_dir, old)
        os.replace(tmp, ckpt_dir)
        _fsync(ckpt_dir.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ckpt_dir


def _remove(p: Path) -> None:
    if p.is_symlink() or p.is_file():
        p.unlink()
    elif p.exists():
        shutil.rmtree(p, ignore_errors=True)


def _versions(link: Path) -> list[tuple[int, Path]]:
    pat = re.compile(rf"{re.escape(link.name)}-(\d+)")
    return sorted((int(m.group(1)), p) for p in link.parent.iterdir() if (m := pat.fullmatch(p.name)))


def _save_switched(link: Path, state_dict, config, train_state) -> Path:
    """``link`` (``checkpoints/last``) -> a new ``last-NNNN`` folder, switched by one rename of the link."""
    parent = link.parent
    versions = _versions(link)
    target = parent / f"{link.name}-{(versions[-1][0] + 1 if versions else 1):04d}"
    tmp = _write_temp_checkpoint(parent, link.name, state_dict, config, train_state)
    os.replace(tmp, target)  # a name never used before: one rename, nothing replaced
    _fsync(parent)
    new_link = parent / f".{link.name}.link.{os.getpid()}.tmp"
    try:
        if new_link.is_symlink() or new_link.exists():
            new_link.unlink()
        os.symlink(target.name, new_link, target_is_directory=True)
    except (OSError, NotImplementedError):  # no symlinks here (some Windows or network file systems)
        log.debug("symlinks unsupported in %s: replacing %s in two renames", parent, link)
        new_link = None
    if new_link is not None and not (link.is_dir() and not link.is_symlink()):
        os.replace(new_link, link)  # the atomic switch
    else:  # an older msmae's `last` folder, or no symlinks: two renames (this once, or always there)
        old = parent / f".{link.name}.old"
        _remove(old)
        if link.exists() or link.is_symlink():
            os.replace(link, old)
        os.replace(new_link if new_link is not None else target, link)
        _remove(old)
    _fsync(parent)
    keep = {Path(os.readlink(link)).name} if link.is_symlink() else set()
    if link.name == "last":  # the one before it too: --resume falls back to it should the newest be damaged
        keep |= {p.name for _, p in _versions(link)[-2:]}
    for _, p in _versions(link):  # older versions, no longer linked
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)
    return link


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
    if not isinstance(meta, dict) or meta.get("kind") != "msmae-checkpoint":
        raise CheckpointError(f"{ckpt / CONFIG}: not an msmae checkpoint config")
    fmt = meta.get("format")
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise CheckpointError(f"{ckpt / CONFIG}: unknown checkpoint format {fmt!r} (this msmae writes {FORMAT_VERSION})")
    if fmt > FORMAT_VERSION:
        raise CheckpointError(f"{ckpt}: written by a newer msmae (format {fmt}); please upgrade")
    return meta


def load_state_dict(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from msmae.train.model_folder import non_finite

    ckpt = resolve_checkpoint(path)
    try:
        weights = load_file(str(ckpt / WEIGHTS), device=str(device))
    except Exception as e:  # safetensors raises its own error types for truncated/corrupt files
        raise CheckpointError(f"{ckpt / WEIGHTS}: cannot read weights ({e})") from None
    bad = non_finite(weights)
    if bad:
        raise CheckpointError(f"{ckpt / WEIGHTS}: the weights are not finite ({len(bad)} of {len(weights)} tensors "
                              f"hold NaN or infinity, {bad[0]} first): the run that wrote them diverged")
    return weights


def load_train_state(path: str | Path) -> dict[str, Any]:
    """The training state saved beside a checkpoint's weights. Read with ``weights_only=True``: tensors,
    numbers, strings and containers only, so a crafted file cannot run code."""
    ckpt = resolve_checkpoint(path)
    f = ckpt / TRAIN_STATE
    if not f.is_file():
        raise CheckpointError(f"{ckpt}: has no {TRAIN_STATE}; it cannot be resumed")
    try:
        state = torch.load(f, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, or objects that are not plain data (UnpicklingError)
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{f}: unreadable or not plain training state ({text[:200]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{f}: not an msmae training state")
    return state


def resume_candidates(run_dir: str | Path) -> list[Path]:
    """The checkpoints ``--resume`` may continue from, newest first: the one ``LATEST`` names, then the
    step checkpoints from the highest step down, then ``last`` and its kept earlier versions."""
    ckdir = Path(run_dir) / "checkpoints"
    out: list[Path] = []
    marker = ckdir / "LATEST"
    if marker.is_file():
        name = marker.read_text(encoding="utf-8", errors="replace").strip()
        if name and "/" not in name and "\\" not in name and name not in (".", ".."):
            out.append(ckdir / name)
    out += sorted(ckdir.glob("step_*"), reverse=True)
    if (ckdir / "last").exists():
        out.append(ckdir / "last")
    if ckdir.is_dir():
        out += [p for _, p in reversed(_versions(ckdir / "last"))]
    seen: set[Path] = set()
    return [p for p in out if p.is_dir() and not (p.resolve() in seen or seen.add(p.resolve()))]


def load_resume_point(run_dir: str | Path, device: str | torch.device = "cpu"
                      ) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]] | None:
    """(checkpoint, weights, training state) of the newest checkpoint of ``run_dir`` that reads completely,
    or None. A damaged one (truncated, unsafe) is skipped with a warning naming it and the reason."""
    for cand in resume_candidates(run_dir):
        try:
            return cand, load_state_dict(cand, device=device), load_train_state(cand)
        except CheckpointError as e:
            log.warning("--resume: skipping a damaged checkpoint: %s", e)
    return None


def best_on_disk(run_dir: str | Path, epoch: int, score: float | None) -> tuple[int, float | None]:
    """(epoch, score) of the better of the given best and ``run_dir/checkpoints/best`` as saved: a resumed or
    restarted run compares with the best it may replace."""
    try:
        meta = read_checkpoint_config(Path(run_dir) / "checkpoints" / "best")
    except CheckpointError:
        return epoch, score
    saved = meta.get("best_score")
    if isinstance(saved, (int, float)) and (score is None or saved > score):
        return int(meta.get("best_epoch", meta.get("epoch", 0))), float(saved)
    return epoch, score


def resume_last(run_dir: str | Path, model, opt, sched, *, strict: bool = True) -> dict[str, Any]:
    """``--resume`` of an epoch-based fine-tuning run: load the model, optimizer and scheduler from
    ``run_dir/checkpoints/last`` -> its progress (``epoch``, ``history``, ``best_epoch``, ``best_score``).
    Without a readable checkpoint, warns and returns a fresh start."""
    point = load_resume_point(run_dir)
    if point is None:
        log.warning("--resume: no complete checkpoint in %s; starting from scratch", run_dir)
        return {"epoch": 0, "history": [], "best_epoch": 0, "best_score": None}
    ckpt, weights, st = point
    model.load_state_dict(weights, strict=strict)
    opt.load_state_dict(st["optimizer"])
    sched.load_state_dict(st["scheduler"])
    log.info("resumed %s from %s at epoch %d (best so far: epoch %d)", run_dir, ckpt.name, st["epoch"],
             st["best_epoch"])
    return st


class RunExistsError(ValueError):
    """A new run pointed at a folder that holds an earlier run's outputs."""


def earlier_run_outputs(run_dir: str | Path) -> list[str]:
    """What in ``run_dir`` an earlier training run wrote (``model/``, ``metrics.json``, ``config.yaml``,
    a non-empty ``checkpoints/``), as names."""
    d = Path(run_dir)
    found = []
    for name in RUN_OUTPUTS:
        p = d / name
        if name == "checkpoints":
            if p.is_dir() and any(p.iterdir()):
                found.append("checkpoints/")
        elif p.exists() or p.is_symlink():
            found.append(name + ("/" if p.is_dir() else ""))
    return found


def check_new_run(run_dir: str | Path, *, resume: bool) -> None:
    """Refuse (:class:`RunExistsError`) to start a new run in a folder holding an earlier run's outputs,
    unless it is resumed: nothing of a finished run is overwritten by mistake."""
    d = Path(run_dir)
    if d.exists() and not d.is_dir():
        raise RunExistsError(f"{run_dir} is a file, not a run folder")
    if resume:
        return
    found = earlier_run_outputs(d)
    if found:
        raise RunExistsError(f"{run_dir} already holds an earlier run ({', '.join(found)}): pass --resume to "
                             f"continue it, or choose a new --out")


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
    from msmae.models import MultiStreamEncoder
    from msmae.train.model_folder import open_model_folder

    folder = open_model_folder(path)
    prefix = folder.meta.get("encoder_prefix", ENCODER_PREFIX)
    if not isinstance(prefix, str) or not any(k.startswith(prefix) for k in folder.shapes):
        raise CheckpointError(f"{folder.path / WEIGHTS}: holds no encoder weights")
    folder.check_shapes(lambda: MultiStreamEncoder(config=folder.model), prefix)
    enc = MultiStreamEncoder(config=folder.model)
    enc.load_state_dict(encoder_state(load_state_dict(folder.path), prefix))  # checked: exactly these tensors
    return enc.to(device).eval()


def write_final_model(run_dir: str | Path, *, state_dict: dict[str, torch.Tensor], config: dict) -> Path:
    """The run's final weights in ``RUN/model`` (what ``load_encoder(RUN)`` and later tasks use), with its
    model card ``README.md`` (rewritten with the final metrics by ``write_model_card(RUN/model, metrics)``)."""
    d = save_checkpoint(Path(run_dir) / "model", state_dict=state_dict, config=config)
    write_model_card(d)
    return d


def write_metrics(run_dir: str | Path, metrics: dict) -> None:
    atomic_write_json(Path(run_dir) / "metrics.json", metrics)
