"""``msmae inspect``: figures on the real files, checked against independent computations."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_path

from msmae.cli import main
from msmae.layout import FACE_MESH_INDICES

FACE_IDX = np.array(FACE_MESH_INDICES)
KEYS = {"path", "frames", "fps", "duration_s", "layout", "present"}


def _inspect_json(capsys, *paths) -> tuple[int, list[dict], str]:
    rc = main(["inspect", "--json", *map(str, paths)])
    out, err = capsys.readouterr()
    return rc, [json.loads(line) for line in out.splitlines()], err


def _pose_expect(path, pose, face, lh, rh):
    """Frames, fps, per-stream presence from pose-format's raw confidences at README positions."""
    from pose_format import Pose

    p = Pose.read(path.read_bytes())
    conf = np.asarray(p.body.confidence)[:, 0]
    return {"frames": conf.shape[0], "fps": float(p.body.fps),
            "present": {"body": (conf[:, pose] > 0).mean(), "left_hand": (conf[:, lh] > 0).mean(),
                        "right_hand": (conf[:, rh] > 0).mean(), "face": (conf[:, face] > 0).mean()}}


def _check(row, expect, layout):
    assert KEYS <= set(row)
    assert row["frames"] == expect["frames"]
    assert row["fps"] == pytest.approx(expect["fps"], abs=1e-4)
    assert row["duration_s"] == pytest.approx(expect["frames"] / expect["fps"], abs=1e-3)
    assert row["layout"] == layout
    assert set(row["present"]) == {"body", "left_hand", "right_hand", "face"}
    for k, v in expect["present"].items():
        assert row["present"][k] == pytest.approx(v, abs=1e-4), k


def test_inspect_json_on_real_pose_files(capsys):
    fs = shared_path("fingerspelling-ase", "ase", "fs-sts13206cebad70790ee136a34c7a74af5e.pose")
    dgs = shared_path("dgs-corpus-sentences", "test_14_original.pose")
    ph = shared_path("phoenix14t-holistic-sample", "25October_2010_Monday_tagesschau-17.pose")
    rc, rows, err = _inspect_json(capsys, fs, dgs, ph)
    assert rc == 0 and err == "" and [r["path"] for r in rows] == [str(fs), str(dgs), str(ph)]
    _check(rows[0], _pose_expect(fs, np.arange(11, 17), 33 + FACE_IDX, np.arange(511, 532),
                                 np.arange(532, 553)), "holistic-586")
    assert rows[0]["present"]["left_hand"] == 0.0 and rows[0]["present"]["body"] == pytest.approx(5 / 6, abs=1e-4)
    # reduced file: the face fraction counts our 112 points, 10 of which the file lacks
    from pose_format import Pose

    names = [int(n) for n in Pose.read(dgs.read_bytes()).header.components[1].points]
    face_pos = np.array([8 + names.index(i) for i in FACE_MESH_INDICES if i in names])
    exp = _pose_expect(dgs, np.arange(6), face_pos, np.arange(136, 157), np.arange(157, 178))
    exp["present"]["face"] *= len(face_pos) / 112
    _check(rows[1], exp, "reduced-holistic-178")
    assert rows[1]["absent_points"] == {"face": [98, 97, 2, 326, 327, 1, 4, 5, 195, 197]}
    _check(rows[2], _pose_expect(ph, np.arange(11, 17), 33 + FACE_IDX, np.arange(501, 522),
                                 np.arange(522, 543)), "holistic-543")
    assert (rows[2]["width"], rows[2]["height"]) == (210, 260)


def test_inspect_json_on_parquet_and_npy(capsys):
    import pandas as pd

    pq = shared_path("gislr-asl-signs", "train_landmark_files", "2044", "215835537.parquet")
    npy = shared_path("videos", "reference-holistic", "_20g7MG8K1U_14-8-rgb_front.npy")
    rc, rows, _ = _inspect_json(capsys, pq, npy)
    assert rc == 0
    df = pd.read_parquet(pq)
    for row, kind, xyz in ((rows[0], "gislr-parquet", df[["x", "y", "z"]].to_numpy().reshape(-1, 543, 3)),
                           (rows[1], "mediapipe-npy", np.load(npy))):
        ok = ~np.isnan(xyz[..., 0])
        expect = {"frames": xyz.shape[0], "fps": 30.0,
                  "present": {"body": ok[:, 489 + np.arange(11, 17)].mean(), "left_hand": ok[:, 468:489].mean(),
                              "right_hand": ok[:, 522:543].mean(), "face": ok[:, FACE_IDX].mean()}}
        _check(row, expect, kind)
        assert row["fps_assumed"] is True
    assert rows[0]["frames"] == df.frame.nunique() == 12
    assert rows[1]["present"]["left_hand"] == pytest.approx(np.mean(~np.isnan(np.load(npy)[:, 468, 0])), abs=1e-4)
    # fps given on the command line replaces the assumption
    assert main(["inspect", "--json", "--fps", "24", str(npy)]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["fps"] == 24 and row["duration_s"] == pytest.approx(71 / 24, abs=1e-3) and not row["fps_assumed"]


def test_inspect_unreadable_file_one_line_error(tmp_path, capsys):
    good = shared_path("phoenix14t-holistic-sample", "25October_2010_Monday_tagesschau-17.pose")
    bad = tmp_path / "broken.pose"
    bad.write_bytes(good.read_bytes()[:5000])
    rc, rows, err = _inspect_json(capsys, bad, tmp_path / "missing.npz", good)
    assert rc == 1
    assert [r["path"] for r in rows] == [str(good)] and rows[0]["frames"] == 86
    lines = err.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in err
    assert str(bad) in lines[0] and "truncated" in lines[0]
    assert "missing.npz" in lines[1] and "no such file" in lines[1]


def test_inspect_table_and_folders(capsys):
    folder = shared_path("videos", "reference-holistic")
    rc = main(["inspect", str(folder)])
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["path", "frames", "fps", "duration_s", "layout", "body", "left_hand",
                                "right_hand", "face"]
    body = [ln for ln in lines[1:] if ln.startswith(str(folder))]
    assert len(body) == len(list(folder.glob("*.npy"))) == 6
    lsa = next(ln.split() for ln in body if "lsa64" in ln)
    # lsa64_001_001_001.mp4 lies in the parent folder: its 59.94 fps and 1920x1080 are used.
    assert lsa[1:] == ["88", "59.94", "1.47", "mediapipe-npy", "1.000", "0.000", "1.000", "1.000"]
    h2s = next(ln.split() for ln in body if "_15CDIexNDM_4" in ln)   # its video is elsewhere: fps assumed
    assert h2s[2] == "30*" and "assumed" in lines[-1]


def test_inspect_folder_totals_match_data_readme(capsys):
    """dgs-corpus-sentences/README.txt: 32 files, 25 fps, 1,728 frames in total, 20-152 each."""
    rc, rows, err = _inspect_json(capsys, shared_path("dgs-corpus-sentences"))
    assert rc == 0 and err == ""
    assert len(rows) == 32 and sum(r["frames"] for r in rows) == 1728
    assert min(r["frames"] for r in rows) == 20 and max(r["frames"] for r in rows) == 152
    assert {r["fps"] for r in rows} == {25.0} and {r["layout"] for r in rows} == {"reduced-holistic-178"}


def test_a_body_hands_file_shows_its_face_as_absent_not_zero(tmp_path, capsys):
    from msmae.layout import get_layout
    from msmae.poses import PoseSequence, write_npz

    bh = get_layout("body,hands")
    write_npz(PoseSequence(np.zeros((5, bh.num_points, 2), np.float32), np.ones((5, bh.num_points), bool), 25.0, bh),
              tmp_path / "bh.npz")
    assert main(["inspect", str(tmp_path / "bh.npz")]) == 0
    head, row = capsys.readouterr().out.splitlines()[:2]
    assert head.split()[-4:] == ["body", "left_hand", "right_hand", "face"]
    assert row.split()[-4:] == ["1.000", "1.000", "1.000", "absent"]
