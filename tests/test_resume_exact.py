"""Exact resume in every fine-tuning loop (issue 23, items 4-7): every generator's state in the checkpoint,
dropout seeded per rank, a damaged `last` that falls back to the version before, a `best` that a restart does
not beat kept, checkpoints flushed to disk before they are published, and `eval_before` written once."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch

from conftest import shared_path
from msmae.cli import main
from msmae.train import checkpoint as ck
from msmae.train.loop import EpochSettings, fit_epochs
from msmae.train.preempt import Preempted
from test_islr_task import sets
from test_train_loop import Pairs, _free_port, interrupt_after_epoch


def dropout_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Dropout(0.5), torch.nn.Linear(32, 1))


def fit(out: Path | None, *, epochs: int = 4, resume: bool = False, scores=None, steps: list | None = None,
        signal_at: int | None = None, sig=signal.SIGUSR1, num_workers: int = 0, eval_before: bool = False,
        crash_at: int | None = None, seed: int = 0):
    """The real fine-tuning loop on a model with dropout. ``scores``: the validation score of each epoch (epoch
    0 first); ``steps`` collects every step's loss; ``signal_at`` / ``crash_at``: the step (1-based, counted
    from the start of this call) at which the process sends itself ``sig`` / raises KeyboardInterrupt."""
    model = dropout_model()
    done = [0]

    def step(net, batch):
        loss = torch.nn.functional.mse_loss(net(batch["x"]), batch["y"]) / 100
        done[0] += 1
        if steps is not None:
            steps.append(loss.item())
        if done[0] == crash_at:
            raise KeyboardInterrupt
        if done[0] == signal_at:
            os.kill(os.getpid(), sig)  # a real signal, caught by the loop; the step still completes
        return loss

    def validate(epoch):
        return {"acc": scores[epoch]}

    return fit_epochs(model, Pairs(), settings=EpochSettings(epochs=epochs, batch_size=4, lr=1e-2, warmup_epochs=1,
                                                             num_workers=num_workers, eval_before=eval_before,
                                                             seed=seed),
                      step=step, out=out, resume=resume, progress=False, validate=validate if scores else None,
                      val_keys=("acc",) if scores else (), select="acc")


def weights_equal(a: Path, b: Path) -> bool:
    x, y = ck.load_state_dict(a), ck.load_state_dict(b)
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


# ------------------------------------------------------------------------------ 4: every generator saved
def test_checkpoint_holds_every_generator_and_loads_weights_only(tmp_path):
    import random

    import numpy as np

    fit(tmp_path / "r", epochs=1)
    st = torch.load(tmp_path / "r" / "checkpoints" / "last" / ck.TRAIN_STATE, weights_only=True)
    (state,) = st["rng"]  # one process
    assert set(state) >= {"torch", "cuda", "numpy", "python"}
    from msmae.train.rng import set_rng_state

    def draws():
        set_rng_state(state)
        return torch.rand(3).tolist(), np.random.random(3).tolist(), random.random()

    assert draws() == draws()


@pytest.mark.parametrize("num_workers", [0, 1])
def test_resume_with_dropout_is_exact_after_an_interruption(tmp_path, num_workers):
    full: list[float] = []
    fit(tmp_path / "full", steps=full, num_workers=num_workers)
    part: list[float] = []
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 3: the last checkpoint is after epoch 2
        fit(tmp_path / "part", steps=part, crash_at=10, num_workers=num_workers)
    del part[8:]
    fit(tmp_path / "part", resume=True, steps=part, num_workers=num_workers)
    assert part == full  # every step's loss
    assert (tmp_path / "full" / "log.csv").read_text() == (tmp_path / "part" / "log.csv").read_text()
    assert weights_equal(tmp_path / "full" / "checkpoints" / "last", tmp_path / "part" / "checkpoints" / "last")


def test_slt_on_real_dgs_sentences_resumes_exactly(tmp_path, monkeypatch):
    """mBART's dropout (0.1) is always on in SLT: killed after epoch 2 of 4 and resumed, every epoch's loss
    equals the uninterrupted run's, with `eval_before` written once."""
    from msmae.data.slt import load_dgs_sentences
    from msmae.models.translator import make_tiny_mbart

    root = shared_path("dgs-corpus-sentences")
    texts = [e.text for e in load_dgs_sentences(root, language="german").examples]
    mbart = make_tiny_mbart(tmp_path / "mbart", texts, vocab_size=200, d_model=32, heads=2, ffn_dim=64)

    def args(run):
        return ["finetune", "slt", "--out", str(run), "--init", "none", "--mbart", str(mbart), "--dataset", "dgs",
                "--annotations", str(root), "--no-progress",
                *sets(["model.size=tiny", "model.extra={dim: 32, depth: 1, heads: 2}", "data.val_split=train",
                       "train.epochs=4", "train.batch_size=4", "train.warmup_epochs=1", "train.lr=3e-3",
                       "train.eval_every=100", "train.eval_before=true", "translator.num_beams=1",
                       "translator.max_new_tokens=4", "data.num_workers=0", "data.load_workers=1"])]

    assert main(args(tmp_path / "full")) == 0
    interrupt_after_epoch(monkeypatch, 2)
    assert main(args(tmp_path / "part")) == 130
    monkeypatch.undo()
    assert main(args(tmp_path / "part") + ["--resume"]) == 0
    full, part = (json.loads((tmp_path / r / "metrics.json").read_text(encoding="utf-8"))["history"]
                  for r in ("full", "part"))
    assert [r["epoch"] for r in part] == [0, 1, 2, 3, 4]
    assert [r["loss"] for r in part] == [r["loss"] for r in full]
    assert (tmp_path / "full" / "log.csv").read_text() == (tmp_path / "part" / "log.csv").read_text()


@pytest.mark.parametrize("on_device", ["true", "false"])
def test_pretraining_with_dropout_resumes_exactly_on_either_data_path(tmp_path, on_device):
    """The pre-training checkpoint holds every generator too; the worker path's DataLoader draws its worker
    seeds from its own generator, not from the one dropout uses."""
    import shutil

    from msmae.tasks.pretrain import pretrain
    from test_pretrain import cfg_of, random_walk_corpus

    data = random_walk_corpus(tmp_path / "c")
    cfg = cfg_of("train.steps=8", "train.checkpoint_every=4", f"data.on_device={on_device}",
                 "model.extra={dim: 32, depth: 1, heads: 2, decoder_dim: 32, decoder_depth: 1, decoder_heads: 2, "
                 "dropout: 0.3}")
    pretrain(cfg, data, tmp_path / "full", progress=False)
    run = tmp_path / "part"
    pretrain(cfg, data, run, progress=False)
    shutil.rmtree(run / "checkpoints" / "step_0000008")  # as if it had stopped after step 4
    (run / "checkpoints" / "LATEST").write_text("step_0000004\n")
    shutil.rmtree(run / "model")
    pretrain(cfg, data, run, resume=True, progress=False)
    losses = [[ln.split(",")[:2] for ln in (r / "log.csv").read_text().splitlines()] for r in (tmp_path / "full", run)]
    assert losses[0] == losses[1] and len(losses[0]) == 9


# ---------------------------------------------------------------------------------- 5: seeded per rank
def _dropout_masks(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from msmae.train.distributed import DistInfo

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        masks: list[list[float]] = []
        torch.manual_seed(5)  # as the tasks do: the same initial weights on every rank
        model = torch.nn.Sequential(torch.nn.Linear(4, 64), torch.nn.Dropout(0.5), torch.nn.Linear(64, 1))

        def step(net, batch):
            masks.append(torch.nn.functional.dropout(torch.ones(32), 0.5, training=True).tolist())
            return torch.nn.functional.mse_loss(net(batch["x"]), batch["y"])

        fit_epochs(model, Pairs(), settings=EpochSettings(epochs=1, batch_size=4, lr=1e-3, seed=5), step=step,
                   info=DistInfo(rank=rank, world_size=world), progress=False)
        Path(out, f"rank{rank}.json").write_text(json.dumps(masks))
    finally:
        dist.destroy_process_group()


def test_every_rank_drops_different_units(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_dropout_masks, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    a, b = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2))
    assert len(a) == len(b) == 4 and all(x != y for x, y in zip(a, b))


# ------------------------------------------------------------------- 6: damaged last, best, fsync
SCORES = [0.0, 0.5, 0.9, 0.7, 0.6, 0.8]  # epoch 0 (untrained) .. 5: epoch 2 is the best


def test_a_damaged_last_falls_back_to_the_version_before(tmp_path):
    full: list[float] = []
    fit(tmp_path / "full", epochs=5, scores=SCORES, steps=full)
    run = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 4
        fit(run, epochs=5, scores=SCORES, crash_at=13)
    best_before = (run / "checkpoints" / "best" / ck.WEIGHTS).read_bytes()
    newest = run / "checkpoints" / os.readlink(run / "checkpoints" / "last")
    (newest / ck.TRAIN_STATE).write_bytes((newest / ck.TRAIN_STATE).read_bytes()[:100])  # truncated
    steps: list[float] = []
    res = fit(run, epochs=5, scores=SCORES, steps=steps, resume=True)
    assert [r["epoch"] for r in res.history] == [1, 2, 3, 4, 5]  # continued after epoch 2, not from scratch
    assert steps == full[8:]
    assert res.best_epoch == 2 and res.best_score == 0.9
    assert (run / "checkpoints" / "best" / ck.WEIGHTS).read_bytes() == best_before


@pytest.mark.parametrize("eval_before", [False, True])
def test_a_restart_never_replaces_a_best_it_did_not_beat(tmp_path, eval_before):
    run = tmp_path / "r"
    fit(run, epochs=3, scores=SCORES, eval_before=eval_before)
    best_before = (run / "checkpoints" / "best" / ck.WEIGHTS).read_bytes()
    for p in (run / "checkpoints").iterdir():  # every `last` unreadable: the run starts over
        if p.name.startswith("last-"):
            (p / ck.WEIGHTS).write_bytes(b"damaged")
    res = fit(run, epochs=2, scores=SCORES, resume=True, eval_before=eval_before)  # epoch 0 scores 0.0
    assert [r["epoch"] for r in res.history] == [0, 1, 2][0 if eval_before else 1:]
    assert res.best_epoch == 2 and res.best_score == 0.9  # the earlier best (0.9) was not beaten by 0.5, 0.9
    assert (run / "checkpoints" / "best" / ck.WEIGHTS).read_bytes() == best_before
    assert ck.read_checkpoint_config(run / "checkpoints" / "best")["best_score"] == 0.9


def test_checkpoint_files_and_folders_are_flushed_before_the_rename_that_publishes_them(tmp_path, monkeypatch):
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(a, b):
        events.append(("replace", f"{os.fspath(a)} -> {os.fspath(b)}"))
        return real_replace(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    for name in ("step_0000001", "last"):
        events.clear()
        ck.save_checkpoint(tmp_path / "checkpoints" / name, state_dict={"w": torch.ones(2)}, config={},
                           train_state={"step": 1})
        first_replace = next(i for i, e in enumerate(events) if e[0] == "replace")
        tmp = events[first_replace][1].split(" -> ")[0]
        synced = {p for kind, p in events[:first_replace] if kind == "fsync"}
        assert {f"{tmp}/{f}" for f in (ck.WEIGHTS, ck.CONFIG, ck.TRAIN_STATE)} | {tmp} <= synced, name
        assert ("fsync", str(tmp_path / "checkpoints")) in events[first_replace:], name  # the folder's new entry


def test_a_file_that_cannot_be_flushed_fails_the_checkpoint_and_publishes_nothing(tmp_path, monkeypatch):
    import errno

    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(ck.TRAIN_STATE):
            raise OSError(errno.EIO, "Input/output error")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output"):
        ck.save_checkpoint(tmp_path / "checkpoints" / "last", state_dict={"w": torch.ones(2)}, config={},
                           train_state={"step": 1})
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == []  # no last, no temporary folder


# --------------------------------------------------------------------------- 7: eval_before only once
def test_eval_before_is_written_once_after_a_crash_in_epoch_one(tmp_path):
    run = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt):
        fit(run, epochs=3, scores=SCORES, eval_before=True, crash_at=2)
    res = fit(run, epochs=3, scores=SCORES, eval_before=True, resume=True)
    assert [r["epoch"] for r in res.history] == [0, 1, 2, 3]
    assert [ln.split(",")[0] for ln in (run / "log.csv").read_text().splitlines()] == ["epoch", "0", "1", "2", "3"]


def _eval_before_on_two_ranks(rank: int, world: int, port: int, out: str) -> None:
    from datetime import timedelta

    import torch.distributed as dist

    from msmae.train.distributed import DistInfo

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    try:
        torch.manual_seed(0)
        res = fit_epochs(dropout_model(), Pairs(), settings=EpochSettings(epochs=2, batch_size=4, lr=1e-2,
                                                                          eval_before=True),
                         step=lambda net, b: torch.nn.functional.mse_loss(net(b["x"]), b["y"]),
                         validate=lambda epoch: {"acc": SCORES[epoch]} if rank == 0 else None, val_keys=("acc",),
                         select="acc", info=DistInfo(rank=rank, world_size=world), out=Path(out), progress=False)
        if rank == 0:
            Path(out, "result.json").write_text(json.dumps([r["epoch"] for r in res.history]))
    finally:
        dist.destroy_process_group()


def test_eval_before_with_a_run_folder_on_two_ranks(tmp_path):
    """Only rank 0 has epoch 0's scores; every rank takes part in saving the checkpoint after it (the ranks'
    generator states are gathered), or rank 0 waits there for the others for ever."""
    import torch.multiprocessing as mp

    mp.spawn(_eval_before_on_two_ranks, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    assert json.loads((tmp_path / "result.json").read_text()) == [0, 1, 2]


# ------------------------------------------------------------- 8: a signal in the middle of an epoch
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_signal_stops_after_the_step_with_a_checkpoint_and_resume_is_exact(tmp_path, sig, num_workers):
    full: list[float] = []
    fit(tmp_path / "full", scores=SCORES, steps=full, num_workers=num_workers)
    run = tmp_path / "part"
    part: list[float] = []
    with pytest.raises(Preempted):
        fit(run, scores=SCORES, steps=part, signal_at=6, sig=sig, num_workers=num_workers)  # epoch 2, batch 2
    assert len(part) == 6  # the step in flight finished, nothing after it
    marker = json.loads((run / "preempted.json").read_text())
    assert marker["signal"] == sig.name and (marker["epoch"], marker["batch"]) == (2, 2)
    assert signal.getsignal(sig) is signal.default_int_handler or signal.getsignal(sig) == signal.SIG_DFL
    fit(run, scores=SCORES, steps=part, resume=True, num_workers=num_workers)
    assert part == full
    assert not (run / "preempted.json").exists()
    assert (tmp_path / "full" / "log.csv").read_text() == (run / "log.csv").read_text()
    assert weights_equal(tmp_path / "full" / "checkpoints" / "best", run / "checkpoints" / "best")


def test_an_epoch_stopped_after_its_last_partial_batch_has_nothing_left():
    from msmae.train.loop import EpochSampler

    sampler = EpochSampler(Pairs(18), num_replicas=1, rank=0, shuffle=True, seed=0)
    sampler.set_epoch(0, skip=5 * 4)  # 5 batches of 4 done (the last one held 2)
    assert len(sampler) == 0 and list(sampler) == []
    sampler.set_epoch(0, skip=2 * 4)
    assert len(sampler) == 10 and len(list(sampler)) == 10
