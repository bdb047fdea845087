"""Sign language translation (paper 4.3, appendices C and E): fine-tuning the pose encoder with
mBART-50 (LoRA decoder), evaluation with beam search, prediction.

A run directory holds ``config.yaml``, ``checkpoints/{last,best}/`` (``last`` with the training
state for ``--resume``), ``model/`` (the best checkpoint: what evaluate/predict and
``load_encoder(RUN)`` use), ``tb/`` (TensorBoard), ``log.csv`` (per epoch), ``metrics.json`` with
``hypotheses.txt`` / ``references.txt`` beside it (the reported split: test, else dev), and
``eval_<split>/`` with the same three files (plus ``translations.tsv``) for every scored split.

Checkpoints hold only what fine-tuning changes (pose encoder, projection, mBART encoder, LoRA);
the frozen mBART weights come from the mBART-50 directory recorded in the checkpoint
(``MSMAE_MBART=DIR`` points a run at another copy).

The best epoch is the one with the highest BLEU-4 on ``data.val_split`` (dev), decoded with beam
search; then the test split is scored with the same beam search.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from msmae.tasks.common import ModelSection, build_encoder

log = logging.getLogger(__name__)

SPLIT_ALIASES = {"train": "train", "dev": "dev", "val": "dev", "valid": "dev", "validation": "dev", "test": "test"}


# ---------------------------------------------------------------------------------------------- config
@dataclass
class SltModelSection(ModelSection):
    streams: str = "body,hands,face"    # SLT uses the face stream (paper 4.3); only for init "none"


@dataclass
class DataSection:
    dataset: str = "manifest"           # p14t | csl_daily | how2sign | manifest | dgs (msmae.data.slt)
    annotations: str = ""               # annotation folder or file of the dataset (manifest: the CSV)
    poses: str = ""                     # folder of pose files, one per sentence (or video, How2Sign)
    language: str = ""                  # mBART-50 target code; "" = the dataset's (de_DE, zh_CN, en_XX)
    dgs_text: str = "english"           # dgs sample only: english | german
    val_split: str = "dev"              # split that chooses the best epoch (dev; "train" to check memorisation)
    frame_stride: int | None = None     # keep every n-th frame; unset = the stride the encoder was pre-trained with
    max_frames: int = 1024              # longer clips are resampled to this many frames (after the stride)
    normalize: str = "shoulders"        # per-clip normalisation (msmae.poses.normalize): shoulders | spread | none
    max_target_tokens: int = 128        # target sentences are cut to this many mBART tokens (cuts are counted)
    load_workers: int = 2               # processes reading pose files before training
    num_workers: int = 2                # DataLoader worker processes per rank
    strict: bool = False                # any excluded example (missing pose file, empty text...) is an error


@dataclass
class AugmentSection:
    drop_duplicate: float = 0.2         # fraction of frames randomly deleted or duplicated in training (paper: 20%)


@dataclass
class TranslatorSection:
    mbart: str = ""                     # local copy of facebook/mbart-large-50-many-to-many-mmt (never downloaded)
    fusion: str = "mean"                # flat (all stream tokens) | mean (per time step; the final paper's default)
    lora_r: int = 32                    # LoRA rank on the decoder's attention projections (paper: 32)
    lora_alpha: int = 32                # LoRA alpha (paper: 32)
    lora_dropout: float = 0.0           # LoRA dropout (paper: unstated; peft's default)
    freeze_encoder: bool = False        # keep the pre-trained pose encoder frozen (appendix E, table 9)
    num_beams: int = 5                  # beam size for evaluation and prediction (paper: unstated)
    max_new_tokens: int = 100           # longest generated translation, in tokens
    length_penalty: float = 1.0         # beam-search length penalty


@dataclass
class TrainSection:
    epochs: int = 100                   # up to 100 epochs (appendix C)
    warmup_epochs: float = 10           # cosine schedule with a 10-epoch warm-up (appendix C)
    batch_size: int = 32                # sentences per optimiser step over all processes (appendix C)
    lr: float = 1e-4                    # peak lr, trained encoder (table 8: P14T & CSL-Daily 1e-4, How2Sign 5e-5)
    lr_frozen: float = 3e-4             # peak lr, frozen encoder (table 8: 3e-4 on all three)
    grad_clip: float = 0.1              # max grad norm, trained encoder (table 8: 0.1 P14T & CSL, 1.0 How2Sign)
    grad_clip_frozen: float = 1.0       # max grad norm, frozen encoder (appendix E: 1.0 everywhere)
    min_lr_ratio: float = 0.0           # final lr = min_lr_ratio * peak lr
    weight_decay: float = 1e-3          # AdamW weight decay (appendix C)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # AdamW betas (paper: unstated, defaults)
    label_smoothing: float = 0.0        # cross-entropy label smoothing (paper: plain cross-entropy)
    eval_every: int = 1                 # epochs between validations (BLEU-4 with beam search)
    eval_before: bool = False           # also score the untrained model (history epoch 0)
    val_max_examples: int = 0           # validate on the first N examples only (0 = all)
    eval_batch_size: int = 64           # sentences per generation batch
    checkpoint_every: int = 1           # epochs between `last` checkpoints (the best one is always kept)
    precision: str = "auto"             # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
    device: str = "auto"                # auto | cpu | cuda
    seed: int = 0
    log_every: int = 20                 # steps between TensorBoard points


@dataclass
class SltConfig:
    model: SltModelSection = field(default_factory=SltModelSection)  # only with init "none" (else the checkpoint's)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    translator: TranslatorSection = field(default_factory=TranslatorSection)
    train: TrainSection = field(default_factory=TrainSection)
    init: str = ""                      # encoder checkpoint or run directory; "none" = random initialisation


def peak_lr(cfg: SltConfig) -> float:
    return cfg.train.lr_frozen if cfg.translator.freeze_encoder else cfg.train.lr


def clip_norm(cfg: SltConfig) -> float:
    return cfg.train.grad_clip_frozen if cfg.translator.freeze_encoder else cfg.train.grad_clip


def target_language(cfg: SltConfig) -> str:
    from msmae.data.slt import LANGUAGES

    lang = cfg.data.language or LANGUAGES.get(cfg.data.dataset, "")
    if not lang:
        raise ValueError(f"data.language is needed for dataset {cfg.data.dataset!r} (an mBART-50 code such as "
                         "de_DE, en_XX, zh_CN)")
    if cfg.data.dataset == "dgs" and not cfg.data.language and cfg.data.dgs_text == "german":
        lang = "de_DE"
    return lang


def check_config(cfg: SltConfig) -> None:
    from msmae.models.translator import FUSIONS

    if cfg.translator.fusion not in FUSIONS:
        raise ValueError(f"translator.fusion must be one of {FUSIONS}, got {cfg.translator.fusion!r}")
    if cfg.data.val_split not in SPLIT_ALIASES:
        raise ValueError(f"data.val_split must be train, dev or test, got {cfg.data.val_split!r}")
    for name in ("epochs", "batch_size", "frame_stride", "max_frames", "max_target_tokens"):
        sec = cfg.train if hasattr(cfg.train, name) else cfg.data
        if getattr(sec, name) < 1:
            raise ValueError(f"{name} must be positive, got {getattr(sec, name)}")
    if not cfg.init:
        raise ValueError("no encoder to start from: pass --init CHECKPOINT (a pre-training run or checkpoint) "
                         "or --init none (random initialisation, i.e. training from scratch)")
    if not cfg.translator.mbart:
        raise ValueError("no mBART-50 directory: pass --mbart DIR (a local copy of "
                         "facebook/mbart-large-50-many-to-many-mmt)")


# ---------------------------------------------------------------------------------------------- data
@dataclass
class SplitData:
    """The usable sentences of one split (clips prepared, targets as given)."""

    ids: list[str]
    texts: list[str]
    clips: list                          # msmae.data.islr.Clip: normalised float16 keypoints


def prepare_sequence(seq, *, layout, normalize: str, frame_stride: int, max_frames: int):
    """A canonical PoseSequence -> a :class:`msmae.data.islr.Clip` of ``layout``: every
    ``frame_stride``-th frame, at most ``max_frames`` frames (uniformly resampled), normalised."""
    from msmae.data.islr import prepare_clip
    from msmae.poses.timing import stride_for_sequence

    frame_stride = stride_for_sequence(seq.meta, frame_stride)  # a --frame-stride extraction is already strided
    if frame_stride > 1 and seq.num_frames > 1:
        seq = seq.take_frames(np.arange(0, seq.num_frames, frame_stride))
        seq.fps = seq.fps / frame_stride
    if seq.num_frames > max_frames:
        seq = seq.resample(max_frames)
    return prepare_clip(seq, layout=layout, normalize=normalize)


def load_example(example, *, layout, normalize: str, frame_stride: int, max_frames: int):
    """Read one :class:`msmae.data.slt.SLTExample` (cutting its time range, if any) -> Clip."""
    from msmae.poses.readers import read_sequence
    from msmae.poses.sequence import PoseDataError

    seq = read_sequence(example.pose_path)
    if example.start is not None or example.end is not None:
        first = int(round((example.start or 0.0) * seq.fps))
        stop = int(round(example.end * seq.fps)) if example.end is not None else None
        if first >= seq.num_frames:
            raise PoseDataError(f"{example.pose_path}: the range {example.start}..{example.end} s starts after "
                                f"the file's {seq.num_frames} frames")
        seq = seq.slice_frames(first, stop)
    return prepare_sequence(seq, layout=layout, normalize=normalize, frame_stride=frame_stride,
                            max_frames=max_frames)


def _load_one(job):
    example, layout_spec, kwargs = job
    from msmae.layout import get_layout

    try:
        return load_example(example, layout=get_layout(layout_spec), **kwargs), None
    except Exception as e:  # reported with the example id, never dropped silently
        return None, f"unreadable pose file: {str(e).splitlines()[0] if str(e) else type(e).__name__}"


def load_split(examples, *, layout, cfg: SltConfig, progress: bool = True, desc: str = "poses"):
    """-> (SplitData, [(id, reason)] of the examples whose pose file could not be used)."""
    from tqdm import tqdm

    d = cfg.data
    kwargs = dict(normalize=d.normalize, frame_stride=d.frame_stride, max_frames=d.max_frames)
    jobs = [(e, layout.spec, kwargs) for e in examples]
    bar = tqdm(total=len(jobs), desc=desc, unit="clip", disable=not progress)
    results = []
    if d.load_workers <= 1 or len(jobs) < 16:
        for j in jobs:
            results.append(_load_one(j))
            bar.update(1)
    else:
        from msmae.utils import exit_with_parent  # workers must not outlive a killed parent

        with ProcessPoolExecutor(max_workers=d.load_workers, initializer=exit_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            for r in pool.map(_load_one, jobs, chunksize=16):
                results.append(r)
                bar.update(1)
    bar.close()
    keep = [i for i, (c, _) in enumerate(results) if c is not None]
    problems = [(examples[i].id, err) for i, (_, err) in enumerate(results) if err is not None]
    return SplitData([examples[i].id for i in keep], [examples[i].text for i in keep],
                     [results[i][0] for i in keep]), problems


def prepare_splits(cfg: SltConfig, layout, splits: Sequence[str], *, progress: bool = True):
    """Annotations + pose files -> ({split: SplitData}, excluded counts by reason)."""
    from msmae.data.slt import SLTDataError, load_slt_dataset

    d = cfg.data
    data = load_slt_dataset(d.dataset, annotations=d.annotations, poses=d.poses or None, splits=list(splits),
                            strict=d.strict, language=d.dgs_text)
    out: dict[str, SplitData] = {}
    for split in splits:
        examples = data.split(split)
        if not examples:
            continue
        sd, problems = load_split(examples, layout=layout, cfg=cfg, progress=progress, desc=f"read {split}")
        data.excluded.extend(problems)
        if problems:
            log.warning("%s: %d of %d pose files unusable (%s)", split, len(problems), len(examples),
                        "; ".join(f"{i}: {r}" for i, r in problems[:3]))
        if sd.ids:
            out[split] = sd
    if d.strict and data.excluded:
        raise SLTDataError(data.summary())
    return out, data.excluded_counts()


class SentenceDataset(torch.utils.data.Dataset):
    """Map-style dataset -> ``{"coords": float32 (T, K, 2), "labels": int64 (L,), "index": int}``.

    Training: ``drop_duplicate`` of the frames randomly deleted or duplicated, the randomness a
    function of (seed, epoch, index) (call :meth:`set_epoch`); clips longer than ``max_frames``
    after that are resampled to it. Evaluation: the prepared clip as is.
    """

    def __init__(self, clips, targets: Sequence[Sequence[int]], *, train: bool = False,
                 drop_duplicate: float = 0.2, max_frames: int = 1024, seed: int = 0) -> None:
        if len(clips) != len(targets):
            raise ValueError(f"{len(clips)} clips but {len(targets)} targets")
        self.clips, self.targets = list(clips), [np.asarray(t, dtype=np.int64) for t in targets]
        self.train, self.drop_duplicate, self.max_frames, self.seed = train, drop_duplicate, max_frames, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.clips)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def frames(self, i: int) -> np.ndarray:
        """Frame indices of item ``i`` (order kept; deletions/duplicates when training)."""
        from msmae.poses.augment import drop_duplicate_counts
        from msmae.poses.sequence import uniform_indices

        n = self.clips[i].num_frames
        idx = np.arange(n)
        if self.train and self.drop_duplicate > 0:
            rng = np.random.default_rng([self.seed, self.epoch, i])
            idx = np.repeat(idx, drop_duplicate_counts(n, rng, self.drop_duplicate))
        if len(idx) > self.max_frames:
            idx = idx[uniform_indices(len(idx), self.max_frames)]
        return idx

    def __getitem__(self, i: int) -> dict:
        clip = self.clips[i]
        coords = clip.coords[self.frames(i)].astype(np.float32)
        return {"coords": coords, "labels": self.targets[i], "index": i}


def collate(items: Sequence[dict]) -> dict:
    """Pad a list of items: coords (B, T, K, 2), frame_valid (B, T) bool, labels (B, L) with -100, index (B,)."""
    b = len(items)
    t = max(it["coords"].shape[0] for it in items)
    k = items[0]["coords"].shape[1]
    lmax = max(len(it["labels"]) for it in items)
    coords = torch.zeros(b, t, k, 2)
    frame_valid = torch.zeros(b, t, dtype=torch.bool)
    labels = torch.full((b, max(lmax, 1)), -100, dtype=torch.long)
    for j, it in enumerate(items):
        n = it["coords"].shape[0]
        coords[j, :n] = torch.from_numpy(it["coords"])
        frame_valid[j, :n] = True
        labels[j, : len(it["labels"])] = torch.from_numpy(it["labels"])
    return {"coords": coords, "frame_valid": frame_valid, "labels": labels,
            "index": torch.tensor([it["index"] for it in items])}


def tokenize_targets(tokenizer, texts: Sequence[str], *, lang: str, max_tokens: int) -> tuple[list[list[int]], int]:
    """mBART-50 targets ``[lang] pieces </s>`` per sentence, cut to ``max_tokens``; -> (ids, number cut)."""
    tokenizer.tgt_lang = lang
    ids = tokenizer(text_target=list(texts), add_special_tokens=True)["input_ids"]
    cut = 0
    out = []
    for x in ids:
        if len(x) > max_tokens:
            cut += 1
            x = x[: max_tokens - 1] + [tokenizer.eos_token_id]
        out.append(list(x))
    return out, cut


def clean_line(text: str) -> str:
    """One sentence as one line of a text file, as sacrebleu's command line reads it back."""
    return text.replace("\r", " ").replace("\n", " ").rstrip()


# ---------------------------------------------------------------------------------------------- model
def build_translator(encoder, mbart, t: TranslatorSection):
    from msmae.models.translator import PoseTranslator

    return PoseTranslator(pose_encoder=encoder, mbart=mbart, fusion=t.fusion, lora_r=t.lora_r,
                          lora_alpha=t.lora_alpha, lora_dropout=t.lora_dropout,
                          freeze_pose_encoder=t.freeze_encoder)


def mbart_dir_of(meta: dict) -> str:
    """The mBART directory of a run: ``MSMAE_MBART`` when set, else the one it was trained with."""
    return os.environ.get("MSMAE_MBART") or meta["mbart"]


def translator_from_run(run_dir: str | Path, device="cpu"):
    """(translator in eval mode, tokenizer, checkpoint config dict) of an SLT run or checkpoint."""
    from msmae.config import config_from_dict
    from msmae.models import ModelConfig, MultiStreamEncoder
    from msmae.models.translator import load_mbart
    from msmae.train.checkpoint import CheckpointError, load_state_dict, read_checkpoint_config

    meta = read_checkpoint_config(run_dir)
    if meta.get("task") != "slt":
        raise CheckpointError(f"{run_dir}: not an SLT run (task {meta.get('task')!r})")
    cfg = config_from_dict(SltConfig, meta["task_config"])
    mbart, tokenizer = load_mbart(mbart_dir_of(meta), lang=meta["language"])
    if mbart.config.vocab_size != meta.get("mbart_vocab_size", mbart.config.vocab_size):
        raise CheckpointError(f"{run_dir}: trained with an mBART of vocabulary {meta['mbart_vocab_size']}, "
                              f"{mbart_dir_of(meta)} has {mbart.config.vocab_size}")
    model = build_translator(MultiStreamEncoder(config=ModelConfig.from_dict(meta["model"])), mbart, cfg.translator)
    missing, unexpected = model.load_state_dict(load_state_dict(run_dir), strict=False)
    trained = set(model.trainable_state_dict())
    wrong = [k for k in missing if k in trained]
    if unexpected or wrong:
        raise CheckpointError(f"{run_dir}: weights do not match the SLT model (missing {wrong[:4]}, "
                              f"unexpected {unexpected[:4]})")
    return model.to(device).eval(), tokenizer, meta


@torch.no_grad()
def translate(model, tokenizer, clips, *, lang: str, num_beams: int, max_new_tokens: int,
              length_penalty: float = 1.0, batch_size: int = 64, device="cpu", amp_dtype=None,
              progress: bool = False, desc: str = "translate") -> list[str]:
    """Beam-search translations of prepared clips, in their order (batched by length)."""
    from tqdm import tqdm

    from msmae.models.translator import decode
    from msmae.train.distributed import autocast

    was = model.training
    model.eval()
    order = sorted(range(len(clips)), key=lambda i: clips[i].num_frames)
    out: list[str] = [""] * len(clips)
    forced = tokenizer.lang_code_to_id[lang]
    bar = tqdm(total=len(clips), desc=desc, unit="sent", disable=not progress)
    for s in range(0, len(order), batch_size):
        chunk = order[s: s + batch_size]
        b = collate([{"coords": clips[i].coords.astype(np.float32), "labels": np.zeros(0, np.int64), "index": i}
                     for i in chunk])
        with autocast(torch.device(device), amp_dtype):
            ids = model.generate(b["coords"].to(device), b["frame_valid"].to(device), forced_bos_token_id=forced,
                                 num_beams=num_beams, max_new_tokens=max_new_tokens, length_penalty=length_penalty)
        for i, text in zip(chunk, decode(tokenizer, ids.cpu())):
            out[i] = clean_line(text)
        bar.update(len(chunk))
    bar.close()
    model.train(was)
    return out


def score(hypotheses: Sequence[str], references: Sequence[str], lang: str) -> dict:
    from msmae.metrics.translation import translation_metrics

    return translation_metrics(list(hypotheses), [clean_line(r) for r in references], lang=lang)


def write_split_outputs(out_dir: Path, split: SplitData, hypotheses: Sequence[str], metrics: dict) -> None:
    """``metrics.json``, ``hypotheses.txt``, ``references.txt`` (one sentence per line, line-parallel;
    ``msmae score`` on them gives the same figures) and ``translations.tsv`` (id, reference, hypothesis)."""
    from msmae.utils import atomic_write_json, atomic_write_text

    atomic_write_text(out_dir / "hypotheses.txt", "".join(clean_line(h) + "\n" for h in hypotheses))
    atomic_write_text(out_dir / "references.txt", "".join(clean_line(r) + "\n" for r in split.texts))
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(["id", "reference", "hypothesis"])
    for i, r, h in zip(split.ids, split.texts, hypotheses):
        w.writerow([i, clean_line(r), clean_line(h)])
    atomic_write_text(out_dir / "translations.tsv", buf.getvalue())
    atomic_write_json(out_dir / "metrics.json", metrics)


# ------------------------------------------------------------------------------------------ training
@dataclass
class FitResult:
    best_epoch: int                       # epoch whose weights are kept (0 = untrained)
    best_score: float | None              # its validation BLEU-4 (None without validation)
    history: list[dict]                   # per epoch: epoch, loss, lr, val_bleu4, val_bleu1, val_rouge_l
    train_time_s: float = 0.0
    sentences_per_s: float = 0.0


def fit(model, tokenizer, train_ds: SentenceDataset, *, cfg: SltConfig, lang: str, val: SplitData | None = None,
        info=None, out: Path | None = None, ckpt_config: dict | None = None, resume: bool = False,
        progress: bool = True) -> FitResult:
    """Train with AdamW (wd 1e-3), per-step warm-up + cosine, gradient clipping and cross-entropy; every
    ``eval_every`` epochs translate ``val`` with beam search and keep the epoch with the best BLEU-4 as
    ``out/checkpoints/best``. ``last`` (with optimiser/scheduler state) is saved every
    ``checkpoint_every`` epochs for ``resume``. Under torchrun: DDP, each rank its part of every epoch,
    validation on rank 0."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data import DataLoader, DistributedSampler
    from tqdm import tqdm

    from msmae.train import checkpoint as ck
    from msmae.train.distributed import DistInfo, all_reduce_mean, autocast, barrier, resolve_precision
    from msmae.train.optim import build_optimizer, cosine_with_warmup

    info = info or DistInfo()
    t = cfg.train
    if t.batch_size % info.world_size:
        raise ValueError(f"train.batch_size={t.batch_size} must be divisible by the {info.world_size} processes")
    device = info.device
    model.to(device)
    amp = resolve_precision(t.precision, device)
    sampler = DistributedSampler(train_ds, num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=t.seed)
    loader = DataLoader(train_ds, batch_size=t.batch_size // info.world_size, sampler=sampler, collate_fn=collate,
                        num_workers=cfg.data.num_workers, pin_memory=device.type == "cuda",
                        persistent_workers=cfg.data.num_workers > 0)
    steps_per_epoch = len(loader)
    total = t.epochs * steps_per_epoch
    lr, clip = peak_lr(cfg), clip_norm(cfg)
    opt = build_optimizer(model, lr=lr, weight_decay=t.weight_decay, betas=tuple(t.betas))
    sched = cosine_with_warmup(opt, warmup_steps=int(round(t.warmup_epochs * steps_per_epoch)), total_steps=total,
                               min_ratio=t.min_lr_ratio)
    params = [p for p in model.parameters() if p.requires_grad]
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if info.distributed else model
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=t.label_smoothing)
    val_clips, val_refs = (val.clips, val.texts) if val is not None else ([], [])
    if t.val_max_examples > 0:
        val_clips, val_refs = val_clips[: t.val_max_examples], val_refs[: t.val_max_examples]

    start_epoch, history = 0, []
    best_epoch, best_score = 0, None
    if out is not None and resume:   # not strict: only the trainable weights are saved
        st = ck.resume_last(out, model, opt, sched, strict=False)
        start_epoch, history, best_epoch, best_score = st["epoch"], st["history"], st["best_epoch"], st["best_score"]

    writer = None
    if out is not None and info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / "tb"), purge_step=start_epoch * steps_per_epoch or None)

    def validate(epoch: int) -> dict | None:
        if not val_clips:
            return None
        if info.is_main:
            hyps = translate(model, tokenizer, val_clips, lang=lang, num_beams=cfg.translator.num_beams,
                             max_new_tokens=cfg.translator.max_new_tokens,
                             length_penalty=cfg.translator.length_penalty, batch_size=t.eval_batch_size,
                             device=device, amp_dtype=amp)
            m = score(hyps, val_refs, lang)
            log.info("epoch %d: %s BLEU-4 %.2f BLEU-1 %.2f ROUGE-L %.2f | e.g. %r", epoch, cfg.data.val_split,
                     m["bleu4"], m["bleu1"], m["rouge_l"], hyps[0][:80])
            if writer is not None:
                for k in ("bleu4", "bleu1", "rouge_l"):
                    writer.add_scalar(f"val/{k}", m[k], epoch)
        else:
            m = None
        barrier(info)
        return m

    def save(epoch: int, improved: bool, force: bool = False) -> None:
        if out is None or not info.is_main:
            return
        conf = {**(ckpt_config or {}), "epoch": epoch}
        sd = model.trainable_state_dict()
        if improved:
            ck.save_checkpoint(out / "checkpoints" / "best", state_dict=sd, config={**conf, "best_score": best_score})
        if force or epoch % max(1, t.checkpoint_every) == 0:
            ck.save_last(out, state_dict=sd, config=conf, opt=opt, sched=sched, epoch=epoch, history=history,
                         best_epoch=best_epoch, best_score=best_score)
        _write_log(out / "log.csv", history)

    if start_epoch == 0 and t.eval_before:
        m = validate(0)
        if info.is_main and m is not None:
            history.append({"epoch": 0, "loss": None, "lr": 0.0, "val_bleu4": m["bleu4"], "val_bleu1": m["bleu1"],
                            "val_rouge_l": m["rouge_l"]})
            best_epoch, best_score = 0, m["bleu4"]
            save(0, True, force=True)

    t0 = time.perf_counter()
    seen = 0
    bar = tqdm(total=total, initial=start_epoch * steps_per_epoch, desc="slt", unit="step",
               disable=not (progress and info.is_main))
    step = start_epoch * steps_per_epoch
    for epoch in range(start_epoch, t.epochs):
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        ddp.train()
        losses = []
        for batch in loader:
            coords = batch["coords"].to(device, non_blocking=True)
            frame_valid = batch["frame_valid"].to(device, non_blocking=True)
            labels = batch["labels"].to(device, non_blocking=True)
            with autocast(device, amp):
                logits = ddp(coords, frame_valid, labels).logits
            loss = loss_fn(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if clip > 0:
                torch.nn.utils.clip_grad_norm_(params, clip)
            opt.step()
            sched.step()
            step += 1
            seen += coords.shape[0] * info.world_size
            lv = float(all_reduce_mean(loss.detach(), info))
            if not math.isfinite(lv):
                raise FloatingPointError(f"loss became {lv} at epoch {epoch + 1}; lower the learning rate or check "
                                         "the data")
            losses.append(lv)
            bar.update(1)
            if writer is not None and step % max(1, t.log_every) == 0:
                writer.add_scalar("train/loss", lv, step)
                writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses)) if losses else float("nan"),
               "lr": opt.param_groups[0]["lr"], "val_bleu4": None, "val_bleu1": None, "val_rouge_l": None}
        last_epoch = epoch + 1 == t.epochs
        improved = False
        if val_clips and ((epoch + 1) % max(1, t.eval_every) == 0 or last_epoch):
            m = validate(epoch + 1)
            if m is not None:
                row.update(val_bleu4=m["bleu4"], val_bleu1=m["bleu1"], val_rouge_l=m["rouge_l"])
                improved = best_score is None or m["bleu4"] > best_score
        elif not val_clips:
            improved = last_epoch  # nothing to select on: keep the last epoch
        if improved:
            best_epoch, best_score = epoch + 1, row["val_bleu4"]
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", **({"bleu4": f"{row['val_bleu4']:.2f}"}
                                                       if row["val_bleu4"] is not None else {}))
        if writer is not None:
            writer.add_scalar("train/epoch_loss", row["loss"], epoch + 1)
        save(epoch + 1, improved, force=last_epoch)
    bar.close()
    if writer is not None:
        writer.close()
    barrier(info)
    elapsed = time.perf_counter() - t0
    return FitResult(best_epoch=best_epoch, best_score=best_score, history=history, train_time_s=elapsed,
                     sentences_per_s=seen / elapsed if elapsed > 0 else 0.0)


def _write_log(path: Path, history: list[dict]) -> None:
    from msmae.utils import atomic_write_text

    buf = io.StringIO()
    names = ["epoch", "loss", "lr", "val_bleu4", "val_bleu1", "val_rouge_l"]
    w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    w.writeheader()
    for r in history:
        w.writerow({k: ("" if r.get(k) is None else (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]))
                    for k in names})
    atomic_write_text(path, buf.getvalue())


# ------------------------------------------------------------------------------------------- the run
def checkpoint_config(cfg: SltConfig, model, tokenizer, lang: str) -> dict:
    from msmae.config import config_to_dict

    mc = model.encoder.config
    return {"task": "slt", "model": mc.to_dict(), "layout": mc.layout.to_dict(), "encoder_prefix": "encoder.",
            "mbart": str(Path(cfg.translator.mbart).expanduser().resolve()),
            "mbart_vocab_size": int(model.mbart.config.vocab_size), "mbart_d_model": int(model.mbart.config.d_model),
            "language": lang, "fusion": cfg.translator.fusion, "freeze_encoder": cfg.translator.freeze_encoder,
            "normalize": cfg.data.normalize, "frame_stride": cfg.data.frame_stride, "max_frames": cfg.data.max_frames,
            "tokenizer_size": len(tokenizer), "task_config": config_to_dict(cfg)}


def finetune(cfg: SltConfig, out: str | Path, *, resume: bool = False, progress: bool = True) -> dict:
    """Fine-tune on the configured dataset; returns the metrics written to ``out/metrics.json``."""
    from msmae.config import save_yaml
    from msmae.models.translator import load_mbart
    from msmae.train import checkpoint as ck
    from msmae.train.distributed import cleanup_distributed, init_distributed, resolve_precision
    from msmae.train.timescale import downstream_frame_stride

    cfg.data.frame_stride = downstream_frame_stride(cfg.data.frame_stride, cfg.init)  # 2 (the paper's) for init none
    check_config(cfg)
    lang = target_language(cfg)
    out = Path(out)
    val_split = SPLIT_ALIASES[cfg.data.val_split]
    info = init_distributed(cfg.train.device)
    try:
        encoder = build_encoder(cfg.init, cfg.model, seed=cfg.train.seed)
        layout = encoder.config.layout
        wanted = sorted({"train", val_split, "test"}, key=["train", "dev", "test"].index)
        splits, excluded = prepare_splits(cfg, layout, wanted, progress=progress and info.is_main)
        if "train" not in splits:
            raise ValueError(f"{cfg.data.annotations}: no usable training sentences")
        mbart, tokenizer = load_mbart(cfg.translator.mbart, lang=lang, sample_texts=splits["train"].texts)
        torch.manual_seed(cfg.train.seed)
        model = build_translator(encoder, mbart, cfg.translator)
        targets, cut = tokenize_targets(tokenizer, splits["train"].texts, lang=lang,
                                        max_tokens=cfg.data.max_target_tokens)
        if cut:
            log.warning("%d of %d training sentences are longer than %d tokens and were cut (data.max_target_tokens)",
                        cut, len(targets), cfg.data.max_target_tokens)
        train_ds = SentenceDataset(splits["train"].clips, targets, train=True, drop_duplicate=cfg.augment.drop_duplicate,
                                   max_frames=cfg.data.max_frames, seed=cfg.train.seed)
        conf = checkpoint_config(cfg, model, tokenizer, lang)
        summary = model.trainable_summary()
        if info.is_main:
            out.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, out / "config.yaml")
        log.info("SLT %s -> %s: train %d, %s %d, test %d sentences; trainable parameters %s; lr %g, clip %g",
                 cfg.data.dataset, lang, len(splits["train"].ids), val_split,
                 len(splits[val_split].ids) if val_split in splits else 0,
                 len(splits["test"].ids) if "test" in splits else 0,
                 {k: v for k, v in summary.items() if k.endswith("_trainable")}, peak_lr(cfg), clip_norm(cfg))
        if val_split not in splits:
            log.warning("no %s split: the last epoch is kept and nothing is selected", val_split)
        res = fit(model, tokenizer, train_ds, cfg=cfg, lang=lang, val=splits.get(val_split), info=info, out=out,
                  ckpt_config=conf, resume=resume, progress=progress)
        metrics: dict = {}
        if info.is_main:
            best = out / "checkpoints" / "best"
            model.load_state_dict(ck.load_state_dict(best if best.is_dir() else out / "checkpoints" / "last"),
                                  strict=False)
            ck.write_final_model(out, state_dict=model.trainable_state_dict(), config={**conf, "epoch": res.best_epoch})
            amp = resolve_precision(cfg.train.precision, info.device)
            scored = {}
            for s in dict.fromkeys([val_split, "test"]):
                if s not in splits:
                    continue
                hyps = translate(model, tokenizer, splits[s].clips, lang=lang, num_beams=cfg.translator.num_beams,
                                 max_new_tokens=cfg.translator.max_new_tokens,
                                 length_penalty=cfg.translator.length_penalty, batch_size=cfg.train.eval_batch_size,
                                 device=info.device, amp_dtype=amp, progress=progress, desc=f"translate {s}")
                m = {"split": s, **score(hyps, splits[s].texts, lang), "num_examples": len(hyps),
                     "epoch": res.best_epoch}
                write_split_outputs(out / f"eval_{s}", splits[s], hyps, m)
                scored[s] = (m, hyps)
            report = "test" if "test" in scored else (val_split if val_split in scored else None)
            metrics = {"split": report, **(scored[report][0] if report else {}),
                       "selected_on": {"split": val_split if val_split in splits else None, "metric": "bleu4",
                                       "epoch": res.best_epoch, "score": res.best_score},
                       "splits": {s: m for s, (m, _) in scored.items()},
                       "history": res.history, "init": cfg.init, "dataset": cfg.data.dataset, "language": lang,
                       "fusion": cfg.translator.fusion, "freeze_encoder": cfg.translator.freeze_encoder,
                       "lr": peak_lr(cfg), "grad_clip": clip_norm(cfg), "num_beams": cfg.translator.num_beams,
                       "examples": {s: len(v.ids) for s, v in splits.items()}, "excluded": excluded,
                       "hours": {s: ck.hours((c.num_frames, c.fps) for c in v.clips) for s, v in splits.items()},
                       "targets_cut": cut, "parameters": summary, "epochs": cfg.train.epochs,
                       "train_time_s": res.train_time_s, "sentences_per_s": res.sentences_per_s,
                       "world_size": info.world_size}
            if report:
                write_split_outputs(out, splits[report], scored[report][1], metrics)
            else:
                ck.write_metrics(out, metrics)
            ck.write_model_card(out / "model", metrics)
        return metrics
    finally:
        cleanup_distributed()


# ------------------------------------------------------------------------------------------ commands
def add_finetune_arguments(p) -> None:
    """Arguments of ``msmae finetune slt``."""
    from msmae.commands.pretrain import add_config_arguments
    from msmae.data.slt import DATASETS

    p.description = (
        "Fine-tune a pre-trained pose encoder with mBART-50 for translation (paper 4.3): tokens fused flat or "
        "per time step (mean), projected into mBART's encoder (trained fully), decoder adapted with LoRA "
        "(r=alpha=32), 20% frame deletion/duplication, AdamW wd 1e-3, cosine with 10-epoch warm-up, lr and "
        "gradient clipping per appendix table 8 (--config slt/p14t, slt/csl_daily, slt/how2sign), best epoch on "
        "dev BLEU-4, test scored with beam search. Writes RUN/metrics.json with hypotheses.txt and "
        "references.txt beside it.")
    p.add_argument("--out", required=True, metavar="RUN", help="run directory")
    p.add_argument("--init", required=True, metavar="CHECKPOINT",
                   help="encoder to start from: a pre-training run or checkpoint directory, or `none` "
                   "(random initialisation, i.e. from scratch)")
    p.add_argument("--mbart", metavar="DIR", help="local copy of facebook/mbart-large-50-many-to-many-mmt "
                   "(sets translator.mbart; never downloaded)")
    p.add_argument("--dataset", choices=DATASETS, help="annotation format (sets data.dataset)")
    p.add_argument("--annotations", metavar="PATH", help="annotation folder or file (sets data.annotations)")
    p.add_argument("--poses", metavar="DIR", help="folder of pose files (sets data.poses)")
    p.add_argument("--fusion", choices=("flat", "mean"), help="stream fusion (sets translator.fusion)")
    p.add_argument("--freeze-encoder", action="store_true",
                   help="keep the pose encoder frozen (sets translator.freeze_encoder; lr/clip from table 8)")
    add_config_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue RUN from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args) -> SltConfig:
    from msmae.commands._runs import absolute_data_paths
    from msmae.config import load_config

    overrides = []
    for flag, key in (("mbart", "translator.mbart"), ("dataset", "data.dataset"),
                      ("annotations", "data.annotations"), ("poses", "data.poses"), ("fusion", "translator.fusion")):
        if getattr(args, flag, None):
            overrides.append(f"{key}={getattr(args, flag)}")
    if getattr(args, "freeze_encoder", False):
        overrides.append("translator.freeze_encoder=true")
    cfg = load_config(SltConfig, args.config, overrides + list(args.overrides))
    cfg.init = args.init
    absolute_data_paths(cfg)
    return cfg


def _setup_errors():
    from msmae.config import ConfigError
    from msmae.data.slt import SLTDataError
    from msmae.models.translator import TranslatorSetupError
    from msmae.poses.sequence import PoseDataError
    from msmae.train.checkpoint import CheckpointError

    # FloatingPointError: a non-finite loss (lower the learning rate); ImportError: the `slt` extra is missing.
    return (ConfigError, SLTDataError, TranslatorSetupError, CheckpointError, PoseDataError, ValueError, KeyError,
            FloatingPointError, ImportError)


def _one_line(e: Exception) -> str:
    if isinstance(e, ImportError):
        return f"{e}: SLT needs the `slt` extra (pip install 'msmae[slt]')"
    return str(e).strip("'\"")


def run_finetune(args) -> int:
    """``msmae finetune slt``."""
    from msmae.commands._runs import run_training_command

    return run_training_command(
        args, config_from_args=config_from_args, train=finetune, errors=_setup_errors(), one_line=_one_line,
        summary_keys=("split", "bleu1", "bleu4", "rouge_l", "bleu1_punct_fixed", "bleu4_punct_fixed",
                      "rouge_l_punct_fixed"))


def run_evaluate(run_dir: Path, split: str, args) -> int:
    """``msmae evaluate RUN --split S``: translate a split of the run's data with beam search and score it."""
    import json

    from msmae.cli import CommandError
    from msmae.commands._runs import override_data
    from msmae.config import config_from_dict

    name = SPLIT_ALIASES.get(split.lower())
    if name is None:
        raise CommandError(f"unknown split {split!r}; use train, dev (val) or test")
    try:
        model, tokenizer, meta = translator_from_run(run_dir)
        cfg = config_from_dict(SltConfig, meta["task_config"])
        override_data(cfg, args)
        splits, excluded = prepare_splits(cfg, model.encoder.config.layout, [name], progress=not args.json)
    except _setup_errors() as e:
        raise CommandError(_one_line(e)) from None
    if name not in splits:
        raise CommandError(f"{run_dir}: the {cfg.data.dataset} data ({cfg.data.annotations}) has no usable "
                           f"{name} sentences")
    lang = meta["language"]
    t = cfg.translator
    hyps = translate(model, tokenizer, splits[name].clips, lang=lang, num_beams=t.num_beams,
                     max_new_tokens=t.max_new_tokens, length_penalty=t.length_penalty,
                     batch_size=args.batch_size or cfg.train.eval_batch_size, progress=not args.json,
                     desc=f"translate {name}")
    m = {"split": name, **score(hyps, splits[name].texts, lang), "num_examples": len(hyps), "excluded": excluded,
         "run": str(run_dir), "epoch": meta.get("epoch"), "num_beams": t.num_beams}
    out_dir = Path(args.out) if args.out else run_dir / f"eval_{name}"
    write_split_outputs(out_dir, splits[name], hyps, m)
    if args.json:
        print(json.dumps(m, ensure_ascii=False))
    else:
        extra = (f"  (punctuation fixed: BLEU-1 {m['bleu1_punct_fixed']:.2f}  BLEU-4 {m['bleu4_punct_fixed']:.2f}  "
                 f"ROUGE-L {m['rouge_l_punct_fixed']:.2f})") if "bleu4_punct_fixed" in m else ""
        print(f"{run_dir} on {name} ({len(hyps)} sentences, {lang}): BLEU-1 {m['bleu1']:.2f}  BLEU-4 {m['bleu4']:.2f}"
              f"  ROUGE-L {m['rouge_l']:.2f}{extra}")
        print(f"written to {out_dir} (metrics.json, hypotheses.txt, references.txt, translations.tsv)")
    return 0


def run_predict(input_path: Path, run_dir: Path, args) -> int:
    """``msmae predict INPUT --model RUN``: the translation of a video or pose file."""
    import json

    from msmae.cli import CommandError
    from msmae.poses.sequence import PoseDataError
    from msmae.tasks.islr import read_input_sequence

    try:
        model, tokenizer, meta = translator_from_run(run_dir)
        cfg_t = meta["task_config"]["translator"]
    except _setup_errors() as e:
        raise CommandError(_one_line(e)) from None
    try:
        seq = read_input_sequence(input_path)
        clip = prepare_sequence(seq, layout=model.encoder.config.layout, normalize=meta["normalize"],
                                frame_stride=int(meta["frame_stride"]), max_frames=int(meta["max_frames"]))
    except ImportError as e:
        raise CommandError(f"{input_path}: extracting keypoints from a video needs MediaPipe "
                           f"(pip install 'msmae[extract]'): {e}") from None
    except PoseDataError as e:  # its message names the file already
        raise CommandError(str(e).splitlines()[0]) from None
    except (OSError, RuntimeError) as e:
        raise CommandError(f"{input_path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    beams = getattr(args, "beams", None) or int(cfg_t["num_beams"])
    try:
        text = translate(model, tokenizer, [clip], lang=meta["language"], num_beams=beams,
                         max_new_tokens=int(cfg_t["max_new_tokens"]),
                         length_penalty=float(cfg_t["length_penalty"]))[0]
    except ValueError as e:  # e.g. more pose tokens than mBART's positions
        raise CommandError(f"{input_path}: {e}") from None
    if getattr(args, "json", False):
        print(json.dumps({"input": str(input_path), "model": str(run_dir), "frames": seq.num_frames,
                          "language": meta["language"], "translation": text}, ensure_ascii=False))
    else:
        print(text)
    return 0
