"""The first thing to run on a GPU (issue 14): do msmae's CUDA paths work, and how fast is pre-training?

Checks, one JSON line each (``"ok"`` true/false, ``"check"`` its name):

1. ``forward``: the paper model's forward pass on a fixed batch, on the device vs the CPU (fp32 reference):
   max abs difference of the reconstruction and of the loss, fp32 and bf16 autocast, against stated tolerances
   (relative to the largest reference value: fp32 1e-3, since CUDA convolutions may use TF32; bf16 3e-2).
2. ``matmul_peak``: large bf16 matmuls on the device (the best of several): the MFU reference of this run.
3. ``pretrain/<path>``: paper-size pre-training in bf16 for 30 steps with each data path (``device``: the
   corpus in device memory; ``workers``: DataLoader workers reading memory maps), through ``msmae.tasks.pretrain``:
   steady samples/s (the last logged window), achieved TFLOP/s (the throughput benchmark's FLOP count of a full
   300-frame window at mask ratio 0.5), MFU against (2), peak device memory.
4. ``torchrun``: ``torchrun -m msmae pretrain`` for 5 steps, NCCL on CUDA (2 processes with 2 GPUs, else 1:
   one process creates no process group), gloo on the CPU.
5. ``islr``, ``slt``, ``attention``: a tiny ISLR fine-tune and a tiny SLT fine-tune (randomly initialised tiny
   mBART) for one epoch in fp32, and ``msmae attention``, on the device and on the CPU, compared.

``--device cpu --quick`` runs every check with tiny sizes on the CPU (the test suite does, in well under a
minute); there the comparisons are CPU against CPU. Everything is written under a temporary folder that is
deleted at the end. Exit status 1 if any check fails.

    python benchmarks/gpu_check.py [--device auto|cuda|cpu] [--quick] [--steps 30] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import gc
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TOL = {"fp32": 1e-3, "bf16": 3e-2}          # max abs diff / max abs of the fp32 CPU reference
SMALL_MODEL = "{dim: 32, depth: 1, heads: 2, decoder_dim: 32, decoder_depth: 1, decoder_heads: 2}"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="cuda, cpu, or auto (default: cuda when there is one, else "
                                                     "report that there is none and stop)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes everywhere (the test suite's CPU run)")
    ap.add_argument("--steps", type=int, default=30, help="timed pre-training steps per data path")
    ap.add_argument("--batch-size", type=int, default=256, help="pre-training batch (samples per step)")
    ap.add_argument("--num-workers", type=int, default=4, help="DataLoader workers of the worker path")
    ap.add_argument("--checks", default="forward,matmul_peak,pretrain,torchrun,islr,slt,attention",
                    help="comma list of checks to run")
    ap.add_argument("--workdir", default=tempfile.gettempdir())
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.batch_size, args.num_workers = 2, 4, 0
    return args


def emit(row: dict) -> dict:
    print(json.dumps(row), flush=True)
    return row


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------- 1. forward
def check_forward(args, device) -> list[dict]:
    import torch

    from msmae.models import MSMAE, model_config

    size, b, t = ("tiny", 2, 64) if args.quick else ("paper", 8, 300)
    torch.manual_seed(0)
    cfg = model_config(size, streams="body,hands,face")
    model = MSMAE(config=cfg).eval()
    g = torch.Generator().manual_seed(0)
    k = cfg.layout.num_points
    coords = torch.cumsum(0.02 * torch.randn(b, t, k, 2, generator=g), dim=1)
    present = torch.rand(b, t, k, generator=g) > 0.2
    coords = coords * present[..., None]
    valid = torch.ones(b, t, dtype=torch.bool)
    valid[-1, t // 2:] = False

    def run(dev, dtype):
        m = model.to(dev)
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dtype == "bf16"):
            out = m(coords.to(dev), present.to(dev), valid.to(dev), mask_ratio=0.5,
                    generator=torch.Generator().manual_seed(1))
        return out.pred.float().cpu(), float(out.loss)

    ref_pred, ref_loss = run(torch.device("cpu"), "fp32")
    rows = []
    scale = float(ref_pred.abs().max())
    for dtype in ("fp32", "bf16"):
        pred, loss = run(device, dtype)
        diff = float((pred - ref_pred).abs().max())
        rows.append(emit({"check": f"forward/{dtype}", "ok": bool(diff <= TOL[dtype] * scale),
                          "device": str(device), "model": size, "batch": b, "frames": t,
                          "max_abs_diff_pred": diff, "max_abs_ref": scale, "tolerance_rel": TOL[dtype],
                          "loss": loss, "loss_cpu_fp32": ref_loss, "abs_diff_loss": abs(loss - ref_loss)}))
    model.cpu()
    return rows


# ------------------------------------------------------------------------------------- 2. matmul peak
def matmul_peak(args, device) -> dict:
    import torch

    n = 1024 if args.quick else 8192
    dtype = torch.bfloat16
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    best = float("inf")
    reps = 3 if args.quick else 20
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    del a, b
    return emit({"check": "matmul_peak", "ok": True, "device": str(device), "n": n, "dtype": "bf16",
                 "peak_tflops": float(f"{2 * n ** 3 / best / 1e12:.4g}")})


# ---------------------------------------------------------------------------------------- 3. pretrain
def synthetic_corpus(root: Path, videos: int, frames: int, seed: int = 0) -> Path:
    from msmae.corpus import pack_sequences
    from msmae.poses import PoseSequence

    rng = np.random.default_rng(seed)
    seqs = []
    for i in range(videos):
        c = np.cumsum(rng.normal(scale=0.01, size=(frames, 160, 2)), axis=0).astype(np.float32)
        p = rng.random((frames, 160)) > 0.15
        seqs.append(PoseSequence(c, p, 24.0, source=f"synthetic/{i}"))
    pack_sequences(seqs, root, normalize=False)
    return root


def pretrain_overrides(args, steps: int) -> list[str]:
    if args.quick:
        return ["model.size=tiny", f"model.extra={SMALL_MODEL}", "model.streams=body,hands,face",
                "data.window=64", "data.frame_stride=2", f"train.steps={steps}", f"train.batch_size={args.batch_size}",
                "train.log_every=1", "train.checkpoint_every=0", "data.eval_windows=4", "train.warmup_steps=1"]
    return ["model.size=paper", "model.streams=body,hands,face", "data.window=600", "data.frame_stride=2",
            f"train.steps={steps}", f"train.batch_size={args.batch_size}", "train.log_every=10",
            "train.checkpoint_every=0", "data.eval_windows=16", "train.warmup_steps=5"]


def flops_per_sample(quick: bool) -> float:
    """Forward + backward FLOPs of one full window at mask ratio 0.5 (pretrain_throughput's count)."""
    import torch

    sys.path.insert(0, str(HERE))
    from pretrain_throughput import model_flops

    from msmae.models import model_config
    from msmae.models.masking import make_visible

    if quick:
        cfg = model_config("tiny", streams="body,hands,face", dim=32, depth=1, heads=2, decoder_dim=32,
                           decoder_depth=1, decoder_heads=2)
        frames = 32
    else:
        cfg, frames = model_config("paper", streams="body,hands,face"), 300
    valid = torch.ones(1, len(cfg.layout.streams), math.ceil(frames / cfg.cubelet), dtype=torch.bool)
    vis = make_visible(valid, 0.5, "diff", torch.Generator().manual_seed(0))
    return 3 * model_flops(cfg, frames=frames, enc_tokens=[int(vis.sum())], dec_tokens=[int(valid.sum())])


def check_pretrain(args, device, work: Path, peak: float | None) -> list[dict]:
    import torch

    from msmae.config import load_config
    from msmae.tasks.pretrain import PretrainConfig, pretrain

    corpus = synthetic_corpus(work / "corpus", *((6, 200) if args.quick else (64, 3000)))
    fps = flops_per_sample(args.quick)
    rows = []
    for path in ("device", "workers"):
        over = pretrain_overrides(args, args.steps) + [
            f"train.device={device.type}", "train.precision=bf16",
            f"data.on_device={'true' if path == 'device' else 'false'}", f"data.num_workers={args.num_workers}"]
        cfg = load_config(PretrainConfig, None, over)
        if device.type == "cuda":
            gc.collect()                                     # the previous path's corpus copy and model
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        try:
            m = pretrain(cfg, corpus, work / f"pretrain_{path}", progress=False)
        except Exception as e:  # report and go on to the next check
            rows.append(emit({"check": f"pretrain/{path}", "ok": False, "error": f"{type(e).__name__}: {e}"}))
            continue
        wall = time.perf_counter() - t0
        with open(work / f"pretrain_{path}" / "log.csv", newline="") as f:
            log = list(csv.DictReader(f))
        steady = float(log[-1]["samples_per_s"])
        tflops = steady * fps / 1e12
        rows.append(emit({
            "check": f"pretrain/{path}", "ok": m["data_path"] == path and math.isfinite(m["final_loss"]),
            "device": str(device), "data_path": m["data_path"], "steps": m["steps"], "batch_size": args.batch_size,
            "samples_per_s_steady": round(steady, 1), "samples_per_s_all_steps": round(m["samples_per_s"], 1),
            "gflop_per_sample": round(fps / 1e9, 3), "achieved_tflops": float(f"{tflops:.4g}"),
            "mfu": float(f"{tflops / peak:.4g}") if peak else None, "peak_tflops_reference": peak,
            "peak_memory_gb": round(torch.cuda.max_memory_allocated(device) / 1e9, 2) if device.type == "cuda" else None,
            "final_loss": m["final_loss"], "wall_s": round(wall, 1)}))
    if len(rows) == 2 and all(r["ok"] for r in rows):
        rows.append(emit({"check": "pretrain/paths_agree", "ok": True,
                          "final_loss_abs_diff": abs(rows[0]["final_loss"] - rows[1]["final_loss"]),
                          "note": "the same windows and masks on both paths; on CUDA the kernels are not "
                                  "bit-deterministic, on the CPU the difference is 0"}))
        if device.type == "cpu":
            rows[-1]["ok"] = rows[-1]["final_loss_abs_diff"] == 0.0
    return rows


# ---------------------------------------------------------------------------------------- 4. torchrun
def check_torchrun(args, device, work: Path) -> dict:
    import torch

    corpus = work / "corpus"
    if not corpus.exists():
        synthetic_corpus(corpus, 6, 200)
    # Two processes need two GPUs (NCCL refuses two ranks on one); the quick CPU run keeps to one (the test
    # suite's pre-training tests already run two gloo processes).
    n = min(2, torch.cuda.device_count()) if device.type == "cuda" else 1 if args.quick else 2
    over = pretrain_overrides(args, 5) + [f"train.device={device.type}", "data.num_workers=0",
                                          f"train.batch_size={max(args.batch_size, 2 * n) // n * n}"]
    out = work / "torchrun"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_port", "29533",
           "-m", "msmae", "pretrain", "--data", str(corpus), "--out", str(out), "--no-progress",
           *sum((["--set", s] for s in over), [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    ok = r.returncode == 0 and (out / "metrics.json").exists()
    m = json.loads((out / "metrics.json").read_text()) if ok else {}
    return emit({"check": "torchrun", "ok": ok and m.get("steps") == 5, "processes": n,
                 "backend": ("nccl" if device.type == "cuda" else "gloo") if n > 1 else "none (one process)",
                 "world_size": m.get("world_size"), "final_loss": m.get("final_loss"),
                 "wall_s": round(time.perf_counter() - t0, 1), **({} if ok else {"stderr": r.stderr[-1500:]})})


# ------------------------------------------------------------------------- 5. ISLR, SLT, attention
def islr_manifest(root: Path) -> Path:
    """Two synthetic signs (the right wrist circles one way or the other), split 4/1/1 per class."""
    from msmae.layout import get_layout
    from msmae.poses import PoseSequence, write_npz

    bh = get_layout("body,hands")
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for label, direction in (("cw", 1.0), ("ccw", -1.0)):
        for i in range(6):
            t = int(rng.integers(20, 40))
            ang = direction * np.linspace(0, 2 * np.pi, t) + rng.normal(0, 0.2)
            c = np.zeros((t, bh.num_points, 2), np.float32)
            c[:, 0], c[:, 1] = (1.0, 0.0), (0.0, 0.0)
            c[:, 6:] = rng.normal(0, 0.05, (t, 42, 2)) + np.stack([np.cos(ang), np.sin(ang)], 1)[:, None]
            write_npz(PoseSequence(c, np.ones(c.shape[:2], bool), 25.0, bh), root / f"{label}{i}.npz")
            rows.append(f"{label}{i}.npz,{label},{'train' if i < 4 else 'val' if i == 4 else 'test'}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "m.csv").write_text("\n".join(rows) + "\n")
    return root / "m.csv"


def compare(name: str, a: dict, b: dict, keys: list[str], tol: float, device) -> dict:
    diffs = {k: abs(float(a[k]) - float(b[k])) for k in keys}
    return {"check": name, "ok": all(d <= tol for d in diffs.values()), "device": str(device),
            "tolerance_abs": tol, **{f"{k}_device": a[k] for k in keys}, **{f"{k}_cpu": b[k] for k in keys},
            **{f"abs_diff_{k}": d for k, d in diffs.items()}}


def last_train_loss(run: Path) -> float:
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    key = next(k for k in rows[-1] if "loss" in k)
    return float(rows[-1][key])


def check_islr(args, device, work: Path) -> dict:
    from msmae.config import load_config
    from msmae.tasks.islr import IslrConfig, finetune

    man = islr_manifest(work / "islr_data")
    res = {}
    for label, dev in (("device", device.type), ("cpu", "cpu")):
        cfg = load_config(IslrConfig, None, [
            f"data.annotations={man}", "data.dataset=manifest", "init=none", "model.size=tiny",
            "model.extra={dim: 32, depth: 1, heads: 2}", "train.epochs=1", "train.batch_size=4",
            "train.warmup_epochs=1", "train.lr=1e-3", "data.num_workers=0", "data.load_workers=1",
            "train.precision=fp32", f"train.device={dev}"])
        run = work / f"islr_{label}"
        m = finetune(cfg, run, progress=False)
        res[label] = {"top1": m["top1"], "train_loss": last_train_loss(run)}
    # top1 on 2 test clips can flip on a near tie: reported, not compared
    row = compare("islr", res["device"], res["cpu"], ["train_loss"], 1e-3, device)
    row.update(top1_device=res["device"]["top1"], top1_cpu=res["cpu"]["top1"])
    return emit(row)


def check_slt(args, device, work: Path) -> dict:
    from msmae.config import load_config
    from msmae.models.translator import make_tiny_mbart
    from msmae.poses.synthetic import SyntheticSigner
    from msmae.poses.writers import write_npz
    from msmae.tasks.slt import SltConfig, finetune

    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    root = work / "slt_data"
    signer = SyntheticSigner(num_classes=len(words), seed=0, fps=25.0)
    rng = np.random.default_rng(0)
    rows, texts = [], []
    for i in range(8):
        seq, signs = signer.sentence(2, rng)
        text = " ".join(words[s["label"]] for s in signs)
        write_npz(seq, root / "poses" / f"s{i}.npz")
        rows.append({"path": f"poses/s{i}.npz", "text": text, "split": "train" if i < 6 else "dev"})
        texts.append(text)
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "text", "split"])
        w.writeheader()
        w.writerows(rows)
    mbart = make_tiny_mbart(root / "mbart", texts * 3, vocab_size=120, d_model=32, heads=2, ffn_dim=64)
    res = {}
    for label, dev in (("device", device.type), ("cpu", "cpu")):
        cfg = load_config(SltConfig, None, [
            f"data.annotations={root / 'manifest.csv'}", "data.dataset=manifest", "init=none",
            f"translator.mbart={mbart}", "model.size=tiny", "model.streams=body,hands",
            "model.extra={dim: 32, depth: 1, heads: 2}", "data.language=de_DE", "train.epochs=1",
            "train.batch_size=4", "train.warmup_epochs=1", "train.lr=3e-3", "translator.num_beams=2",
            "translator.max_new_tokens=8", "data.num_workers=0", "data.load_workers=1", "train.precision=fp32",
            f"train.device={dev}"])
        run = work / f"slt_{label}"
        finetune(cfg, run, progress=False)
        res[label] = {"train_loss": last_train_loss(run)}
    return emit(compare("slt", res["device"], res["cpu"], ["train_loss"], 1e-3, device))


def check_attention(args, device, work: Path) -> dict:
    from msmae.cli import main as cli
    from msmae.config import load_config
    from msmae.poses.synthetic import SyntheticSigner
    from msmae.poses.writers import write_npz
    from msmae.tasks.pretrain import PretrainConfig, pretrain

    corpus = work / "corpus"
    if not corpus.exists():
        synthetic_corpus(corpus, 6, 200)
    run = work / "attention_model"
    pretrain(load_config(PretrainConfig, None, [
        "model.size=tiny", f"model.extra={SMALL_MODEL}", "model.streams=body,hands,face", "data.window=64",
        "train.steps=2", "train.batch_size=4", "train.checkpoint_every=0", "data.eval_windows=4",
        "data.num_workers=0", "train.device=cpu"]), corpus, run, progress=False)
    seq, _ = SyntheticSigner(num_classes=4, seed=1, fps=25.0).sentence(3, np.random.default_rng(1))
    write_npz(seq, work / "sentence.npz")
    mats, segs = {}, {}
    for label, dev in (("device", device.type), ("cpu", "cpu")):
        out = work / f"attention_{label}"
        with contextlib.redirect_stdout(io.StringIO()):        # the command's report: not a JSON line
            rc = cli(["attention", str(work / "sentence.npz"), "--model", str(run), "--out", str(out),
                      "--device", dev])
        if rc != 0:
            return emit({"check": "attention", "ok": False, "device": dev, "rc": rc})
        mats[label] = np.load(out / "attention.npy")
        segs[label] = [(s["start_frame"], s["end_frame"])
                       for s in json.loads((out / "segments.json").read_text())["segments"]]
    both = np.isfinite(mats["cpu"])
    same_nan = bool((np.isfinite(mats["device"]) == both).all())
    diff = float(np.abs(mats["device"][both] - mats["cpu"][both]).max())
    same = segs["device"] == segs["cpu"]
    return emit({"check": "attention", "ok": diff <= 1e-3 and same and same_nan, "device": str(device),
                 "max_abs_diff_attention": diff, "tolerance_abs": 1e-3, "same_segments": same,
                 "segments": len(segs["cpu"])})


# --------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    args = parse_args(argv)
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    if args.device == "auto":
        if not torch.cuda.is_available():
            emit({"check": "machine", "ok": True, "skipped": "no CUDA device here: nothing checked "
                                                             "(python benchmarks/gpu_check.py --device cpu --quick "
                                                             "runs the same code on the CPU)"})
            return 0
        args.device = "cuda"
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but CUDA is not available (use --device cpu for the CPU run)", file=sys.stderr)
        return 1
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    checks = set(args.checks.split(","))
    emit({"check": "machine", "ok": True, "device": str(device), "quick": args.quick, "torch": torch.__version__,
          "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
          "cuda": torch.version.cuda, "gpus": torch.cuda.device_count() if torch.cuda.is_available() else 0})
    work = Path(tempfile.mkdtemp(prefix="msmae-gpu-check-", dir=args.workdir))
    rows, t0 = [], time.perf_counter()
    steps = [("forward", lambda: check_forward(args, device)),
             ("matmul_peak", lambda: [matmul_peak(args, device)]),
             ("pretrain", lambda: check_pretrain(args, device, work, peak)),
             ("torchrun", lambda: [check_torchrun(args, device, work)]),
             ("islr", lambda: [check_islr(args, device, work)]),
             ("slt", lambda: [check_slt(args, device, work)]),
             ("attention", lambda: [check_attention(args, device, work)])]
    peak = None
    try:
        for name, fn in steps:
            if name not in checks:
                continue
            try:
                out = fn()
            except Exception as e:  # one failing check must not hide the others
                out = [emit({"check": name, "ok": False, "error": f"{type(e).__name__}: {str(e)[:500]}"})]
            rows += out
            if name == "matmul_peak" and out[0]["ok"]:
                peak = out[0]["peak_tflops"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [r["check"] for r in rows if not r["ok"]]
    emit({"check": "summary", "ok": not failed, "failed": failed, "wall_s": round(time.perf_counter() - t0, 1)})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
