"""Corpus-scale benchmark (issue 14): can the pre-training data path feed one H200?

Builds synthetic corpora of 10 h and 100 h of 24 fps keypoints (random walks with realistic missing detections:
hands absent in runs, a few face and body dropouts; the content does not matter for speed) through the normal
packing code (``pack_sequences`` -> ``CorpusWriter``), then measures, each in its own process:

- pack: frames/s and peak RSS at both sizes (coordinates written as given, ``normalize=False``), plus the
  normalising pack (the ``msmae pack`` default) on 1 h; disk bytes per frame;
- loader: paper windows (600 frames read, every 2nd kept, body+hands+face = 160 points), batches of 32, for
  the per-window worker path (before this issue), the batched worker path (one gather per batch) with 0, 1 and
  2 DataLoader workers, and the device-resident path on the CPU device; samples/s and peak RSS of the whole
  process tree (anonymous memory, and file-backed pages of the memory-mapped shards, which are reclaimable
  page cache);
- demand: samples/s that one H200 (989 dense bf16 TFLOP/s) consumes at 40% MFU, from the paper model's
  FLOPs per sample (the count in ``pretrain_throughput.py``), with and without the face stream; supply/demand
  per path. Lines with ``"kind": "projection"`` are models, not measurements.

Everything written goes to a temporary folder under ``--workdir`` that is deleted at the end (``--keep`` keeps
it). Prints one JSON object per line.

    python benchmarks/corpus_scale.py [--hours 10,100] [--seconds 6] [--workdir /tmp] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from msmae.utils import cpu_model

HERE = Path(__file__).resolve().parent
FPS = 24.0
H200_BF16_TFLOPS = 989.0     # dense bf16 peak of one H200 (SXM), the vendor's figure
TARGET_MFU = 0.4
H200_HBM_TBS = 4.8           # HBM3e bandwidth of one H200, the vendor's figure
POOL = 40_000                # frames of pre-generated random walk that videos are cut from


# ------------------------------------------------------------------------------------------ memory
def _status(pid: int) -> dict:
    """Proportional set sizes (a page shared by n processes counts 1/n in each, so sums over processes are
    true totals: DataLoader workers share their parent's pages copy-on-write)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Pss_Anon", "Pss_File", "Pss"):
                    out[k] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return out


def _children(pid: int) -> list[int]:
    kids = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return kids


class TreeRss:
    """Samples the memory (PSS) of this process and its children every 50 ms; keeps the peaks of the sums:
    anonymous memory (what the code allocates) and file-backed pages (memory-mapped shards: page cache
    that the kernel can drop at any time)."""

    def __init__(self):
        self.peak_anon = self.peak_file = self.peak_total = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        pids = [os.getpid()]
        pids += [c for p in list(pids) for c in _children(p)]
        st = [_status(p) for p in pids]
        anon = sum(s.get("Pss_Anon", 0) for s in st)
        fil = sum(s.get("Pss_File", 0) for s in st)
        self.peak_anon, self.peak_file = max(self.peak_anon, anon), max(self.peak_file, fil)
        self.peak_total = max(self.peak_total, anon + fil)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.sample()

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.sample()

    def to_dict(self) -> dict:
        mb = 1 / 2**20
        return {"peak_anon_mb": round(self.peak_anon * mb, 1), "peak_mapped_file_mb": round(self.peak_file * mb, 1),
                "peak_total_mb": round(self.peak_total * mb, 1)}


# ------------------------------------------------------------------------------------------- corpus
def synthetic_videos(hours: float, seed: int, stats: dict):
    """PoseSequence objects of 24 fps random walks totalling ``hours``; time spent making them -> stats."""
    from msmae.poses import PoseSequence

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    walk = np.cumsum(rng.standard_normal((POOL, 160, 2), dtype=np.float32) * 0.01, axis=0)
    walk -= walk.mean(axis=0)
    present = np.ones((POOL, 160), bool)
    for lo, hi in ((6, 27), (27, 48)):                        # each hand absent in runs (~35% of frames)
        edges = np.cumsum(rng.integers(12, 120, size=POOL // 12))
        state = np.repeat(rng.random(len(edges)) > 0.35, np.diff(np.concatenate([[0], edges])))[:POOL]
        present[: len(state), lo:hi] = state[:, None]
    present[rng.random(POOL) < 0.05, 48:] = False             # face missed in 5% of frames
    present[:, :6] &= rng.random((POOL, 6)) > 0.01            # a few body points missed
    # 24 distinct videos of 1.7-10 minutes, handed out again and again under new names (a shallow copy:
    # building and validating a fresh PoseSequence costs more than packing it, and content does not matter).
    templates = []
    for _ in range(24):
        n = int(rng.integers(2_400, 14_400))
        a = int(rng.integers(0, POOL - n))
        c = walk[a:a + n] + rng.normal(size=(1, 1, 2)).astype(np.float32)
        templates.append(PoseSequence(c, present[a:a + n], FPS))
    stats["generate_s"] = time.perf_counter() - t0
    total = int(hours * 3600 * FPS)
    made, i = 0, 0
    while made < total:
        t0 = time.perf_counter()
        seq = copy.copy(templates[int(rng.integers(0, len(templates)))])
        if seq.num_frames > total - made:
            seq = seq.slice_frames(0, total - made)
        seq.source = f"synthetic/{i:06d}"
        stats["generate_s"] += time.perf_counter() - t0
        yield seq
        made, i = made + seq.num_frames, i + 1
    stats["frames"], stats["videos"] = made, i


def child_pack(args) -> dict:
    from msmae.corpus import pack_sequences

    stats: dict = {}
    with TreeRss() as rss:
        t0 = time.perf_counter()
        s = pack_sequences(synthetic_videos(args.hours_one, args.seed, stats), args.out, normalize=args.normalize)
        wall = time.perf_counter() - t0
    pack_s = wall - stats["generate_s"]
    disk = sum(f.stat().st_size for f in Path(args.out).iterdir() if f.is_file())
    return {"name": f"corpus_scale/pack/{args.hours_one:g}h" + ("/normalize" if args.normalize else ""),
            "kind": "measured", "hours": args.hours_one, "videos": s.total_videos, "frames": s.total_frames,
            "normalize": args.normalize, "pack_frames_per_s": round(s.total_frames / pack_s),
            "pack_s": round(pack_s, 1), "generate_s": round(stats["generate_s"], 1),
            "disk_bytes": disk, "disk_bytes_per_frame": round(disk / s.total_frames, 2),
            "peak_rss_mb_hwm": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), **rss.to_dict()}


# ------------------------------------------------------------------------------------------- loader
def child_load(args) -> dict:
    import torch

    from msmae.corpus import PackedCorpus
    from msmae.data.windows import (DeviceWindows, FromSampler, WindowDataset, choose_on_device, collate_windows,
                                    device_bytes, free_memory)
    from msmae.layout import get_layout

    torch.set_num_threads(1)
    corpus = PackedCorpus(args.out)
    kp = get_layout(args.streams).indices_in(corpus.layout)
    kw = dict(keypoints=kp, window=600, frame_stride=2, seed=args.seed)
    bs = args.batch_size
    info: dict = {}
    with TreeRss() as rss:
        if args.path == "device":
            ds = WindowDataset(corpus, list(range(len(corpus))), **kw)
            use, why = choose_on_device("auto", device_bytes(ds), free_memory(torch.device("cpu")), 0.5)
            if not use:
                return {"skipped": why}
            t0 = time.perf_counter()
            dev = DeviceWindows(ds, "cpu")
            info = {"load_s": round(time.perf_counter() - t0, 1), "resident_mb": round(dev.nbytes / 2**20, 1)}
            t_locate = [0.0]

            def batches():
                k = 0
                while True:
                    t = time.perf_counter()
                    ds.locate_many(np.arange(k, k + bs))
                    t_locate[0] += time.perf_counter() - t
                    yield dev.batch(np.arange(k, k + bs))
                    k += bs
            it = batches()
        else:
            cls = WindowDataset if args.path == "batched" else _per_window_class()
            ds = cls(corpus, list(range(len(corpus))), **kw)
            loader = torch.utils.data.DataLoader(ds, batch_size=bs, sampler=FromSampler(0, 1 << 40),
                                                 num_workers=args.workers, collate_fn=collate_windows,
                                                 prefetch_factor=4 if args.workers else None)
            it = iter(loader)
        for _ in range(2):                                   # warm-up: workers started, first pages read
            next(it)
        n, t0 = 0, time.perf_counter()
        if args.path == "device":
            t_locate[0] = 0.0
        while time.perf_counter() - t0 < args.seconds:
            b = next(it)
            n += b["coords"].shape[0]
        dt = time.perf_counter() - t0
        if args.path == "device":
            info["host_index_s_per_batch"] = round(t_locate[0] / (n / bs), 6)
            info["alternating"] = alternating(ds, dev, bs)
        del it
    return {"samples_per_s": round(n / dt, 1), "samples": n, **info, **rss.to_dict()}


def alternating(ds, dev, bs: int, rounds: int = 4, batches: int = 3) -> dict:
    """The three ways to cut a batch, in one process, taking turns on the same positions (a shared machine's
    load drifts between separate runs; here it hits all three alike): samples/s and ratios."""
    old = _per_window_class()
    per_window = old.__new__(old)
    per_window.__dict__.update(ds.__dict__)
    cut = {"per_window": lambda ks: [per_window[int(k)] for k in ks],
           "batched": lambda ks: ds.__getitems__(list(ks)),
           "device": lambda ks: dev.batch(ks)}
    spent = dict.fromkeys(cut, 0.0)
    base = 10_000_000
    for r in range(rounds):
        for name, f in cut.items():
            t0 = time.perf_counter()
            for j in range(batches):
                f(np.arange(base + (r * batches + j) * bs, base + (r * batches + j + 1) * bs))
            spent[name] += time.perf_counter() - t0
    n = rounds * batches * bs
    sps = {k: round(n / v, 1) for k, v in spent.items()}
    return {**{f"{k}_samples_per_s": v for k, v in sps.items()},
            "batched_over_per_window": round(sps["batched"] / sps["per_window"], 2),
            "device_over_batched": round(sps["device"] / sps["batched"], 2)}


def _per_window_class():
    from msmae.data.windows import WindowDataset

    class PerWindowDataset(WindowDataset):
        """The path before issue 14: one ``load`` (a handful of NumPy calls) per window, stacked per batch."""
        __getitems__ = None

    return PerWindowDataset


# ------------------------------------------------------------------------------------------- demand
def demand(streams: str) -> dict:
    """FLOPs per sample (forward + backward = 3 x forward) of the paper model on a full 300-frame window at
    mask ratio 0.5, and the samples/s one H200 consumes at 40% MFU."""
    import torch

    sys.path.insert(0, str(HERE))
    from pretrain_throughput import model_flops

    from msmae.models import model_config
    from msmae.models.masking import make_visible

    cfg = model_config("paper", streams=streams)
    nt = math.ceil(300 / cfg.cubelet)
    valid = torch.ones(1, len(cfg.layout.streams), nt, dtype=torch.bool)
    visible = make_visible(valid, 0.5, "diff", torch.Generator().manual_seed(0))
    flops = 3 * model_flops(cfg, frames=300, enc_tokens=[int(visible.sum())], dec_tokens=[int(valid.sum())])
    sps = H200_BF16_TFLOPS * 1e12 * TARGET_MFU / flops
    return {"name": f"corpus_scale/demand/{streams}", "kind": "projection",
            "model": f"paper, {streams}, 300 frames, mask ratio 0.5", "gflop_per_sample": round(flops / 1e9, 2),
            "gpu": "H200", "gpu_bf16_peak_tflops": H200_BF16_TFLOPS, "mfu": TARGET_MFU,
            "demand_samples_per_s": round(sps)}


def device_path_on_gpu_model(k: int, host_index_s: float, batch: int) -> dict:
    """The device-resident path on an H200, modelled: HBM traffic per sample at 30% of peak bandwidth, and the
    host's index work per batch of ``batch`` windows (measured on this CPU)."""
    frames = 300
    read = frames * (k * 2 * 2 + math.ceil(k / 8)) * 3          # coords f16, bits (a few passes), indices
    write = frames * (k * 2 * 4 + 3 * k + 1)                   # coords f32, present (unpack + mask), frame_valid
    hbm = H200_HBM_TBS * 1e12 * 0.3 / (read + write)
    host = batch / host_index_s if host_index_s > 0 else float("inf")
    return {"hbm_bytes_per_sample": read + write, "hbm_limited_samples_per_s": round(hbm),
            "host_index_limited_samples_per_s": round(host), "samples_per_s": round(min(hbm, host))}


# --------------------------------------------------------------------------------------------- main
def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", default="10,100", help="comma list of corpus sizes in hours of 24 fps video")
    ap.add_argument("--normalize-hours", type=float, default=1.0, help="hours packed with normalisation (0 = skip)")
    ap.add_argument("--seconds", type=float, default=6.0, help="timed seconds per loader setting")
    ap.add_argument("--batch-size", type=int, default=32, help="windows per batch (32 = 256 over 8 GPUs)")
    ap.add_argument("--streams", default="body,hands,face", help="streams the windows carry")
    ap.add_argument("--workdir", default=tempfile.gettempdir(), help="where the temporary corpora go")
    ap.add_argument("--keep", action="store_true", help="keep the corpora (default: delete them)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="0.05 h and 0.2 h, 1 s per setting (for a smoke test)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--hours-one", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--normalize", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.quick:
        args.hours, args.seconds, args.normalize_hours = "0.05,0.2", 1.0, 0.02
    return args


def run_child(args, **kw) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--seed", str(args.seed), "--batch-size",
           str(args.batch_size), "--streams", args.streams, "--seconds", str(args.seconds)]
    for k, v in kw.items():
        if v is True:
            cmd.append(f"--{k.replace('_', '-')}")
        elif v is not False and v is not None:
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def emit(row: dict) -> None:
    row.setdefault("loadavg_1m", round(os.getloadavg()[0], 2))
    print(json.dumps(row), flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child == "pack":
        print(json.dumps(child_pack(args)))
        return 0
    if args.child == "load":
        print(json.dumps(child_load(args)))
        return 0
    hours = [float(h) for h in args.hours.split(",")]
    need = sum(hours + [args.normalize_hours]) * 3600 * FPS * 700
    free = shutil.disk_usage(args.workdir).free
    if need > min(20e9, 0.8 * free):
        print(f"error: the corpora need about {need / 1e9:.1f} GB; {args.workdir} has {free / 1e9:.1f} GB free "
              f"and this benchmark stays under 20 GB", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="msmae-corpus-scale-", dir=args.workdir))
    t_all = time.perf_counter()
    emit({"name": "corpus_scale/machine", "kind": "measured", "cpu": cpu_model(), "cores": os.cpu_count(),
          "python": platform.python_version(), "workdir": str(work)})
    try:
        dem = {s: demand(s) for s in (args.streams, "body,hands")}
        for row in dem.values():
            emit(row)
        need_sps = dem[args.streams]["demand_samples_per_s"]
        if args.normalize_hours > 0:
            emit(run_child(args, child="pack", out=work / "norm", hours_one=args.normalize_hours, normalize=True))
            shutil.rmtree(work / "norm")
        for h in hours:
            out = work / f"{h:g}h"
            emit(run_child(args, child="pack", out=out, hours_one=h))
            settings = [("per_window", w) for w in (0, 1, 2)] + [("batched", w) for w in (0, 1, 2)] + [("device", 0)]
            rates = {}
            for path, w in settings:
                r = run_child(args, child="load", out=out, path=path, workers=w)
                name = f"corpus_scale/load/{h:g}h/{path}" + ("" if path == "device" else f"/workers={w}")
                if "skipped" in r:
                    emit({"name": name, "kind": "skipped", "reason": r["skipped"]})
                    continue
                rates[(path, w)] = r["samples_per_s"]
                emit({"name": name, "kind": "measured", "hours": h, "path": path,
                      "workers": w if path != "device" else None, "batch_size": args.batch_size,
                      "streams": args.streams, **r, "supply_over_demand": round(r["samples_per_s"] / need_sps, 3)})
                if path == "device":
                    k = dem[args.streams]
                    gpu = device_path_on_gpu_model(160 if args.streams == "body,hands,face" else 48,
                                                   r["host_index_s_per_batch"], args.batch_size)
                    emit({"name": f"corpus_scale/projection/{h:g}h/device_on_h200", "kind": "projection",
                          "how": "HBM traffic per sample at 30% of 4.8 TB/s; the host's index work per batch "
                                 "as measured here", **gpu,
                          "supply_over_demand": round(gpu["samples_per_s"] / k["demand_samples_per_s"], 1)})
            for path in ("per_window", "batched"):
                per_core = rates.get((path, 0))
                if per_core:
                    emit({"name": f"corpus_scale/projection/{h:g}h/{path}/cores_per_h200", "kind": "projection",
                          "how": "demand / samples/s of one process reading in its own loop (workers=0)",
                          "samples_per_s_per_core": per_core,
                          "cores_needed": round(need_sps / per_core, 1),
                          "cores_needed_without_face": round(dem["body,hands"]["demand_samples_per_s"] / per_core, 1)})
            if not args.keep:
                shutil.rmtree(out)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    emit({"name": "corpus_scale/total", "kind": "measured", "wall_s": round(time.perf_counter() - t_all, 1),
          "deleted": not args.keep})
    return 0


if __name__ == "__main__":
    sys.exit(main())
