"""Sign boundaries from the encoder's attention against two baselines, on synthetic and real sentences.

Prints one JSON object per line, each with a ``name``:

- ``synthetic_<method>``: SYNTHETIC sentences of 3-7 concatenated synthetic signs with known sign
  frames (msmae.poses.synthetic), a tiny model pre-trained here on other synthetic sentences. The true
  boundaries are every sign's start and end, a start and the previous sign's end merged into the middle
  of the transition between them (n signs -> n + 1 boundaries; rest before the first and after the last
  sign makes the clip n + 2 segments). Boundary precision / recall / F1 (one-to-one, within
  ``tolerance_s``, micro-averaged over all sentences; ``f1_wide`` at twice the tolerance), the mean
  number of boundaries found and the mean |found - true| count. Methods:
  ``attention`` (the default ``msmae attention`` settings), ``attention_oracle_count`` (the n + 1
  strongest attention boundaries), ``attention_layer<k>`` (other layers, default settings),
  ``attention_untrained`` (the same model before pre-training: what the architecture alone gives),
  ``even_true_count`` (n + 1 evenly spaced boundaries: knows the true count),
  ``even_pred_count`` (as many evenly spaced boundaries as ``attention`` found), ``velocity`` (minima of
  the smoothed wrist speed, its own fixed settings), ``velocity_oracle_count`` (its n + 1 deepest minima).
- ``dgs_<method>``: the 16 real DGS Corpus test sentences with a tiny model pre-trained here on the other
  real shared poses (GISLR parquet, ASL fingerspelling, the 16 DGS train sentences, the reference
  holistic .npy files; the DGS test sentences are left out). Their gloss times cannot be compared with
  the pose frames (the poses were cut per gloss, trimmed and re-joined: see that folder's README), so
  only counts are compared: segments found vs gloss count (mean, mean |difference|, Pearson and
  Spearman correlation over the sentences), for ``attention``, ``attention_layer<k>``,
  ``attention_untrained`` and ``velocity`` (as above). ``pearson_frames_glosses`` is the correlation of
  the clip length alone with the gloss count: any method whose count grows with length gets about that.
- ``timing``: seconds spent in each part.

Usage: ``python benchmarks/segmentation.py [--steps 400] [--sentences 40] [--work DIR]``; with ``--work``
the corpora and runs are kept there and reused by the next call. Skips the DGS part (one line with
``skipped``) when the shared data are absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSMAE_SHARED_DATA", REPO.parent / "shared" / "data"))
PRETRAIN = ["model.size=tiny", "model.streams=body,hands", "data.window=120", "data.frame_stride=1",
            "data.num_workers=0", "data.eval_windows=32", "train.batch_size=16", "train.lr=1e-3",
            "train.warmup_steps=30", "train.checkpoint_every=0", "train.log_every=50"]


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def pretrain_run(corpus: Path, run: Path, steps: int, seed: int) -> dict:
    from msmae.config import load_config
    from msmae.tasks.pretrain import PretrainConfig, pretrain

    if (run / "model" / "model.safetensors").is_file():
        return json.loads((run / "metrics.json").read_text())
    cfg = load_config(PretrainConfig, None, PRETRAIN + [f"train.steps={steps}", f"train.seed={seed}"])
    return pretrain(cfg, corpus, run, progress=False)


def score_lines(prefix: str, preds: dict[str, list[list[float]]], truths: list[list[float]], tol: float,
                extra: dict) -> None:
    from msmae.analysis.segmentation import boundary_scores, micro_scores

    for name, per_seq in preds.items():
        s = micro_scores([boundary_scores(p, t, tol) for p, t in zip(per_seq, truths)])
        wide = micro_scores([boundary_scores(p, t, 2 * tol) for p, t in zip(per_seq, truths)])
        found = np.array([len(p) for p in per_seq])
        true = np.array([len(t) for t in truths])
        emit({"name": f"{prefix}_{name}", "precision": round(s["precision"], 4), "recall": round(s["recall"], 4),
              "f1": round(s["f1"], 4), "f1_wide": round(wide["f1"], 4),
              "boundaries_found": round(float(found.mean()), 2),
              "boundaries_true": round(float(true.mean()), 2),
              "count_error": round(float(np.abs(found - true).mean()), 2), **extra})


# ------------------------------------------------------------------------------ synthetic sentences
def synthetic(work: Path, steps: int, num_sentences: int, seed: int, timing: dict) -> None:
    from msmae.analysis.report import analyze, run_defaults
    from msmae.analysis.segmentation import even_boundaries, sign_boundaries, velocity_boundaries, wrist_speed
    from msmae.corpus import pack_sequences
    from msmae.models import MultiStreamEncoder
    from msmae.poses.normalize import normalize
    from msmae.poses.synthetic import SyntheticSigner
    from msmae.train.checkpoint import load_encoder, read_checkpoint_config

    signer = SyntheticSigner(num_classes=40, seed=seed, fps=30.0)
    t0 = time.perf_counter()
    corpus, run = work / "synthetic_corpus", work / "synthetic_run"
    if not (run / "model").is_dir() and not (corpus / "index.csv").is_file():
        rng = np.random.default_rng([seed, 1])
        train = []
        for i in range(150):
            seq, _ = signer.sentence(int(rng.integers(3, 8)), rng)
            seq.source = f"synthetic:train-sentence-{i}"
            train.append(seq)
        pack_sequences(train, corpus)
    metrics = pretrain_run(corpus, run, steps, seed)
    timing["synthetic_pretrain_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    encoder = load_encoder(run)
    torch.manual_seed(seed)
    untrained = MultiStreamEncoder(config=encoder.config).eval()
    stride, chunk = run_defaults(read_checkpoint_config(run))
    # Sentences never seen in pre-training, nor in choosing the segmenter settings (chosen on [seed, 2]).
    rng = np.random.default_rng([seed, 3])
    names = ["attention", "attention_oracle_count", "even_true_count", "even_pred_count", "velocity",
             "velocity_oracle_count", "attention_untrained"] + \
            [f"attention_layer{k}" for k in range(len(encoder.blocks) - 1)]
    preds: dict[str, list] = {n: [] for n in names}
    truths = []
    fps = signer.fps
    for _ in range(num_sentences):
        seq, signs = signer.sentence(int(rng.integers(3, 8)), rng)
        truth = sign_boundaries(signs)
        truths.append(truth)
        x = normalize(seq).select(encoder.layout)
        T = x.num_frames

        def frames(res) -> list[float]:
            return [float(s["start_frame"]) for s in res.segments[1:]]

        kw = dict(frame_stride=stride, chunk_frames=chunk)
        att = analyze(encoder, x, **kw)
        preds["attention"].append(frames(att))
        preds["attention_oracle_count"].append(frames(analyze(encoder, x, count=len(truth) + 1, **kw)))
        preds["attention_untrained"].append(frames(analyze(untrained, x, **kw)))
        for k in range(len(encoder.blocks) - 1):
            preds[f"attention_layer{k}"].append(frames(analyze(encoder, x, layer=k, **kw)))
        preds["even_true_count"].append(even_boundaries(T, len(truth) + 1))
        preds["even_pred_count"].append(even_boundaries(T, len(att.boundaries) + 1))
        speed = wrist_speed(x.coords, x.present, x.layout)
        preds["velocity"].append(velocity_boundaries(speed, fps=fps))
        preds["velocity_oracle_count"].append(velocity_boundaries(speed, fps=fps, count=len(truth)))
    timing["synthetic_eval_s"] = round(time.perf_counter() - t0, 1)
    tol = 0.2
    score_lines("synthetic", preds, truths, tol * fps, {
        "sentences": num_sentences, "tolerance_s": tol, "fps": fps, "token_frames": encoder.config.cubelet * stride,
        "pretrain_steps": metrics.get("steps"), "eval_loss": round(metrics.get("eval_loss", float("nan")), 4),
        "mean_baseline_loss": round(metrics.get("mean_baseline_loss", float("nan")), 4)})


# ------------------------------------------------------------------------------ real DGS sentences
def real_files() -> list[Path]:
    files = sorted((SHARED / "gislr-asl-signs" / "train_landmark_files").rglob("*.parquet"))
    files += sorted((SHARED / "fingerspelling-ase" / "ase").glob("*.pose"))
    files += sorted((SHARED / "dgs-corpus-sentences").glob("train_*_original.pose"))
    files += sorted((SHARED / "videos" / "reference-holistic").glob("*.npy"))
    return files


def dgs(work: Path, steps: int, seed: int, timing: dict) -> None:
    from msmae.analysis.report import analyze, run_defaults
    from msmae.analysis.segmentation import velocity_boundaries, wrist_speed
    from msmae.corpus import pack_corpus
    from msmae.models import MultiStreamEncoder
    from msmae.poses.normalize import normalize
    from msmae.poses.readers import read_sequence
    from msmae.train.checkpoint import load_encoder, read_checkpoint_config

    folder = SHARED / "dgs-corpus-sentences"
    if not folder.is_dir():
        emit({"name": "dgs", "skipped": f"real data not available: {folder}"})
        return
    t0 = time.perf_counter()
    corpus, run = work / "real_corpus", work / "real_run"
    if not (run / "model").is_dir() and not (corpus / "index.csv").is_file():
        pack_corpus(real_files(), corpus, progress=False)
    metrics = pretrain_run(corpus, run, steps, seed)
    timing["real_pretrain_s"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    encoder = load_encoder(run)
    torch.manual_seed(seed)
    untrained = MultiStreamEncoder(config=encoder.config).eval()
    stride, chunk = run_defaults(read_checkpoint_config(run))
    kw = dict(frame_stride=stride, chunk_frames=chunk)
    glosses, frames = [], []
    found: dict[str, list[int]] = {"attention": [], "velocity": [], "attention_untrained": []}
    found.update({f"attention_layer{k}": [] for k in range(len(encoder.blocks) - 1)})
    for i in range(1, 17):
        meta = json.loads((folder / f"test_{i}_metadata.json").read_text())
        seq = normalize(read_sequence(folder / f"test_{i}_original.pose")).select(encoder.layout)
        glosses.append(len(meta["sentence"]["glosses"]["gloss"]))
        frames.append(seq.num_frames)
        found["attention"].append(len(analyze(encoder, seq, **kw).segments))
        found["attention_untrained"].append(len(analyze(untrained, seq, **kw).segments))
        for k in range(len(encoder.blocks) - 1):
            found[f"attention_layer{k}"].append(len(analyze(encoder, seq, layer=k, **kw).segments))
        found["velocity"].append(len(velocity_boundaries(wrist_speed(seq.coords, seq.present, seq.layout),
                                                         fps=seq.fps)) + 1)
    timing["real_eval_s"] = round(time.perf_counter() - t0, 1)
    g = np.asarray(glosses, dtype=float)
    for name, f in found.items():
        f = np.asarray(f, dtype=float)
        emit({"name": f"dgs_{name}", "sentences": len(g), "glosses_mean": round(float(g.mean()), 2),
              "segments_mean": round(float(f.mean()), 2), "count_error": round(float(np.abs(f - g).mean()), 2),
              "pearson": _corr(f, g), "spearman": _corr(_ranks(f), _ranks(g)),
              "frames_mean": round(float(np.mean(frames)), 1),
              "pearson_frames_glosses": _corr(np.asarray(frames, dtype=float), g),
              "token_frames": encoder.config.cubelet * stride,
              "pretrain_steps": metrics.get("steps"), "pretrain_videos": metrics.get("videos"),
              "eval_loss": round(metrics.get("eval_loss", float("nan")), 4),
              "mean_baseline_loss": round(metrics.get("mean_baseline_loss", float("nan")), 4)})


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=float)
    for v in np.unique(x):
        r[x == v] = r[x == v].mean()
    return r


def _corr(a: np.ndarray, b: np.ndarray) -> float | None:
    if a.std() == 0 or b.std() == 0:
        return None
    return round(float(np.corrcoef(a, b)[0, 1]), 3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=400, help="pre-training steps of each tiny model (400)")
    ap.add_argument("--sentences", type=int, default=40, help="synthetic test sentences (40)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="keep corpora and runs here (reused when present)")
    ap.add_argument("--only", choices=("synthetic", "dgs"), default=None, help="run one part")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)
    timing: dict = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="msmae-seg-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.only in (None, "synthetic"):
            synthetic(work, args.steps, args.sentences, args.seed, timing)
        if args.only in (None, "dgs"):
            dgs(work, args.steps, args.seed, timing)
    emit({"name": "timing", **timing, "total_s": round(time.perf_counter() - t0, 1)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
