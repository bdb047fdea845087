"""Pre-training data order at scale: a seeded random partition of the videos over ranks, each rank's own
(seed, epoch, rank) order, per-video or by-length sampling, and ``batches.jsonl`` (4 gloo ranks under torchrun,
and resume)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from test_pretrain import SMALL, cfg_of, free_port, random_walk_corpus
from test_windows import walks

from msmae.corpus import PackedCorpus
from msmae.data.sampling import DrawPlan, windows_per_video
from msmae.data.windows import WindowDataset


def _rank_of_part(part: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """Position of each video within the sorted part (what the old shared permutation made equal on all ranks)."""
    return np.searchsorted(np.sort(part), videos)


@pytest.mark.parametrize("sampling", ["per_video", "by_length"])
@pytest.mark.parametrize("world", [1, 3, 4])
def test_partition_is_random_complete_and_each_rank_draws_its_own_order(tmp_path, sampling, world):
    corpus = walks(tmp_path / "c", n=40)
    videos = list(range(2, 40))                          # corpus indices, not 0..n-1
    ds = [WindowDataset(corpus, videos, keypoints=list(range(48)), window=64, frame_stride=2, seed=3, rank=r,
                        world_size=world, sampling=sampling) for r in range(world)]
    parts = [np.asarray(d.part) for d in ds]
    assert sorted(np.concatenate(parts).tolist()) == videos                     # a partition of the videos
    assert len({d.per_rank for d in ds}) == 1                                   # equal batches per rank
    if world > 1:                                                               # not a stride over sorted videos
        assert any(list(p) != videos[r::world] for r, p in enumerate(parts))
    lengths = np.array([corpus.entries[v].length for v in videos])
    counts = {v: int(c) for v, c in zip(videos, windows_per_video(lengths, 64, sampling))}
    for r, d in enumerate(ds):
        # One epoch of a rank draws each of its windows: every video of its part, as many times as its count,
        # and the positions it lacks (a smaller part) walk its order again.
        epoch_v, epoch_s = d.locate_many(np.arange(d.per_rank))
        own = sum(counts[v] for v in parts[r])
        got = np.unique(epoch_v[:own], return_counts=True)
        assert dict(zip(got[0].tolist(), got[1].tolist())) == {v: counts[v] for v in parts[r]}
        assert (epoch_v[own:] == epoch_v[:d.per_rank - own]).all()
        room = np.array([corpus.entries[v].length for v in epoch_v]) - 64 + 1
        assert ((epoch_s >= 0) & (epoch_s <= np.maximum(room, 1) - 1)).all()
        # the next epoch reshuffles
        assert not np.array_equal(d.locate_many(np.arange(d.per_rank, 2 * d.per_rank))[0], epoch_v)
    if world > 1:
        # Not lock-step: no two ranks walk their parts in one shared order.
        n = min(len(p) for p in parts)
        order = [_rank_of_part(parts[r], ds[r].locate_many(np.arange(n))[0]) for r in range(world)]
        assert all(not np.array_equal(order[r], order[q]) for r in range(world) for q in range(r))
    # The same plan from the same seed; another seed gives another partition.
    again = WindowDataset(corpus, videos, keypoints=list(range(48)), window=64, frame_stride=2, seed=3,
                          rank=world - 1, world_size=world, sampling=sampling)
    assert np.array_equal(again.locate_many(np.arange(50))[0], ds[-1].locate_many(np.arange(50))[0])
    other = WindowDataset(corpus, videos, keypoints=list(range(48)), window=64, frame_stride=2, seed=4,
                          rank=0, world_size=max(world, 2), sampling=sampling)
    assert list(other.part) != list(WindowDataset(corpus, videos, keypoints=list(range(48)), window=64,
                                                  frame_stride=2, seed=3, world_size=max(world, 2),
                                                  sampling=sampling).part)


def test_by_length_draws_in_proportion_to_length_and_spreads_over_a_long_video():
    lengths = np.array([30, 100, 1000, 64, 65])
    plan = DrawPlan(np.arange(5), lengths, window=64, seed=0, sampling="by_length")
    assert windows_per_video(lengths, 64, "by_length").tolist() == [1, 2, 16, 1, 2]
    assert plan.per_rank == 22
    v, s = plan.locate_many(np.arange(22), 0)
    assert np.bincount(v, minlength=5).tolist() == [1, 2, 16, 1, 2]
    long = np.sort(s[v == 2])                                    # one start in each sixteenth of the room
    room = 1000 - 64 + 1
    assert (np.floor(long * 16 / room) == np.arange(16)).all()
    per_video = DrawPlan(np.arange(5), lengths, window=64, seed=0)
    assert per_video.per_rank == 5 and sorted(per_video.locate_many(np.arange(5), 0)[0].tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="data.sampling must be one of per_video, by_length"):
        DrawPlan(np.arange(5), lengths, window=64, seed=0, sampling="uniform")


@pytest.mark.parametrize("sampling", ["per_video", "by_length"])
def test_recorded_rows_are_the_windows_each_rank_reads_on_every_path(tmp_path, sampling):
    """Rank 0 alone writes batches.jsonl: its row for rank r at a step must be the windows rank r's own data path
    cuts at that step (from a resumed position, over epoch ends), in the main process, in a DataLoader worker
    and device-resident."""
    import torch
    from test_windows import assert_same

    from msmae.data.batch_log import BatchLog
    from msmae.data.windows import batch_stream

    corpus = walks(tmp_path / "c", n=13)
    kw = dict(keypoints=list(range(48)), window=64, frame_stride=2, seed=5, world_size=3, sampling=sampling)
    ds = [WindowDataset(corpus, list(range(1, 13)), rank=r, **kw) for r in range(3)]
    micro, accum, first, last = 2, 3, 2, 9                      # steps 2..9 (resumed after step 1)
    log = BatchLog(tmp_path, WindowDataset(corpus, list(range(1, 13)), rank=0, **kw).plan, per_step=micro * accum)
    rows = {s: log.rows(s) for s in range(first, last + 1)}
    log.close()
    assert all(len(row["videos"]) == micro * accum for s in rows for row in rows[s])
    assert (last - first + 1) * micro * accum > 2 * ds[0].per_rank        # crosses epoch ends
    for r in range(3):
        want = [ds[r].load_batch(np.array(rows[s][r]["videos"][i:i + micro]),
                                 np.array(rows[s][r]["starts"][i:i + micro]))
                for s in rows for i in range(0, micro * accum, micro)]
        for on_device, workers in (("true", 0), ("false", 0), ("false", 1)):
            got, path = batch_stream(ds[r], (first - 1) * micro * accum, last * micro * accum, micro,
                                     device=torch.device("cpu"), on_device=on_device, num_workers=workers)
            assert path == ("device" if on_device == "true" else "workers")
            got = list(got)
            assert len(got) == len(want)
            for a, b in zip(got, want):
                assert_same(a, b)


def test_plan_caches_only_neighbouring_epochs_of_each_rank():
    """A long run walks many epochs: a rank's process keeps the epochs next to its position, not every epoch it
    has drawn (rank 0's batch log asks for every rank, which keeps two epochs of each)."""
    plan = DrawPlan(np.arange(50), np.full(50, 100), window=64, seed=0, world_size=4)
    for k in range(0, 40 * plan.per_rank, 5):
        plan.locate_many(np.arange(k, k + 5), 1)
    assert sorted(plan._epochs) == [(38, 1), (39, 1)]
    for r in range(4):
        plan.locate_many(np.arange(40 * plan.per_rank - 2, 40 * plan.per_rank + 2), r)
    assert sorted(plan._epochs) == sorted([(39, r) for r in range(4)] + [(40, r) for r in range(4)])


@pytest.mark.parametrize("world", [8, 64])
def test_by_length_parts_stay_balanced_when_long_recordings_meet_short_clips(world):
    """by_length on a corpus of short clips and a few long recordings (the case it is for): the parts differ
    by a few windows, so the smaller ones repeat almost nothing to keep batches equal (videos taken in plain
    random order: a long recording placed late overshot its part, and the others repeated 2-6% of an epoch's
    windows on 8 ranks, 35-51% on 64)."""
    rng = np.random.default_rng(1)
    lengths = np.concatenate([rng.integers(20, 200, 10_000), rng.integers(7_500, 20_000, 50)])   # 5-14 min
    rng.shuffle(lengths)
    counts = windows_per_video(lengths, 64, "by_length")
    for seed in range(3):
        plan = DrawPlan(np.arange(len(lengths)), lengths, window=64, seed=seed, world_size=world,
                        sampling="by_length")
        loads = [int(counts[p].sum()) for p in plan.parts]
        assert sum(loads) == counts.sum() and plan.per_rank == max(loads)
        assert world * plan.per_rank - counts.sum() < 0.05 * counts.sum()       # under 5% repeated draws
    # Videos of equal window count are still dealt at random: another seed, another partition.
    other = DrawPlan(np.arange(len(lengths)), lengths, window=64, seed=7, world_size=world, sampling="by_length")
    assert any(not np.array_equal(a, b) for a, b in zip(plan.parts, other.parts))


def test_sampling_setting_is_checked_and_reaches_the_run(tmp_path):
    from msmae.config import ConfigError, load_config
    from msmae.tasks.pretrain import PretrainConfig, pretrain

    with pytest.raises((ValueError, ConfigError), match="data.sampling must be one of"):
        load_config(PretrainConfig, None, ["data.sampling=uniform"])
    data = random_walk_corpus(tmp_path / "c", n=6)
    run = tmp_path / "r"
    pretrain(cfg_of("train.steps=2", "train.checkpoint_every=0", "data.sampling=by_length", "data.window=32",
                    "train.record_batches=true"), data, run, progress=False)
    rows = [json.loads(ln) for ln in (run / "batches.jsonl").read_text().splitlines()]
    corpus = PackedCorpus(data)
    from msmae.tasks.pretrain import _holdout_split

    train_v, _ = _holdout_split([e.id for e in corpus.entries], 0.05, 200)
    plan = DrawPlan(train_v, np.array([e.length for e in corpus.entries]), window=32, seed=0, sampling="by_length")
    assert [r["videos"] for r in rows] == [plan.locate_many(np.arange(4 * i, 4 * i + 4), 0)[0].tolist()
                                           for i in range(2)]


@pytest.mark.parametrize("sampling, on_device", [("per_video", "auto"), ("by_length", "false")])
def test_record_batches_resume_keeps_each_step_once(tmp_path, sampling, on_device):
    """A run cut after its step-4 checkpoint (with rows of later steps and a torn last line left behind)
    and resumed writes the same batches.jsonl and losses as an uninterrupted run, on either data path and
    either sampling; off by default."""
    from msmae.tasks.pretrain import pretrain

    data = random_walk_corpus(tmp_path / "c")
    sets = ("train.steps=7", "train.checkpoint_every=4", "train.grad_accum=2", "train.record_batches=true",
            f"data.sampling={sampling}", f"data.on_device={on_device}")
    pretrain(cfg_of(*sets), data, tmp_path / "full", progress=False)
    full = (tmp_path / "full" / "batches.jsonl").read_text()
    rows = [json.loads(ln) for ln in full.splitlines()]
    assert [(r["step"], r["rank"]) for r in rows] == [(s, 0) for s in range(1, 8)]
    assert all(len(r["videos"]) == len(r["starts"]) == 4 for r in rows)      # micro 2 x accumulation 2
    run = tmp_path / "cut"
    pretrain(cfg_of(*sets), data, run, progress=False)
    for p in (run / "checkpoints").glob("step_*"):
        if p.name != "step_0000004":
            shutil.rmtree(p)
    (run / "checkpoints" / "LATEST").write_text("step_0000004\n")
    shutil.rmtree(run / "model")
    with open(run / "batches.jsonl", "a") as f:
        f.write('{"step": 8, "rank": 0, "vid')                               # a row torn by the crash
    pretrain(cfg_of(*sets), data, run, resume=True, progress=False)
    assert (run / "batches.jsonl").read_text() == full
    losses = [ln.split(",")[:2] for ln in (tmp_path / "full" / "log.csv").read_text().splitlines()]
    assert [ln.split(",")[:2] for ln in (run / "log.csv").read_text().splitlines()] == losses
    assert len(losses) == 8                                                  # header + every step (log_every 1)
    pretrain(cfg_of("train.steps=1", "train.checkpoint_every=0"), data, tmp_path / "off", progress=False)
    assert not (tmp_path / "off" / "batches.jsonl").exists()


def test_four_gloo_ranks_record_independent_complete_data_order(tmp_path):
    """torchrun, 4 gloo ranks, one epoch: batches.jsonl has one row per rank per step; each rank reads exactly
    its part of the seeded partition (not a stride over sorted videos), in its own order (not lock-step)."""
    from msmae.tasks.pretrain import _holdout_split

    data = random_walk_corpus(tmp_path / "c", n=22)
    corpus = PackedCorpus(data)
    train_v, _ = _holdout_split([e.id for e in corpus.entries], 0.05, 200)
    plan = DrawPlan(train_v, np.array([e.length for e in corpus.entries]), window=64, seed=0, world_size=4)
    steps = plan.per_rank                                                      # one epoch at one window per step
    out = tmp_path / "ddp"
    sets = sum((["--set", s] for s in SMALL + [f"train.steps={steps}", "train.checkpoint_every=0",
                                               "train.record_batches=true", "train.log_every=3"]), [])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "4", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), "-m", "msmae", "pretrain", "--data", str(data), "--out", str(out),
           "--no-progress", *sets]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(ln) for ln in (out / "batches.jsonl").read_text().splitlines()]
    assert [(x["step"], x["rank"]) for x in rows] == [(s, k) for s in range(1, steps + 1) for k in range(4)]
    drawn = {k: [v for x in rows if x["rank"] == k for v in x["videos"]] for k in range(4)}
    parts = [sorted(p.tolist()) for p in plan.parts]
    assert sorted(v for p in parts for v in p) == sorted(train_v)
    assert any(p != sorted(train_v)[k::4] for k, p in enumerate(parts))       # a random partition
    for k in range(4):
        assert sorted(set(drawn[k])) == parts[k]                              # one epoch: the whole part
        assert len(set(drawn[k][:len(parts[k])])) == len(parts[k])           # each video once
    # Not lock-step: no two ranks take their i-th video from the same place in their parts.
    n = min(len(p) for p in parts)
    places = [[parts[k].index(v) for v in drawn[k][:n]] for k in range(4)]
    assert all(places[k] != places[q] for k in range(4) for q in range(k))
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 4 and m["steps"] == steps
