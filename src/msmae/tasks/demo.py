"""The main job end to end, in minutes on a laptop CPU (``msmae demo``).

Two chains, each writing everything into one output folder:

- :func:`synthetic_demo` (the default): SYNTHETIC data from :mod:`msmae.poses.synthetic` (no download):
  pre-trains a ``tiny`` MS-MAE on unlabeled synthetic sentences, fine-tunes the ISLR classifier on
  synthetic isolated signs and trains the same classifier from scratch (signer-independent splits),
  then runs the attention analysis and automatic segmentation on a held-out synthetic sentence whose
  sign boundaries are known, and scores them (boundary F1).
- :func:`videos_demo`: the user's own videos, no labels: extract (MediaPipe Holistic) -> pack ->
  pre-train ``tiny`` -> attention and segments for every video.

Every stage is skipped when its finished output is already in the folder (a re-run after a crash
continues where it stopped; ``fresh=True`` starts over). The stages use the library functions of the
commands (``pack``, ``pretrain``, ``finetune islr``, ``attention``), so the demo exercises their code.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SYNTHETIC_NOTE = ("SYNTHETIC data: a procedurally generated signer (msmae.poses.synthetic), not real sign "
                  "language; the figures show that the chain works, not how well MS-MAE signs.")

# A tiny MS-MAE on 30 fps synthetic sentences: 120-frame windows without frame skipping, so one token is
# 4 frames (0.13 s), fine enough for boundaries; the paper's 600 -> 300 windows need longer videos.
SYNTHETIC_PRETRAIN = ["model.size=tiny", "model.streams=body,hands", "data.window=120", "data.frame_stride=1",
                      "data.num_workers=0", "data.eval_windows=32", "train.batch_size=16", "train.lr=1e-3",
                      "train.warmup_steps=30", "train.checkpoint_every=100", "train.log_every=10"]
# Real videos (24-60 fps): the tiny.yaml settings (240-frame windows, every 2nd frame).
VIDEOS_PRETRAIN = ["model.size=tiny", "model.streams=body,hands", "data.window=240", "data.frame_stride=2",
                   "data.num_workers=0", "train.batch_size=16", "train.lr=1e-3", "train.warmup_steps=30",
                   "train.checkpoint_every=100", "train.log_every=10"]
# One ISLR recipe for both the fine-tuned and the from-scratch classifier (the paper's 5e-5 over 100 epochs
# is for datasets of 10K+ clips; a few hundred clips need a higher rate to move in minutes).
ISLR = ["train.batch_size=32", "train.lr=1e-3", "train.warmup_epochs=3", "data.num_workers=0",
        "data.load_workers=1", "train.log_every=5"]


SYNTHETIC_ENTRIES = ("pretrain_corpus", "pretrain", "islr_data", "islr_finetune", "islr_scratch", "attention",
                     "demo_summary.json")
VIDEOS_ENTRIES = ("poses", "corpus", "pretrain", "attention", "demo_summary.json")


DEMO_MANIFEST = ".msmae-demo-outputs.json"   # what the demo created in --out: all that --fresh may delete


def _owned(out: Path) -> set[str]:
    """Names in ``out`` that a demo created (its manifest), restricted to names a demo writes."""
    try:
        data = json.loads((out / DEMO_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    if not isinstance(data, dict) or data.get("kind") != "msmae-demo-outputs":
        return set()
    return {n for n in data.get("created", []) if n in SYNTHETIC_ENTRIES + VIDEOS_ENTRIES}


def _claim(out: Path, entries: tuple[str, ...]) -> None:
    """Create ``out`` and record in its manifest the entries this demo is about to create (those absent now):
    the proof that lets a later ``--fresh`` delete them. What was there before is never claimed."""
    from msmae.utils import atomic_write_json

    out.mkdir(parents=True, exist_ok=True)
    owned = _owned(out)
    new = {n for n in entries if not (out / n).exists() and not (out / n).is_symlink()} - owned
    if new or not (out / DEMO_MANIFEST).is_file():
        atomic_write_json(out / DEMO_MANIFEST, {
            "kind": "msmae-demo-outputs", "created": sorted(owned | new),
            "note": "written by `msmae demo`: `--fresh` deletes only these entries of this folder"})


def _start_fresh(out: Path, entries: tuple[str, ...]) -> None:
    """Delete what an earlier demo wrote into ``out`` (the entries its manifest records it created), and
    nothing else: anything the manifest does not prove the demo wrote is refused, by name."""
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out} is a file, not a demo output folder")
    owned = _owned(out)
    present = sorted(p.name for p in out.iterdir() if p.name != DEMO_MANIFEST)
    unproven = [n for n in present if n not in owned]
    if unproven:
        raise ValueError(
            f"--fresh deletes only what msmae demo recorded creating in {out} ({DEMO_MANIFEST}), and the folder "
            f"holds files the demo did not write or cannot prove it wrote: {', '.join(unproven[:5])}"
            f"{', ...' if len(unproven) > 5 else ''}; choose another --out or delete them yourself")
    for name in present:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()
    (out / DEMO_MANIFEST).unlink(missing_ok=True)


def _done(run: Path) -> dict | None:
    """The metrics of a finished run in ``run``, else None."""
    m = run / "metrics.json"
    if m.is_file() and (run / "model").is_dir():
        return json.loads(m.read_text())
    return None


def _pretrain(corpus: Path, run: Path, overrides: list[str], progress: bool) -> tuple[dict, bool]:
    from msmae.config import load_config
    from msmae.tasks.pretrain import PretrainConfig, pretrain
    from msmae.train.checkpoint import latest_checkpoint

    done = _done(run)
    if done is not None:
        return done, True
    cfg = load_config(PretrainConfig, None, overrides)
    resume = run.is_dir() and latest_checkpoint(run) is not None
    return pretrain(cfg, corpus, run, resume=resume, progress=progress), False


def loss_summary(run: Path) -> dict:
    """First and last logged training losses of a pre-training run (``log.csv``)."""
    rows = list(csv.DictReader(io.StringIO((run / "log.csv").read_text())))
    losses = [float(r["loss"]) for r in rows]
    if not losses:
        return {}
    k = max(1, len(losses) // 10)
    return {"first_logged_step": int(rows[0]["step"]), "first_loss": losses[0],
            "first_tenth_mean": float(np.mean(losses[:k])), "last_tenth_mean": float(np.mean(losses[-k:])),
            "min_loss": float(min(losses)), "points": len(losses)}


# ----------------------------------------------------------------------------------- synthetic
def write_islr_set(folder: Path, *, num_classes: int, per_class: int, signers: int, seed: int) -> dict:
    """SYNTHETIC isolated signs as ``.npz`` files + ``manifest.csv`` (path, label, split, signer). ``seed`` fixes
    the sign classes: the demo gives it a seed other than the pre-training sentences', so the classifier
    learns signs that pre-training never saw (a transfer, as from ASL videos to another dataset).

    Samples go round-robin to ``signers`` synthetic signers; the last signer is the test split, the one
    before it validation, the rest training (signer-independent, as ASL Citizen)."""
    from msmae.poses import write_npz
    from msmae.poses.synthetic import SyntheticSigner
    from msmae.utils import atomic_write_text

    if signers < 3:
        raise ValueError(f"need at least 3 synthetic signers (train, val, test), got {signers}")
    manifest = folder / "manifest.csv"
    gen = SyntheticSigner(num_classes=num_classes, seed=seed)
    if not manifest.is_file():
        seqs, labels = gen.dataset(per_class, seed=seed + 1, num_signers=signers)
        rows = []
        clips = folder / "clips"
        clips.mkdir(parents=True, exist_ok=True)
        for i, (seq, label) in enumerate(zip(seqs, labels)):
            sid = int(seq.meta["signer_id"])
            split = "test" if sid == signers - 1 else "val" if sid == signers - 2 else "train"
            name = f"clips/{i:05d}_{gen.classes[label].name}.npz"
            write_npz(seq, folder / name)
            rows.append((name, gen.classes[label].name, split, f"synthetic-signer-{sid}"))
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["path", "label", "split", "signer"])
        w.writerows(rows)
        atomic_write_text(manifest, buf.getvalue())
    counts: dict[str, int] = {}
    with open(manifest, newline="") as f:
        for r in csv.DictReader(f):
            counts[r["split"]] = counts.get(r["split"], 0) + 1
    return {"manifest": str(manifest), "classes": num_classes, "signers": signers, "clips": counts}


def _islr_run(manifest: Path, run: Path, init: str, epochs: int, progress: bool) -> tuple[dict, bool]:
    from msmae.config import load_config
    from msmae.tasks.islr import IslrConfig, finetune

    done = _done(run)
    if done is not None:
        return done, True
    over = ISLR + [f"train.epochs={epochs}", "data.dataset=manifest", f"data.annotations={manifest}",
                   "model.size=tiny", "model.streams=body,hands"]
    cfg = load_config(IslrConfig, None, over)
    cfg.init = init
    resume = (run / "checkpoints" / "last").is_dir()
    return finetune(cfg, run, resume=resume, progress=progress), False


def synthetic_demo(out: str | Path, *, pretrain_steps: int = 600, islr_epochs: int = 40, sentences: int = 200,
                   num_classes: int = 20, per_class: int = 16, signers: int = 8, seed: int = 0,
                   fresh: bool = False, progress: bool = True) -> dict:
    """The default demo on SYNTHETIC data; returns (and writes to ``out/demo_summary.json``) its figures."""
    import torch

    from msmae.analysis.report import analyze, run_defaults, write_report
    from msmae.analysis.segmentation import boundary_scores, sign_boundaries
    from msmae.corpus import pack_sequences
    from msmae.poses.normalize import normalize
    from msmae.poses.synthetic import SyntheticSigner
    from msmae.train.checkpoint import load_encoder, read_checkpoint_config
    from msmae.train.timescale import checkpoint_source_fps
    from msmae.utils import atomic_write_json

    out = Path(out)
    if fresh:
        _start_fresh(out, SYNTHETIC_ENTRIES)
    _claim(out, SYNTHETIC_ENTRIES)
    timing: dict[str, float] = {}
    log.info(SYNTHETIC_NOTE)
    torch.manual_seed(seed)

    # 1. Unlabeled SYNTHETIC sentences -> corpus -> MS-MAE pre-training.
    t0 = time.perf_counter()
    gen = SyntheticSigner(num_classes=num_classes, seed=seed)
    corpus = out / "pretrain_corpus"
    if not (corpus / "index.csv").is_file():
        rng = np.random.default_rng([seed, 10])
        seqs = []
        for i in range(sentences):
            seq, _ = gen.sentence(int(rng.integers(3, 8)), rng)
            seq.source = f"synthetic:sentence-{i:04d}"
            seqs.append(seq)
        log.info("packing %d SYNTHETIC unlabeled sentences into %s", len(seqs), corpus)
        pack_sequences(seqs, corpus)
    log.info("pre-training a tiny MS-MAE for %d steps", pretrain_steps)
    pre_run = out / "pretrain"
    pre, reused_pre = _pretrain(corpus, pre_run, SYNTHETIC_PRETRAIN + [f"train.steps={pretrain_steps}",
                                                                       f"train.seed={seed}"], progress)
    timing["pretrain_s"] = round(time.perf_counter() - t0, 1)

    # 2. ISLR on SYNTHETIC isolated signs: fine-tuned from the pre-trained encoder vs from scratch.
    t0 = time.perf_counter()
    islr_data = write_islr_set(out / "islr_data", num_classes=num_classes, per_class=per_class, signers=signers,
                               seed=seed + 100)
    manifest = Path(islr_data["manifest"])
    log.info("ISLR: fine-tuning the pre-trained encoder for %d epochs", islr_epochs)
    ft, reused_ft = _islr_run(manifest, out / "islr_finetune", str(pre_run), islr_epochs, progress)
    log.info("ISLR: the same classifier from scratch for %d epochs", islr_epochs)
    sc, reused_sc = _islr_run(manifest, out / "islr_scratch", "none", islr_epochs, progress)
    timing["islr_s"] = round(time.perf_counter() - t0, 1)

    # 3. Attention and automatic segmentation of a held-out SYNTHETIC sentence with known boundaries.
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 20])  # never used for the pre-training sentences
    seq, signs = gen.sentence(5, rng)
    seq.source = "synthetic:held-out-sentence"
    encoder = load_encoder(pre_run)
    pre_meta = read_checkpoint_config(pre_run)
    stride, chunk = run_defaults(pre_meta)
    x = normalize(seq)
    result = analyze(encoder, x.select(encoder.layout), frame_stride=stride, chunk_frames=chunk,
                     model_fps=checkpoint_source_fps(pre_meta))
    att_dir = out / "attention"
    paths = write_report(att_dir, result, x, source="synthetic held-out sentence (SYNTHETIC)", model=str(pre_run))
    paths["view"] = _view_page(att_dir, seq, result, pre_run, islr_run=out / "islr_finetune", source="synthetic "
                               "held-out sentence (SYNTHETIC)", notes=[SYNTHETIC_NOTE])
    truth = sign_boundaries(signs)
    found = [float(s["start_frame"]) for s in result.segments[1:]]
    tol_s = 0.2
    seg_scores = boundary_scores(found, truth, tol_s * seq.fps)
    atomic_write_json(att_dir / "true_signs.json", {"fps": seq.fps, "frames": seq.num_frames, "signs": signs,
                                                    "true_boundaries_frames": truth})
    timing["attention_s"] = round(time.perf_counter() - t0, 1)

    def islr_row(m: dict) -> dict:
        return {k: m.get(k) for k in ("split", "top1", "top5", "per_class_top1", "train_time_s")}

    summary = {
        "name": "msmae_demo", "data": "synthetic", "note": SYNTHETIC_NOTE, "out": str(out),
        "pretrain": {"run": str(pre_run), "steps": pre.get("steps"), "eval_loss": pre.get("eval_loss"),
                     "mean_baseline_loss": pre.get("mean_baseline_loss"), "samples_per_s": pre.get("samples_per_s"),
                     "videos": pre.get("videos"), "mask": pre.get("mask"), "loss_curve": loss_summary(pre_run),
                     "loss_plot": str(pre_run / "loss.png"), "reused": reused_pre},
        "islr": {"classes": num_classes, "clips": islr_data["clips"], "signers": signers, "epochs": islr_epochs,
                 "finetune": {**islr_row(ft), "run": str(out / "islr_finetune"), "reused": reused_ft},
                 "scratch": {**islr_row(sc), "run": str(out / "islr_scratch"), "reused": reused_sc}},
        "segmentation": {"signs": len(signs), "frames": seq.num_frames, "fps": seq.fps,
                         "true_boundaries": len(truth), "found_boundaries": len(found), "tolerance_s": tol_s,
                         "precision": seg_scores["precision"], "recall": seg_scores["recall"],
                         "f1": seg_scores["f1"], "files": {k: str(p) for k, p in paths.items()}},
        "timing_s": timing,
    }
    atomic_write_json(out / "demo_summary.json", summary)
    return summary


def format_synthetic(s: dict) -> str:
    """The table ``msmae demo`` prints."""
    p, i, g = s["pretrain"], s["islr"], s["segmentation"]
    c = p["loss_curve"]
    lines = [
        "",
        "msmae demo: " + s["note"],
        "",
        f"pre-training (tiny MS-MAE, {p['steps']} steps, {p['videos']['train']} unlabeled sentences, "
        f"{'DiffMask' if p['mask']['mode'] == 'diff' else 'SameMask'} r={p['mask']['ratio']:g}):",
        f"  training loss {c.get('first_tenth_mean', float('nan')):.4f} (first tenth of the run) -> "
        f"{c.get('last_tenth_mean', float('nan')):.4f} (last tenth)",
        f"  held-out reconstruction loss {p['eval_loss']:.4f} vs {p['mean_baseline_loss']:.4f} for predicting "
        f"the mean",
        "",
        f"isolated sign recognition ({i['classes']} synthetic signs, {i['clips'].get('train', 0)} train / "
        f"{i['clips'].get('val', 0)} val / {i['clips'].get('test', 0)} test clips, test = an unseen signer, "
        f"{i['epochs']} epochs):",
        f"  {'model':<34s}{'top-1':>8s}{'top-5':>8s}{'per-class top-1':>17s}",
    ]
    for label, key in (("MS-MAE pre-trained, fine-tuned", "finetune"), ("same classifier from scratch", "scratch")):
        m = i[key]
        lines.append(f"  {label:<34s}{m['top1']:>8.3f}{m['top5']:>8.3f}{m['per_class_top1']:>17.3f}")
    lines += [
        "",
        f"attention segmentation of a held-out synthetic sentence ({g['signs']} signs, {g['frames']} frames):",
        f"  {g['found_boundaries']} boundaries found, {g['true_boundaries']} true; within {g['tolerance_s']} s: "
        f"precision {g['precision']:.2f}, recall {g['recall']:.2f}, F1 {g['f1']:.2f}",
        "",
        f"time: pre-training {s['timing_s']['pretrain_s']:.0f} s, ISLR {s['timing_s']['islr_s']:.0f} s, "
        f"attention {s['timing_s']['attention_s']:.0f} s",
        f"files: {Path(s['pretrain']['loss_plot'])} (loss curve), {Path(g['files']['heatmap'])} (attention + "
        f"boundaries), {Path(g['files']['eaf'])} (ELAN), {Path(s['out']) / 'demo_summary.json'} (all figures)",
        f"page: {Path(g['files']['view'])} (open it in a browser: skeleton, segments, heatmap, ISLR top-5)",
        f"everything is in {s['out']}/",
    ]
    return "\n".join(lines)


def _view_page(out: Path, seq, analysis, pre_run: Path, *, islr_run: Path | None = None, video=None,
               source: str, notes=()) -> Path:
    """``out/view.html`` (msmae view's page) for a clip the demo analysed; ``seq`` as read, not normalised."""
    from msmae.analysis.view import write_view

    models, islr = [{"task": "pretrain", "run": str(pre_run)}], []
    if islr_run is not None:
        from msmae.tasks.view import islr_predictions

        models.append({"task": "islr", "run": str(islr_run)})
        islr.append(islr_predictions(islr_run, seq, analysis.segments))
    return write_view(out, seq, video=video, analysis=analysis, islr=islr, source=source, models=models,
                      notes=notes)


# ------------------------------------------------------------------------------------ videos
def videos_demo(videos: str | Path, out: str | Path, *, pretrain_steps: int = 300, workers: int | None = None,
                model_complexity: int = 1, max_attention: int | None = None, seed: int = 0, fresh: bool = False,
                progress: bool = True) -> dict:
    """The user's own videos, no labels: extract -> pack -> pre-train -> attention and segments per video."""
    from msmae.progress import progress_bar

    from msmae.analysis.report import analyze, run_defaults, write_report
    from msmae.corpus import pack_corpus
    from msmae.extract import run_extraction
    from msmae.extract.runner import collect_clips
    from msmae.poses.normalize import normalize
    from msmae.poses.readers import read_sequence
    from msmae.train.checkpoint import load_encoder, read_checkpoint_config
    from msmae.train.timescale import checkpoint_source_fps
    from msmae.utils import atomic_write_json

    out = Path(out)
    if fresh:
        _start_fresh(out, VIDEOS_ENTRIES)
    _claim(out, VIDEOS_ENTRIES)
    timing: dict[str, float] = {}

    t0 = time.perf_counter()
    poses = out / "poses"
    ex = run_extraction([videos], poses, workers=workers, model_complexity=model_complexity, progress=progress)
    timing["extract_s"] = round(time.perf_counter() - t0, 1)
    pose_files = sorted(poses.glob("**/*.pose"))
    if not pose_files:
        raise ValueError(f"{videos}: no video could be read (see {poses}/extract_summary.json)")

    t0 = time.perf_counter()
    corpus = out / "corpus"
    packed = pack_corpus([poses], corpus, workers=1, progress=progress)
    timing["pack_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    pre_run = out / "pretrain"
    pre, reused = _pretrain(corpus, pre_run, VIDEOS_PRETRAIN + [f"train.steps={pretrain_steps}",
                                                                f"train.seed={seed}"], progress)
    timing["pretrain_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    encoder = load_encoder(pre_run)
    pre_meta = read_checkpoint_config(pre_run)
    stride, chunk = run_defaults(pre_meta)
    per_video = []
    todo = pose_files[:max_attention] if max_attention else pose_files
    sources = {c.name: c.source for c in collect_clips([videos], None)[0] if c.source.is_file()}
    for f in progress_bar(todo, desc="attention", unit="video", disable=not progress):
        rel = f.relative_to(poses).with_suffix("")
        d = out / "attention" / rel
        if (d / "segments.json").is_file() and (d / "view.html").is_file():
            info = json.loads((d / "segments.json").read_text())
            per_video.append({"pose": str(f), "out": str(d), "frames": info["frames"],
                              "segments": len(info["segments"]), "page": str(d / "view.html")})
            continue
        try:
            raw = read_sequence(f)
            seq = normalize(raw)
            res = analyze(encoder, seq.select(encoder.layout), frame_stride=stride, chunk_frames=chunk,
                          model_fps=checkpoint_source_fps(pre_meta))
        except ValueError as e:  # e.g. a clip shorter than one token
            log.warning("%s: no attention analysis: %s", f, e)
            per_video.append({"pose": str(f), "out": None, "error": str(e)})
            continue
        video = sources.get(rel.as_posix())
        write_report(d, res, seq, source=str(video or f), model=str(pre_run), media=[video or f])
        page = _view_page(d, raw, res, pre_run, video=video, source=str(video or f))
        per_video.append({"pose": str(f), "out": str(d), "frames": seq.num_frames, "segments": len(res.segments),
                          "page": str(page)})
    timing["attention_s"] = round(time.perf_counter() - t0, 1)

    seg_counts = [v["segments"] for v in per_video if v.get("out")]
    summary = {
        "name": "msmae_demo_videos", "data": str(videos), "out": str(out),
        "extract": {"done": len(ex.get("done", [])), "skipped": len(ex.get("skipped", [])),
                    "failed": ex.get("failed", []), "poses": str(poses)},
        "corpus": {"path": str(corpus), "videos": packed.total_videos, "frames": packed.total_frames,
                   "failed": packed.failed},
        "pretrain": {"run": str(pre_run), "steps": pre.get("steps"), "eval_loss": pre.get("eval_loss"),
                     "mean_baseline_loss": pre.get("mean_baseline_loss"), "videos": pre.get("videos"),
                     "loss_curve": loss_summary(pre_run), "loss_plot": str(pre_run / "loss.png"), "reused": reused},
        "attention": {"videos": len(seg_counts), "segments_mean": float(np.mean(seg_counts)) if seg_counts else None,
                      "folder": str(out / "attention"), "per_video": per_video},
        "timing_s": timing,
    }
    atomic_write_json(out / "demo_summary.json", summary)
    return summary


def format_videos(s: dict) -> str:
    e, c, p, a = s["extract"], s["corpus"], s["pretrain"], s["attention"]
    curve = p["loss_curve"]
    lines = [
        "",
        f"msmae demo on your videos: {s['data']}",
        f"  extraction: {e['done']} extracted, {e['skipped']} already done, {len(e['failed'])} failed "
        f"({s['timing_s']['extract_s']:.0f} s) -> {e['poses']}",
    ]
    lines += [f"    failed: {f['path']}: {f['reason']}" for f in e["failed"]]
    lines += [
        f"  corpus: {c['videos']} videos, {c['frames']} frames",
        f"  pre-training (tiny MS-MAE, {p['steps']} steps): training loss "
        f"{curve.get('first_tenth_mean', float('nan')):.4f} -> {curve.get('last_tenth_mean', float('nan')):.4f}; "
        f"held-out {p['eval_loss']:.4f} vs {p['mean_baseline_loss']:.4f} for predicting the mean",
        f"  attention: {a['videos']} videos, {a['segments_mean'] or 0:.1f} segments per video on average "
        f"(heatmap, segments.json, .eaf per video in {a['folder']})",
    ]
    lines += [f"  page: {v['page']}" for v in a["per_video"] if v.get("page")]
    lines += [
        f"everything is in {s['out']}/",
    ]
    return "\n".join(lines)
