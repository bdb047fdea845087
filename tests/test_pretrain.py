"""Pre-training: the loop, exact resume, continual pre-training, torchrun (gloo), and learning on real poses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from msmae.config import load_config
from msmae.corpus import PackedCorpus, pack_sequences
from msmae.poses import PoseSequence
from msmae.tasks.pretrain import PretrainConfig, WindowDataset, pretrain
from msmae.train import checkpoint as ck

SMALL = ["model.size=tiny", "model.extra={dim: 32, depth: 1, heads: 2, decoder_dim: 32, decoder_depth: 1, "
         "decoder_heads: 2}", "data.window=64", "data.frame_stride=2", "data.num_workers=0",
         "data.eval_windows=8", "train.batch_size=4", "train.warmup_steps=2", "train.log_every=1",
         "train.lr=1e-3"]


def random_walk_corpus(root: Path, n: int = 8, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    seqs = []
    for i in range(n):
        T = int(rng.integers(40, 150))
        c = rng.normal(size=(1, 160, 2)) + np.cumsum(rng.normal(scale=0.05, size=(T, 160, 2)), 0)
        seqs.append(PoseSequence(c, rng.random((T, 160)) > 0.2, 25.0, source=f"walk{i}"))
    pack_sequences(seqs, root, normalize=False)
    return root


def free_port() -> int:
    """A port free now (torchrun tests run beside other test processes: never a fixed port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cfg_of(*extra: str) -> PretrainConfig:
    return load_config(PretrainConfig, None, SMALL + list(extra))


def test_window_dataset_partitions_ranks_and_pads(tmp_path):
    corpus = PackedCorpus(random_walk_corpus(tmp_path / "c", n=6))
    kp = list(range(48))
    ds = [WindowDataset(corpus, list(range(6)), keypoints=kp, window=64, frame_stride=2, seed=3, rank=r,
                        world_size=2) for r in range(2)]
    # Within one epoch (3 samples per rank) the two ranks read disjoint videos covering the corpus.
    seen = [{ds[r].locate(k)[0] for k in range(3)} for r in range(2)]
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(6))
    # Deterministic: the same k gives the same window.
    assert ds[0].locate(5) == ds[0].locate(5)
    item = ds[0][0]
    assert item["coords"].shape == (32, 48, 2) and item["frame_valid"].dtype == torch.bool
    v, start = ds[0].locate(0)
    n = corpus.entries[v].length
    assert int(item["frame_valid"].sum()) == min(32, len(range(start, min(n, start + 64), 2)))
    assert not item["present"][~item["frame_valid"]].any()


def test_loss_weight_per_frame_is_present_valid_and_masked(tmp_path):
    # evaluate_reconstruction reads the loss weight per frame: (B, Nt, S, K) -> (B, T, K)
    from msmae.models import MSMAE, model_config

    cfg = model_config("tiny", dim=32, depth=1, heads=2, decoder_dim=32, decoder_depth=1, decoder_heads=2)
    m = MSMAE(config=cfg)
    g = torch.Generator().manual_seed(0)
    B, T, K = 3, 30, cfg.layout.num_points
    coords = torch.randn(B, T, K, 2, generator=g)
    present = torch.rand(B, T, K, generator=g) > 0.3
    valid = torch.ones(B, T, dtype=torch.bool)
    valid[1, 20:] = False
    out = m(coords * present[..., None], present, valid, mask_ratio=0.5, generator=g)
    per_frame = out.masked.repeat_interleave(cfg.cubelet, dim=2)[:, :, :T]            # (B, P, T)
    sizes = [s.size for s in cfg.layout.streams]
    per_point = torch.cat([per_frame[:, i, :, None].expand(B, T, n) for i, n in enumerate(sizes)], dim=2)
    expected = per_point & present & valid[:, :, None]
    assert torch.equal(out.weight.flatten(1, 2)[:, :T].bool(), expected)
    assert float(expected.sum()) * 2 == pytest.approx(float(out.count))


def test_pretrain_writes_run_and_resume_is_exact(tmp_path):
    data = random_walk_corpus(tmp_path / "c")
    full = pretrain(cfg_of("train.steps=8", "train.checkpoint_every=4"), data, tmp_path / "full", progress=False)
    part = cfg_of("train.steps=8", "train.checkpoint_every=4")
    # Interrupt after step 4 by running a 4-step schedule? No: the schedule must be the 8-step one, so run
    # 8 steps in a second directory, delete everything after the step-4 checkpoint, and resume.
    pretrain(part, data, tmp_path / "resumed", progress=False)
    run = tmp_path / "resumed"
    import shutil

    for p in (run / "checkpoints").glob("step_*"):
        if p.name != "step_0000004":
            shutil.rmtree(p)
    (run / "checkpoints" / "LATEST").write_text("step_0000004\n")
    shutil.rmtree(run / "model")
    (run / "metrics.json").unlink()
    resumed = pretrain(part, data, run, resume=True, progress=False)
    assert resumed["steps"] == full["steps"] == 8
    a, b = ck.load_state_dict(tmp_path / "full"), ck.load_state_dict(run)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert resumed["eval_loss"] == full["eval_loss"]
    log_full = (tmp_path / "full" / "log.csv").read_text().splitlines()
    log_res = (run / "log.csv").read_text().splitlines()
    assert [ln.split(",")[:2] for ln in log_full] == [ln.split(",")[:2] for ln in log_res]
    for f in ("config.yaml", "metrics.json", "loss.png", "model/model.safetensors", "model/config.json",
              "model/README.md"):
        assert (run / f).exists(), f
    m = json.loads((run / "metrics.json").read_text())
    for k in ("steps", "final_loss", "eval_loss", "mean_baseline_loss", "samples_per_s"):
        assert k in m
    assert list((run / "tb").glob("events.*"))


def test_gradient_accumulation_and_bf16_autocast_on_cpu(tmp_path):
    """grad_accum=2 consumes the same windows per optimiser step as one batch of the global size (the
    sample at global position k is a pure function of the seed and k) and learns; bf16 autocast runs on CPU."""
    data = random_walk_corpus(tmp_path / "c")
    corpus = PackedCorpus(data)
    ds = WindowDataset(corpus, list(range(len(corpus))), keypoints=list(range(48)), window=64, frame_stride=2,
                       seed=0)
    first = [ds[k]["coords"] for k in range(4)]
    m = pretrain(cfg_of("train.steps=6", "train.grad_accum=2", "train.checkpoint_every=0"), data, tmp_path / "acc",
                 progress=False)
    assert m["steps"] == 6 and np.isfinite(m["final_loss"]) and np.isfinite(m["eval_loss"])
    assert all(torch.equal(a, ds[k]["coords"]) for k, a in enumerate(first))   # deterministic per position
    b = pretrain(cfg_of("train.steps=2", "train.precision=bf16", "train.checkpoint_every=0"), data, tmp_path / "bf16",
                 progress=False)
    assert b["steps"] == 2 and np.isfinite(b["final_loss"])
    with pytest.raises(ValueError, match="divisible by processes x grad_accum"):
        pretrain(cfg_of("train.steps=1", "train.grad_accum=3"), data, tmp_path / "bad", progress=False)


def test_load_encoder_and_continual_pretraining(tmp_path):
    import msmae

    data = random_walk_corpus(tmp_path / "c")
    pretrain(cfg_of("train.steps=3"), data, tmp_path / "a", progress=False)
    enc = msmae.load_encoder(tmp_path / "a")
    sd = ck.load_state_dict(tmp_path / "a")
    torch.testing.assert_close(enc.state_dict()["norm.weight"], sd["encoder.norm.weight"])
    assert not enc.training and enc.config.dim == 32
    out = enc(torch.zeros(1, 16, enc.layout.num_points, 2), torch.ones(1, 16, dtype=torch.bool))
    assert out.tokens.shape == (1, 3 * 4, 32)
    # --init: step 0 of the continued run starts from a's encoder; a different architecture is refused.
    pretrain(cfg_of("train.steps=1", "train.lr=0", "train.warmup_steps=0", f"init={tmp_path / 'a'}"), data,
             tmp_path / "b", progress=False)
    torch.testing.assert_close(msmae.load_encoder(tmp_path / "b").state_dict(), enc.state_dict())
    with pytest.raises(ValueError, match="differs"):
        pretrain(cfg_of("train.steps=1", "model.extra.dim=48", f"init={tmp_path / 'a'}"), data, tmp_path / "c2",
                 progress=False)


def test_cli_pretrain_refuses_to_overwrite_and_reports_bad_config(tmp_path):
    from msmae.cli import main

    data = random_walk_corpus(tmp_path / "c")
    args = ["pretrain", "--data", str(data), "--out", str(tmp_path / "r"), "--no-progress"]
    sets = sum((["--set", s] for s in SMALL + ["train.steps=2"]), [])
    assert main(args + sets) == 0
    assert main(args + sets) == 1  # checkpoints exist and no --resume
    assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "r2"), "--set", "train.stepz=3"]) == 1
    assert main(["pretrain", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r3")]) == 1


@pytest.mark.parametrize("override, message", [
    ("train.grad_accum=0", "train.steps, train.batch_size, train.grad_accum"),
    ("data.frame_stride=0", "data.window, data.frame_stride"),
    ("mask.ratio=1.0", "mask.ratio must be in [0, 1)"),
    ("mask.mode=half", "mask.mode must be 'diff' or 'same'"),
    ("train.betas=[0.9]", "train.betas must be two numbers"),
])
def test_cli_pretrain_rejects_out_of_range_values_in_one_line(tmp_path, capsys, override, message):
    from msmae.cli import main

    data = random_walk_corpus(tmp_path / "c")
    assert main(["pretrain", "--data", str(data), "--out", str(tmp_path / "r"), "--set", override]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()  # nothing written for a bad config


def test_torchrun_two_processes_gloo(tmp_path):
    data = random_walk_corpus(tmp_path / "c")
    out = tmp_path / "ddp"
    sets = sum((["--set", s] for s in SMALL + ["train.steps=3", "train.checkpoint_every=2"]), [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()),
           "-m", "msmae", "pretrain", "--data", str(data), "--out", str(out), "--no-progress", *sets]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["steps"] == 3
    assert (out / "checkpoints" / "step_0000002").is_dir()


def test_pretraining_on_real_poses_beats_the_mean(tmp_path):
    """A tiny model pre-trained for a few CPU minutes on the real shared poses (GISLR parquet, fingerspelling and
    DGS .pose, reference MediaPipe arrays) reconstructs held-out masked windows much better than the mean."""
    from conftest import shared_path
    from msmae.corpus import pack_corpus

    sources = [shared_path("gislr-asl-signs"), shared_path("fingerspelling-ase"), shared_path("dgs-corpus-sentences"),
               shared_path("videos", "reference-holistic")]
    s = pack_corpus(sources, tmp_path / "c", workers=2, progress=False)
    assert not s.failed
    cfg = load_config(PretrainConfig, "pretrain/tiny",
                      ["train.steps=120", "train.batch_size=8", "data.window=96", "data.holdout_fraction=0.15",
                       "data.eval_windows=32", "train.checkpoint_every=0"])
    m = pretrain(cfg, tmp_path / "c", tmp_path / "r", progress=False)
    assert m["videos"]["held_out"] >= 10
    assert m["eval_loss"] < 0.6 * m["mean_baseline_loss"], m
