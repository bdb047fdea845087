"""benchmarks/corpus_scale.py: its demand model and its synthetic corpus (the timed parts run in the benchmark)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("corpus_scale", REPO / "benchmarks" / "corpus_scale.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_demand_model_of_one_h200():
    cs = load_bench()
    face, no_face = cs.demand("body,hands,face"), cs.demand("body,hands")
    assert face["kind"] == no_face["kind"] == "projection"
    # 989 TFLOP/s x 40% / FLOPs per sample; the face stream costs about a third more per sample
    assert abs(face["gflop_per_sample"] - 51.0) < 0.5 and abs(no_face["gflop_per_sample"] - 37.4) < 0.5
    for d in (face, no_face):
        assert abs(d["demand_samples_per_s"] - 989e12 * 0.4 / (d["gflop_per_sample"] * 1e9)) < 2
    assert 7_600 < face["demand_samples_per_s"] < 7_900 and 10_400 < no_face["demand_samples_per_s"] < 10_700


def test_synthetic_corpus_has_the_asked_length_and_missing_hands(tmp_path):
    from msmae.corpus import PackedCorpus, pack_sequences

    cs = load_bench()
    stats: dict = {}
    pack_sequences(cs.synthetic_videos(0.3, 0, stats), tmp_path / "c", normalize=False)
    c = PackedCorpus(tmp_path / "c")
    assert c.total_frames == stats["frames"] == int(0.3 * 3600 * 24) and len(c) == stats["videos"] >= 2
    assert len({e.id for e in c.entries}) == len(c)
    _, present = c.frames(0)
    hands = present[:, 6:48].mean()
    assert 0.4 < hands < 0.9 and present[:, :6].mean() > 0.95     # hands absent in runs, body nearly always there
    runs = np.diff(present[:, 6].astype(int)) != 0
    assert runs.sum() < 0.2 * len(runs)                            # absences come in runs, not frame by frame
