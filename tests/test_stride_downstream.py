"""Keypoints extracted with ``--frame-stride N`` are read at the config's time scale: pre-training on a
corpus packed from stride-2 files sees the same seconds per window and per token as stride-2 sampling of
full-rate files; SLT and ISLR likewise."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest

from msmae.poses.timing import sampling_for_corpus, sampling_for_stride, stride_for_sequence


def test_sampling_arithmetic():
    s = sampling_for_stride(600, 2, 1)
    assert (s.window, s.stride, s.exact) == (600, 2, True)
    s = sampling_for_stride(600, 2, 2)
    assert (s.window, s.stride, s.exact) == (300, 1, True) and "600 -> 300" in s.note
    s = sampling_for_stride(600, 4, 2)
    assert (s.window, s.stride, s.exact) == (300, 2, True)
    s = sampling_for_stride(600, 2, 4)  # coarser than the config: every stored frame, said so
    assert (s.window, s.stride, s.exact) == (150, 1, False) and "not exact" in s.note
    assert sampling_for_corpus([], 600, 2).window == 600
    with pytest.raises(ValueError, match="mixes extraction frame strides"):
        sampling_for_corpus([1, 2, 2], 600, 2)
    assert stride_for_sequence({"frame_stride": 2}, 2) == 1 and stride_for_sequence({}, 2) == 2


def _holistic(T: int, seed: int = 0) -> np.ndarray:
    """(T, 543, 3) GISLR-order landmarks moving smoothly, all detected."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.7, size=(1, 543, 3))
    walk = np.cumsum(rng.normal(scale=0.003, size=(T, 543, 3)), axis=0)
    return (base + walk).astype(np.float32)


@pytest.fixture(scope="module")
def pose_pair(tmp_path_factory) -> tuple[Path, Path]:
    """The same 48 source frames at 24 fps: full rate, and as a stride-2 extraction writes them."""
    pytest.importorskip("mediapipe", reason="writing holistic .pose needs the extract extra")
    from msmae.poses.writers import write_holistic_pose

    root = tmp_path_factory.mktemp("poses")
    xyz = _holistic(48)
    full = write_holistic_pose(root / "full" / "clip.pose", xyz, fps=24.0, width=1280, height=720)
    half = write_holistic_pose(root / "half" / "clip.pose", xyz[::2], fps=12.0, width=1280, height=720,
                               extraction={"frame_stride": 2, "source_fps": 24.0, "streams": ["body"]})
    return full, half


def test_pretraining_windows_cover_the_same_time(pose_pair, tmp_path, caplog):
    from msmae.corpus import PackedCorpus
    from msmae.corpus.pack import pack_corpus
    from msmae.tasks.pretrain import WindowDataset, _sampling

    full, half = pose_pair
    corpora = {}
    for name, path in (("full", full), ("half", half)):
        pack_corpus([path], tmp_path / name, normalize=False)
        with open(tmp_path / name / "index.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert rows[0]["frame_stride"] == ("2" if name == "half" else "1")
        corpora[name] = PackedCorpus(tmp_path / name)
    window, stride = 24, 2  # the config, in source frames (the paper's 600 / 2 scaled down)
    items = {}
    with caplog.at_level(logging.INFO, logger="msmae.tasks.pretrain"):
        for name, corpus in corpora.items():
            w, s = _sampling(corpus, window, stride)
            e = corpus.entries[0]
            # seconds per window and per kept frame (token time) equal the config on full-rate keypoints
            assert w / e.fps == pytest.approx(window / 24.0) and s / e.fps == pytest.approx(stride / 24.0)
            ds = WindowDataset(corpus, [0], keypoints=list(range(160)), window=w, frame_stride=s, seed=0)
            items[name] = ds.load(0, 0)
    assert "window 24 -> 12 stored frames, frame stride 2 -> 1" in caplog.text
    for key in ("coords", "present", "frame_valid"):
        assert np.array_equal(np.asarray(items["full"][key]), np.asarray(items["half"][key])), key
    assert items["half"]["coords"].shape[0] == 12


def test_pretraining_refuses_a_corpus_of_mixed_strides(pose_pair, tmp_path):
    from msmae.corpus import CorpusError, PackedCorpus
    from msmae.corpus.pack import pack_corpus
    from msmae.tasks.pretrain import _sampling

    pack_corpus(list(pose_pair), tmp_path / "mixed", normalize=False)
    with pytest.raises(CorpusError, match="1 videos at stride 1, 1 videos at stride 2"):
        _sampling(PackedCorpus(tmp_path / "mixed"), 600, 2)


def test_slt_and_islr_read_stride_2_files_at_the_same_time_scale(pose_pair):
    from msmae.data.islr import ISLRExample, load_clip
    from msmae.layout import get_layout
    from msmae.poses.readers import read_sequence
    from msmae.tasks.slt import prepare_sequence

    full, half = pose_pair
    layout = get_layout("body,hands")
    a, b = (prepare_sequence(read_sequence(p), layout=layout, normalize="none", frame_stride=2, max_frames=1024)
            for p in (full, half))
    assert a.num_frames == b.num_frames == 24 and a.fps == pytest.approx(b.fps) == pytest.approx(12.0)
    np.testing.assert_array_equal(a.coords, b.coords)
    # ISLR frame ranges count source frames: frames [8, 20) of the video
    ex = {p: ISLRExample(id="x", pose_path=p, label="a", split="train", start=8, end=20) for p in (full, half)}
    ca, cb = (load_clip(ex[p], layout=layout, normalize="none") for p in (full, half))
    assert ca.num_frames == 12 and cb.num_frames == 6
    np.testing.assert_array_equal(ca.coords[::2], cb.coords)
