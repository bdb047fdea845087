"""Sign language translation (paper 4.3, appendices C and E): fine-tuning the pose encoder with
mBART-50 (LoRA decoder), evaluation with beam search, prediction.

A run directory holds ``config.yaml``, ``checkpoints/{last,best}/`` (``last`` with the training state for
``--resume``), ``model/`` (the best checkpoint: what evaluate/predict and ``load_encoder(RUN)`` use), ``tb/``
(TensorBoard), ``log.csv`` (per epoch), ``metrics.json`` with ``hypotheses.txt`` / ``references.txt`` beside it
(the reported split: test, else dev), and ``eval_<split>/`` with the same three files (plus ``translations.tsv``).

Checkpoints hold only what fine-tuning changes (pose encoder, projection, mBART encoder, LoRA); the frozen mBART
weights come from the mBART-50 directory recorded in the checkpoint (``MSMAE_MBART=DIR`` points elsewhere).

The best epoch is the one with the highest BLEU-4 on ``data.val_split`` (dev), decoded with beam search; then the
test split is scored with the same beam search.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from msmae.data.sentences import (SentenceDataset, SplitData, clean_line, collate,  # noqa: F401 (re-exported)
                                  load_example, load_split, prepare_sequence, tokenize_targets)
from msmae.tasks.common import ModelSection, build_encoder
from msmae.train.timescale import checkpoint_source_fps, init_source_fps

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
    precision: str = "auto"             # auto (native bf16 GPUs: bf16, else fp32) | bf16 | fp16 (scaled) | fp32
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
def prepare_splits(cfg: SltConfig, layout, splits: Sequence[str], *, model_fps: float | None = None, progress=True):
    """Annotations + pose files -> ({split: SplitData}, excluded counts by reason); ``model_fps``: the
    encoder's source rate (see :func:`msmae.poses.timing.model_step`)."""
    from msmae.data.slt import SLTDataError, load_slt_dataset

    d = cfg.data
    data = load_slt_dataset(d.dataset, annotations=d.annotations, poses=d.poses or None, splits=list(splits),
                            strict=d.strict, language=d.dgs_text)
    out: dict[str, SplitData] = {}
    for split in splits:
        examples = data.split(split)
        if not examples:
            continue
        sd, problems = load_split(examples, layout=layout, normalize=d.normalize, frame_stride=d.frame_stride,
                                  max_frames=d.max_frames, model_fps=model_fps, workers=d.load_workers,
                                  progress=progress, desc=f"read {split}")
        data.excluded.extend(problems)
        if problems:
            log.warning("%s: %d of %d pose files unusable (%s)", split, len(problems), len(examples),
                        "; ".join(f"{i}: {r}" for i, r in problems[:3]))
        if sd.ids:
            out[split] = sd
    if d.strict and data.excluded:
        raise SLTDataError(data.summary())
    return out, data.excluded_counts()


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
    from msmae.models import MultiStreamEncoder
    from msmae.models.translator import load_mbart
    from msmae.train.checkpoint import CheckpointError, load_state_dict
    from msmae.train.model_folder import open_model_folder

    folder = open_model_folder(run_dir)
    meta = folder.meta
    if meta.get("task") != "slt":
        raise CheckpointError(f"{run_dir}: not an SLT run (task {meta.get('task')!r})")
    folder.check_shapes(lambda: MultiStreamEncoder(config=folder.model), "encoder.")
    cfg = config_from_dict(SltConfig, meta["task_config"])
    mbart, tokenizer = load_mbart(mbart_dir_of(meta), lang=meta["language"])
    if mbart.config.vocab_size != meta.get("mbart_vocab_size", mbart.config.vocab_size):
        raise CheckpointError(f"{run_dir}: trained with an mBART of vocabulary {meta['mbart_vocab_size']}, "
                              f"{mbart_dir_of(meta)} has {mbart.config.vocab_size}")
    model = build_translator(MultiStreamEncoder(config=folder.model), mbart, cfg.translator)
    missing, unexpected = model.load_state_dict(load_state_dict(folder.path), strict=False)
    trained = set(model.trainable_state_dict())
    wrong = [k for k in missing if k in trained]
    if unexpected or wrong:
        raise CheckpointError(f"{run_dir}: weights do not match the SLT model (missing {wrong[:4]}, "
                              f"unexpected {unexpected[:4]})")
    return model.to(device).eval(), tokenizer, meta


@torch.no_grad()
def translate(model, tokenizer, clips, *, lang: str, num_beams: int, max_new_tokens: int,
              length_penalty: float = 1.0, batch_size: int = 64, device="cpu", amp_dtype=None,
              progress: bool = False, desc: str = "translate", info=None) -> list[str]:
    """Beam-search translations of prepared clips, in their order (batched by length).

    With ``info`` of a multi-process run, the batches are dealt out to the ranks in turn, each rank decodes
    its own and every rank gets all translations back: the same batches as one process decodes, so the
    same translations, in a fraction of the time."""
    from msmae.progress import progress_bar

    from msmae.models.translator import decode
    from msmae.train.distributed import all_gather_objects, autocast

    was = model.training
    model.eval()
    order = sorted(range(len(clips)), key=lambda i: clips[i].num_frames)
    batches = [order[s: s + batch_size] for s in range(0, len(order), batch_size)]
    rank, world = (info.rank, info.world_size) if info is not None and info.distributed else (0, 1)
    mine = batches[rank::world]
    done: dict[int, str] = {}
    forced = tokenizer.lang_code_to_id[lang]
    bar = progress_bar(total=sum(map(len, mine)), desc=desc, unit="sent", disable=not progress or rank != 0)
    for chunk in mine:
        b = collate([{"coords": clips[i].coords.astype(np.float32), "labels": np.zeros(0, np.int64), "index": i}
                     for i in chunk])
        with autocast(torch.device(device), amp_dtype):
            ids = model.generate(b["coords"].to(device), b["frame_valid"].to(device), forced_bos_token_id=forced,
                                 num_beams=num_beams, max_new_tokens=max_new_tokens, length_penalty=length_penalty)
        for i, text in zip(chunk, decode(tokenizer, ids.cpu())):
            done[i] = clean_line(text)
        bar.update(len(chunk))
    bar.close()
    model.train(was)
    if world > 1:
        for part in all_gather_objects(done, info):
            done.update(part)
    return [done[i] for i in range(len(clips))]


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
def fit(model, tokenizer, train_ds: SentenceDataset, *, cfg: SltConfig, lang: str, val: SplitData | None = None,
        info=None, out: Path | None = None, ckpt_config: dict | None = None, resume: bool = False,
        progress: bool = True):
    """Train with cross-entropy in the shared fine-tuning loop (:func:`msmae.train.loop.fit_epochs`: AdamW
    wd 1e-3, per-step warm-up + cosine, gradient clipping, checkpoints, resume, DDP); every ``eval_every``
    epochs translate ``val`` with beam search (under torchrun each rank decodes its share) and keep the
    epoch with the best BLEU-4 as ``out/checkpoints/best``. ``last`` is saved every ``checkpoint_every``
    epochs. Returns a :class:`msmae.train.loop.FitResult`."""
    from msmae.train.distributed import DistInfo, resolve_precision
    from msmae.train.loop import EpochSettings, fit_epochs

    info = info or DistInfo()
    t = cfg.train
    device = info.device
    amp = resolve_precision(t.precision, device)
    loss_fn = torch.nn.CrossEntropyLoss(ignore_index=-100, label_smoothing=t.label_smoothing)
    val_clips, val_refs = (val.clips, val.texts) if val is not None else ([], [])
    if t.val_max_examples > 0:
        val_clips, val_refs = val_clips[: t.val_max_examples], val_refs[: t.val_max_examples]

    def step(net, batch):
        labels = batch["labels"].to(device, non_blocking=True)
        logits = net(batch["coords"].to(device, non_blocking=True), batch["frame_valid"].to(device, non_blocking=True),
                     labels).logits
        return loss_fn(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1))

    def validate(epoch: int) -> dict | None:
        hyps = translate(model, tokenizer, val_clips, lang=lang, num_beams=cfg.translator.num_beams,
                         max_new_tokens=cfg.translator.max_new_tokens, length_penalty=cfg.translator.length_penalty,
                         batch_size=t.eval_batch_size, device=device, amp_dtype=amp, info=info)
        if not info.is_main:
            return None
        m = score(hyps, val_refs, lang)
        log.info("epoch %d: %s BLEU-4 %.2f BLEU-1 %.2f ROUGE-L %.2f | e.g. %r", epoch, cfg.data.val_split,
                 m["bleu4"], m["bleu1"], m["rouge_l"], hyps[0][:80])
        return m

    settings = EpochSettings(epochs=t.epochs, batch_size=t.batch_size, lr=peak_lr(cfg), warmup_epochs=t.warmup_epochs,
                             min_lr_ratio=t.min_lr_ratio, weight_decay=t.weight_decay, betas=t.betas,
                             grad_clip=clip_norm(cfg), precision=t.precision, seed=t.seed, eval_every=t.eval_every,
                             eval_before=t.eval_before, checkpoint_every=t.checkpoint_every, log_every=t.log_every,
                             num_workers=cfg.data.num_workers)
    return fit_epochs(model, train_ds, settings=settings, step=step, validate=validate if val_clips else None,
                      val_keys=("bleu4", "bleu1", "rouge_l"), select="bleu4", info=info, out=out,
                      ckpt_config=ckpt_config, resume=resume, progress=progress, desc="slt", collate_fn=collate,
                      weights=model.trainable_state_dict, strict_resume=False)  # only the trainable weights are saved


# ------------------------------------------------------------------------------------------- the run
def checkpoint_config(cfg: SltConfig, model, tokenizer, lang: str, model_fps: float | None) -> dict:
    from msmae.config import config_to_dict

    mc = model.encoder.config
    return {"task": "slt", "model": mc.to_dict(), "layout": mc.layout.to_dict(), "encoder_prefix": "encoder.",
            "mbart": str(Path(cfg.translator.mbart).expanduser().resolve()),
            "mbart_vocab_size": int(model.mbart.config.vocab_size), "mbart_d_model": int(model.mbart.config.d_model),
            "language": lang, "fusion": cfg.translator.fusion, "freeze_encoder": cfg.translator.freeze_encoder,
            "normalize": cfg.data.normalize, "frame_stride": cfg.data.frame_stride, "max_frames": cfg.data.max_frames,
            "encoder_source_fps": model_fps, "tokenizer_size": len(tokenizer),
            "task_config": config_to_dict(cfg)}


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
        model_fps = init_source_fps(cfg.init)  # the encoder's time scale, recorded with the run
        splits, excluded = prepare_splits(cfg, layout, wanted, model_fps=model_fps, progress=progress and info.is_main)
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
        conf = checkpoint_config(cfg, model, tokenizer, lang, model_fps)
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
        # Every rank loads the best weights and decodes its share of each scored split; rank 0 writes.
        best = out / "checkpoints" / "best"
        model.load_state_dict(ck.load_state_dict(best if best.is_dir() else out / "checkpoints" / "last"),
                              strict=False)
        if info.is_main:
            ck.write_final_model(out, state_dict=model.trainable_state_dict(), config={**conf, "epoch": res.best_epoch})
        amp = resolve_precision(cfg.train.precision, info.device)
        scored = {}
        for s in dict.fromkeys([val_split, "test"]):
            if s not in splits:
                continue
            hyps = translate(model, tokenizer, splits[s].clips, lang=lang, num_beams=cfg.translator.num_beams,
                             max_new_tokens=cfg.translator.max_new_tokens,
                             length_penalty=cfg.translator.length_penalty, batch_size=cfg.train.eval_batch_size,
                             device=info.device, amp_dtype=amp, progress=progress, desc=f"translate {s}", info=info)
            if info.is_main:
                m = {"split": s, **score(hyps, splits[s].texts, lang), "num_examples": len(hyps),
                     "epoch": res.best_epoch}
                write_split_outputs(out / f"eval_{s}", splits[s], hyps, m)
                scored[s] = (m, hyps)
        if info.is_main:
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


# ------------------------------------------------------------------------------------- evaluate, predict
def setup_errors() -> tuple:
    """The expected failures of setting up an SLT run (bad config, data, mBART, checkpoint)."""
    from msmae.config import ConfigError
    from msmae.data.slt import SLTDataError
    from msmae.models.translator import TranslatorSetupError
    from msmae.poses.sequence import PoseDataError
    from msmae.train.checkpoint import CheckpointError

    # FloatingPointError: a non-finite loss (lower the learning rate); ImportError: the `slt` extra is missing.
    return (ConfigError, SLTDataError, TranslatorSetupError, CheckpointError, PoseDataError, ValueError, KeyError,
            FloatingPointError, ImportError)


def evaluate_run(run_dir: str | Path, split: str = "test", *, out: str | Path | None = None,
                 annotations: str | None = None, poses: str | None = None, batch_size: int | None = None,
                 progress: bool = True, model=None) -> tuple[dict, Path]:
    """Translate one split of a run's data with beam search and score it; writes ``metrics.json``, ``hypotheses.txt``,
    ``references.txt`` and ``translations.tsv`` into ``out`` (default ``RUN/eval_<split>``) -> (metrics, that
    folder). ``model``: the run's (translator, tokenizer, meta) when already loaded."""
    from msmae.config import config_from_dict
    from msmae.tasks.common import override_data

    run_dir = Path(run_dir)
    name = SPLIT_ALIASES.get(split.lower())
    if name is None:
        raise ValueError(f"unknown split {split!r}; use train, dev (val) or test")
    model, tokenizer, meta = model or translator_from_run(run_dir)
    cfg = config_from_dict(SltConfig, meta["task_config"])
    override_data(cfg, annotations=annotations, poses=poses)
    splits, excluded = prepare_splits(cfg, model.encoder.config.layout, [name],
                                      model_fps=checkpoint_source_fps(meta), progress=progress)
    if name not in splits:
        raise ValueError(f"{run_dir}: the {cfg.data.dataset} data ({cfg.data.annotations}) has no usable "
                         f"{name} sentences")
    lang = meta["language"]
    t = cfg.translator
    hyps = translate(model, tokenizer, splits[name].clips, lang=lang, num_beams=t.num_beams,
                     max_new_tokens=t.max_new_tokens, length_penalty=t.length_penalty,
                     batch_size=batch_size or cfg.train.eval_batch_size, progress=progress, desc=f"translate {name}")
    m = {"split": name, **score(hyps, splits[name].texts, lang), "num_examples": len(hyps), "excluded": excluded,
         "run": str(run_dir), "epoch": meta.get("epoch"), "num_beams": t.num_beams}
    out_dir = Path(out) if out else run_dir / f"eval_{name}"
    write_split_outputs(out_dir, splits[name], hyps, m)
    return m, out_dir


def prepare_input(model, meta: dict, seq):
    """A PoseSequence -> the prepared clip a run translates (its frame stride, length cap, normalisation)."""
    return prepare_sequence(seq, layout=model.encoder.config.layout, normalize=meta["normalize"],
                            frame_stride=int(meta["frame_stride"]), max_frames=int(meta["max_frames"]),
                            model_fps=checkpoint_source_fps(meta))


def translate_sequence(model, tokenizer, meta: dict, seq, *, num_beams: int | None = None) -> str:
    """The translation of one PoseSequence by a run's translator (beam size: the run's unless given)."""
    cfg_t = meta["task_config"]["translator"]
    clip = prepare_input(model, meta, seq)
    return translate(model, tokenizer, [clip], lang=meta["language"], num_beams=num_beams or int(cfg_t["num_beams"]),
                     max_new_tokens=int(cfg_t["max_new_tokens"]), length_penalty=float(cfg_t["length_penalty"]),
                     device=next(model.parameters()).device)[0]
