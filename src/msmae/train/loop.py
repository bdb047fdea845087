"""The epoch-based fine-tuning loop shared by ISLR fine-tuning, the linear probe and SLT.

A task supplies its batch -> loss step and its validation; the loop does the rest: AdamW (no decay on
biases, norms and tokens), per-step linear warm-up + cosine, autocast with fp16 loss scaling, gradient
clipping, DDP under torchrun (each rank reads its part of every epoch), the best epoch on a validation
metric, checkpoints (``last`` with everything ``--resume`` needs, ``best``), ``log.csv`` and TensorBoard.

Per-epoch randomness (augmentation) reaches DataLoader workers, persistent ones included: the sampler
passes ``(epoch, index)`` keys (:class:`EpochSampler`), so a dataset draws each item's randomness from
(seed, epoch, index) in whichever process reads it.

Exact resume: ``checkpoints/last`` holds every rank's generator states (:mod:`msmae.train.rng`; each rank
seeds its dropout with seed + rank), and a run stopped by SIGTERM / SIGUSR1 (:mod:`msmae.train.preempt`)
saves in the middle of an epoch: the batches done and their losses, so the resumed run reads the rest of
that epoch and reports the same per-step and per-epoch losses as an uninterrupted one.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

log = logging.getLogger(__name__)


@dataclass
class EpochSettings:
    """What the loop needs of a task's ``train`` config section."""

    epochs: int
    batch_size: int                       # examples per optimiser step over all processes
    lr: float                             # peak learning rate
    warmup_epochs: float = 0.0
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    betas: Sequence[float] = (0.9, 0.999)
    grad_clip: float = 0.0                # max gradient norm, 0 = off
    precision: str = "auto"               # auto | bf16 | fp16 (scaled) | fp32
    seed: int = 0
    eval_every: int = 1                   # epochs between validations (and always after the last epoch)
    eval_before: bool = False             # also validate the untrained model (history epoch 0)
    checkpoint_every: int = 1             # epochs between `last` checkpoints (and always after the last epoch)
    log_every: int = 20                   # steps between TensorBoard points
    num_workers: int = 0                  # DataLoader worker processes per rank (persistent)


@dataclass
class FitResult:
    best_epoch: int                       # epoch whose weights are kept (1-based; 0 = the untrained model)
    best_score: float | None              # its validation score (None without validation)
    history: list[dict]                   # per epoch: epoch, loss, lr, val_<metric>...
    best_state: dict | None = None        # best weights (CPU) when training in memory (out=None)
    train_time_s: float = 0.0
    examples_per_s: float = 0.0

    @property
    def sentences_per_s(self) -> float:
        return self.examples_per_s


class EpochSampler(torch.utils.data.Sampler):
    """:class:`~torch.utils.data.DistributedSampler`'s order (this rank's part, reshuffled with (seed, epoch)),
    yielding ``(epoch, index)`` keys: the epoch travels with every index to the worker that reads it."""

    def __init__(self, dataset, *, num_replicas: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0):
        from torch.utils.data import DistributedSampler

        self.inner = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                                        drop_last=False)
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Shuffle for ``epoch``; leave out its first ``skip`` indices (already trained on before a resume)."""
        self.epoch, self.skip = epoch, skip
        self.inner.set_epoch(epoch)

    def __iter__(self):
        epoch = self.epoch
        return ((epoch, i) for i in itertools.islice(self.inner, self.skip, None))

    def __len__(self) -> int:
        return max(0, len(self.inner) - self.skip)  # stopped after the last, partial batch: nothing left


def train_loader(dataset, *, batch_size: int, seed: int, num_workers: int = 0, rank: int = 0, world_size: int = 1,
                 collate_fn=None, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """The training DataLoader of the loop: this rank's shuffled part of every epoch (call
    ``loader.sampler.set_epoch(e)``), ``(epoch, index)`` keys, persistent workers, its own generator for the
workers' seeds (``loader.generator``; reseed it per epoch)."""
    from msmae.utils import leave_stop_signals_to_parent

    sampler = EpochSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn,
                                       num_workers=num_workers, pin_memory=pin_memory, drop_last=False,
                                       persistent_workers=num_workers > 0, generator=torch.Generator(),
                                       worker_init_fn=leave_stop_signals_to_parent)


def write_log(path: Path, history: list[dict], names: Sequence[str]) -> None:
    """``log.csv``: one row per epoch, numbers with 6 significant digits, empty where there is none."""
    from msmae.utils import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(names), lineterminator="\n")
    w.writeheader()
    for r in history:
        w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]))
                    for k in names})
    atomic_write_text(path, buf.getvalue())


def fit_epochs(model, train_ds, *, settings: EpochSettings, step: Callable, validate: Callable | None = None,
               val_keys: Sequence[str] = (), select: str = "", info=None, out: Path | None = None,
               ckpt_config: dict | None = None, resume: bool = False, progress: bool = True, desc: str = "train",
               collate_fn=None, weights: Callable[[], dict] | None = None, strict_resume: bool = True) -> FitResult:
    """Train ``model`` on ``train_ds`` for ``settings.epochs`` epochs.

    ``step(net, batch) -> loss`` (a scalar tensor; ``net`` is the DDP-wrapped model under torchrun) runs
    under autocast. ``validate(epoch) -> metrics`` runs on every rank every ``eval_every`` epochs and
    returns the metrics (with ``val_keys`` and ``select``) on rank 0, None elsewhere; the epoch with the
    highest ``select`` is the best. ``weights()`` gives the weights to save (default: the full state dict;
    ``strict_resume=False`` when that is only a part of the model).

    With ``out``: ``checkpoints/last`` (training state for ``resume``), ``checkpoints/best``, TensorBoard and
    ``log.csv`` in ``out``. Without: everything stays in memory (``FitResult.best_state``).
    """
    from torch.nn.parallel import DistributedDataParallel as DDP

    from msmae.progress import progress_bar
    from msmae.train import checkpoint as ck
    from msmae.train import rng
    from msmae.train.amp import grad_scaler, load_scaler_state, optimizer_step, scaler_state
    from msmae.train.distributed import (DistInfo, all_gather_objects, all_reduce_mean, autocast, barrier,
                                         resolve_precision)
    from msmae.train.optim import build_optimizer, cosine_with_warmup
    from msmae.train.preempt import StopRequest, clear_marker

    info = info or DistInfo()
    t = settings
    if t.batch_size % info.world_size:
        raise ValueError(f"train.batch_size={t.batch_size} must be divisible by the {info.world_size} processes")
    device = info.device
    model.to(device)
    weights = weights or model.state_dict
    amp = resolve_precision(t.precision, device)
    scaler = grad_scaler(amp, device)
    loader = train_loader(train_ds, batch_size=t.batch_size // info.world_size, seed=t.seed,
                          num_workers=t.num_workers, rank=info.rank, world_size=info.world_size,
                          collate_fn=collate_fn, pin_memory=device.type == "cuda")
    steps_per_epoch = len(loader)
    total = t.epochs * steps_per_epoch
    opt = build_optimizer(model, lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
    sched = cosine_with_warmup(opt, warmup_steps=int(round(t.warmup_epochs * steps_per_epoch)), total_steps=total,
                               min_ratio=t.min_lr_ratio)
    params = [p for p in model.parameters() if p.requires_grad]
    net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if info.distributed else model
    names = ["epoch", "loss", "lr", *(f"val_{k}" for k in val_keys)]

    start_epoch, start_batch, history, losses = 0, 0, [], []
    best_epoch, best_score, best_state = 0, None, None
    st: dict = {}
    if out is not None and resume:
        st = ck.resume_last(out, model, opt, sched, strict=strict_resume)
        start_epoch, history, best_epoch, best_score = st["epoch"], st["history"], st["best_epoch"], st["best_score"]
        start_batch, losses = int(st.get("batch", 0)), [float(v) for v in st.get("epoch_losses", [])]
        load_scaler_state(scaler, st.get("scaler"))
        best_epoch, best_score = ck.best_on_disk(out, best_epoch, best_score)  # never replace a better best
        if info.is_main:
            clear_marker(out)
    states = st.get("rng")
    if states is not None and len(states) == info.world_size:
        rng.set_rng_state(states[info.rank])
    else:
        if history or start_batch:
            log.warning("--resume: the checkpoint holds no random-number state for %d process(es); dropout "
                        "continues from a fresh seed, so losses differ from an uninterrupted run", info.world_size)
        rng.seed_rank(t.seed + start_epoch, info.rank)

    writer = None
    if out is not None and info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=start_epoch * steps_per_epoch + start_batch or None)

    def run_validation(epoch: int) -> dict | None:
        m = validate(epoch)
        barrier(info)
        if m is not None and writer is not None:
            for k in val_keys:
                writer.add_scalar(f"val/{k}", m[k], epoch)
        return m

    def save(epoch: int, improved: bool, force: bool = False, batch: int = 0) -> None:
        """``best`` when ``improved``; ``last`` every ``checkpoint_every`` epochs, when forced or after ``batch``
        steps of epoch ``epoch + 1`` (a pre-empted run); ``log.csv``."""
        last = force or batch > 0 or epoch % max(1, t.checkpoint_every) == 0
        states = all_gather_objects(rng.rng_state(), info) if out is not None and last else None
        if out is None or not info.is_main:
            return
        conf = {**(ckpt_config or {}), "epoch": epoch}
        sd = weights()
        if improved:
            ck.save_checkpoint(out / "checkpoints" / "best", state_dict=sd,
                               config={**conf, "best_epoch": epoch, "best_score": best_score})
        if last:
            ck.save_last(out, state_dict=sd, config=conf, opt=opt, sched=sched, epoch=epoch, history=history,
                         best_epoch=best_epoch, best_score=best_score, scaler=scaler_state(scaler), rng=states,
                         batch=batch, epoch_losses=losses if batch else [])
        write_log(out / "log.csv", history, names)

    def keep(epoch: int, score: float | None) -> None:
        nonlocal best_epoch, best_score, best_state
        best_epoch, best_score = epoch, score
        if out is None:
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    def validate_before() -> None:
        """Epoch 0: the untrained model's scores (rank 0 has them; every rank takes part in the save)."""
        m = run_validation(0)
        improved = False
        if m is not None:
            history.append({"epoch": 0, "loss": None, "lr": 0.0, **{f"val_{k}": m[k] for k in val_keys}})
            improved = best_score is None or m[select] > best_score  # a restart's best on disk may be better
            if improved:
                keep(0, m[select])
        save(0, improved, force=True)

    t0 = time.perf_counter()
    seen = 0
    def run_epoch(epoch: int, stop) -> bool:
        """Train on this rank's (remaining) batches of ``epoch``; False when stopped by a signal."""
        nonlocal step_no, seen
        for batch in loader:
            with autocast(device, amp):
                loss = step(net, batch)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            optimizer_step(opt, scaler, params, t.grad_clip)
            sched.step()
            step_no += 1
            seen += len(batch["index"]) * info.world_size
            lv = float(all_reduce_mean(loss.detach(), info))
            if not math.isfinite(lv):
                raise FloatingPointError(f"loss became {lv} at epoch {epoch + 1}; lower train.lr or check the data")
            losses.append(lv)
            bar.update(1)
            if writer is not None and step_no % max(1, t.log_every) == 0:
                writer.add_scalar("train/loss", lv, step_no)
                writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step_no)
            if stop is not None and stop.due():
                return False
        return True

    def finish_epoch(epoch: int) -> None:
        """Validate, keep the best, log and checkpoint after ``epoch`` (0-based)."""
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
               "lr": opt.param_groups[0]["lr"], **{f"val_{k}": None for k in val_keys}}
        last_epoch = epoch + 1 == t.epochs
        improved = False
        if validate is not None and ((epoch + 1) % max(1, t.eval_every) == 0 or last_epoch):
            m = run_validation(epoch + 1)
            if m is not None:
                row.update({f"val_{k}": m[k] for k in val_keys})
                improved = best_score is None or m[select] > best_score
                if improved:
                    keep(epoch + 1, m[select])
        elif validate is None and last_epoch:  # nothing to select on: keep the last epoch
            improved = True
            keep(epoch + 1, None)
        history.append(row)
        score = row.get(f"val_{select}")
        bar.set_postfix(loss=f"{row['loss']:.3f}", **({select: f"{score:.3f}"} if score is not None else {}))
        if writer is not None:
            writer.add_scalar("train/epoch_loss", row["loss"], epoch + 1)
        save(epoch + 1, improved, force=last_epoch)

    step_no = start_epoch * steps_per_epoch + start_batch
    bar = progress_bar(total=total, initial=step_no, desc=desc, unit="step", disable=not (progress and info.is_main))
    stop = StopRequest(info) if out is not None else None  # in memory there is no checkpoint to stop with
    try:
        if start_epoch == 0 and not history and t.eval_before and validate is not None:  # once, also when resumed
            validate_before()  # a signal meanwhile stops the run after the first training step
        for epoch in range(start_epoch, t.epochs):
            skip = start_batch if epoch == start_epoch else 0
            loader.sampler.set_epoch(epoch, skip=skip * loader.batch_size)
            loader.generator.manual_seed(rng.epoch_loader_seed(t.seed, info.rank, epoch))
            if hasattr(train_ds, "set_epoch"):  # for readers of the dataset in this process
                train_ds.set_epoch(epoch)
            net.train()
            if not skip:
                losses = []
            epoch_done = run_epoch(epoch, stop)
            if not epoch_done:
                save(epoch, False, batch=len(losses))
                barrier(info)
                raise stop.stop(out, f"step {step_no} (epoch {epoch + 1}, batch {len(losses)})", step=step_no,
                                epoch=epoch + 1, batch=len(losses))
            finish_epoch(epoch)
    finally:
        if stop is not None:
            stop.close()
        bar.close()
        if writer is not None:
            writer.close()
    barrier(info)
    elapsed = time.perf_counter() - t0
    return FitResult(best_epoch=best_epoch, best_score=best_score, history=history, best_state=best_state,
                     train_time_s=elapsed, examples_per_s=seen / elapsed if elapsed > 0 else 0.0)

