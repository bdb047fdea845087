"""Augmentations: affine (rotation, shear, scale), temporal sampling, drop/duplicate, config."""

from __future__ import annotations

import numpy as np
import pytest

from msmae.layout import get_layout
from msmae.poses.augment import (AugmentConfig, Augmenter, affine_matrix, apply_affine,
                                 drop_duplicate_counts, random_affine, random_drop_duplicate,
                                 random_temporal_indices, random_temporal_sample,
                                 uniform_temporal_sample)
from msmae.poses.sequence import PoseDataError, PoseSequence, uniform_indices

BH = get_layout("body,hands")


def _seq(T=20, seed=0, missing=0.3) -> PoseSequence:
    """Random normalised-looking sequence; frame t has x of point 0 equal to t (frame id)."""
    rng = np.random.default_rng(seed)
    coords = rng.normal(0, 1, (T, BH.num_points, 2))
    present = rng.random((T, BH.num_points)) >= missing
    present[:, 0] = True
    coords[:, 0] = np.stack([np.arange(T), np.zeros(T)], axis=1)
    return PoseSequence(coords=coords, present=present, fps=30.0, layout=BH, source="test")


def _frame_ids(seq: PoseSequence) -> np.ndarray:
    return seq.coords[:, 0, 0].round().astype(int)


# ------------------------------------------------------------------ spatial
def test_zero_strength_is_identity():
    seq = _seq()
    np.testing.assert_array_equal(affine_matrix(), np.eye(2))
    out = random_affine(seq, np.random.default_rng(0), rotation=0, shear=0, scale=0)
    np.testing.assert_array_equal(out.coords, seq.coords)
    np.testing.assert_array_equal(out.present, seq.present)


def test_rotation_by_known_angle():
    seq = _seq()
    a = 0.7
    out = apply_affine(seq, affine_matrix(rotation=a))
    x, y = seq.coords[..., 0], seq.coords[..., 1]
    expect = np.stack([np.cos(a) * x - np.sin(a) * y, np.sin(a) * x + np.cos(a) * y], axis=-1)
    np.testing.assert_allclose(out.coords[seq.present], expect[seq.present], atol=1e-5)
    # (1, 0) turns to (cos a, sin a).
    np.testing.assert_allclose(affine_matrix(rotation=a) @ [1.0, 0.0], [np.cos(a), np.sin(a)])


def test_shear_and_scale_matrices():
    np.testing.assert_allclose(affine_matrix(shear=0.3) @ [2.0, 1.0], [2.3, 1.0])
    np.testing.assert_allclose(affine_matrix(scale=0.5) @ [2.0, 1.0], [2.0, 1.5])
    np.testing.assert_allclose(affine_matrix(rotation=np.pi / 2, shear=0.3, scale=0.5) @ [0.0, 1.0], [-1.5, 0.45])


def test_random_affine_keeps_presence_and_missing_zero():
    seq = _seq(missing=0.4)
    out = random_affine(seq, np.random.default_rng(1))
    np.testing.assert_array_equal(out.present, seq.present)
    assert np.all(out.coords[~out.present] == 0.0)
    assert not np.allclose(out.coords[out.present], seq.coords[seq.present])


def test_random_affine_is_one_transform_per_sequence_and_seedable():
    seq = _seq(T=30)
    out = random_affine(seq, np.random.default_rng(2), rotation=0.3, shear=0.0, scale=0.0)
    p = seq.present & (np.linalg.norm(seq.coords, axis=-1) > 0.1)
    before = np.arctan2(seq.coords[p][:, 1], seq.coords[p][:, 0])
    after = np.arctan2(out.coords[p][:, 1], out.coords[p][:, 0])
    turn = np.angle(np.exp(1j * (after - before)))
    assert np.ptp(turn) < 1e-4 and abs(turn[0]) > 1e-3  # every point in every frame: one angle
    np.testing.assert_allclose(np.linalg.norm(out.coords, axis=-1), np.linalg.norm(seq.coords, axis=-1), atol=1e-5)
    again = random_affine(seq, np.random.default_rng(2), rotation=0.3, shear=0.0, scale=0.0)
    np.testing.assert_array_equal(again.coords, out.coords)
    other = random_affine(seq, np.random.default_rng(3), rotation=0.3, shear=0.0, scale=0.0)
    assert not np.allclose(other.coords, out.coords)


def test_random_rotation_strength_is_the_std_of_the_angle():
    one = PoseSequence(coords=np.array([[[1.0, 0.0]] + [[0.0, 0.0]] * (BH.num_points - 1)]),
                       present=np.array([[True] + [False] * (BH.num_points - 1)]), fps=1.0, layout=BH)
    rng = np.random.default_rng(4)
    angles = [np.arctan2(*random_affine(one, rng, rotation=0.2, shear=0, scale=0).coords[0, 0, ::-1])
              for _ in range(1000)]
    assert np.std(angles) == pytest.approx(0.2, abs=0.02)
    assert abs(np.mean(angles)) < 0.03


def test_scale_only_stretches_y():
    seq = _seq()
    out = random_affine(seq, np.random.default_rng(5), rotation=0, shear=0, scale=0.2)
    np.testing.assert_allclose(out.coords[..., 0], seq.coords[..., 0], atol=1e-6)
    y_in, y_out = seq.coords[seq.present][:, 1], out.coords[seq.present][:, 1]
    nz = np.abs(y_in) > 1e-3
    ratio = y_out[nz] / y_in[nz]
    assert np.ptp(ratio) < 1e-4 and abs(ratio[0] - 1) > 1e-4  # one vertical factor, not 1


def test_negative_strength_rejected():
    with pytest.raises(ValueError, match="rotation"):
        random_affine(_seq(), np.random.default_rng(0), rotation=-1)


# ------------------------------------------------------------------ temporal
def test_uniform_temporal_sample():
    seq = _seq(T=50)
    out = uniform_temporal_sample(seq, 8)
    assert out.num_frames == 8
    np.testing.assert_array_equal(_frame_ids(out), uniform_indices(50, 8))
    assert np.all(np.diff(_frame_ids(out)) > 0)
    assert out.fps == pytest.approx(30.0 * 8 / 50)
    short = uniform_temporal_sample(_seq(T=3), 7)  # short clip: repeats, in order
    assert short.num_frames == 7 and np.all(np.diff(_frame_ids(short)) >= 0)
    assert set(_frame_ids(short)) == {0, 1, 2}


def test_random_temporal_sample_long_clip():
    seq = _seq(T=40)
    out = random_temporal_sample(seq, 12, np.random.default_rng(6))
    ids = _frame_ids(out)
    assert out.num_frames == 12 and np.all(np.diff(ids) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(out.present, seq.present[ids])
    again = random_temporal_sample(seq, 12, np.random.default_rng(6))
    np.testing.assert_array_equal(_frame_ids(again), ids)
    draws = {tuple(random_temporal_indices(40, 12, np.random.default_rng(s))) for s in range(10)}
    assert len(draws) == 10  # random, not fixed
    assert out.fps == pytest.approx(30.0 * 12 / 40)


def test_random_temporal_sample_short_clip_repeats_every_frame():
    seq = _seq(T=5)
    out = random_temporal_sample(seq, 12, np.random.default_rng(7))
    ids = _frame_ids(out)
    assert out.num_frames == 12 and np.all(np.diff(ids) >= 0)
    assert set(ids) == set(range(5))
    with pytest.raises(PoseDataError, match="empty"):
        random_temporal_sample(_seq(T=5)[0:0], 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match="positive"):
        uniform_temporal_sample(seq, 0)


def test_drop_duplicate_changes_exactly_the_fraction():
    rng = np.random.default_rng(8)
    for T in (10, 37, 100):
        counts = drop_duplicate_counts(T, rng, 0.2)
        changed = counts != 1
        assert changed.sum() == round(0.2 * T)
        assert set(np.unique(counts)) <= {0, 1, 2}
    seq = _seq(T=50)
    out = random_drop_duplicate(seq, np.random.default_rng(9), 0.2)
    ids = _frame_ids(out)
    assert np.all(np.diff(ids) >= 0)  # order kept
    per_frame = np.bincount(ids, minlength=50)
    assert (per_frame != 1).sum() == 10
    assert out.num_frames == 50 - (per_frame == 0).sum() + (per_frame == 2).sum()
    np.testing.assert_array_equal(out.present, seq.present[ids])
    assert np.all(out.coords[~out.present] == 0.0)
    same = random_drop_duplicate(seq, np.random.default_rng(9), 0.0)
    np.testing.assert_array_equal(same.coords, seq.coords)
    with pytest.raises(ValueError, match="fraction"):
        random_drop_duplicate(seq, rng, 1.5)


def test_drop_duplicate_never_empties_a_clip():
    for s in range(20):
        out = random_drop_duplicate(_seq(T=1), np.random.default_rng(s), 1.0)
        assert out.num_frames >= 1


# ------------------------------------------------------------------ config
def test_augment_config_from_dict_and_augmenter():
    cfg = AugmentConfig.from_dict({"temporal": "random", "num_frames": 16, "drop_duplicate": True})
    assert cfg.rotation == 0.2 and cfg.shear == 0.2 and cfg.scale == 0.2  # SignCLIP defaults
    seq = _seq(T=40, missing=0.2)
    out = Augmenter(cfg)(seq, np.random.default_rng(10))
    assert out.num_frames == 16
    assert np.all(out.coords[~out.present] == 0.0)
    off = Augmenter(AugmentConfig(affine=False))(seq, np.random.default_rng(10))
    np.testing.assert_array_equal(off.coords, seq.coords)
    with pytest.raises(ValueError, match="unknown augmentation keys"):
        AugmentConfig.from_dict({"rotaton": 0.1})
    with pytest.raises(ValueError, match="temporal"):
        AugmentConfig(temporal="sometimes")


def test_augment_config_loads_from_yaml_with_the_config_system(tmp_path):
    from msmae.config import load_config

    path = tmp_path / "aug.yaml"
    path.write_text("rotation: 0.1\ntemporal: uniform\n")
    cfg = load_config(AugmentConfig, path, ["shear=0"])
    assert (cfg.rotation, cfg.shear, cfg.temporal, cfg.num_frames) == (0.1, 0.0, "uniform", 32)
    out = Augmenter(cfg)(_seq(T=64), np.random.default_rng(0))
    assert out.num_frames == 32
