"""Isolated sign recognition (paper 4.2, appendix C): fine-tuning ([CLS] + Linear on the encoder) and
the linear probe (frozen encoder, average pooling, Linear), evaluation and prediction.

A run directory holds ``config.yaml``, ``checkpoints/{last,best}/`` (``last`` with the training
state for ``--resume``), ``model/`` (the best checkpoint, what evaluate/predict and
``load_encoder(RUN)`` use), ``tb/`` (TensorBoard), ``log.csv`` (per epoch), ``metrics.json``,
``predictions_<split>.csv`` and ``confusion_<split>.png``.

The best epoch is chosen on the validation split (top-1, or top-5 with ``train.select_metric:
top5`` as for Slovo); then the test split is scored, or, without a test split, the validation
split is what ``metrics.json`` reports.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from msmae.tasks.common import ModelSection, build_encoder

log = logging.getLogger(__name__)

MODES = ("finetune", "probe")
SELECT_METRICS = ("top1", "top5")
PROBE_LR = 1e-3  # the paper gives no learning rate for its probe; a linear layer needs more than 5e-5


# ---------------------------------------------------------------------------------------------- config
@dataclass
class DataSection:
    dataset: str = "manifest"           # wlasl | asl_citizen | slovo | gislr | manifest (msmae.data.islr)
    annotations: str = ""               # the dataset's annotation file or folder (e.g. WLASL_v0.3.json)
    poses: str = ""                     # folder of pose files, one per video (GISLR/manifest: root of relative paths)
    classes: str = ""                   # optional class list file (one label per line, or JSON); "" = the dataset's
    num_glosses: int = 0                # WLASL: keep the first N glosses (100, 300, 1000, 2000); 0 = all
    frame_ranges: bool = False          # cut annotated frame ranges (pose files of uncut videos: WLASL, Slovo)
    val_participants: list[str] = field(default_factory=list)   # GISLR: participants forming the val split
    test_participants: list[str] = field(default_factory=list)  # GISLR: participants forming the test split
    num_frames: int = 32                # frames per clip fed to the model (paper: 32)
    normalize: str = "shoulders"        # per-clip normalisation (msmae.poses.normalize): shoulders | spread | none
    load_workers: int = 2               # processes reading pose files before training
    num_workers: int = 2                # DataLoader worker processes per rank
    strict: bool = False                # any excluded example (missing pose file, unknown label, empty clip) is an error


@dataclass
class AugmentSection:
    affine: bool = True                 # random rotation, shear, scale per clip (SignCLIP); paper: off for JSL only
    rotation: float = 0.2               # std of the rotation angle, radians
    shear: float = 0.2                  # std of the horizontal shear factor
    scale: float = 0.2                  # std of the relative vertical stretch


@dataclass
class TrainSection:
    epochs: int = 100                   # training epochs (paper: 100)
    warmup_epochs: float = 10           # linear warm-up, in epochs (paper: 10)
    batch_size: int = 128               # clips per optimiser step over all processes (paper: 128)
    lr: float = 5e-5                    # peak learning rate (paper: 5e-5; `msmae probe` uses 1e-3)
    min_lr_ratio: float = 0.0           # final lr = min_lr_ratio * lr (cosine)
    weight_decay: float = 1e-3          # AdamW weight decay (paper: 1e-3)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas (paper: unstated, defaults)
    grad_clip: float = 0.0              # max gradient norm, 0 = off
    label_smoothing: float = 0.0        # cross-entropy label smoothing
    head_dropout: float = 0.0           # dropout before the classifier
    select_metric: str = "top1"         # validation metric choosing the best epoch: top1 | top5 (Slovo)
    eval_every: int = 1                 # epochs between validations
    eval_batch_size: int = 256          # clips per evaluation batch
    precision: str = "auto"             # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    device: str = "auto"                # auto | cpu | cuda
    seed: int = 0
    log_every: int = 20                 # steps between TensorBoard points


@dataclass
class IslrConfig:
    model: ModelSection = field(default_factory=ModelSection)  # used only with init "none" (else the checkpoint's)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    train: TrainSection = field(default_factory=TrainSection)
    mode: str = "finetune"              # finetune ([CLS] + Linear, all trained) | probe (frozen encoder, mean, Linear)
    init: str = ""                      # encoder checkpoint or run directory; "none" = random initialisation
    probe_norm: bool = True             # probe: BatchNorm (no affine) on the pooled features before the Linear (MAE's)


def probe_base() -> IslrConfig:
    """Defaults of ``msmae probe``: the fine-tuning defaults with mode probe and lr :data:`PROBE_LR`."""
    cfg = IslrConfig(mode="probe")
    cfg.train.lr = PROBE_LR
    return cfg


def check_config(cfg: IslrConfig) -> None:
    if cfg.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {cfg.mode!r}")
    if cfg.train.select_metric not in SELECT_METRICS:
        raise ValueError(f"train.select_metric must be one of {SELECT_METRICS}, got {cfg.train.select_metric!r}")
    if cfg.data.num_frames < 1 or cfg.train.epochs < 1 or cfg.train.batch_size < 1:
        raise ValueError("data.num_frames, train.epochs and train.batch_size must be positive")
    if not cfg.init:
        raise ValueError("no encoder to start from: pass --init CHECKPOINT (a pre-training run or checkpoint) "
                         "or --init none (random initialisation, i.e. training from scratch)")


# --------------------------------------------------------------------------------------------- metrics
def confusion_matrix(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def most_confused(cm: np.ndarray, classes: Sequence[str], n: int = 10) -> list[dict]:
    """The ``n`` largest off-diagonal cells: [{true, predicted, count, fraction_of_true}], largest first."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:n]
    out = []
    for f in flat:
        t, p = divmod(int(f), cm.shape[1])
        if off[t, p] == 0:
            break
        out.append({"true": classes[t], "predicted": classes[p], "count": int(off[t, p]),
                    "fraction_of_true": float(off[t, p] / max(cm[t].sum(), 1))})
    return out


def classification_metrics(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str], *,
                           top_confusions: int = 10) -> dict:
    """Top-1 and top-5 recall per instance, mean per-class top-1 (over the classes present in
    ``labels``), all fractions in [0, 1], plus the most confused pairs.

    logits (N, C) float, labels (N,) int class indices.
    """
    logits, labels = np.asarray(logits), np.asarray(labels, np.int64)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must be (N, C) with N = {labels.shape[0]}, got {logits.shape}")
    if len(labels) == 0:
        raise ValueError("no examples to score")
    c = logits.shape[1]
    k = min(5, c)
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]                     # (N, k)
    pred = top[:, 0]
    hit1 = pred == labels
    hitk = (top == labels[:, None]).any(axis=1)
    present = np.unique(labels)
    per_class = np.array([hit1[labels == cl].mean() for cl in present])
    cm = confusion_matrix(labels, pred, c)
    return {"top1": float(hit1.mean()), "top5": float(hitk.mean()), "per_class_top1": float(per_class.mean()),
            "num_examples": int(len(labels)), "num_classes_scored": int(len(present)),
            "confusions": most_confused(cm, classes, top_confusions)}


def plot_confusion(labels: np.ndarray, pred: np.ndarray, classes: Sequence[str], path: str | Path, *,
                   max_classes: int = 30, title: str = "") -> None:
    """Row-normalised confusion matrix as a PNG; above ``max_classes`` classes, only those most involved
    in confusions are drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msmae.utils import atomic_path

    cm = confusion_matrix(labels, pred, len(classes))
    keep = np.arange(len(classes))
    if len(classes) > max_classes:
        off = cm - np.diag(np.diag(cm))
        keep = np.sort(np.argsort(-(off.sum(0) + off.sum(1)), kind="stable")[:max_classes])
    sub = cm[np.ix_(keep, keep)].astype(np.float64)
    sub = sub / np.maximum(sub.sum(1, keepdims=True), 1)
    n = len(keep)
    size = min(3 + 0.28 * n, 14)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    im = ax.imshow(sub, cmap="Blues", vmin=0, vmax=1)
    names = [str(classes[i])[:14] for i in keep]
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion (row-normalised)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- model
def build_classifier(encoder, num_classes: int, mode: str, dropout: float = 0.0, probe_norm: bool = True):
    from msmae.models.classifier import ISLRClassifier

    if mode == "probe":
        return ISLRClassifier(encoder=encoder, num_classes=num_classes, pooling="mean", freeze_encoder=True,
                              dropout=dropout, feature_norm=probe_norm)
    return ISLRClassifier(encoder=encoder, num_classes=num_classes, pooling="cls", dropout=dropout)


def model_from_run(run_dir: str | Path, device="cpu"):
    """(classifier in eval mode, checkpoint config dict) of an ISLR run or checkpoint."""
    from msmae.models import ModelConfig, MultiStreamEncoder
    from msmae.train.checkpoint import CheckpointError, load_state_dict, read_checkpoint_config

    meta = read_checkpoint_config(run_dir)
    if meta.get("task") != "islr":
        raise CheckpointError(f"{run_dir}: not an ISLR run (task {meta.get('task')!r})")
    enc = MultiStreamEncoder(config=ModelConfig.from_dict(meta["model"]))
    model = build_classifier(enc, len(meta["classes"]), meta["mode"],
                             probe_norm=bool(meta.get("probe_norm", False)))  # runs made before the option: none
    missing, unexpected = model.load_state_dict(load_state_dict(run_dir), strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{run_dir}: weights do not match the ISLR model (missing {missing[:4]}, "
                              f"unexpected {unexpected[:4]})")
    return model.to(device).eval(), meta


@torch.no_grad()
def predict_logits(model, dataset, *, batch_size: int = 256, device="cpu", amp_dtype=None) -> np.ndarray:
    """Logits (N, C) float32 of every item of an evaluation dataset, in order."""
    from msmae.train.distributed import autocast

    was = model.training
    model.eval()
    out = []
    for i in range(0, len(dataset), batch_size):
        coords = torch.from_numpy(np.stack([dataset[j]["coords"] for j in range(i, min(i + batch_size, len(dataset)))]))
        with autocast(torch.device(device), amp_dtype):
            out.append(model(coords.to(device)).float().cpu().numpy())
    model.train(was)
    return np.concatenate(out) if out else np.zeros((0, model.num_classes), np.float32)


# ------------------------------------------------------------------------------------------ training
@dataclass
class FitResult:
    best_epoch: int                       # 1-based epoch whose weights are kept
    best_score: float | None              # its validation select_metric (None without validation)
    history: list[dict]                   # per epoch: epoch, loss, lr, val_top1, val_top5
    best_state: dict | None = None        # best weights (CPU) when training in memory (out=None)
    train_time_s: float = 0.0


def fit(model, train_ds, *, train: TrainSection, val_ds=None, info=None, out: Path | None = None,
        ckpt_config: dict | None = None, resume: bool = False, num_workers: int = 0, progress: bool = True,
        desc: str = "islr") -> FitResult:
    """Train ``model`` on ``train_ds`` (a :class:`~msmae.data.islr.ClipDataset`) with AdamW, per-step warm-up +
    cosine, cross-entropy; validate every ``train.eval_every`` epochs and keep the best epoch.

    With ``out``: checkpoints (``last`` with the training state, ``best``), TensorBoard and ``log.csv``
    in ``out``, and ``resume`` continues from ``last``. Without: everything stays in memory
    (``FitResult.best_state``). Under torchrun the model is wrapped in DDP and each rank reads its part
    of every epoch (DistributedSampler); validation runs on rank 0.
    """
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import DataLoader, DistributedSampler
    from tqdm import tqdm

    from msmae.train import checkpoint as ck
    from msmae.train.distributed import DistInfo, all_reduce_mean, autocast, barrier, resolve_precision
    from msmae.train.optim import build_optimizer, cosine_with_warmup

    info = info or DistInfo()
    t = train
    if t.batch_size % info.world_size:
        raise ValueError(f"train.batch_size={t.batch_size} must be divisible by the {info.world_size} processes")
    micro = t.batch_size // info.world_size
    device = info.device
    model.to(device)
    amp = resolve_precision(t.precision, device)
    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True,
                                 seed=t.seed, drop_last=False)
    loader = DataLoader(train_ds, batch_size=micro, sampler=sampler, num_workers=num_workers,
                        pin_memory=device.type == "cuda", drop_last=False)
    steps_per_epoch = len(loader)
    total = t.epochs * steps_per_epoch
    opt = build_optimizer(model, lr=t.lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
    sched = cosine_with_warmup(opt, warmup_steps=int(round(t.warmup_epochs * steps_per_epoch)), total_steps=total,
                               min_ratio=t.min_lr_ratio)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if info.distributed else model
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)

    start_epoch, history = 0, []
    best_epoch, best_score, best_state = 0, None, None
    if out is not None and resume:
        st = ck.resume_last(out, model, opt, sched)
        start_epoch, history, best_epoch, best_score = st["epoch"], st["history"], st["best_epoch"], st["best_score"]

    writer = None
    if out is not None and info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=start_epoch * steps_per_epoch or None)

    def save(epoch: int, improved: bool) -> None:
        if out is None or not info.is_main:
            return
        conf = {**(ckpt_config or {}), "epoch": epoch}
        ck.save_last(out, state_dict=model.state_dict(), config=conf, opt=opt, sched=sched, epoch=epoch,
                     history=history, best_epoch=best_epoch, best_score=best_score)
        if improved:
            ck.save_checkpoint(out / "checkpoints" / "best", state_dict=model.state_dict(), config=conf)
        _write_log(out / "log.csv", history)

    t0 = time.perf_counter()
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc=desc, unit="step",
               disable=not (progress and info.is_main))
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, t.epochs):
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        ddp.train()
        losses = []
        for batch in loader:
            coords = batch["coords"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            with autocast(device, amp):
                logits = ddp(coords)
            loss = loss_fn(logits.float(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if t.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            opt.step()
            sched.step()
            step += 1
            lv = float(all_reduce_mean(loss.detach(), info))
            if not math.isfinite(lv):
                raise FloatingPointError(f"loss became {lv} at epoch {epoch + 1}; lower train.lr or check the data")
            losses.append(lv)
            bar.update(1)
            if writer is not None and step % max(1, t.log_every) == 0:
                writer.add_scalar("train/loss", lv, step)
                writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
               "lr": opt.param_groups[0]["lr"], "val_top1": None, "val_top5": None}
        improved = False
        last_epoch = epoch + 1 == t.epochs
        if val_ds is not None and len(val_ds) and ((epoch + 1) % max(1, t.eval_every) == 0 or last_epoch):
            if info.is_main:
                logits = predict_logits(model, val_ds, batch_size=t.eval_batch_size, device=device, amp_dtype=amp)
                m = classification_metrics(logits, val_ds.labels, [str(i) for i in range(logits.shape[1])])
                row["val_top1"], row["val_top5"] = m["top1"], m["top5"]
                score = m[t.select_metric]
                improved = best_score is None or score > best_score
                if writer is not None:
                    writer.add_scalar("val/top1", m["top1"], epoch + 1)
                    writer.add_scalar("val/top5", m["top5"], epoch + 1)
            barrier(info)
        elif val_ds is None or not len(val_ds):
            improved = last_epoch  # nothing to select on: keep the last epoch
        if improved:
            best_epoch, best_score = epoch + 1, (row[f"val_{t.select_metric}"] if row["val_top1"] is not None
                                                 else None)
            if out is None:
                best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", **({"val": f"{row['val_' + t.select_metric]:.3f}"}
                                                       if row["val_top1"] is not None else {}))
        if writer is not None:
            writer.add_scalar("train/epoch_loss", row["loss"], epoch + 1)
        save(epoch + 1, improved)
    bar.close()
    if writer is not None:
        writer.close()
    barrier(info)
    return FitResult(best_epoch=best_epoch, best_score=best_score, history=history, best_state=best_state,
                     train_time_s=time.perf_counter() - t0)


def _write_log(path: Path, history: list[dict]) -> None:
    from msmae.utils import atomic_write_text

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["epoch", "loss", "lr", "val_top1", "val_top5"], lineterminator="\n")
    w.writeheader()
    for r in history:
        w.writerow({k: ("" if r[k] is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k])) for k in w.fieldnames})
    atomic_write_text(path, buf.getvalue())


# ---------------------------------------------------------------------------------------------- data
@dataclass
class SplitData:
    """The usable clips of one split."""

    ids: list[str]
    labels: np.ndarray                    # (N,) class indices
    clips: list                           # msmae.data.islr.Clip


def prepare_splits(cfg: IslrConfig, layout, *, classes: Sequence[str] | None = None, splits=("train", "val", "test"),
                   progress: bool = True) -> tuple[list[str], dict[str, SplitData], dict[str, int]]:
    """Read annotations and clips -> (class names, {split: SplitData}, excluded counts by reason).

    ``classes`` (e.g. a trained run's) fixes the class list; otherwise the dataset decides.
    """
    from msmae.data.islr import ISLRDataError, load_clips, load_islr_dataset

    d = cfg.data
    data = load_islr_dataset(d.dataset, annotations=d.annotations, poses=d.poses or None,
                             classes=list(classes) if classes is not None else (d.classes or None),
                             num_glosses=d.num_glosses, frame_ranges=d.frame_ranges,
                             val_participants=d.val_participants, test_participants=d.test_participants,
                             strict=d.strict)
    index = data.class_index
    out: dict[str, SplitData] = {}
    for split in splits:
        examples = data.split(split)
        if not examples:
            continue
        clips, problems = load_clips(examples, layout=layout, normalize=d.normalize, workers=d.load_workers,
                                     progress=progress, desc=f"read {split}")
        data.excluded.extend(problems)
        keep = [i for i, c in enumerate(clips) if c is not None]
        out[split] = SplitData([examples[i].id for i in keep], np.array([index[examples[i].label] for i in keep]),
                               [clips[i] for i in keep])
        if problems:
            log.warning("%s: %d of %d clips excluded (%s)", split, len(problems), len(examples),
                        "; ".join(f"{i}: {r}" for i, r in problems[:3]))
    if d.strict and data.excluded:
        raise ISLRDataError(data.summary())
    return data.classes, out, data.excluded_counts()


def make_dataset(split: SplitData, cfg: IslrConfig, *, train: bool):
    from msmae.data.islr import ClipDataset

    a = cfg.augment
    return ClipDataset(split.clips, split.labels, num_frames=cfg.data.num_frames, train=train, affine=a.affine,
                       rotation=a.rotation, shear=a.shear, scale=a.scale, seed=cfg.train.seed)


def score_split(model, split: SplitData, classes: Sequence[str], cfg: IslrConfig, *, device="cpu", amp_dtype=None,
                batch_size: int | None = None) -> tuple[dict, np.ndarray]:
    """(metrics, logits) of a trained model on one split."""
    logits = predict_logits(model, make_dataset(split, cfg, train=False), batch_size=batch_size or
                            cfg.train.eval_batch_size, device=device, amp_dtype=amp_dtype)
    return classification_metrics(logits, split.labels, classes), logits


def write_split_outputs(out_dir: Path, split_name: str, split: SplitData, logits: np.ndarray,
                        classes: Sequence[str]) -> None:
    """``predictions_<split>.csv`` (id, label, top-5 with probabilities) and ``confusion_<split>.png``."""
    from msmae.utils import atomic_write_text

    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    top = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "label", "predicted", "correct", "top5"])
    for i, ex_id in enumerate(split.ids):
        w.writerow([ex_id, classes[split.labels[i]], classes[top[i, 0]], int(top[i, 0] == split.labels[i]),
                    " ".join(f"{classes[j]}:{probs[i, j]:.4f}" for j in top[i])])
    atomic_write_text(out_dir / f"predictions_{split_name}.csv", buf.getvalue())
    plot_confusion(split.labels, top[:, 0], classes, out_dir / f"confusion_{split_name}.png",
                   title=f"{split_name}: confusion (row-normalised)")


# ------------------------------------------------------------------------------------------- the run
def checkpoint_config(cfg: IslrConfig, model, classes: Sequence[str]) -> dict:
    from msmae.config import config_to_dict
    from msmae.train.timescale import init_frame_stride

    mc = model.encoder.config
    return {"task": "islr", "model": mc.to_dict(), "layout": mc.layout.to_dict(), "encoder_prefix": "encoder.",
            "encoder_frame_stride": init_frame_stride(cfg.init),  # ISLR samples num_frames; no stride of its own
            "classes": list(classes), "mode": cfg.mode, "pooling": model.pooling, "probe_norm": model.norm is not None,
            "num_frames": cfg.data.num_frames, "normalize": cfg.data.normalize, "task_config": config_to_dict(cfg)}


def finetune(cfg: IslrConfig, out: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Fine-tune (or probe) on the configured dataset; returns the metrics written to ``out/metrics.json``."""
    from msmae.config import save_yaml
    from msmae.train import checkpoint as ck
    from msmae.train.distributed import cleanup_distributed, init_distributed, resolve_precision

    check_config(cfg)
    out = Path(out)
    info = init_distributed(cfg.train.device)
    try:
        encoder = build_encoder(cfg.init, cfg.model, seed=cfg.train.seed)
        layout = encoder.config.layout
        classes, splits, excluded = prepare_splits(cfg, layout, progress=progress and info.is_main)
        if "train" not in splits:
            raise ValueError(f"{cfg.data.annotations}: no usable training examples")
        if "val" not in splits:
            log.warning("no validation split: the last epoch is kept and nothing is selected")
        torch.manual_seed(cfg.train.seed)
        model = build_classifier(encoder, len(classes), cfg.mode, cfg.train.head_dropout, cfg.probe_norm)
        conf = checkpoint_config(cfg, model, classes)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, out / "config.yaml")
        log.info("%s: %d classes, train %d, val %d, test %d clips; %d trainable parameters", cfg.mode, len(classes),
                 *(len(splits[s].ids) if s in splits else 0 for s in ("train", "val", "test")),
                 model.trainable_parameters())
        res = fit(model, make_dataset(splits["train"], cfg, train=True), train=cfg.train,
                  val_ds=make_dataset(splits["val"], cfg, train=False) if "val" in splits else None, info=info,
                  out=out, ckpt_config=conf, resume=resume, num_workers=cfg.data.num_workers, progress=progress,
                  desc=cfg.mode)
        metrics: dict = {}
        if info.is_main:
            best = out / "checkpoints" / "best"
            model.load_state_dict(ck.load_state_dict(best if best.is_dir() else out / "checkpoints" / "last"))
            conf = {**conf, "epoch": res.best_epoch}
            ck.write_final_model(out, state_dict=model.state_dict(), config=conf)
            amp = resolve_precision(cfg.train.precision, info.device)
            scored = {}
            for s in ("val", "test"):
                if s in splits:
                    m, logits = score_split(model, splits[s], classes, cfg, device=info.device, amp_dtype=amp)
                    write_split_outputs(out, s, splits[s], logits, classes)
                    scored[s] = m
            report = "test" if "test" in scored else "val" if "val" in scored else None
            metrics = {"split": report, **({k: scored[report][k] for k in ("top1", "top5", "per_class_top1",
                                                                          "num_examples", "confusions")}
                                           if report else {}),
                       "selected_on": {"split": "val" if "val" in splits else None,
                                       "metric": cfg.train.select_metric, "epoch": res.best_epoch,
                                       "score": res.best_score},
                       "splits": {s: {k: v for k, v in m.items() if k != "confusions"} for s, m in scored.items()},
                       "mode": cfg.mode, "init": cfg.init, "dataset": cfg.data.dataset, "num_classes": len(classes),
                       "examples": {s: len(v.ids) for s, v in splits.items()}, "excluded": excluded,
                       "hours": {s: ck.hours((c.num_frames, c.fps) for c in v.clips) for s, v in splits.items()},
                       "epochs": cfg.train.epochs, "train_time_s": res.train_time_s, "world_size": info.world_size}
            ck.write_metrics(out, metrics)
            ck.write_model_card(out / "model", metrics)
        return metrics
    finally:
        cleanup_distributed()


# ------------------------------------------------------------------------------------------ commands
def add_finetune_arguments(p, *, probe: bool = False) -> None:
    """Arguments of ``msmae finetune islr`` (and of ``msmae probe`` with ``probe=True``)."""
    from msmae.commands.pretrain import add_config_arguments
    from msmae.data.islr import DATASETS

    p.add_argument("--out", required=True, metavar="RUN", help="run directory")
    p.add_argument("--init", required=True, metavar="CHECKPOINT",
                   help="encoder to start from: a pre-training run or checkpoint directory, or `none` "
                   "(random initialisation" + ("; a random-feature baseline)" if probe else ", i.e. from scratch)"))
    p.add_argument("--dataset", choices=DATASETS, help="annotation format (sets data.dataset)")
    p.add_argument("--annotations", metavar="PATH", help="annotation file or folder (sets data.annotations)")
    p.add_argument("--poses", metavar="DIR", help="folder of pose files, one per video (sets data.poses)")
    add_config_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue RUN from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(islr_mode="probe" if probe else "finetune")


def config_from_args(args) -> IslrConfig:
    from msmae.commands._runs import absolute_data_paths
    from msmae.config import load_config

    probe = getattr(args, "islr_mode", "finetune") == "probe"
    overrides = list(args.overrides)
    for flag, key in (("dataset", "data.dataset"), ("annotations", "data.annotations"), ("poses", "data.poses")):
        if getattr(args, flag, None):
            overrides.append(f"{key}={getattr(args, flag)}")
    cfg = load_config(IslrConfig, args.config, overrides, base=probe_base() if probe else None)
    cfg.mode = "probe" if probe else "finetune"
    cfg.init = args.init
    absolute_data_paths(cfg)
    return cfg


def run_finetune(args) -> int:
    """``msmae finetune islr`` and ``msmae probe``."""
    from msmae.commands._runs import run_training_command
    from msmae.config import ConfigError
    from msmae.data.islr import ISLRDataError
    from msmae.poses.sequence import PoseDataError
    from msmae.train.checkpoint import CheckpointError

    return run_training_command(
        args, config_from_args=config_from_args, train=finetune,
        errors=(ConfigError, ISLRDataError, CheckpointError, PoseDataError, ValueError, FloatingPointError),
        summary_keys=("split", "top1", "top5", "per_class_top1"))


def run_evaluate(run_dir: Path, split: str, args) -> int:
    """``msmae evaluate RUN --split S``: score the run's best model on a split of its dataset."""
    import json

    from msmae.cli import CommandError
    from msmae.commands._runs import override_data
    from msmae.config import ConfigError, config_from_dict
    from msmae.data.islr import _SPLIT_NAMES, ISLRDataError
    from msmae.train.checkpoint import CheckpointError
    from msmae.utils import atomic_write_json

    name = _SPLIT_NAMES.get(split.lower())
    if name is None:
        raise CommandError(f"unknown split {split!r}; use train, val or test")
    try:
        model, meta = model_from_run(run_dir)
        cfg = config_from_dict(IslrConfig, meta["task_config"])
        override_data(cfg, args)
        classes, splits, excluded = prepare_splits(cfg, model.encoder.config.layout, classes=meta["classes"],
                                                   splits=(name,), progress=not args.json)
    except (ConfigError, ISLRDataError, CheckpointError, ValueError, KeyError) as e:
        raise CommandError(str(e)) from None
    if name not in splits:
        raise CommandError(f"{run_dir}: the {cfg.data.dataset} data ({cfg.data.annotations}) has no usable "
                           f"{name} examples")
    m, logits = score_split(model, splits[name], classes, cfg, batch_size=args.batch_size)
    out_dir = Path(args.out) if args.out else run_dir / f"eval_{name}"
    metrics = {"split": name, **m, "num_classes": len(classes), "excluded": excluded, "run": str(run_dir),
               "epoch": meta.get("epoch")}
    atomic_write_json(out_dir / "metrics.json", metrics)
    write_split_outputs(out_dir, name, splits[name], logits, classes)
    if args.json:
        print(json.dumps(metrics))
    else:
        print(f"{run_dir} on {name} ({m['num_examples']} clips, {len(classes)} classes): top-1 {m['top1']:.4f}  "
              f"top-5 {m['top5']:.4f}  per-class top-1 {m['per_class_top1']:.4f}")
        for c in m["confusions"][:5]:
            print(f"  confused: {c['true']} -> {c['predicted']} ({c['count']}x)")
        print(f"written to {out_dir}")
    return 0


def read_input_sequence(path: Path):
    """A video or frame folder (keypoints extracted on the fly with MediaPipe Holistic, the ``extract``
    extra) or any pose file msmae reads -> canonical PoseSequence."""
    from msmae.extract.frames import is_video
    from msmae.poses.readers import read_sequence

    if not (is_video(path) or path.is_dir()):
        return read_sequence(path)
    from msmae.extract import video_to_sequence

    log.info("%s: extracting keypoints with MediaPipe Holistic", path)
    return video_to_sequence(path)


def predict_top(model, meta: dict, seq, top: int = 5) -> list[dict]:
    """Top-k glosses of one sequence: [{rank, label, probability}]."""
    from msmae.data.islr import prepare_clip
    from msmae.poses.sequence import uniform_indices

    layout = model.encoder.config.layout
    clip = prepare_clip(seq, layout=layout, normalize=meta.get("normalize", "shoulders"))
    idx = uniform_indices(clip.num_frames, int(meta.get("num_frames", 32)))
    coords = torch.from_numpy(clip.coords[idx].astype(np.float32))[None]
    with torch.no_grad():
        probs = torch.softmax(model(coords).float(), dim=1)[0].numpy()
    order = np.argsort(-probs, kind="stable")[: max(1, top)]
    return [{"rank": r + 1, "label": meta["classes"][i], "probability": float(probs[i])} for r, i in enumerate(order)]


def run_predict(input_path: Path, run_dir: Path, args) -> int:
    """``msmae predict INPUT --model RUN``: top-k glosses with probabilities."""
    import json

    from msmae.cli import CommandError
    from msmae.poses.sequence import PoseDataError
    from msmae.train.checkpoint import CheckpointError

    try:
        model, meta = model_from_run(run_dir)
    except (CheckpointError, KeyError) as e:
        raise CommandError(str(e)) from None
    try:
        seq = read_input_sequence(input_path)
    except ImportError as e:
        raise CommandError(f"{input_path}: extracting keypoints from a video needs MediaPipe "
                           f"(pip install 'msmae[extract]'): {e}") from None
    except PoseDataError as e:  # its message names the file
        raise CommandError(str(e)) from None
    except (OSError, RuntimeError, ValueError) as e:  # MissingModelError, FrameReadError are RuntimeErrors
        raise CommandError(f"{input_path}: {e}") from None
    try:
        preds = predict_top(model, meta, seq, args.top)
    except PoseDataError as e:
        raise CommandError(str(e)) from None
    if args.json:
        print(json.dumps({"input": str(input_path), "model": str(run_dir), "frames": seq.num_frames,
                          "predictions": preds}, ensure_ascii=False))
    else:
        print(f"{input_path} ({seq.num_frames} frames): top {len(preds)} of {len(meta['classes'])} signs")
        width = max(len(p["label"]) for p in preds)
        for p in preds:
            print(f"{p['rank']:>3}. {p['label']:<{width}}  {p['probability']:.4f}")
    return 0
