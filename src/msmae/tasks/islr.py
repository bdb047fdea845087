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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from msmae.metrics.classification import (classification_metrics, confusion_matrix,  # noqa: F401 (re-exported)
                                          most_confused, plot_confusion)
from msmae.tasks.common import ModelSection, build_encoder, read_input_sequence  # noqa: F401 (re-exported)

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
    precision: str = "auto"             # auto (native bf16 GPUs: bf16, else fp32) | bf16 | fp16 (scaled) | fp32
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


# ----------------------------------------------------------------------------------------------- model
def build_classifier(encoder, num_classes: int, mode: str, dropout: float = 0.0, probe_norm: bool = True):
    from msmae.models.classifier import ISLRClassifier

    if mode == "probe":
        return ISLRClassifier(encoder=encoder, num_classes=num_classes, pooling="mean", freeze_encoder=True,
                              dropout=dropout, feature_norm=probe_norm)
    return ISLRClassifier(encoder=encoder, num_classes=num_classes, pooling="cls", dropout=dropout)


def model_from_run(run_dir: str | Path, device="cpu"):
    """(classifier in eval mode, checkpoint config dict) of an ISLR run or checkpoint."""
    from msmae.models import MultiStreamEncoder
    from msmae.train.checkpoint import CONFIG, CheckpointError, load_state_dict
    from msmae.train.model_folder import open_model_folder

    folder = open_model_folder(run_dir)
    meta = folder.meta
    if meta.get("task") != "islr":
        raise CheckpointError(f"{run_dir}: not an ISLR run (task {meta.get('task')!r})")
    classes = meta.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise CheckpointError(f"{folder.path / CONFIG}: 'classes' must be a list of class names")
    if meta.get("mode") not in MODES:
        raise CheckpointError(f"{folder.path / CONFIG}: mode must be one of {MODES}, got {meta.get('mode')!r}")

    def build():  # runs made before the probe_norm option have none
        return build_classifier(MultiStreamEncoder(config=folder.model), len(classes), meta["mode"],
                                probe_norm=bool(meta.get("probe_norm", False)))

    folder.check_shapes(build)
    model = build()
    model.load_state_dict(load_state_dict(folder.path))  # checked: exactly these tensors
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
def epoch_settings(t: TrainSection, num_workers: int = 0):
    from msmae.train.loop import EpochSettings

    return EpochSettings(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr, warmup_epochs=t.warmup_epochs,
                         min_lr_ratio=t.min_lr_ratio, weight_decay=t.weight_decay, betas=t.betas,
                         grad_clip=t.grad_clip, precision=t.precision, seed=t.seed, eval_every=t.eval_every,
                         log_every=t.log_every, num_workers=num_workers)


def fit(model, train_ds, *, train: TrainSection, val_ds=None, info=None, out: Path | None = None,
        ckpt_config: dict | None = None, resume: bool = False, num_workers: int = 0, progress: bool = True,
        desc: str = "islr"):
    """Train ``model`` on ``train_ds`` (a :class:`~msmae.data.islr.ClipDataset`) with cross-entropy in the shared
    fine-tuning loop (:func:`msmae.train.loop.fit_epochs`: AdamW, per-step warm-up + cosine, checkpoints,
    resume, DDP); validate every ``train.eval_every`` epochs (on rank 0) and keep the best epoch on
    ``train.select_metric``. Returns a :class:`msmae.train.loop.FitResult`."""
    from msmae.train.distributed import DistInfo, all_gather_objects, resolve_precision
    from msmae.train.loop import fit_epochs

    info = info or DistInfo()
    t = train
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=t.label_smoothing)
    device = info.device
    amp = resolve_precision(t.precision, device)

    def step(net, batch):
        logits = net(batch["coords"].to(device, non_blocking=True))
        return loss_fn(logits.float(), batch["label"].to(device, non_blocking=True))

    def validate(epoch: int) -> dict | None:
        if not info.is_main:
            return None
        logits = predict_logits(model, val_ds, batch_size=t.eval_batch_size, device=device, amp_dtype=amp)
        return classification_metrics(logits, val_ds.labels, [str(i) for i in range(logits.shape[1])])

    has_val = all_gather_objects(val_ds is not None and len(val_ds) > 0, info)[0]   # rank 0 holds the val split
    return fit_epochs(model, train_ds, settings=epoch_settings(t, num_workers), step=step,
                      validate=validate if has_val else None, val_keys=("top1", "top5"), select=t.select_metric,
                      info=info, out=out, ckpt_config=ckpt_config, resume=resume, progress=progress, desc=desc)


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
    """``predictions_<split>.csv`` and ``confusion_<split>.png``. The CSV has one row per clip: ``id``, ``label``,
    ``predicted``, ``correct`` (1/0), then one column pair per rank, ``top1_label``, ``top1_prob`` ... ``top5_label``,
    ``top5_prob`` (fewer ranks with fewer classes), so labels holding spaces or colons stay whole."""
    from msmae.utils import atomic_write_text

    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    top = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "label", "predicted", "correct"]
               + [f"top{r}_{what}" for r in range(1, top.shape[1] + 1) for what in ("label", "prob")])
    for i, ex_id in enumerate(split.ids):
        w.writerow([ex_id, classes[split.labels[i]], classes[top[i, 0]], int(top[i, 0] == split.labels[i])]
                   + [x for j in top[i] for x in (classes[j], f"{probs[i, j]:.6f}")])
    atomic_write_text(out_dir / f"predictions_{split_name}.csv", buf.getvalue())
    plot_confusion(split.labels, top[:, 0], classes, out_dir / f"confusion_{split_name}.png",
                   title=f"{split_name}: confusion (row-normalised)")


# ------------------------------------------------------------------------------------------- the run
def nothing_held_out(d: DataSection) -> str:
    """Why a run without validation and test examples is refused: its scores would be on its training clips."""
    how = ("GISLR has no official split: pass --config gislr (participants held out), or set "
           "data.val_participants / data.test_participants" if d.dataset == "gislr" else
           "give some examples the split val or test")
    return f"{d.annotations}: nothing is held out (no val or test examples), so no score would mean anything: {how}"


def checkpoint_config(cfg: IslrConfig, model, classes: Sequence[str]) -> dict:
    from msmae.config import config_to_dict
    from msmae.train.timescale import init_frame_stride, init_source_fps

    mc = model.encoder.config
    return {"task": "islr", "model": mc.to_dict(), "layout": mc.layout.to_dict(), "encoder_prefix": "encoder.",
            "encoder_frame_stride": init_frame_stride(cfg.init),  # ISLR samples num_frames; no stride of its own
            "encoder_source_fps": init_source_fps(cfg.init),
            "classes": list(classes), "mode": cfg.mode, "pooling": model.pooling, "probe_norm": model.norm is not None,
            "num_frames": cfg.data.num_frames, "normalize": cfg.data.normalize, "task_config": config_to_dict(cfg)}


def finetune(cfg: IslrConfig, out: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Fine-tune (or probe) on the configured dataset; returns the metrics written to ``out/metrics.json``."""
    from msmae.config import save_yaml
    from msmae.train import checkpoint as ck
    from msmae.train.distributed import all_gather_objects, cleanup_distributed, init_distributed, resolve_precision

    check_config(cfg)
    out = Path(out)
    info = init_distributed(cfg.train.device)
    try:
        encoder = build_encoder(cfg.init, cfg.model, seed=cfg.train.seed)
        layout = encoder.config.layout
        # Validation and test are scored on rank 0 only: the other ranks read the training clips alone.
        classes, splits, excluded = prepare_splits(cfg, layout, splits=("train", "val", "test") if info.is_main
                                                   else ("train",), progress=progress and info.is_main)
        if "train" not in splits:
            raise ValueError(f"{cfg.data.annotations}: no usable training examples")
        # only rank 0 read val and test: every rank takes its word, so all of them stop with the same line
        if not all_gather_objects("val" in splits or "test" in splits, info)[0]:
            raise ValueError(nothing_held_out(cfg.data))
        if "val" not in splits and info.is_main:
            log.warning("no validation split: the last epoch is kept and nothing is selected")
        torch.manual_seed(cfg.train.seed)
        model = build_classifier(encoder, len(classes), cfg.mode, cfg.train.head_dropout, cfg.probe_norm)
        conf = checkpoint_config(cfg, model, classes)
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, out / "config.yaml")
            log.info("%s: %d classes, train %d, val %d, test %d clips; %d trainable parameters", cfg.mode,
                     len(classes), *(len(splits[s].ids) if s in splits else 0 for s in ("train", "val", "test")),
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


# ------------------------------------------------------------------------------------- evaluate, predict
def evaluate_run(run_dir: str | Path, split: str = "test", *, out: str | Path | None = None,
                 annotations: str | None = None, poses: str | None = None, batch_size: int | None = None,
                 progress: bool = True) -> tuple[dict, Path]:
    """Score a run's best model on one split of its dataset (``annotations``/``poses`` point at data that
    moved); writes ``metrics.json``, ``predictions_<split>.csv`` and ``confusion_<split>.png`` into ``out``
    (default ``RUN/eval_<split>``) -> (metrics, that folder)."""
    from msmae.config import config_from_dict
    from msmae.data.islr import _SPLIT_NAMES
    from msmae.tasks.common import override_data
    from msmae.utils import atomic_write_json

    run_dir = Path(run_dir)
    name = _SPLIT_NAMES.get(split.lower())
    if name is None:
        raise ValueError(f"unknown split {split!r}; use train, val or test")
    model, meta = model_from_run(run_dir)
    cfg = config_from_dict(IslrConfig, meta["task_config"])
    override_data(cfg, annotations=annotations, poses=poses)
    classes, splits, excluded = prepare_splits(cfg, model.encoder.config.layout, classes=meta["classes"],
                                               splits=(name,), progress=progress)
    if name not in splits:
        raise ValueError(f"{run_dir}: the {cfg.data.dataset} data ({cfg.data.annotations}) has no usable "
                         f"{name} examples")
    m, logits = score_split(model, splits[name], classes, cfg, batch_size=batch_size)
    out_dir = Path(out) if out else run_dir / f"eval_{name}"
    metrics = {"split": name, **m, "num_classes": len(classes), "excluded": excluded, "run": str(run_dir),
               "epoch": meta.get("epoch")}
    atomic_write_json(out_dir / "metrics.json", metrics)
    write_split_outputs(out_dir, name, splits[name], logits, classes)
    return metrics, out_dir


def predict_top(model, meta: dict, seq, top: int = 5) -> list[dict]:
    """Top-k glosses of one sequence: [{rank, label, probability}]."""
    from msmae.data.islr import prepare_clip
    from msmae.poses.sequence import uniform_indices

    layout = model.encoder.config.layout
    clip = prepare_clip(seq, layout=layout, normalize=meta.get("normalize", "shoulders"))
    idx = uniform_indices(clip.num_frames, int(meta.get("num_frames", 32)))
    coords = torch.from_numpy(clip.coords[idx].astype(np.float32))[None]
    device = next(model.parameters()).device
    with torch.no_grad():
        probs = torch.softmax(model(coords.to(device)).float(), dim=1)[0].cpu().numpy()
    order = np.argsort(-probs, kind="stable")[: max(1, top)]
    return [{"rank": r + 1, "label": meta["classes"][i], "probability": float(probs[i])} for r, i in enumerate(order)]
