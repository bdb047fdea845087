"""Pre-training windows: the batched worker path and the device-resident path cut the same tensors as the
per-window reference; ranks own disjoint parts; the on-device choice and its fallback; pre-training gives the
same model on both paths."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from msmae.corpus import PackedCorpus, pack_sequences
from msmae.data.windows import (DeviceWindows, WindowDataset, choose_on_device, collate_windows, device_bytes)
from msmae.poses import PoseSequence


def walks(root, n=10, seed=0, shard_frames=300, nan_absent=True):
    """Random-walk videos of 20-400 frames over several shards; absent points hold NaN (as readers may)."""
    rng = np.random.default_rng(seed)
    seqs = []
    for i in range(n):
        t = int(rng.integers(20, 400))
        c = rng.normal(size=(1, 160, 2)) + np.cumsum(rng.normal(scale=0.05, size=(t, 160, 2)), 0)
        p = rng.random((t, 160)) > 0.25
        p[:, 6:27] &= rng.random((t, 1)) > 0.3          # whole hands missing in some frames
        if nan_absent:
            c[~p] = np.nan
        seqs.append(PoseSequence(c, p, 24.0, source=f"walk{i}"))
    pack_sequences(seqs, root, normalize=False, shard_frames=shard_frames)
    return PackedCorpus(root)


def reference(ds, ks):
    """The per-window path: one ds.load per window, stacked."""
    return collate_windows([ds.load(*ds.locate(k)) for k in ks])


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert torch.equal(a[k].cpu(), b[k].cpu()), k


@pytest.mark.parametrize("keypoints", [list(range(48)), list(range(160)), [0, 1, 5, 30, 150, 159]])
def test_batched_and_device_paths_equal_the_per_window_path(tmp_path, keypoints):
    corpus = walks(tmp_path / "c")
    assert len({e.shard for e in corpus.entries}) > 3
    ds = WindowDataset(corpus, list(range(len(corpus))), keypoints=keypoints, window=120, frame_stride=3, seed=5)
    ks = list(range(0, 37)) + [1000, 1001, 5_000_003]            # several epochs, wrap-around, short videos
    ref = reference(ds, ks)
    assert not ref["frame_valid"].all() and ref["present"].any()  # padding and presence both exercised
    assert torch.isfinite(ref["coords"]).all()
    assert_same(ds.__getitems__(ks), ref)
    for kernel in ("numpy", "torch"):                        # torch: the kernel CUDA runs, here on the CPU
        dev = DeviceWindows(ds, "cpu", kernel=kernel)
        assert_same(dev.batch(ks), ref)
    assert dev.nbytes == device_bytes(ds)


def test_dataloader_batches_equal_with_workers(tmp_path):
    corpus = walks(tmp_path / "c", n=6)
    ds = WindowDataset(corpus, list(range(6)), keypoints=list(range(48)), window=64, frame_stride=2, seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=5, sampler=range(3, 13), num_workers=1,
                                         collate_fn=collate_windows)
    got = list(loader)
    assert len(got) == 2
    assert_same(got[0], reference(ds, range(3, 8)))
    assert_same(got[1], reference(ds, range(8, 13)))


def test_ranks_own_disjoint_parts_and_load_only_them(tmp_path):
    corpus = walks(tmp_path / "c", n=7)
    videos = list(range(7))
    ds = [WindowDataset(corpus, videos, keypoints=list(range(48)), window=64, frame_stride=2, seed=3, rank=r,
                        world_size=2) for r in range(2)]
    assert set(ds[0].part).isdisjoint(ds[1].part) and set(ds[0].part) | set(ds[1].part) == set(videos)
    parts = [list(d.part) for d in ds]
    for r in range(2):
        seen = {int(v) for v in ds[r].locate_many(np.arange(40))[0]}
        assert seen == set(ds[r].part)
        dev = DeviceWindows(ds[r], "cpu", kernel="torch")
        assert dev.coords.shape[0] == sum(corpus.entries[v].length for v in ds[r].part)
        assert_same(dev.batch(np.arange(10)), reference(ds[r], range(10)))
        other = parts[1 - r][0]
        assert dev.row_of[other] == -1
        ds[r].plan.parts[r] = np.array([other])          # positions that map to another rank's video
        ds[r].plan._epochs.clear()
        with pytest.raises(ValueError, match="outside this rank's part"):
            dev.batch([0])


def test_choose_on_device_fits_falls_back_and_respects_false():
    assert choose_on_device("auto", 10, 100, 0.5)[0]
    assert choose_on_device("true", 50, 100, 0.5)[0]
    use, why = choose_on_device("true", 51e9, 100e9, 0.5)
    assert not use and "does not fit" in why and "51.00 GB" in why and "DataLoader workers" in why
    assert not choose_on_device("auto", 51, 100, 0.5)[0]
    assert not choose_on_device("false", 1, 100, 0.5)[0]


def test_pretrain_same_model_on_both_paths_and_fallback_message(tmp_path, caplog):
    from test_pretrain import cfg_of

    from msmae.tasks.pretrain import pretrain
    from msmae.train import checkpoint as ck

    walks(tmp_path / "c", n=8, nan_absent=False)
    common = ("train.steps=3", "train.checkpoint_every=0")
    dev = pretrain(cfg_of(*common, "data.on_device=true"), tmp_path / "c", tmp_path / "dev", progress=False)
    work = pretrain(cfg_of(*common, "data.on_device=false"), tmp_path / "c", tmp_path / "work", progress=False)
    assert dev["data_path"] == "device" and work["data_path"] == "workers"
    a, b = ck.load_state_dict(tmp_path / "dev"), ck.load_state_dict(tmp_path / "work")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert dev["final_loss"] == work["final_loss"]
    with caplog.at_level(logging.WARNING, logger="msmae.data.windows"):
        m = pretrain(cfg_of(*common, "data.on_device=true", "data.device_memory_fraction=1e-12"),
                     tmp_path / "c", tmp_path / "small", progress=False)
    assert m["data_path"] == "workers"
    assert any("does not fit on the device" in r.getMessage() for r in caplog.records)


def test_on_device_setting_is_checked():
    from msmae.config import ConfigError, load_config
    from msmae.tasks.pretrain import PretrainConfig

    assert load_config(PretrainConfig, None, ["data.on_device=true"]).data.on_device == "true"
    assert load_config(PretrainConfig, None, ["data.on_device=no"]).data.on_device == "false"
    with pytest.raises((ValueError, ConfigError), match="data.on_device must be auto, true or false"):
        load_config(PretrainConfig, None, ["data.on_device=maybe"])
