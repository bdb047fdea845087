"""Training details that matter at scale: the maskable check in model frames on a strided corpus, no weight
decay on the decoder's stream embedding, native-bf16-only ``precision: auto``, the loss read only at log and
checkpoint steps, and the host-memory budget of CPU ranks sharing a machine."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from test_pretrain import cfg_of, random_walk_corpus

from msmae.corpus import pack_sequences
from msmae.poses import PoseSequence


def test_require_maskable_counts_model_frames_of_a_stride_2_corpus(tmp_path):
    """Clips of 6-8 stored frames extracted at stride 2 (12-16 source frames): window 64 / stride 2 in source
    frames is 32 / 1 in stored frames, so each clip gives 2 tokens of 4 frames and one can be masked."""
    from msmae.tasks.pretrain import pretrain

    rng = np.random.default_rng(0)
    seqs = [PoseSequence(rng.normal(size=(t, 160, 2)), np.ones((t, 160), bool), 12.5, source=f"clip{i}",
                         meta={"frame_stride": 2, "source_fps": 25.0}) for i, t in enumerate([6, 7, 8, 6, 8])]
    pack_sequences(seqs, tmp_path / "c", normalize=False)
    m = pretrain(cfg_of("train.steps=1", "train.checkpoint_every=0"), tmp_path / "c", tmp_path / "r", progress=False)
    assert m["steps"] == 1 and np.isfinite(m["final_loss"])


def test_decoder_stream_embedding_is_not_weight_decayed():
    from msmae.models import MSMAE
    from msmae.train.optim import build_optimizer

    model = MSMAE(config=cfg_of().model.build_config())
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05)
    decay = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    for n in ("decoder_stream_embed", "mask_token"):
        assert id(dict(model.named_parameters())[n]) not in decay, n
    assert any("weight" in names[i] for i in decay)                       # matrices still decay


@pytest.mark.parametrize("capability, emulated, expected", [((7, 0), True, None), ((7, 5), True, None),
                                                            ((8, 0), True, torch.bfloat16),
                                                            ((9, 0), True, torch.bfloat16)])
def test_precision_auto_picks_bf16_only_with_native_support(monkeypatch, capability, emulated, expected):
    from msmae.train.distributed import resolve_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: emulated)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    assert resolve_precision("auto", torch.device("cuda:0")) == expected
    assert resolve_precision("auto", torch.device("cpu")) is None
    assert resolve_precision("bf16", torch.device("cuda:0")) == torch.bfloat16   # asked for: given


def _losses(path) -> dict[int, str]:
    with open(path, newline="") as f:
        return {int(r["step"]): r["loss"] for r in csv.DictReader(f)}


@pytest.mark.parametrize("grad_accum, checkpoint_every", [(1, 0), (2, 4)])
def test_loss_is_synchronised_only_at_log_and_checkpoint_steps(tmp_path, monkeypatch, grad_accum, checkpoint_every):
    """The logged loss of a step and final_loss (the mean of the last log_every steps, all ranks) are those of
    a run that reads the loss every step; the loss is all-reduced and read only at log/checkpoint steps."""
    import msmae.train.distributed as dist_mod
    from msmae.tasks.pretrain import pretrain

    data = random_walk_corpus(tmp_path / "c")
    calls: list[np.ndarray] = []
    real = dist_mod.all_reduce_mean

    def counting(value, info):
        out = real(value, info)
        calls.append(out.detach().cpu().numpy().copy())
        return out

    monkeypatch.setattr(dist_mod, "all_reduce_mean", counting)
    common = ("train.steps=8", f"train.grad_accum={grad_accum}", f"train.checkpoint_every={checkpoint_every}")
    every = pretrain(cfg_of(*common, "train.log_every=1"), data, tmp_path / "every", progress=False)
    per_step = [float(np.ravel(c)[-1]) for c in calls]                        # log_every=1: one read per step
    assert len(per_step) == 8
    calls.clear()
    sparse = pretrain(cfg_of(*common, "train.log_every=3"), data, tmp_path / "sparse", progress=False)
    syncs = {3, 6, 8} | ({4, 8} if checkpoint_every else set())
    assert len(calls) == len(syncs)
    logged, reference = _losses(tmp_path / "sparse" / "log.csv"), _losses(tmp_path / "every" / "log.csv")
    assert sorted(logged) == [3, 6, 8] and all(logged[s] == reference[s] for s in logged)
    assert sparse["final_loss"] == float(np.mean(per_step[-3:]))
    assert every["final_loss"] == per_step[-1]


def test_loss_window_is_no_longer_than_the_run(tmp_path, monkeypatch):
    """A log_every far beyond train.steps (logging only at the end) must not allocate a ring of log_every
    losses on the device (one per step of the run is enough)."""
    import msmae.train.loss_window as lw
    from msmae.tasks.pretrain import pretrain

    sizes, real = [], lw.LossWindow

    class Recording(real):
        def __init__(self, size, device):
            sizes.append(size)
            assert size <= 3, f"a ring of {size} losses for a 3-step run"
            super().__init__(size, device)

    monkeypatch.setattr(lw, "LossWindow", Recording)
    data = random_walk_corpus(tmp_path / "c")
    m = pretrain(cfg_of("train.steps=3", "train.checkpoint_every=0", f"train.log_every={10 ** 12}"), data,
                 tmp_path / "r", progress=False)
    assert sizes == [3] and np.isfinite(m["final_loss"])
    assert _losses(tmp_path / "r" / "log.csv").keys() == {3}


def test_non_finite_loss_is_still_caught(tmp_path):
    from msmae.tasks.pretrain import pretrain

    data = random_walk_corpus(tmp_path / "c")
    with pytest.raises(FloatingPointError, match=r"loss became (nan|inf) at step \d"):
        pretrain(cfg_of("train.steps=6", "train.log_every=3", "train.checkpoint_every=0", "train.lr=1e30",
                        "train.warmup_steps=0"), data, tmp_path / "r", progress=False)


def test_cpu_ranks_on_one_machine_share_its_memory(tmp_path, monkeypatch, caplog):
    """data.on_device=auto on the CPU: each of the processes on a machine budgets its share of the free
    host memory (LOCAL_WORLD_SIZE), so W ranks do not over-commit it."""
    import logging

    import msmae.data.windows as win
    from msmae.train.distributed import init_distributed
    from test_windows import walks

    corpus = walks(tmp_path / "c", n=4)
    ds = win.WindowDataset(corpus, [0, 1, 2, 3], keypoints=list(range(48)), window=64, frame_stride=2, seed=0)
    need = win.device_bytes(ds)
    monkeypatch.setattr(win, "free_memory", lambda device: 3 * need)         # fits half of it, not an eighth
    assert win.batch_stream(ds, 0, 4, 2, device=torch.device("cpu"), num_workers=0)[1] == "device"
    with caplog.at_level(logging.INFO, logger="msmae.data.windows"):
        assert win.batch_stream(ds, 0, 4, 2, device=torch.device("cpu"), num_workers=0, processes=4)[1] == "workers"
    assert "divided among the 4 processes" in caplog.text
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert init_distributed("cpu").local_world_size == 4


def _islr_rank(rank: int, world: int, port: int, man: str, out: str, record: str) -> None:
    """One rank of a gloo ISLR run that records which splits it read clips of."""
    import msmae.data.islr as islr_data
    from msmae.cli import main
    from test_islr_task import SMALL as ISLR_SMALL
    from test_islr_task import sets

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world), OMP_NUM_THREADS="1")
    real, read = islr_data.load_clips, []

    def recording(examples, **kw):
        read.append(kw.get("desc"))
        return real(examples, **kw)

    islr_data.load_clips = recording
    code = main(["finetune", "islr", "--annotations", man, "--init", "none", "--out", out, "--no-progress",
                 *sets(ISLR_SMALL + ["train.epochs=2"])])
    Path(record, f"rank{rank}.json").write_text(json.dumps({"code": code, "read": read}))


def test_islr_under_two_ranks_reads_val_and_test_clips_on_rank_0_only(tmp_path):
    import torch.multiprocessing as mp
    from test_islr_task import manifest
    from test_pretrain import free_port

    man = manifest(tmp_path)
    mp.spawn(_islr_rank, args=(2, free_port(), str(man), str(tmp_path / "run"), str(tmp_path)), nprocs=2, join=True)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert [g["code"] for g in got] == [0, 0]
    assert got[0]["read"] == ["read train", "read val", "read test"] and got[1]["read"] == ["read train"]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["split"] == "test" and m["selected_on"]["split"] == "val"
    assert len((tmp_path / "run" / "log.csv").read_text().splitlines()) == 3          # header + 2 validated epochs
