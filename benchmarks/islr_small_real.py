"""A small real ISLR benchmark: the WLASL-50 subset (real WLASL signers, 25 glosses, 212 sequences of
MediaPipe body + hands), repeated stratified k-fold cross-validation with fixed seeds.

Variants (one JSON line each, ``name`` = ``islr_small_real``):

- ``linear_floor``: multinomial logistic regression (L2, C = 1 as scikit-learn's default, L-BFGS) on the
  flattened normalised coordinates of 32 evenly spread frames. A deep model below it is not working.
- ``scratch``: the transformer ([CLS] + Linear) trained from a random initialisation.
- ``finetune_diff`` / ``finetune_same``: the same after MS-MAE pre-training with DiffMask / SameMask on real
  unlabeled poses from the shared data (GISLR parquet, fingerspelling and DGS ``.pose``, the reference
  MediaPipe ``.npy`` arrays, and How2Sign clip poses with ``--h2s-poses``). Never on the benchmark's own clips.
- ``probe``: the DiffMask encoder frozen, average pooling, one Linear layer.

Every deep variant uses one recipe fixed in advance (the options below); nothing is tuned on the test
folds: each fold trains for a fixed number of epochs and its last weights are scored. Folds are the same
for every variant. ``*_std`` is the standard deviation over all fold scores (repeats x folds, ddof 1).

    python benchmarks/islr_small_real.py --data ../shared/data/wlasl50-subset/wlasl50_part0.npz
    msmae extract ../shared/data/how2sign-clips --out h2s_poses &&
        python benchmarks/islr_small_real.py --h2s-poses h2s_poses        # the README table
    python benchmarks/islr_small_real.py --data my.npz --sources '' --pretrain-poses my_unlabeled_poses/
    python benchmarks/islr_small_real.py --size paper --device cuda --epochs 100 --pretrain-steps 20000
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

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSMAE_SHARED_DATA", REPO.parent / "shared" / "data"))
# MediaPipe Pose landmark index of each of the npz's 11 pose points, in their stored order.
NPZ_POSE_ORDER = (0, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26)
VARIANTS = ("linear_floor", "scratch", "finetune_diff", "finetune_same", "probe")
SOURCES = ("gislr", "fingerspelling", "dgs", "reference")
log = logging.getLogger("islr_small_real")


# ------------------------------------------------------------------------------------------------ data
def npz_sequences(path: Path):
    """The npz's sequences as canonical-order ``body,hands`` PoseSequences, mapped by landmark identity.

    X (N, T, 170): 11 pose points (x, y, z, visibility) in :data:`NPZ_POSE_ORDER`, then the left and right
    hand (21 x (x, y, z)); a part that is all zeros was not detected; trailing all-zero frames are padding.
    x, y are MediaPipe's normalised image coordinates (frame size unknown: taken as square).
    """
    from msmae.layout import BODY_POSE_INDICES, get_layout
    from msmae.poses import PoseSequence

    d = np.load(path, allow_pickle=False)
    for k in ("X", "y", "classes"):
        if k not in d.files:
            raise SystemExit(f"{path}: no array {k!r} (found {d.files}); expected the wlasl50 npz layout")
    X, y, classes = d["X"], d["y"].astype(np.int64), [str(c) for c in d["classes"]]
    if X.ndim != 3 or X.shape[2] != 170:
        raise SystemExit(f"{path}: X must be (N, T, 170), got {X.shape}")
    layout = get_layout("body,hands")
    pose = X[..., :44].reshape(*X.shape[:2], 11, 4)
    hands = [X[..., 44:107].reshape(*X.shape[:2], 21, 3), X[..., 107:170].reshape(*X.shape[:2], 21, 3)]
    body_at = [NPZ_POSE_ORDER.index(i) for i in BODY_POSE_INDICES]
    seqs = []
    for n in range(len(X)):
        real = (X[n] != 0).any(axis=1)
        t = int(real.sum())
        if t == 0 or not real[:t].all():
            raise SystemExit(f"{path}: sample {n} has {'no frames' if t == 0 else 'all-zero frames inside'}")
        coords = np.zeros((t, layout.num_points, 2), np.float32)
        present = np.zeros((t, layout.num_points), bool)
        coords[:, :6] = pose[n, :t][:, body_at, :2]
        present[:, :6] = (pose[n, :t] != 0).any(axis=(1, 2))[:, None]
        for h, sl in zip(hands, (layout.stream_slice("left_hand"), layout.stream_slice("right_hand"))):
            coords[:, sl] = h[n, :t, :, :2]
            present[:, sl] = (h[n, :t] != 0).any(axis=(1, 2))[:, None]
        seqs.append(PoseSequence(coords, present, 25.0, layout, source=f"{path.name}#{n}"))
    return seqs, y, classes


def stratified_folds(y: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold id (0..k-1) of every sample: each class shuffled and dealt round-robin from a random offset."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (np.arange(len(idx)) + rng.integers(k)) % k
    return fold


def top_k(logits: np.ndarray, labels: np.ndarray) -> dict:
    from msmae.tasks.islr import classification_metrics

    m = classification_metrics(logits, labels, [str(i) for i in range(logits.shape[1])])
    return {k: m[k] for k in ("top1", "top5", "per_class_top1")}


# --------------------------------------------------------------------------------------- linear floor
def linear_floor(train_x, train_y, test_x, num_classes: int, c: float = 1.0) -> np.ndarray:
    """Multinomial logistic regression, objective C * sum(CE) + ||W||^2 / 2 (scikit-learn's), L-BFGS."""
    import torch

    x = torch.from_numpy(train_x).double()
    yy = torch.from_numpy(train_y)
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=1000, tolerance_grad=1e-6, tolerance_change=1e-10,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = c * torch.nn.functional.cross_entropy(x @ w + b, yy, reduction="sum") + 0.5 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (torch.from_numpy(test_x).double() @ w + b).numpy()


def flat_features(clips, num_frames: int) -> np.ndarray:
    from msmae.data.islr import ClipDataset

    ds = ClipDataset(clips, [0] * len(clips), num_frames=num_frames, train=False)
    return np.stack([ds[i]["coords"].reshape(-1) for i in range(len(ds))]).astype(np.float64)


# ------------------------------------------------------------------------------------------ pre-training
def pretrain_sources(args) -> list[Path]:
    """Pose files of the unlabeled pre-training corpus."""
    from msmae.poses.readers import find_pose_files

    where = {"gislr": SHARED / "gislr-asl-signs" / "train_landmark_files",
             "fingerspelling": SHARED / "fingerspelling-ase" / "ase",
             "dgs": SHARED / "dgs-corpus-sentences", "reference": SHARED / "videos" / "reference-holistic"}
    files: list[Path] = list(find_pose_files(args.pretrain_poses)) if args.pretrain_poses else []
    h2s = set()
    if args.h2s_poses:
        h2s_files = find_pose_files([args.h2s_poses])
        h2s = {p.stem for p in h2s_files}
        files += h2s_files
    for s in args.sources:
        if not where[s].exists():
            raise SystemExit(f"pre-training source {s!r} not found: {where[s]} (set MSMAE_SHARED_DATA or --sources)")
        # The reference arrays of How2Sign clips duplicate --h2s-poses: keep one copy.
        files += [p for p in find_pose_files([where[s]]) if not (s == "reference" and p.stem in h2s)]
    if not files:
        raise SystemExit("no pre-training poses: give --sources, --h2s-poses or --pretrain-poses")
    return files


def run_pretraining(args, work: Path, mode: str) -> tuple[Path, dict]:
    from msmae.config import load_config
    from msmae.corpus import pack_corpus
    from msmae.tasks.pretrain import PretrainConfig, pretrain

    corpus = work / "corpus"
    if not (corpus / "corpus.json").exists():
        s = pack_corpus(pretrain_sources(args), corpus, workers=1, progress=False)
        if s.failed:
            log.warning("corpus: %d files could not be read: %s", len(s.failed), s.failed[:3])
    cfg = load_config(PretrainConfig, "pretrain/tiny", [
        f"model.size={args.size}", "model.streams=body,hands", "data.window=64", "data.frame_stride=2",
        "data.num_workers=0", "data.eval_windows=64", f"train.steps={args.pretrain_steps}",
        f"train.warmup_steps={max(1, args.pretrain_steps // 10)}", f"train.batch_size={args.pretrain_batch}",
        f"train.lr={args.pretrain_lr}", "train.checkpoint_every=0", f"train.seed={args.seed}",
        f"train.device={args.device}", f"mask.mode={mode}", "mask.ratio=0.5"])
    out = work / f"pretrain_{mode}"
    m = pretrain(cfg, corpus, out, progress=args.progress)
    return out, {"steps": m["steps"], "eval_loss": round(m["eval_loss"], 5),
                 "mean_baseline_loss": round(m["mean_baseline_loss"], 5), "videos": m["videos"],
                 "time_s": round(m["train_time_s"], 1)}


# ------------------------------------------------------------------------------------------ deep variants
def train_variant(variant: str, train_clips, train_y, test_clips, test_y, num_classes: int, args, seed: int,
                  encoders: dict) -> np.ndarray:
    """Train one deep variant on the training folds; logits on the test fold."""
    import torch

    from msmae.data.islr import ClipDataset
    from msmae.models import MultiStreamEncoder
    from msmae.tasks.common import ModelSection
    from msmae.tasks.islr import TrainSection, build_classifier, fit, predict_logits
    from msmae.train.checkpoint import load_encoder
    from msmae.train.distributed import DistInfo, pick_device

    torch.manual_seed(seed)
    if variant == "scratch":
        enc = MultiStreamEncoder(config=ModelSection(size=args.size, streams="body,hands").build_config())
    else:
        enc = load_encoder(encoders["same" if variant == "finetune_same" else "diff"])
    mode = "probe" if variant == "probe" else "finetune"
    model = build_classifier(enc, num_classes, mode)
    tr = TrainSection(epochs=args.epochs, warmup_epochs=max(1, args.epochs // 10), batch_size=args.batch_size,
                      lr=args.probe_lr if mode == "probe" else args.lr, weight_decay=1e-3, seed=seed,
                      device=args.device)
    info = DistInfo(device=pick_device(args.device))
    train_ds = ClipDataset(train_clips, train_y, num_frames=32, train=True, affine=True, seed=seed)
    res = fit(model, train_ds, train=tr, info=info, progress=False)
    model.load_state_dict(res.best_state)
    test_ds = ClipDataset(test_clips, test_y, num_frames=32, train=False)
    return predict_logits(model, test_ds, device=info.device)


# ------------------------------------------------------------------------------------------------- main
def summarize(variant: str, scores: list[dict], extra: dict) -> dict:
    t1 = np.array([s["top1"] for s in scores])
    t5 = np.array([s["top5"] for s in scores])
    pc = np.array([s["per_class_top1"] for s in scores])
    sd = (lambda a: float(a.std(ddof=1)) if len(a) > 1 else 0.0)
    return {"name": "islr_small_real", "variant": variant, "top1_mean": round(float(t1.mean()), 4),
            "top1_std": round(sd(t1), 4), "top5_mean": round(float(t5.mean()), 4), "top5_std": round(sd(t5), 4),
            "per_class_top1_mean": round(float(pc.mean()), 4), "folds": len(scores), **extra}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None,
                   help="npz with X (N, T, 170), y, classes (default: the shared WLASL-50 subset; skipped when the "
                   "shared data is absent, an error when a given file is missing)")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--repeats", type=int, default=2, help="repetitions of the k-fold split, each with its own seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="tiny", help="model size: tiny (CPU) or paper (GPU)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--epochs", type=int, default=30, help="fine-tuning / probe epochs per fold")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="peak lr of scratch and fine-tuning (same for both)")
    p.add_argument("--probe-lr", type=float, default=1e-2,
                   help="peak lr of the probe's Linear (1e-2: chosen by inner cross-validation on training folds)")
    p.add_argument("--pretrain-steps", type=int, default=6000,
                   help="MS-MAE pre-training steps (6000: chosen by inner cross-validation on training folds)")
    p.add_argument("--pretrain-batch", type=int, default=32)
    p.add_argument("--pretrain-lr", type=float, default=1e-3)
    p.add_argument("--sources", default=",".join(SOURCES),
                   help=f"pre-training sources in the shared data: comma list of {', '.join(SOURCES)}")
    p.add_argument("--h2s-poses", type=Path, help="folder of How2Sign clip poses (e.g. `msmae extract` of "
                   "../shared/data/how2sign-clips), added to the pre-training corpus")
    p.add_argument("--pretrain-poses", type=Path, action="append", default=[], metavar="PATH",
                   help="any other pose files, folders or list files for the pre-training corpus (repeatable); "
                   "with --sources '' only these are used")
    p.add_argument("--work", type=Path, help="folder for the corpus and pre-training runs (default: a temp dir)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--progress", action="store_true", help="progress bars")
    args = p.parse_args(argv)
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    bad = [v for v in args.variants if v not in VARIANTS] + [s for s in args.sources if s not in SOURCES]
    if bad:
        p.error(f"unknown variants/sources {bad}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from msmae.data.islr import prepare_clip
    from msmae.layout import get_layout

    if args.data is None:
        args.data = SHARED / "wlasl50-subset" / "wlasl50_part0.npz"
        if not args.data.is_file():
            print(json.dumps({"name": "islr_small_real", "skipped": f"shared data not found: {args.data} "
                              "(give --data or set MSMAE_SHARED_DATA)"}))
            return 0
    if not args.data.is_file():
        print(f"islr_small_real: --data {args.data}: no such file", file=sys.stderr)
        return 2
    t_all = time.perf_counter()
    seqs, y, classes = npz_sequences(args.data)
    clips = [prepare_clip(s, layout=get_layout("body,hands")) for s in seqs]
    num_classes = int(y.max()) + 1
    splits = [stratified_folds(y, args.folds, args.seed * 1000 + r) for r in range(args.repeats)]
    common = {"samples": len(y), "classes": len(np.unique(y)), "repeats": args.repeats, "k": args.folds}

    tmp = None
    work = args.work
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="islr_small_real_")
        work = Path(tmp.name)
    work.mkdir(parents=True, exist_ok=True)
    encoders, pre_info = {}, {}
    for variant in args.variants:
        t0 = time.perf_counter()
        extra = dict(common)
        if variant != "linear_floor":
            extra.update(size=args.size, epochs=args.epochs, batch_size=args.batch_size,
                         lr=args.probe_lr if variant == "probe" else args.lr)
        if variant in ("finetune_diff", "finetune_same", "probe"):
            mode = "same" if variant == "finetune_same" else "diff"
            if mode not in encoders:
                encoders[mode], pre_info[mode] = run_pretraining(args, work, mode)
            extra["pretrain"] = {"mask": mode, **pre_info[mode],
                                 "sources": args.sources + (["how2sign"] if args.h2s_poses else [])
                                 + [str(p) for p in args.pretrain_poses]}
        scores = []
        for r, fold in enumerate(splits):
            for k in range(args.folds):
                tr, te = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
                if variant == "linear_floor":
                    logits = linear_floor(flat_features([clips[i] for i in tr], 32), y[tr],
                                          flat_features([clips[i] for i in te], 32), num_classes)
                else:
                    logits = train_variant(variant, [clips[i] for i in tr], y[tr], [clips[i] for i in te], y[te],
                                           num_classes, args, seed=args.seed * 1000 + r * 10 + k, encoders=encoders)
                scores.append(top_k(logits, y[te]))
        extra["time_s"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(summarize(variant, scores, extra)), flush=True)
    print(json.dumps({"name": "islr_small_real_total", "time_s": round(time.perf_counter() - t_all, 1),
                      "threads": torch.get_num_threads()}), flush=True)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
