"""Normalisation: mid-shoulder centre, shoulder-width scale, fallbacks, missing points."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from msmae.layout import LEFT_SHOULDER, RIGHT_SHOULDER, get_layout
from msmae.poses.normalize import (SPREAD_TO_SHOULDER_WIDTH, denormalize, normalization_params,
                                   normalize)
from msmae.poses.sequence import PoseSequence

BH = get_layout("body,hands")  # 48 points; body 0..5, left hand 6..26, right hand 27..47


def _seq(coords, present, layout=BH) -> PoseSequence:
    return PoseSequence(coords=np.asarray(coords, np.float32), present=np.asarray(present, bool), fps=25.0,
                        layout=layout, source="constructed")


def _random_seq(rng, T=5, layout=BH):
    coords = rng.uniform(0.0, 2.0, (T, layout.num_points, 2))
    return coords, np.ones((T, layout.num_points), bool)


def test_shoulders_at_known_places_give_centre_0_width_1():
    rng = np.random.default_rng(0)
    coords, present = _random_seq(rng)
    coords[:, LEFT_SHOULDER] = (3.0, 2.0)
    coords[:, RIGHT_SHOULDER] = (1.0, 2.0)
    seq = _seq(coords, present)
    out = normalize(seq)
    np.testing.assert_allclose(out.coords[:, LEFT_SHOULDER], np.tile([0.5, 0.0], (5, 1)), atol=1e-6)
    np.testing.assert_allclose(out.coords[:, RIGHT_SHOULDER], np.tile([-0.5, 0.0], (5, 1)), atol=1e-6)
    # Every other point gets the same similarity transform: (p - (2, 2)) / 2.
    np.testing.assert_allclose(out.coords, (seq.coords - 2.0) / 2.0, atol=1e-6)
    info = out.meta["normalization"]
    assert info["method"] == "shoulders"
    assert info["centre"] == pytest.approx([2.0, 2.0])
    assert info["scale"] == pytest.approx(2.0)
    assert info["frames_used"] == 5
    assert "normalization" not in seq.meta  # the input is not modified
    np.testing.assert_array_equal(seq.coords, coords.astype(np.float32))


def test_averages_only_over_frames_with_both_shoulders_present():
    rng = np.random.default_rng(1)
    coords, present = _random_seq(rng, T=4)
    coords[0, [LEFT_SHOULDER, RIGHT_SHOULDER]] = [(3.0, 2.0), (1.0, 2.0)]  # mid (2, 2), width 2
    coords[1, [LEFT_SHOULDER, RIGHT_SHOULDER]] = (12.0, 10.0), (8.0, 10.0)  # mid (10, 10), width 4
    coords[2, LEFT_SHOULDER] = (100.0, 100.0)  # right shoulder missing: frame must not count
    present[2, RIGHT_SHOULDER] = False
    present[3, [LEFT_SHOULDER, RIGHT_SHOULDER]] = False  # both missing
    params = normalization_params(_seq(coords, present))
    assert params.method == "shoulders"
    assert params.frames_used == 2
    assert params.centre == pytest.approx((6.0, 6.0))
    assert params.scale == pytest.approx(3.0)


def test_missing_points_stay_missing_and_zero():
    rng = np.random.default_rng(2)
    coords, present = _random_seq(rng, T=6)
    present[:, 6:27] = rng.random((6, 21)) < 0.5  # left hand partly missing
    present[2] = False
    present[2, [LEFT_SHOULDER, RIGHT_SHOULDER]] = True
    seq = _seq(coords, present)
    out = normalize(seq)
    np.testing.assert_array_equal(out.present, seq.present)
    assert np.all(out.coords[~out.present] == 0.0)
    assert np.all(np.abs(out.coords[out.present]).sum(axis=-1) > 0)


def test_fallback_when_shoulders_never_present(caplog):
    rng = np.random.default_rng(3)
    coords, present = _random_seq(rng, T=5)
    present[:, [LEFT_SHOULDER, RIGHT_SHOULDER]] = False
    present[1, 10:20] = False
    seq = _seq(coords, present)
    with caplog.at_level(logging.WARNING, logger="msmae.poses.normalize"):
        out = normalize(seq)
    assert "never both present" in caplog.text and "constructed" in caplog.text
    pts = seq.coords[seq.present].astype(np.float64)
    centre = pts.mean(axis=0)
    spread = np.median(np.linalg.norm(pts - centre, axis=1)) * SPREAD_TO_SHOULDER_WIDTH
    info = out.meta["normalization"]
    assert info["method"] == "fallback"
    assert info["centre"] == pytest.approx(centre.tolist())
    assert info["scale"] == pytest.approx(spread)
    np.testing.assert_allclose(out.coords[out.present], (pts - centre) / spread, atol=1e-5)
    # Centred: the mean of the present points is now 0.
    np.testing.assert_allclose(out.coords[out.present].mean(axis=0), 0.0, atol=1e-5)


def test_degenerate_shoulder_width_falls_back(caplog):
    rng = np.random.default_rng(4)
    coords, present = _random_seq(rng)
    coords[:, LEFT_SHOULDER] = coords[:, RIGHT_SHOULDER] = (1.0, 1.0)
    with caplog.at_level(logging.WARNING, logger="msmae.poses.normalize"):
        out = normalize(_seq(coords, present))
    assert out.meta["normalization"]["method"] == "fallback"
    assert "degenerate" in caplog.text
    assert np.isfinite(out.coords).all()


def test_layout_without_body_falls_back(caplog):
    rng = np.random.default_rng(5)
    hands = get_layout("hands")
    coords, present = _random_seq(rng, layout=hands)
    with caplog.at_level(logging.WARNING, logger="msmae.poses.normalize"):
        out = normalize(_seq(coords, present, layout=hands))
    assert out.meta["normalization"]["method"] == "fallback"
    assert "no body stream" in caplog.text


def test_nothing_present_returns_unchanged(caplog):
    seq = _seq(np.zeros((3, BH.num_points, 2)), np.zeros((3, BH.num_points), bool))
    with caplog.at_level(logging.WARNING, logger="msmae.poses.normalize"):
        out = normalize(seq)
    assert "no keypoint is present" in caplog.text
    assert out.meta["normalization"]["method"] == "none"
    np.testing.assert_array_equal(out.coords, seq.coords)
    np.testing.assert_array_equal(out.present, seq.present)


def test_works_on_the_full_canonical_layout_and_round_trips():
    rng = np.random.default_rng(6)
    full = get_layout("body,hands,face")
    coords, present = _random_seq(rng, T=4, layout=full)
    coords[:, LEFT_SHOULDER] = (1.5, 0.5)
    coords[:, RIGHT_SHOULDER] = (0.5, 0.5)
    present[:, 100:] = False
    seq = _seq(coords, present, layout=full)
    out = normalize(seq)
    assert out.meta["normalization"]["scale"] == pytest.approx(1.0)
    assert out.meta["normalization"]["centre"] == pytest.approx([1.0, 0.5])
    back = denormalize(out)
    np.testing.assert_allclose(back.coords, seq.coords, atol=1e-5)
    assert "normalization" not in back.meta
    with pytest.raises(ValueError, match="no meta"):
        denormalize(seq)


def test_methods_spread_none_and_unknown():
    rng = np.random.default_rng(7)
    coords, present = _random_seq(rng)
    seq = _seq(coords, present)
    assert normalize(seq, method="spread").meta["normalization"]["method"] == "fallback"
    same = normalize(seq, method="none")
    np.testing.assert_array_equal(same.coords, seq.coords)
    with pytest.raises(ValueError, match="unknown normalisation method"):
        normalize(seq, method="bogus")


def test_real_pose_file_gets_unit_shoulder_width():
    from conftest import shared_path

    from msmae.poses.readers import read_sequence

    folder = shared_path("fingerspelling-ase", "ase")
    path = sorted(folder.glob("*.pose"))[0]
    seq = read_sequence(path)
    out = normalize(seq)
    assert out.meta["normalization"]["method"] == "shoulders"
    both = out.present[:, LEFT_SHOULDER] & out.present[:, RIGHT_SHOULDER]
    assert both.sum() == out.meta["normalization"]["frames_used"] > 0
    left, right = out.coords[both, LEFT_SHOULDER], out.coords[both, RIGHT_SHOULDER]
    assert np.linalg.norm(left - right, axis=1).mean() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(((left + right) / 2).mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_array_equal(out.present, seq.present)
    # MediaPipe's left shoulder is on the image's right: after normalisation at +x.
    assert left[:, 0].mean() > 0 > right[:, 0].mean()
