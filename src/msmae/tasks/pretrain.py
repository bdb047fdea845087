"""MS-MAE pre-training (paper 4.1): windows from a packed corpus, masked reconstruction, AdamW with
warm-up + cosine, checkpoints, exact resume, torchrun/DDP.

Exact resume: the window drawn at position k of a rank (:mod:`msmae.data.sampling`: a seeded random
partition of the videos over the ranks, each rank's own (seed, epoch, rank) order) and the mask of step s
are pure functions of (seed, k, rank, world size) and (seed, s, rank), so a resumed run sees the same data
and masks as an uninterrupted one; model, optimiser, scheduler and every rank's RNG states come from the
checkpoint. SIGTERM / SIGUSR1 stop the run after the step in flight, with a checkpoint (:mod:`msmae.train.preempt`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from msmae.data.sampling import SAMPLING_CHOICES
from msmae.data.windows import ON_DEVICE_CHOICES, WindowDataset, batch_stream  # WindowDataset: re-exported here
from msmae.tasks.common import ModelSection

log = logging.getLogger(__name__)


@dataclass
class MaskSection:
    ratio: float = 0.5                  # r: fraction of each stream's tokens that is masked
    mode: str = "diff"                  # "diff" (DiffMask) or "same" (SameMask)

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError(f"mask.ratio must be in [0, 1), got {self.ratio}")
        from msmae.models.masking import MASK_MODES

        if self.mode not in MASK_MODES:
            raise ValueError(f"mask.mode must be 'diff' or 'same', got {self.mode!r}")


@dataclass
class DataSection:
    window: int = 600                   # consecutive frames drawn per sample
    frame_stride: int = 2               # every n-th frame of the window is kept (600 -> 300)
    holdout_fraction: float = 0.05      # videos held out for the eval loss (chosen by id hash)
    max_holdout_videos: int = 200       # at most this many held-out videos
    eval_windows: int = 128             # held-out windows scored at each evaluation
    num_workers: int = 2                # DataLoader worker processes per rank (worker path)
    on_device: str = "auto"             # auto | true | false: hold the corpus in device memory, cut batches there
    device_memory_fraction: float = 0.5  # auto/true: on the device only if it needs <= this share of free memory
    sampling: str = "per_video"         # per_video (one window per video per epoch) | by_length (one per window length)

    def __post_init__(self) -> None:
        self.on_device = {"yes": "true", "1": "true", "no": "false", "0": "false"}.get(
            str(self.on_device).lower(), str(self.on_device).lower())
        if self.on_device not in ON_DEVICE_CHOICES:
            raise ValueError(f"data.on_device must be auto, true or false, got {self.on_device!r}")
        if not 0.0 < self.device_memory_fraction <= 1.0:
            raise ValueError(f"data.device_memory_fraction must be in (0, 1], got {self.device_memory_fraction}")
        if self.sampling not in SAMPLING_CHOICES:
            raise ValueError(f"data.sampling must be one of {', '.join(SAMPLING_CHOICES)}, got {self.sampling!r}")
        if self.window < 1 or self.frame_stride < 1 or self.eval_windows < 1:
            raise ValueError("data.window, data.frame_stride and data.eval_windows must be at least 1")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"data.holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.num_workers < 0 or self.max_holdout_videos < 0:
            raise ValueError("data.num_workers and data.max_holdout_videos must be >= 0")


@dataclass
class TrainSection:
    steps: int = 120_000                # optimiser steps (paper: 120K)
    batch_size: int = 256               # samples per optimiser step over all processes (paper: unstated)
    grad_accum: int = 1                 # micro-batches per optimiser step (per process)
    lr: float = 8e-4                    # peak learning rate (paper)
    min_lr_ratio: float = 0.0           # final lr = min_lr_ratio * lr
    warmup_steps: int = 2000            # linear warm-up steps (paper: 2K)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])  # AdamW betas (paper)
    weight_decay: float = 0.05          # AdamW weight decay (paper: unstated; MAE's value)
    grad_clip: float = 0.0              # max gradient norm, 0 = off
    precision: str = "auto"             # auto (native bf16 GPUs: bf16, else fp32) | bf16 | fp16 (scaled) | fp32
    device: str = "auto"                # auto | cpu | cuda
    seed: int = 0
    checkpoint_every: int = 1000        # steps between checkpoints (0 = only at the end)
    keep_checkpoints: int = 3           # newest step checkpoints kept (0 = all)
    log_every: int = 50                 # steps between log lines / TensorBoard points
    eval_every: int = 0                 # steps between held-out evaluations (0 = at the end only)
    record_batches: bool = False        # write batches.jsonl: each rank's videos and window starts at every step

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1 or self.log_every < 1:
            raise ValueError("train.steps, train.batch_size, train.grad_accum and train.log_every must be at least 1")
        if not self.lr >= 0:  # 0 is allowed: e.g. to measure a checkpoint's losses without changing it
            raise ValueError(f"train.lr must be >= 0, got {self.lr}")
        if min(self.warmup_steps, self.checkpoint_every, self.keep_checkpoints, self.eval_every) < 0:
            raise ValueError("train.warmup_steps, checkpoint_every, keep_checkpoints and eval_every must be >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"train.betas must be two numbers in [0, 1), got {self.betas}")


@dataclass
class PretrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    mask: MaskSection = field(default_factory=MaskSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    init: str | None = None             # continual pre-training: start from this checkpoint's encoder


# ---------------------------------------------------------------------------------------------- data
def _holdout_split(ids: list[str], fraction: float, max_videos: int) -> tuple[list[int], list[int]]:
    """(train indices, held-out indices), chosen by a stable hash of the video id."""
    n = len(ids)
    k = min(max_videos, int(round(fraction * n))) if n >= 2 else 0
    if fraction > 0 and n >= 2:
        k = max(k, 1)
    order = sorted(range(n), key=lambda i: hashlib.sha1(ids[i].encode()).hexdigest())
    held = sorted(order[:k])
    train = sorted(order[k:])
    return train, held


def _sampling(corpus, window: int, frame_stride: int) -> tuple[int, int]:
    """data.window / data.frame_stride in stored frames of this corpus (see msmae.poses.timing)."""
    from msmae.poses.timing import mixed_rates, sampling_for_corpus

    try:
        s = sampling_for_corpus((e.frame_stride for e in corpus.entries), window, frame_stride)
    except ValueError as e:
        from msmae.corpus.store import CorpusError

        raise CorpusError(f"{corpus.root}: {e}") from None
    (log.info if s.exact else log.warning)("sampling: %s", s.note)
    mixed = mixed_rates(e.fps * e.frame_stride for e in corpus.entries)
    if mixed:
        log.warning("%s: %s", corpus.root, mixed)
    return s.window, s.stride


def eval_windows(corpus, videos: list[int], count: int, window: int, seed: int) -> list[tuple[int, int]]:
    """Fixed (video, start) pairs for evaluation, spread over the given videos."""
    rng = np.random.default_rng([seed, 99991])
    out = []
    for j in range(count):
        v = videos[j % len(videos)]
        n = corpus.entries[v].length
        out.append((v, int(rng.integers(0, n - window + 1)) if n > window else 0))
    return out


# ------------------------------------------------------------------------------------------- helpers
def mean_baseline_stats(corpus, videos: list[int], keypoints: list[int], max_videos: int = 500) -> np.ndarray:
    """Per (keypoint, coordinate) mean over present points of up to ``max_videos`` training videos: (K, 2)."""
    s = np.zeros((len(keypoints), 2), np.float64)
    c = np.zeros((len(keypoints), 1), np.float64)
    for v in videos[:max_videos]:
        xy, p = corpus.frames(v)
        xy, p = xy[:, keypoints], p[:, keypoints]
        s += (xy * p[..., None]).sum(0)
        c += p.sum(0)[:, None]
    return (s / np.maximum(c, 1)).astype(np.float32)


@torch.no_grad()
def evaluate_reconstruction(model, dataset: WindowDataset, windows: list[tuple[int, int]], *, mean_xy: np.ndarray,
                            mask_ratio: float, mask_mode: str, seed: int, device, amp_dtype,
                            batch_size: int = 16) -> dict[str, float]:
    """Held-out masked-reconstruction loss and the loss of predicting the training mean, on the same
    windows and the same masks (sums of squared errors / counted coordinates)."""
    from msmae.train.distributed import autocast

    core = getattr(model, "module", model)
    was_training = core.training
    core.eval()
    mean = torch.from_numpy(mean_xy).to(device)
    sse_model = sse_mean = count = 0.0
    gen = torch.Generator(device="cpu").manual_seed(seed * 1_000_003 + 17)
    for i in range(0, len(windows), batch_size):
        vids, starts = zip(*windows[i:i + batch_size])
        b = {k: x.to(device) for k, x in dataset.load_batch(np.array(vids), np.array(starts)).items()}
        with autocast(device, amp_dtype):
            out = core(b["coords"], b["present"], b["frame_valid"], mask_ratio=mask_ratio, mask_mode=mask_mode,
                       generator=gen)
        w = out.weight.flatten(1, 2)[:, : b["present"].shape[1]]  # (B, T, K): what the loss counted
        n = float(w.sum()) * 2
        sse_model += float(out.loss.float()) * n
        err = ((b["coords"] - mean) ** 2).sum(-1)  # (B, T, K)
        sse_mean += float((err * w).sum())
        count += n
    if was_training:
        core.train()
    count = max(count, 1.0)
    return {"eval_loss": sse_model / count, "mean_baseline_loss": sse_mean / count, "eval_targets": int(count)}


def _plot_loss(log_csv: Path, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, losses = [], []
    with open(log_csv, newline="") as f:
        for r in csv.DictReader(f):
            steps.append(int(r["step"]))
            losses.append(float(r["loss"]))
    if not steps:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    ax.plot(steps, losses, lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("masked reconstruction loss (MSE)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.set_title("MS-MAE pre-training")
    fig.tight_layout()
    from msmae.utils import atomic_path

    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def _hours(corpus, train_v: list[int], held_v: list[int]) -> dict:
    """Hours of video behind the training and the held-out videos (indices into the corpus)."""
    from msmae.train.model_card import hours

    e = corpus.entries
    return {"train": hours((e[i].length, e[i].fps) for i in train_v),
            "held_out": hours((e[i].length, e[i].fps) for i in held_v) if held_v is not train_v else 0.0}


def corpus_source_fps(corpus) -> float | None:
    """The source frame rate ``data.frame_stride`` counts frames at: the median, weighted by stored frames, over
    the corpus's videos of fps x extraction stride (a file without a stride note counts at its own fps), so a
    rate some of its videos have (a plain median of 24 and 30 would be 27, a rate the encoder never saw).
    Recorded in the checkpoint so that every later use of the encoder reads keypoints at its time scale,
    whatever their rate."""
    from msmae.poses.timing import source_fps_of

    pairs = sorted((source_fps_of(e.fps, {"frame_stride": e.frame_stride}), int(e.length)) for e in corpus.entries)
    seen, half = 0, sum(n for _, n in pairs) / 2
    for rate, n in pairs:
        seen += n
        if seen >= half:
            return round(float(rate), 4)
    return None


def _checkpoint_config(cfg: PretrainConfig, model_cfg, step: int, source_fps: float | None) -> dict:
    from msmae.config import config_to_dict

    return {"task": "pretrain", "model": model_cfg.to_dict(), "layout": model_cfg.layout.to_dict(),
            "encoder_prefix": "encoder.", "step": step, "source_fps": source_fps, "task_config": config_to_dict(cfg)}


# ---------------------------------------------------------------------------------------------- train
def pretrain(cfg: PretrainConfig, data: str | Path, out: str | Path, *, resume: bool = False,
             progress: bool = True) -> dict:
    """Run pre-training; returns the final metrics (also written to ``out/metrics.json`` by rank 0)."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    from msmae.progress import progress_bar

    from msmae.config import save_yaml
    from msmae.corpus import PackedCorpus
    from msmae.data.batch_log import BatchLog
    from msmae.models import MSMAE
    from msmae.train import checkpoint as ck
    from msmae.train import preempt, rng
    from msmae.train.amp import grad_scaler, load_scaler_state, optimizer_step, scaler_state
    from msmae.train.distributed import (all_gather_objects, autocast, barrier, cleanup_distributed,
                                         init_distributed, resolve_precision)
    from msmae.train.loss_window import LossWindow
    from msmae.train.optim import build_optimizer, cosine_with_warmup

    out = Path(out)
    info = init_distributed(cfg.train.device)
    stop = preempt.StopRequest(info)
    try:
        corpus = PackedCorpus(data)
        if len(corpus) == 0:
            raise ValueError(f"{data}: the corpus is empty")
        model_cfg = cfg.model.build_config()
        keypoints = model_cfg.layout.indices_in(corpus.layout)
        t = cfg.train
        per_step = info.world_size * t.grad_accum
        if t.batch_size % per_step:
            raise ValueError(f"train.batch_size={t.batch_size} must be divisible by processes x grad_accum = {per_step}")
        micro = t.batch_size // per_step
        if cfg.mask.mode not in ("diff", "same"):
            raise ValueError(f"mask.mode must be 'diff' or 'same', got {cfg.mask.mode!r}")

        ids = [e.id for e in corpus.entries]
        train_v, held_v = _holdout_split(ids, cfg.data.holdout_fraction, cfg.data.max_holdout_videos)
        if not held_v:
            log.warning("corpus has %d video(s): no held-out videos; eval_loss is measured on training videos",
                        len(ids))
            held_v = train_v

        from msmae.corpus.checks import require_maskable  # refuse a corpus that would train to loss 0
        window, frame_stride = _sampling(corpus, cfg.data.window, cfg.data.frame_stride)   # in stored frames
        require_maskable(corpus, train_v, keypoints, window=window, frame_stride=frame_stride,
                         cubelet=model_cfg.cubelet, mask_ratio=cfg.mask.ratio)

        torch.manual_seed(t.seed)
        model = MSMAE(config=model_cfg).to(info.device)
        if cfg.init:
            enc = ck.load_encoder(cfg.init)
            if enc.config.to_dict() != model_cfg.to_dict():
                raise ValueError(f"--init {cfg.init}: its model config {enc.config.to_dict()} differs from this run's "
                                 f"{model_cfg.to_dict()}; set model.size/model.streams/model.extra to match")
            model.encoder.load_state_dict(enc.state_dict())
            log.info("continual pre-training: encoder initialised from %s", cfg.init)
        opt = build_optimizer(model, lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
        sched = cosine_with_warmup(opt, warmup_steps=t.warmup_steps, total_steps=t.steps, min_ratio=t.min_lr_ratio)
        amp = resolve_precision(t.precision, info.device)
        scaler = grad_scaler(amp, info.device)   # fp16 only: loss scaling against underflow
        step = 0
        rng.seed_rank(t.seed, info.rank)  # the same weights on every rank, different dropout
        if resume:
            point = ck.load_resume_point(out, device=info.device)  # the newest complete one
            if point is None:
                log.warning("--resume: no complete checkpoint in %s; starting from scratch", out)
            else:
                latest, weights, st = point
                model.load_state_dict(weights)
                opt.load_state_dict(st["optimizer"])
                sched.load_state_dict(st["scheduler"])
                step = int(st["step"])
                if len(st.get("rng") or ()) == info.world_size:
                    rng.set_rng_state(st["rng"][info.rank])
                elif "torch_rng" in st:  # written by an older msmae: rank 0's torch state only
                    torch.set_rng_state(st["torch_rng"])
                else:
                    log.warning("--resume: %s was written by %d process(es), this run has %d: its data order and "
                                "dropout differ from an uninterrupted run's", latest, len(st["rng"]), info.world_size)
                load_scaler_state(scaler, st.get("scaler"))
                log.info("resumed from %s at step %d", latest, step)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, out / "config.yaml")
            preempt.clear_marker(out)
        ddp = DDP(model, device_ids=[info.device.index] if info.device.type == "cuda" else None) \
            if info.distributed else model

        ds = WindowDataset(corpus, train_v, keypoints=keypoints, window=window, frame_stride=frame_stride,
                           seed=t.seed, rank=info.rank, world_size=info.world_size, sampling=cfg.data.sampling)
        start_k, stop_k = step * micro * t.grad_accum, t.steps * micro * t.grad_accum
        batches, data_path = batch_stream(ds, start_k, stop_k, micro, device=info.device,
                                          on_device=cfg.data.on_device, memory_fraction=cfg.data.device_memory_fraction,
                                          num_workers=cfg.data.num_workers, processes=info.local_world_size)
        ev_windows = eval_windows(corpus, held_v, cfg.data.eval_windows, window, t.seed)
        ev_ds = WindowDataset(corpus, held_v, keypoints=keypoints, window=window,
                              frame_stride=frame_stride, seed=t.seed)
        mean_xy = mean_baseline_stats(corpus, train_v, keypoints)

        writer = None
        log_csv = out / "log.csv"
        if info.is_main:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tb"), purge_step=step if step else None)
            if not resume or step == 0 or not log_csv.exists():
                log_csv.write_text("step,loss,lr,samples_per_s\n")
            else:  # drop lines past the checkpoint we resumed from (they will be recomputed)
                lines = log_csv.read_text().splitlines()
                keep = [lines[0]] + [ln for ln in lines[1:] if int(ln.split(",")[0]) <= step]
                log_csv.write_text("\n".join(keep) + "\n")
        batch_log = BatchLog(out, ds.plan, per_step=micro * t.grad_accum, start_step=step) \
            if info.is_main and t.record_batches else None

        def save(step_: int, final: bool = False) -> None:
            # every rank's generators, in rank order (the final checkpoint is written by rank 0 alone)
            states = [rng.rng_state()] if final else all_gather_objects(rng.rng_state(), info)
            if not info.is_main:
                return
            conf = _checkpoint_config(cfg, model_cfg, step_, corpus_source_fps(corpus))
            state = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step_,
                     "rng": states, "scaler": scaler_state(scaler)}
            d = ck.save_checkpoint(out / "checkpoints" / f"step_{step_:07d}", state_dict=model.state_dict(),
                                   config=conf, train_state=state)
            ck.mark_latest(out, d)
            ck.prune_checkpoints(out, t.keep_checkpoints)
            if final:
                ck.write_final_model(out, state_dict=model.state_dict(), config=conf)

        model.train()
        bar = progress_bar(total=t.steps, initial=step, desc="pretrain", unit="step", disable=not (progress and info.is_main))
        # read (all ranks, one sync) at log and checkpoint steps; never more steps than the run has
        losses = LossWindow(min(t.log_every, t.steps), info.device)
        recent = np.zeros(0)
        last_eval: dict = {}
        t_window, n_window = time.perf_counter(), 0
        t_start, samples_total = time.perf_counter(), 0
        sps = 0.0
        while step < t.steps:
            opt.zero_grad(set_to_none=True)
            loss_acc = torch.zeros((), device=info.device)
            for a in range(t.grad_accum):
                b = next(batches)
                gen = torch.Generator(device="cpu").manual_seed(
                    (t.seed * 1_000_003 + step) * 4096 + info.rank * t.grad_accum + a)
                sync = a == t.grad_accum - 1 or not info.distributed
                ctx = ddp.no_sync() if not sync else contextlib.nullcontext()
                with ctx:
                    with autocast(info.device, amp):
                        o = ddp(b["coords"], b["present"], b["frame_valid"], mask_ratio=cfg.mask.ratio,
                                mask_mode=cfg.mask.mode, generator=gen)
                    scaler.scale(o.loss.float() / t.grad_accum).backward()
                loss_acc += o.loss.detach().float() / t.grad_accum
            optimizer_step(opt, scaler, model.parameters(), t.grad_clip)
            sched.step()
            step += 1
            losses.add(loss_acc)
            if batch_log is not None:
                batch_log.write(step)
            n_window += t.batch_size
            samples_total += t.batch_size
            bar.update(1)
            log_now = step % t.log_every == 0 or step == t.steps
            if log_now or (t.checkpoint_every and step % t.checkpoint_every == 0):
                recent = losses.read(info)
                bad = np.flatnonzero(~np.isfinite(recent))
                if len(bad):
                    raise FloatingPointError(f"loss became {recent[bad[0]]} at step {step - len(recent) + 1 + bad[0]}; "
                                             f"lower train.lr or check the data")
                loss_v = float(recent[-1])
            if log_now:
                now = time.perf_counter()
                sps = n_window / max(now - t_window, 1e-9)
                t_window, n_window = now, 0
                lr = opt.param_groups[0]["lr"]
                bar.set_postfix(loss=f"{loss_v:.4f}", lr=f"{lr:.2e}", sps=f"{sps:.1f}")
                if writer is not None:
                    writer.add_scalar("train/loss", loss_v, step)
                    writer.add_scalar("train/lr", lr, step)
                    writer.add_scalar("train/samples_per_s", sps, step)
                    with open(log_csv, "a") as f:
                        f.write(f"{step},{loss_v:.6g},{lr:.6g},{sps:.4g}\n")
            if t.eval_every and step % t.eval_every == 0 and step < t.steps:
                if info.is_main:
                    last_eval = evaluate_reconstruction(
                        model, ev_ds, ev_windows, mean_xy=mean_xy, mask_ratio=cfg.mask.ratio,
                        mask_mode=cfg.mask.mode, seed=t.seed, device=info.device, amp_dtype=amp)
                    writer.add_scalar("eval/loss", last_eval["eval_loss"], step)
                    writer.add_scalar("eval/mean_baseline_loss", last_eval["mean_baseline_loss"], step)
                barrier(info)
            if t.checkpoint_every and step % t.checkpoint_every == 0 and step < t.steps:
                save(step)
                barrier(info)
            if step < t.steps and stop.due():
                if not (t.checkpoint_every and step % t.checkpoint_every == 0):
                    save(step)
                    barrier(info)
                raise stop.stop(out, f"step {step}", step=step)
        bar.close()
        if batch_log is not None:
            batch_log.close()
        train_time = time.perf_counter() - t_start
        metrics: dict = {}
        if info.is_main:
            last_eval = evaluate_reconstruction(
                model, ev_ds, ev_windows, mean_xy=mean_xy, mask_ratio=cfg.mask.ratio, mask_mode=cfg.mask.mode,
                seed=t.seed, device=info.device, amp_dtype=amp)
            save(step, final=True)
            metrics = {
                "steps": step,
                "final_loss": float(np.mean(recent)) if len(recent) else None,
                "eval_loss": last_eval["eval_loss"],
                "mean_baseline_loss": last_eval["mean_baseline_loss"],
                "eval_targets": last_eval["eval_targets"],
                "samples_per_s": samples_total / max(train_time, 1e-9) if samples_total else sps,
                "train_time_s": train_time,
                "world_size": info.world_size,
                "data_path": data_path,
                "videos": {"train": len(train_v), "held_out": len(held_v) if held_v is not train_v else 0},
                "corpus": str(Path(data).resolve()), "hours": _hours(corpus, train_v, held_v),
                "model": model_cfg.to_dict(),
                "mask": {"ratio": cfg.mask.ratio, "mode": cfg.mask.mode},
            }
            writer.add_scalar("eval/loss", metrics["eval_loss"], step)
            writer.add_scalar("eval/mean_baseline_loss", metrics["mean_baseline_loss"], step)
            writer.close()
            ck.write_metrics(out, metrics)
            ck.write_model_card(out / "model", metrics)
            _plot_loss(log_csv, out / "loss.png")
        barrier(info)
        return metrics
    finally:
        stop.close()
        cleanup_distributed()
