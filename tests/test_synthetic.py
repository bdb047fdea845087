"""The SYNTHETIC signer: determinism, geometry, labels, boundaries, dropouts, learnability."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from msmae.layout import CANONICAL, LEFT_SHOULDER, LEFT_WRIST, RIGHT_SHOULDER, RIGHT_WRIST
from msmae.poses.augment import uniform_temporal_sample
from msmae.poses.normalize import normalize
from msmae.poses.synthetic import HANDSHAPES, SyntheticSigner, hand_points

LEFT_ELBOW, RIGHT_ELBOW = 2, 3
SL = CANONICAL.slices()


@pytest.fixture(scope="module")
def signer() -> SyntheticSigner:
    return SyntheticSigner(num_classes=10, seed=0)


@pytest.fixture(scope="module")
def small_set(signer):
    return signer.dataset(4, seed=5)


def test_deterministic_per_seed(signer):
    a = signer.sign(3, np.random.default_rng(1))
    b = signer.sign(3, np.random.default_rng(1))
    np.testing.assert_array_equal(a.coords, b.coords)
    np.testing.assert_array_equal(a.present, b.present)
    c = signer.sign(3, np.random.default_rng(2))
    assert c.coords.shape != a.coords.shape or not np.allclose(c.coords, a.coords)
    assert SyntheticSigner(num_classes=10, seed=0).class_names() == signer.class_names()
    assert SyntheticSigner(num_classes=10, seed=1).class_names() != signer.class_names()
    s1, y1 = signer.dataset(2, seed=9)
    s2, y2 = signer.dataset(2, seed=9)
    np.testing.assert_array_equal(y1, y2)
    assert all(np.array_equal(p.coords, q.coords) for p, q in zip(s1, s2))
    t1, b1 = signer.sentence(3, np.random.default_rng(4))
    t2, b2 = signer.sentence(3, np.random.default_rng(4))
    assert b1 == b2 and np.array_equal(t1.coords, t2.coords)


def test_labelled_synthetic_everywhere(signer, small_set):
    seqs, labels = small_set
    assert all(n.startswith("synthetic-") for n in signer.class_names())
    assert len(set(signer.class_names())) == signer.num_classes
    for seq, label in zip(seqs, labels):
        assert seq.meta["synthetic"] is True
        assert seq.source.startswith("synthetic:")
        assert seq.meta["label"] == label and seq.meta["class_name"] == signer.class_names()[label]
        assert seq.layout == CANONICAL and seq.coords.shape[1:] == (160, 2)
        assert seq.fps == 30.0 and seq.width and seq.height
    sent, _ = signer.sentence(2, np.random.default_rng(0))
    assert sent.meta["synthetic"] is True and sent.source.startswith("synthetic:sentence")


def test_dataset_layout_and_distinct_signers(signer, small_set):
    seqs, labels = small_set
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 4))
    bodies = {(s.meta["signer"]["shoulder_width"], tuple(s.meta["signer"]["centre"])) for s in seqs}
    assert len(bodies) == len(seqs)  # every sample has its own signer
    grouped, _ = signer.dataset(3, seed=1, num_signers=2)
    assert [s.meta["signer_id"] for s in grouped[:3]] == [0, 1, 0]
    same = [s.meta["signer"]["shoulder_width"] for s in grouped if s.meta["signer_id"] == 0]
    assert len(set(same)) == 1


def test_units_match_unnormalised_mediapipe(small_set):
    for seq in small_set[0]:
        ls, rs = seq.coords[:, LEFT_SHOULDER], seq.coords[:, RIGHT_SHOULDER]
        width = np.linalg.norm(ls - rs, axis=1).mean()
        assert 0.22 < width < 0.36
        mid = ((ls + rs) / 2).mean(axis=0)
        aspect = seq.width / seq.height
        assert abs(mid[0] - aspect / 2) < 0.2 and 0.45 < mid[1] < 0.67
        # MediaPipe's left shoulder appears on the image's right; the face is above the shoulders.
        assert (ls[:, 0] > rs[:, 0]).all()
        face = seq.coords[:, SL["face"]][seq.present[:, SL["face"]]]
        assert face[:, 1].mean() < mid[1] - 0.05


def _bones(seq):
    c = seq.coords
    return {name: np.linalg.norm(c[:, a] - c[:, b], axis=1) for name, (a, b) in {
        "left_upper": (LEFT_SHOULDER, LEFT_ELBOW), "right_upper": (RIGHT_SHOULDER, RIGHT_ELBOW),
        "left_fore": (LEFT_ELBOW, LEFT_WRIST), "right_fore": (RIGHT_ELBOW, RIGHT_WRIST),
        "shoulders": (LEFT_SHOULDER, RIGHT_SHOULDER)}.items()}


def test_bone_lengths_constant_over_time():
    clean = SyntheticSigner(num_classes=10, seed=0, noise=0.0)
    rng = np.random.default_rng(3)
    for label in range(10):
        seq = clean.sign(label, rng)
        wrist = seq.coords[:, RIGHT_WRIST]
        assert np.ptp(wrist, axis=0).max() > 0.01  # the arms do move
        for name, length in _bones(seq).items():
            assert length.std() / length.mean() < 1e-4, name
    noisy = SyntheticSigner(num_classes=10, seed=0).sign(2, rng)
    for name, length in _bones(noisy).items():
        assert length.std() / length.mean() < 0.05, name


def test_hands_are_attached_and_articulate():
    gen = SyntheticSigner(num_classes=10, seed=0, noise=0.0, dropout=0.0)
    seq = gen.sign(0, np.random.default_rng(0))
    for hand, wrist in (("left_hand", LEFT_WRIST), ("right_hand", RIGHT_WRIST)):
        np.testing.assert_allclose(seq.coords[:, SL[hand].start], seq.coords[:, wrist], atol=1e-5)
    # Handshape model: a fist is much shorter than a flat hand, and blending moves the fingers.
    flat, fist = hand_points(np.array([HANDSHAPES["B"], HANDSHAPES["S"]]))
    tip = lambda h: np.linalg.norm(h[12] - h[0])  # noqa: E731  (middle fingertip to wrist)
    assert tip(flat) == pytest.approx(1.0, abs=0.02) and tip(fist) < 0.6
    changing = [i for i, c in enumerate(gen.classes) if HANDSHAPES[c.shape_start] != HANDSHAPES[c.shape_end]]
    assert changing, "some class must change handshape"
    k = changing[0]
    cls = gen.classes[k]
    seq = gen.sign(k, np.random.default_rng(1))
    a, b = seq.meta["sign_frames"]
    dom = "left_hand" if seq.meta["signer"]["left_handed"] else "right_hand"
    h = seq.coords[:, SL[dom]]
    local = lambda f: h[f] - h[f, 0]  # noqa: E731
    size = np.linalg.norm(local(a)[9])  # wrist to middle knuckle, for scale
    start_shape, end_shape = hand_points(np.array([HANDSHAPES[cls.shape_start], HANDSHAPES[cls.shape_end]]))
    expected = np.abs(np.linalg.norm(start_shape[8:21:4, :2], axis=1) - np.linalg.norm(end_shape[8:21:4, :2], axis=1))
    assert expected.max() > 0.1  # the two shapes differ, so the fingertips must move
    moved = np.abs(np.linalg.norm(local(a)[8:21:4], axis=1) - np.linalg.norm(local(b - 1)[8:21:4], axis=1))
    assert moved.max() / size > 0.1


def test_sentence_boundaries_consistent(signer):
    seq, signs = signer.sentence(5, np.random.default_rng(6))
    assert len(signs) == 5 and seq.meta["signs"] == signs
    prev_end = 0
    for s in signs:
        assert 0 <= s["label"] < signer.num_classes
        assert s["class_name"] == signer.class_names()[s["label"]]
        assert prev_end <= s["start_frame"] < s["end_frame"] <= seq.num_frames
        prev_end = s["end_frame"]
    assert signs[0]["start_frame"] > 0 and signs[-1]["end_frame"] < seq.num_frames  # rest at both ends
    fixed, fixed_signs = signer.sentence(0, np.random.default_rng(0), labels=[1, 1, 7])
    assert [s["label"] for s in fixed_signs] == [1, 1, 7]
    with pytest.raises(ValueError, match="labels"):
        signer.sentence(0, np.random.default_rng(0), labels=[99])
    with pytest.raises(ValueError, match="label"):
        signer.sign(10, np.random.default_rng(0))


def test_isolated_sign_frames_are_inside_the_clip(small_set):
    for seq in small_set[0]:
        a, b = seq.meta["sign_frames"]
        assert 0 <= a < b <= seq.num_frames
        assert seq.num_frames >= 15


def test_whole_hand_dropouts_exist(small_set):
    seqs, _ = small_set
    hand_missing_frames = 0
    for seq in seqs:
        assert seq.present[:, SL["body"]].all()
        for hand in ("left_hand", "right_hand"):
            p = seq.present[:, SL[hand]]
            assert np.all(p.all(axis=1) | ~p.any(axis=1))  # whole hand or nothing
            hand_missing_frames += int((~p.any(axis=1)).sum())
        assert np.all(seq.coords[~seq.present] == 0.0)
    total = sum(2 * s.num_frames for s in seqs)
    assert 0.05 < hand_missing_frames / total < 0.8
    # Low hands (at rest) are dropped far more often than hands in the signing space.
    low, high = [], []
    for seq in seqs:
        for hand in ("left_hand", "right_hand"):
            y = seq.coords[:, SL["body"]][:, LEFT_WRIST if hand == "left_hand" else RIGHT_WRIST, 1]
            missing = ~seq.present[:, SL[hand]].any(axis=1)
            low += list(missing[y > 0.9])
            high += list(missing[y < 0.7])
    assert np.mean(low) > 2 * np.mean(high)
    clean = SyntheticSigner(num_classes=10, seed=0, dropout=0.0).sign(0, np.random.default_rng(0))
    assert clean.present.all()


def test_face_moves_a_little(small_set):
    seq = small_set[0][0]
    face = seq.coords[:, SL["face"]]
    ok = seq.present[:, SL["face"]].all(axis=1)
    width = np.linalg.norm(face[ok, 0] - face[ok, 19], axis=1).mean()  # contour ends, ear to ear
    assert 0.1 < width / np.linalg.norm(seq.coords[0, 0] - seq.coords[0, 1]) < 0.9
    motion = face[ok].std(axis=0).mean()
    assert 0.0005 < motion < 0.05  # image-height units: visible but small
    mouth = np.linalg.norm(face[ok, 40 + 10] - face[ok, 40 + 0], axis=1)  # inner lips 14 - 13
    assert mouth.max() - mouth.min() > 0.002  # the mouth opens and closes


def test_left_handed_signers_use_the_left_hand():
    gen = SyntheticSigner(num_classes=10, seed=0, left_handed=1.0, noise=0.0)
    one = [i for i, c in enumerate(gen.classes) if c.hands == "one"]
    rng = np.random.default_rng(0)
    for label in one[:3]:
        seq = gen.sign(label, rng)
        assert seq.meta["signer"]["left_handed"]
        travel = {w: np.linalg.norm(np.diff(seq.coords[:, w], axis=0), axis=1).sum() for w in (LEFT_WRIST, RIGHT_WRIST)}
        assert travel[LEFT_WRIST] > 2 * travel[RIGHT_WRIST]


def test_normalised_synthetic_has_unit_shoulder_width(small_set):
    seq = normalize(small_set[0][3])
    assert seq.meta["normalization"]["method"] == "shoulders"
    ls, rs = seq.coords[:, LEFT_SHOULDER], seq.coords[:, RIGHT_SHOULDER]
    assert np.linalg.norm(ls - rs, axis=1).mean() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(((ls + rs) / 2).mean(axis=0), 0.0, atol=1e-5)


def test_learnable_but_not_trivial():
    """1-nearest-neighbour on uniformly resampled, normalised body+hands coordinates with unseen
    signers: well above chance (0.1) but far from perfect (0.6 with these seeds)."""
    gen = SyntheticSigner(num_classes=10, seed=0)
    logging.disable(logging.WARNING)
    try:
        def feats(seqs):
            return np.stack([uniform_temporal_sample(normalize(s.select("body,hands")), 16).coords.ravel()
                             for s in seqs])

        train, ytr = gen.dataset(6, seed=11)
        test, yte = gen.dataset(4, seed=12)
    finally:
        logging.disable(logging.NOTSET)
    a, b = feats(train), feats(test)
    pred = ytr[((b[:, None] - a[None]) ** 2).sum(-1).argmin(axis=1)]
    acc = float((pred == yte).mean())
    assert 0.3 < acc < 0.95, acc


def test_bad_arguments():
    with pytest.raises(ValueError, match="num_classes"):
        SyntheticSigner(num_classes=0)
    with pytest.raises(ValueError, match="noise"):
        SyntheticSigner(noise=-1)
    with pytest.raises(TypeError):
        SyntheticSigner(10)  # keyword-only
