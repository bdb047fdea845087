"""Writers: holistic ``.pose`` laid out exactly as pose-format's loader, and lossless ``.npz``."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import shared_path

from msmae.layout import CANONICAL, get_layout
from msmae.poses import PoseDataError
from msmae.poses.readers import holistic_to_sequence, read_npz, read_sequence
from msmae.poses.writers import MIN_DETECTED_CONFIDENCE, write_holistic_pose, write_npz

SL = CANONICAL.slices()


def _reference(name: str = "poseformat_test_video.npy") -> np.ndarray:
    return np.load(shared_path("videos", "reference-holistic", name))


def _synthetic_holistic(frames: int = 6, num_face: int = 468, seed: int = 0) -> np.ndarray:
    """(T, num_face + 75, 3) GISLR-order landmarks with parts missing (NaN) in some frames."""
    rng = np.random.default_rng(seed)
    xyz = rng.random((frames, num_face + 75, 3))
    xyz[..., 2] -= 0.5
    xyz[[1, 3], num_face:num_face + 21] = np.nan  # left hand
    xyz[2, num_face + 54:] = np.nan  # right hand
    xyz[4, :num_face] = np.nan  # face
    return xyz


def _fake_results(xyz: np.ndarray, vis: np.ndarray, world: np.ndarray, num_face: int):
    """MediaPipe-like per-frame results objects (the attributes pose-format's loader reads)."""
    def comp(points, visibility=None):
        if np.isnan(points).any():
            return None
        v = np.ones(len(points)) if visibility is None else visibility
        return SimpleNamespace(landmark=[SimpleNamespace(x=float(p[0]), y=float(p[1]), z=float(p[2]),
                                                         visibility=float(q)) for p, q in zip(points, v)])
    f, lh, ps, rh = num_face, num_face + 21, num_face + 54, num_face + 75
    return [SimpleNamespace(face_landmarks=comp(x[:f]), left_hand_landmarks=comp(x[f:lh]),
                            pose_landmarks=comp(x[lh:ps], v), right_hand_landmarks=comp(x[ps:rh]),
                            pose_world_landmarks=comp(w, v))
            for x, v, w in zip(xyz, vis, world)]


@pytest.mark.parametrize("refined", [False, True])
def test_bytes_equal_pose_format_holistic_loader(tmp_path, refined):
    """Our file == what pose-format's load_holistic writes for the same MediaPipe results."""
    holistic = pytest.importorskip("pose_format.utils.holistic")  # needs mediapipe (extract extra)
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderDimensions

    num_face = 478 if refined else 468
    xyz = _synthetic_holistic(6, num_face)
    rng = np.random.default_rng(1)
    vis = rng.random((6, 33))
    world = rng.normal(size=(6, 33, 3)) * 0.3
    width, height, fps = 540, 720, 29.92
    # pose-format's own path: _extract_frame_data per frame (as process_holistic does), then the
    # header load_holistic builds.
    extra = 10 if refined else 0
    frames = [holistic._extract_frame_data(r, width, height, extra)
              for r in _fake_results(xyz, vis, world, num_face)]
    body = NumPyPoseBody(fps=fps, data=np.stack([d for d, _ in frames])[:, None],
                         confidence=np.stack([c for _, c in frames])[:, None])
    header = PoseHeader(version=0.2, dimensions=PoseHeaderDimensions(width=width, height=height, depth=0),
                        components=holistic.holistic_components("XYZC", extra))
    theirs = io.BytesIO()
    Pose(header, body).write(theirs)

    conf = np.ones(xyz.shape[:2])
    conf[:, num_face + 21:num_face + 54] = vis
    ours = write_holistic_pose(tmp_path / "ours.pose", xyz, conf, fps=fps, width=width, height=height,
                               refined_face=refined, world=world)
    assert ours.read_bytes() == theirs.getvalue()


def test_round_trip_real_reference_arrays(tmp_path):
    for name, (w, h, fps) in {"lsa64_001_001_001.npy": (1920, 1080, 59.94),
                              "poseformat_test_video.npy": (540, 720, 29.92)}.items():
        xyz = _reference(name)
        out = write_holistic_pose(tmp_path / (name + ".pose"), xyz, fps=fps, width=w, height=h)
        direct = holistic_to_sequence(xyz, fps=fps, width=w, height=h)
        back = read_sequence(out)
        np.testing.assert_array_equal(back.present, direct.present)
        np.testing.assert_allclose(back.coords, direct.coords, atol=1e-5)
        assert back.fps == fps and (back.width, back.height) == (w, h)
        assert back.meta["source_layout"] == "holistic-576"
        if name.startswith("lsa64"):
            assert not back.present[:, SL["left_hand"]].any() and back.present[:, SL["right_hand"]].all()


def test_pose_format_opens_what_we_write(tmp_path):
    from pose_format import Pose

    xyz = _reference("lsa64_001_001_001.npy")
    out = write_holistic_pose(tmp_path / "clip.pose", xyz, fps=59.94, width=1920, height=1080)
    p = Pose.read(out.read_bytes())
    assert p.body.data.shape == (88, 1, 576, 3)
    assert [c.name for c in p.header.components] == [
        "POSE_LANDMARKS", "FACE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS", "POSE_WORLD_LANDMARKS"]
    assert (p.header.dimensions.width, p.header.dimensions.height) == (1920, 1080)
    assert p.body.fps == pytest.approx(59.94, abs=1e-5)
    # pixel units: pose LEFT_SHOULDER (GISLR 489 + 11) * (width, height)
    np.testing.assert_allclose(p.body.data.data[:, 0, 11, :2], xyz[:, 500, :2] * [1920, 1080], rtol=1e-6)
    conf = p.body.confidence[:, 0]
    assert (conf[:, 501:522] == 0).all()  # left hand never detected -> confidence 0 ...
    assert p.body.data.mask[:, 0, 501:522].all()  # ... and masked by pose-format
    assert (conf[:, 522:543] == 1).all() and (conf[:, 543:] == 0).all()  # no world landmarks given
    script = Path(sys.executable).with_name("pose_info")
    cmd = [str(script), "-i", str(out)] if script.exists() else [
        sys.executable, "-c", "from pose_format.bin.pose_info import main; main()", "-i", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "POSE_LANDMARKS" in res.stdout and "width=1920" in res.stdout


def test_confidence_rules(tmp_path):
    from pose_format import Pose

    xyz = _synthetic_holistic()
    conf = np.full(xyz.shape[:2], 0.5)
    conf[:, 489:522] = 0.0  # a detected point with visibility 0 must stay present
    out = write_holistic_pose(tmp_path / "c.pose", xyz, conf, fps=30, width=540, height=720)
    c = Pose.read(out.read_bytes()).body.confidence[:, 0]
    assert np.allclose(c[:, :33], MIN_DETECTED_CONFIDENCE)
    detected_rh = ~np.isnan(xyz[:, 522, 0])
    assert (c[detected_rh, 522:543] == 0.5).all() and (c[~detected_rh, 522:543] == 0).all()
    assert read_sequence(out).present[:, SL["body"]].all()


def test_writer_errors_and_atomicity(tmp_path):
    xyz = _synthetic_holistic()[:3]
    out = tmp_path / "keep.pose"
    write_holistic_pose(out, xyz, fps=30, width=540, height=720)
    before = out.read_bytes()
    cases = [
        (dict(xyz=xyz[:, :500]), "shape"),
        (dict(xyz=xyz, refined_face=True), "refined face"),
        (dict(xyz=xyz[:0]), "zero frames"),
        (dict(xyz=xyz, fps=0), "fps"),
        (dict(xyz=xyz, width=0), "width"),
        (dict(xyz=xyz, height=70000), "height"),
        (dict(xyz=xyz, conf=np.ones((3, 10))), "conf must have shape"),
        (dict(xyz=xyz, world=np.zeros((2, 33, 3))), "world must have shape"),
    ]
    for kwargs, phrase in cases:
        args = dict(fps=30, width=540, height=720) | kwargs
        with pytest.raises(PoseDataError, match=phrase) as e:
            write_holistic_pose(out, args.pop("xyz"), args.pop("conf", None), **args)
        assert str(out) in str(e.value)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.pose"]  # no temp files left


# ---------------------------------------------------------------------------------------- npz
def test_npz_round_trip_is_exact(tmp_path):
    for src in [shared_path("fingerspelling-ase", "ase", "fs-sts13206cebad70790ee136a34c7a74af5e.pose"),
                shared_path("dgs-corpus-sentences", "test_14_original.pose"),
                shared_path("videos", "reference-holistic", "_15CDIexNDM_4-5-rgb_front.npy")]:
        seq = read_sequence(src)
        out = write_npz(seq, tmp_path / (src.stem + ".npz"))
        back = read_sequence(out)
        assert back.coords.dtype == np.float32 and back.layout == CANONICAL
        np.testing.assert_array_equal(back.coords, seq.coords)  # bit-exact
        np.testing.assert_array_equal(back.present, seq.present)
        assert (back.fps, back.width, back.height) == (seq.fps, seq.width, seq.height)
        assert back.meta["source_layout"] == "msmae-npz"
        assert back.meta["origin_layout"] == seq.meta["source_layout"]
        assert back.meta["absent_points"] == seq.meta["absent_points"]
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".npz"] * 3


def test_npz_sub_layout_widens_to_canonical(tmp_path):
    seq = read_sequence(shared_path("phoenix14t-holistic-sample", "25October_2010_Monday_tagesschau-17.pose"))
    small = seq.select("body,hands")
    out = write_npz(small, tmp_path / "bh.npz")
    exact = read_npz(out)
    assert exact.layout == get_layout("body,hands")
    np.testing.assert_array_equal(exact.coords, small.coords)
    wide = read_sequence(out)
    assert wide.layout == CANONICAL
    np.testing.assert_array_equal(wide.coords[:, :48], seq.coords[:, :48])
    assert not wide.present[:, SL["face"]].any()
    assert len(wide.meta["absent_points"]["face"]) == 112


def test_npz_errors(tmp_path):
    seq = read_sequence(shared_path("dgs-corpus-sentences", "train_1_original.pose"))
    good = write_npz(seq, tmp_path / "good.npz")
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:200])
    other = tmp_path / "other.npz"
    np.savez(other, X=np.zeros((2, 30, 170)))
    junk = tmp_path / "junk.npz"
    junk.write_text("not a zip")
    for path, phrase in [(cut, "not a readable .npz"), (other, "not a msmae .npz"), (junk, "not a readable .npz")]:
        with pytest.raises(PoseDataError, match=phrase) as e:
            read_sequence(path)
        assert str(path) in str(e.value)
    # a file claiming a different keypoint definition is refused, not silently misread
    with np.load(good) as z:
        d = dict(z)
    d["stream_points"] = d["stream_points"][::-1]
    np.savez(tmp_path / "moved.npz", **d)
    with pytest.raises(PoseDataError, match="landmark indices differ"):
        read_sequence(tmp_path / "moved.npz")
    d = dict(np.load(good))
    d["coords"] = d["coords"][:, :100]
    np.savez(tmp_path / "shape.npz", **d)
    with pytest.raises(PoseDataError, match="wrong shape"):
        read_sequence(tmp_path / "shape.npz")
