"""Readers: every real source lands in the canonical layout by landmark identity.

The expected values are computed independently of the readers: from pose-format's raw arrays
at the positions the data READMEs document, or from pandas on the parquet rows.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from msmae.layout import CANONICAL, FACE_MESH_INDICES
from msmae.poses import PoseDataError
from msmae.poses.readers import (HAND_POINT_NAMES, find_pose_files, holistic_to_sequence, read_pose,
                                 read_sequence)

SL = CANONICAL.slices()
BODY, LH, RH, FACE = SL["body"], SL["left_hand"], SL["right_hand"], SL["face"]
FACE_IDX = np.array(FACE_MESH_INDICES)


def _raw(path: Path):
    """pose-format's own view: header, xyz (T, P, 3) pixels, conf (T, P)."""
    from pose_format import Pose

    p = Pose.read(path.read_bytes())
    return p.header, np.asarray(p.body.data.data)[:, 0], np.asarray(p.body.confidence)[:, 0]


def _check_block(seq_coords, seq_present, raw_xy, raw_conf, scale):
    """A canonical block equals the raw points (pixels / scale) exactly where conf > 0."""
    expect_present = raw_conf > 0
    np.testing.assert_array_equal(seq_present, expect_present)
    np.testing.assert_allclose(seq_coords[expect_present], raw_xy[expect_present] / scale, rtol=1e-6, atol=1e-7)
    assert (seq_coords[~expect_present] == 0).all()


# ------------------------------------------------------------------------- full holistic (586)
def test_fingerspelling_full_holistic_586():
    files = sorted(shared_path("fingerspelling-ase", "ase").glob("*.pose"))
    assert len(files) == 26
    for f in files:
        header, xyz, conf = _raw(f)
        assert xyz.shape[1] == 586 and header.dimensions.height == 500
        seq = read_sequence(f)
        assert seq.layout == CANONICAL and seq.coords.shape == (xyz.shape[0], 160, 2)
        assert seq.fps == 25.0 and (seq.width, seq.height) == (500, 500)
        assert seq.meta["source_layout"] == "holistic-586" and seq.meta["absent_points"] == {}
        # README positions: pose 0:33, face 33:511, left hand 511:532, right hand 532:553
        pose_idx = np.arange(11, 17)
        _check_block(seq.coords[:, BODY], seq.present[:, BODY], xyz[:, pose_idx, :2], conf[:, pose_idx], 500)
        _check_block(seq.coords[:, FACE], seq.present[:, FACE], xyz[:, 33 + FACE_IDX, :2],
                     conf[:, 33 + FACE_IDX], 500)
        _check_block(seq.coords[:, LH], seq.present[:, LH], xyz[:, 511:532, :2], conf[:, 511:532], 500)
        _check_block(seq.coords[:, RH], seq.present[:, RH], xyz[:, 532:553, :2], conf[:, 532:553], 500)
        # This signer's left hand is never detected in the source: it must stay absent.
        assert not seq.present[:, LH].any()
        assert seq.present[:, RH].all() and seq.present[:, FACE].all()
        # LEFT_WRIST (pose 15) has confidence 0 in these files, the other body points do not.
        assert not seq.present[:, BODY.start + 4].any()
        assert seq.present[:, [BODY.start + i for i in (0, 1, 2, 3, 5)]].all()


def test_phoenix_holistic_543_non_square_is_isotropic():
    f = shared_path("phoenix14t-holistic-sample", "25October_2010_Monday_tagesschau-17.pose")
    header, xyz, conf = _raw(f)
    assert (header.dimensions.width, header.dimensions.height) == (210, 260)
    seq = read_sequence(f)
    assert seq.meta["source_layout"] == "holistic-543"
    assert seq.num_frames == 86 and seq.fps == 25.0
    # pixels -> isotropic: both axes divided by the height, so x keeps its pixel proportion
    _check_block(seq.coords[:, BODY], seq.present[:, BODY], xyz[:, 11:17, :2], conf[:, 11:17], 260)
    _check_block(seq.coords[:, LH], seq.present[:, LH], xyz[:, 501:522, :2], conf[:, 501:522], 260)
    _check_block(seq.coords[:, RH], seq.present[:, RH], xyz[:, 522:543, :2], conf[:, 522:543], 260)
    _check_block(seq.coords[:, FACE], seq.present[:, FACE], xyz[:, 33 + FACE_IDX, :2],
                 conf[:, 33 + FACE_IDX], 260)
    lh_missing = (conf[:, 501:522] == 0).all(axis=1)
    assert 0 < lh_missing.sum() < 86  # some frames without a left hand in the source ...
    assert not seq.present[lh_missing][:, LH].any()  # ... are frames without one after reading
    # Shoulder width in pixels survives as (x / 260): isotropic distances, not per-axis.
    d_pix = np.linalg.norm(xyz[:, 11, :2] - xyz[:, 12, :2], axis=1)
    d_seq = np.linalg.norm(seq.coords[:, BODY.start] - seq.coords[:, BODY.start + 1], axis=1)
    np.testing.assert_allclose(d_seq * 260, d_pix, rtol=1e-5)


# --------------------------------------------------------------------- reduced holistic (178)
def test_dgs_reduced_holistic_178_by_point_names():
    files = sorted(shared_path("dgs-corpus-sentences").glob("*_original.pose"))
    assert len(files) == 32
    nose = [98, 97, 2, 326, 327, 1, 4, 5, 195, 197]
    for f in files:
        header, xyz, conf = _raw(f)
        comps = {c.name: c for c in header.components}
        assert [c.name for c in header.components] == ["POSE_LANDMARKS", "FACE_LANDMARKS",
                                                        "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"]
        seq = read_sequence(f)
        assert seq.meta["source_layout"] == "reduced-holistic-178" and seq.fps == 25.0
        # The reduced mesh lacks our 10 nose points: absent everywhere and reported.
        assert seq.meta["absent_points"] == {"face": nose}
        face_names = [int(n) for n in comps["FACE_LANDMARKS"].points]
        for j, lm in enumerate(FACE_MESH_INDICES):
            col = FACE.start + j
            if lm in nose:
                assert lm not in face_names and not seq.present[:, col].any()
                continue
            pos = 8 + face_names.index(lm)  # face component starts after the 8 pose points
            _check_block(seq.coords[:, col], seq.present[:, col], xyz[:, pos, :2], conf[:, pos], 512)
        pose_names = comps["POSE_LANDMARKS"].points
        for j, name in enumerate(["LEFT_SHOULDER", "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW",
                                  "LEFT_WRIST", "RIGHT_WRIST"]):
            pos = pose_names.index(name)
            _check_block(seq.coords[:, BODY.start + j], seq.present[:, BODY.start + j],
                         xyz[:, pos, :2], conf[:, pos], 512)
        _check_block(seq.coords[:, LH], seq.present[:, LH], xyz[:, 136:157, :2], conf[:, 136:157], 512)
        _check_block(seq.coords[:, RH], seq.present[:, RH], xyz[:, 157:178, :2], conf[:, 157:178], 512)
    # A file where whole frames are undetected in the source (conf 0 although data is not 0).
    seq = read_sequence(shared_path("dgs-corpus-sentences", "test_14_original.pose"))
    _, xyz, conf = _raw(shared_path("dgs-corpus-sentences", "test_14_original.pose"))
    gone = (conf == 0).all(axis=1)
    assert gone.sum() == 5 and np.abs(xyz[gone]).sum() > 0
    assert not seq.present[gone].any() and (seq.coords[gone] == 0).all()


def test_point_names_follow_mediapipe():
    mp = pytest.importorskip("mediapipe")
    assert list(HAND_POINT_NAMES) == mp.solutions.holistic.HandLandmark._member_names_
    from msmae.layout import BODY_POINT_NAMES, BODY_POSE_INDICES

    names = mp.solutions.holistic.PoseLandmark._member_names_
    assert [names[i] for i in BODY_POSE_INDICES] == list(BODY_POINT_NAMES)


def test_pose_points_found_by_name_not_position(tmp_path):
    """A reduced file with its components and points in another order reads the same."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent

    src = shared_path("dgs-corpus-sentences", "train_3_original.pose")
    header, xyz, conf = _raw(src)
    comps, starts, s = {}, {}, 0
    for c in header.components:
        comps[c.name], starts[c.name] = c, s
        s += len(c.points)
    perm, new_comps = [], []
    for name in ["RIGHT_HAND_LANDMARKS", "FACE_LANDMARKS", "POSE_LANDMARKS", "LEFT_HAND_LANDMARKS"]:
        c = comps[name]
        order = list(range(len(c.points)))[::-1]  # reverse the points too
        perm += [starts[name] + i for i in order]
        new_comps.append(PoseHeaderComponent(name=name, points=[c.points[i] for i in order], limbs=[],
                                             colors=[(0, 0, 0)], point_format="XYZC"))
    body = NumPyPoseBody(fps=25, data=xyz[:, perm][:, None], confidence=conf[:, perm][:, None])
    out = tmp_path / "shuffled.pose"
    with open(out, "wb") as f:
        Pose(PoseHeader(0.2, header.dimensions, new_comps), body).write(f)
    a, b = read_sequence(src), read_sequence(out)
    np.testing.assert_array_equal(a.present, b.present)
    np.testing.assert_array_equal(a.coords, b.coords)


# ------------------------------------------------------------------------------- GISLR parquet
def _gislr_files():
    import pandas as pd

    meta = pd.read_csv(shared_path("gislr-asl-signs", "train.csv"))
    return [shared_path("gislr-asl-signs", p) for p in meta.path]


def test_gislr_parquet_matches_independent_reshape():
    import pandas as pd

    files = _gislr_files()
    assert len(files) == 84
    for f in files[::7]:
        df = pd.read_parquet(f)
        xyz = df[["x", "y", "z"]].to_numpy(np.float32).reshape(-1, 543, 3)  # README's fixed row order
        seq = read_sequence(f)
        assert seq.num_frames == df.frame.nunique() == xyz.shape[0]
        assert seq.fps == 30.0 and seq.meta["fps_assumed"] and seq.meta["source_layout"] == "gislr-parquet"
        for sl, idx in ((BODY, 489 + np.arange(11, 17)), (LH, np.arange(468, 489)),
                        (RH, np.arange(522, 543)), (FACE, FACE_IDX)):
            raw = xyz[:, idx, :2]
            ok = ~np.isnan(raw).any(axis=2)
            np.testing.assert_array_equal(seq.present[:, sl], ok)
            np.testing.assert_allclose(seq.coords[:, sl][ok], raw[ok], rtol=1e-6)
    # A hand the source never detected stays absent (this clip: left hand all NaN).
    f = shared_path("gislr-asl-signs", "train_landmark_files", "2044", "215835537.parquet")
    seq = read_sequence(f)
    assert not seq.present[:, LH].any() and seq.present[:, RH].mean() == pytest.approx(10 / 12)


def test_gislr_parquet_uses_type_and_index_columns(tmp_path):
    import pandas as pd

    f = shared_path("gislr-asl-signs", "train_landmark_files", "2044", "215835537.parquet")
    df = pd.read_parquet(f)
    shuffled = tmp_path / "shuffled.parquet"
    df.sample(frac=1.0, random_state=0).to_parquet(shuffled)
    a = read_sequence(f, width=1280, height=720)
    b = read_sequence(shuffled, width=1280, height=720)
    np.testing.assert_array_equal(a.present, b.present)
    np.testing.assert_array_equal(a.coords, b.coords)
    # aspect given: x scaled by width / height, y unchanged
    sq = read_sequence(f)
    np.testing.assert_allclose(a.coords[..., 0], sq.coords[..., 0] * 1280 / 720, rtol=1e-6)
    np.testing.assert_array_equal(a.coords[..., 1], sq.coords[..., 1])


# ------------------------------------------------------------------------------- MediaPipe npy
def test_reference_npy_mediapipe_arrays():
    f = shared_path("videos", "reference-holistic", "lsa64_001_001_001.npy")
    xyz = np.load(f)
    seq = read_sequence(f, fps=59.94, width=1920, height=1080)
    assert seq.meta["source_layout"] == "mediapipe-npy" and not seq.meta["fps_assumed"]
    assert seq.num_frames == 88 and seq.fps == 59.94
    body = xyz[:, 489 + np.arange(11, 17), :2]
    np.testing.assert_allclose(seq.coords[:, BODY, 0], body[..., 0] * 1920 / 1080, rtol=1e-6)
    np.testing.assert_allclose(seq.coords[:, BODY, 1], body[..., 1], rtol=1e-6)
    # Without the values, the video beside it (videos/lsa64_001_001_001.mp4) gives them.
    auto = read_sequence(f)
    assert auto.fps == pytest.approx(59.94, abs=0.01) and (auto.width, auto.height) == (1920, 1080)
    assert not auto.meta["fps_assumed"] and auto.meta["frame_info_from"].endswith("lsa64_001_001_001.mp4")
    np.testing.assert_allclose(auto.coords, seq.coords, rtol=1e-6)
    np.testing.assert_allclose(seq.coords[:, FACE, 1], xyz[:, FACE_IDX, 1], rtol=1e-6)
    np.testing.assert_allclose(seq.coords[:, RH, 1], xyz[:, 522:543, 1], rtol=1e-6)
    assert np.isnan(xyz[:, 468:489]).all() and not seq.present[:, LH].any()
    # every reference array: presence is exactly "not NaN"
    for g in sorted(f.parent.glob("*.npy")):
        a = np.load(g)
        s = read_sequence(g)
        for sl, idx in ((LH, np.arange(468, 489)), (RH, np.arange(522, 543)), (BODY, 489 + np.arange(11, 17))):
            np.testing.assert_array_equal(s.present[:, sl], ~np.isnan(a[:, idx, 0]))


def test_holistic_to_sequence_refined_553_and_errors():
    rng = np.random.default_rng(0)
    xyz = rng.random((4, 553, 3)).astype(np.float32)
    xyz[1, 478:499] = np.nan  # left hand missing in frame 1
    seq = holistic_to_sequence(xyz, fps=25, width=640, height=480, source="x")
    np.testing.assert_allclose(seq.coords[:, BODY, 0], xyz[:, 499 + np.arange(11, 17), 0] * 640 / 480, rtol=1e-6)
    np.testing.assert_allclose(seq.coords[:, FACE, 1], xyz[:, FACE_IDX, 1], rtol=1e-6)
    assert not seq.present[1, LH].any() and seq.present[0, LH].all()
    with pytest.raises(PoseDataError, match="shape"):
        holistic_to_sequence(np.zeros((3, 100, 3)), fps=25, source="bad")
    with pytest.raises(PoseDataError, match="zero frames"):
        holistic_to_sequence(np.zeros((0, 543, 3)), fps=25, source="empty")


# ------------------------------------------------------------------------------ find_pose_files
def test_find_pose_files_folders_lists_and_errors(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/z.pose", "a/b/y.npz", "a/x.parquet", "a/notes.md", "a/.hidden.pose", "c.npy"]:
        (tmp_path / name).write_bytes(b"")
    got = find_pose_files([tmp_path / "a"])
    assert got == [tmp_path / "a/b/y.npz", tmp_path / "a/x.parquet", tmp_path / "a/z.pose"]
    lst = tmp_path / "a" / "list.txt"
    lst.write_text("# clips\nz.pose\n\nb/y.npz\n../c.npy\nz.pose\n")
    assert find_pose_files([lst, tmp_path / "c.npy"]) == [
        tmp_path / "a/z.pose", tmp_path / "a/b/y.npz", tmp_path / "a/../c.npy", tmp_path / "c.npy"]
    assert find_pose_files([tmp_path / "c.npy", tmp_path / "c.npy"]) == [tmp_path / "c.npy"]
    with pytest.raises(PoseDataError, match=r"missing\.pose: no such file or folder \(listed in"):
        lst.write_text("missing.pose\n")
        find_pose_files([lst])
    with pytest.raises(PoseDataError, match=r"notes\.md: unsupported file type"):
        find_pose_files([tmp_path / "a/notes.md"])


# --------------------------------------------------------------------------------- bad input
def _dgs_bytes() -> bytes:
    return shared_path("dgs-corpus-sentences", "train_1_original.pose").read_bytes()


def _assert_error(path, *phrases):
    with pytest.raises(PoseDataError) as e:
        read_sequence(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg, msg
    for p in phrases:
        assert p in msg, msg


def test_errors_name_the_file_and_the_problem(tmp_path):
    _assert_error(tmp_path / "nope.pose", "no such file")
    (tmp_path / "dir.pose").mkdir()
    _assert_error(tmp_path / "dir.pose", "folder")
    bad = tmp_path / "text.pose"
    bad.write_text("this is not a pose file at all\n")
    _assert_error(bad, "not a pose-format file")
    tiny = tmp_path / "tiny.pose"
    tiny.write_bytes(b"\x01")
    _assert_error(tiny, "not a pose file")
    buf = _dgs_bytes()
    cut = tmp_path / "cut.pose"
    cut.write_bytes(buf[: len(buf) - 1000])
    _assert_error(cut, "truncated")
    head_only = tmp_path / "head.pose"
    head_only.write_bytes(buf[:300])
    _assert_error(head_only, "truncated")
    other = tmp_path / "x.csv"
    other.write_text("a,b\n")
    _assert_error(other, "unsupported file type")


def test_zero_frames_and_unknown_components(tmp_path):
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    src = shared_path("dgs-corpus-sentences", "train_1_original.pose")
    header, xyz, conf = _raw(src)
    empty = tmp_path / "empty.pose"
    with open(empty, "wb") as f:
        Pose(header, NumPyPoseBody(fps=25, data=np.zeros((0, 1, 178, 3), np.float32),
                                   confidence=np.zeros((0, 1, 178), np.float32))).write(f)
    _assert_error(empty, "zero frames")
    openpose = PoseHeader(0.2, PoseHeaderDimensions(640, 480, 0), [
        PoseHeaderComponent(name="pose_keypoints_2d", points=[str(i) for i in range(25)], limbs=[],
                            colors=[(0, 0, 0)], point_format="XYC")])
    op = tmp_path / "openpose.pose"
    with open(op, "wb") as f:
        Pose(openpose, NumPyPoseBody(fps=25, data=np.ones((3, 1, 25, 2), np.float32),
                                     confidence=np.ones((3, 1, 25), np.float32))).write(f)
    _assert_error(op, "unknown layout", "pose_keypoints_2d")


def test_npy_errors(tmp_path):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((5, 100, 3), np.float32))
    _assert_error(wrong, "shape", "(5, 100, 3)")
    ints = tmp_path / "ints.npy"
    np.save(ints, np.zeros((5, 543, 3), np.int32))
    _assert_error(ints, "floating point")
    zero = tmp_path / "zero.npy"
    np.save(zero, np.zeros((0, 543, 3), np.float32))
    _assert_error(zero, "zero frames")
    good = tmp_path / "good.npy"
    np.save(good, np.zeros((5, 543, 3), np.float32))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:-100])
    _assert_error(cut, "not a readable .npy")
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"hello")
    _assert_error(junk, "not a readable .npy")


def test_parquet_errors(tmp_path):
    import pandas as pd

    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1 not really")
    _assert_error(junk, "not a readable parquet")
    cols = tmp_path / "cols.parquet"
    pd.DataFrame({"frame": [0], "x": [0.5]}).to_parquet(cols)
    _assert_error(cols, "not a GISLR landmark file", "type")
    kind = tmp_path / "kind.parquet"
    pd.DataFrame({"frame": [0], "type": ["tail"], "landmark_index": [0], "x": [0.1], "y": [0.2]}).to_parquet(kind)
    _assert_error(kind, "unknown landmark types", "tail")
    idx = tmp_path / "idx.parquet"
    pd.DataFrame({"frame": [0], "type": ["pose"], "landmark_index": [40], "x": [0.1], "y": [0.2]}).to_parquet(idx)
    _assert_error(idx, "landmark_index outside")
    empty = tmp_path / "empty.parquet"
    pd.DataFrame({"frame": pd.Series([], dtype="int16"), "type": pd.Series([], dtype=str),
                  "landmark_index": pd.Series([], dtype="int16"), "x": pd.Series([], dtype=float),
                  "y": pd.Series([], dtype=float)}).to_parquet(empty)
    _assert_error(empty, "zero frames")


def test_v01_pose_truncated_inside_a_frame(tmp_path):
    """PHOENIX sample is a version-0.1 file: its body length must be a whole number of frames."""
    buf = shared_path("phoenix14t-holistic-sample", "25October_2010_Monday_tagesschau-17.pose").read_bytes()
    assert abs(struct.unpack("<f", buf[:4])[0] - 0.1) < 1e-6
    cut = tmp_path / "cut01.pose"
    cut.write_bytes(buf[:-10])
    _assert_error(cut, "truncated")
    assert read_pose(shared_path("phoenix14t-holistic-sample",
                                 "25October_2010_Monday_tagesschau-17.pose")).num_frames == 86


def test_bad_overrides_are_refused():
    f = shared_path("videos", "reference-holistic", "lsa64_001_001_001.npy")
    for kwargs, name in ((dict(fps=0), "fps"), (dict(height=-5), "height"), (dict(width=float("nan")), "width")):
        with pytest.raises(PoseDataError, match=f"{name} must be a positive number"):
            read_sequence(f, **kwargs)
