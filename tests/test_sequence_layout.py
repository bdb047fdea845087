"""The canonical layout (paper appendix A) and PoseSequence's slicing, stream selection, resampling and
concatenation."""

from __future__ import annotations

import numpy as np
import pytest

from msmae.layout import (BODY_POSE_INDICES, CANONICAL, FACE_CONTOUR, FACE_EYES, FACE_MESH_INDICES, FACE_MOUTH,
                          FACE_NOSE, get_layout)
from msmae.poses import PoseSequence
from msmae.poses.sequence import PoseDataError


def test_canonical_layout_order_and_sizes():
    assert CANONICAL.names == ("body", "left_hand", "right_hand", "face")
    assert [s.size for s in CANONICAL.streams] == [6, 21, 21, 112] and CANONICAL.num_points == 160
    assert BODY_POSE_INDICES == (11, 12, 13, 14, 15, 16)
    assert (len(FACE_CONTOUR), len(FACE_MOUTH), len(FACE_NOSE), len(FACE_EYES)) == (20, 40, 10, 42)
    assert len(set(FACE_MESH_INDICES)) == 112 and FACE_MESH_INDICES[:3] == (234, 93, 132)
    assert CANONICAL.stream_slice("face") == slice(48, 160)


def test_get_layout_specs_order_and_errors():
    bh = get_layout("body,hands")
    assert bh.names == ("body", "left_hand", "right_hand") and bh.num_points == 48 and bh.spec == "body,hands"
    assert get_layout("face,hands,body") == CANONICAL                 # order is always canonical
    assert get_layout(["right_hand", "body"]).spec == "body,right_hand"
    assert get_layout(bh) is bh
    assert bh.indices_in(CANONICAL) == list(range(48))
    assert get_layout("face").indices_in(CANONICAL) == list(range(48, 160))
    with pytest.raises(ValueError, match="unknown stream 'feet'"):
        get_layout("body,feet")
    with pytest.raises(ValueError, match="lacks streams"):
        CANONICAL.indices_in(bh)
    with pytest.raises(KeyError, match="not in layout"):
        bh.stream_slice("face")


def seq(t: int = 10, fps: float = 25.0, layout=CANONICAL) -> PoseSequence:
    coords = np.arange(t, dtype=np.float32)[:, None, None] * np.ones((1, layout.num_points, 2), np.float32)
    present = np.ones((t, layout.num_points), bool)
    present[::3, layout.stream_slice("left_hand")] = False
    return PoseSequence(coords, present, fps, layout)


def test_slicing_selecting_resampling_keep_presence():
    s = seq()
    part = s[2:6]
    assert part.num_frames == 4 and part.coords[0, 0, 0] == 2 and part.fps == 25.0
    assert np.array_equal(part.present, s.present[2:6])
    assert np.array_equal(s.slice_frames(-3).coords, s.coords[-3:])
    with pytest.raises(TypeError, match="frame slice"):
        s[3]
    bh = s.select("body,hands")
    assert bh.layout.spec == "body,hands" and bh.coords.shape == (10, 48, 2)
    assert np.array_equal(bh.present, s.present[:, :48])              # missing hands stay missing
    r = s.resample(5)
    assert r.num_frames == 5 and r.fps == pytest.approx(12.5) and r.duration_s == pytest.approx(s.duration_s)
    assert r.coords[:, 0, 0].tolist() == [1, 3, 5, 7, 9]
    assert np.array_equal(r.present, s.present[[1, 3, 5, 7, 9]])
    with pytest.raises(ValueError):
        s.resample(0)


def test_concatenate_checks_layout_and_frame_rate():
    a, b = seq(4), seq(6)
    c = PoseSequence.concatenate([a, b])
    assert c.num_frames == 10 and np.array_equal(c.coords[4:], b.coords)
    assert np.array_equal(c.present, np.concatenate([a.present, b.present]))
    with pytest.raises(ValueError, match="layouts differ"):
        PoseSequence.concatenate([a, seq(3, layout=get_layout("body,hands"))])
    with pytest.raises(ValueError, match="frame rates differ: 25 vs 30 fps"):
        PoseSequence.concatenate([a, seq(3, fps=30.0)])
    with pytest.raises(ValueError, match="nothing"):
        PoseSequence.concatenate([])


def test_bad_arrays_are_clear_errors():
    with pytest.raises(PoseDataError, match=r"coords must have shape \(T, K, 2\)"):
        PoseSequence(np.zeros((3, 160, 3), np.float32), np.ones((3, 160), bool), 25.0, CANONICAL)
    with pytest.raises(PoseDataError, match="fps must be a positive number"):
        PoseSequence(np.zeros((3, 160, 2), np.float32), np.ones((3, 160), bool), 0.0, CANONICAL)
