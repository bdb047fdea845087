"""ISLR dataset adapters (fixtures in each dataset's released format, the real GISLR csv), clip loading
and the clip dataset's sampling and augmentation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from msmae.data.islr import (ClipDataset, ISLRDataError, ISLRExample, load_asl_citizen, load_clip, load_clips,
                             load_gislr, load_islr_dataset, load_manifest, load_slovo, load_wlasl, read_class_list)
from msmae.layout import get_layout
from msmae.poses import PoseSequence, write_npz

BH = get_layout("body,hands")
WRIST = 5  # right wrist inside body,hands


def marker_sequence(frames: int, *, fps: float = 25.0, present: bool = True) -> PoseSequence:
    """Shoulders fixed 1 apart at y=0 (mid-shoulder x = 0.5), the right wrist's x = frame index, so that a
    normalised clip's wrist x + 0.5 tells which source frame each row came from."""
    coords = np.zeros((frames, BH.num_points, 2), np.float32)
    coords[:, 0] = (1.0, 0.0)          # left shoulder
    coords[:, 1] = (0.0, 0.0)          # right shoulder
    coords[:, WRIST, 0] = np.arange(frames)
    coords[:, WRIST, 1] = 1.0
    coords[:, 6:] = np.random.default_rng(frames).normal(size=(frames, 42, 2))
    pres = np.full((frames, BH.num_points), present)
    pres[:, 2:5] = False               # elbows, left wrist missing
    return PoseSequence(coords, pres, fps, BH, source=f"marker{frames}")


def write_poses(folder: Path, names, frames: int = 40, fps: float = 25.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        write_npz(marker_sequence(frames, fps=fps), folder / f"{n}.npz")
    return folder


# ------------------------------------------------------------------------------------------ WLASL
def wlasl_json(path: Path) -> Path:
    def inst(vid, split, start=1, end=-1, signer=1):
        return {"bbox": [0, 0, 10, 10], "fps": 25, "frame_end": end, "frame_start": start, "instance_id": 0,
                "signer_id": signer, "source": "aslu", "split": split, "url": "https://x", "variation_id": 0,
                "video_id": vid}
    content = [
        {"gloss": "book", "instances": [inst("00001", "train", 5, 14), inst("00002", "val"), inst("00003", "test")]},
        {"gloss": "drink", "instances": [inst("00004", "train", signer=2), inst("00005", "test"),
                                         inst("00006", "train")]},  # 00006 has no pose file
        {"gloss": "computer", "instances": [inst("00007", "train")]},
    ]
    path.write_text(json.dumps(content))
    return path


def test_wlasl_classes_splits_missing_and_subset(tmp_path):
    ann = wlasl_json(tmp_path / "WLASL_v0.3.json")
    poses = write_poses(tmp_path / "poses", ["00001", "00002", "00003", "00004", "00005", "00007"])
    d = load_wlasl(ann, poses)
    assert d.classes == ["book", "drink", "computer"]  # the file's gloss order = WLASL class ids
    assert d.counts() == {"train": 3, "val": 1, "test": 2}
    assert d.excluded == [("00006", d.excluded[0][1])] and d.excluded[0][1].startswith("missing pose file")
    assert d.excluded_counts() == {"missing pose file": 1}
    ex = {e.id: e for e in d.examples}
    assert ex["00004"].signer == "2" and ex["00001"].start is None  # start kit videos are already cut
    assert "excluded 1 (1 missing pose file" in d.summary()
    sub = load_wlasl(tmp_path, poses, num_glosses=2)  # a folder holding WLASL_v*.json works too
    assert sub.classes == ["book", "drink"] and {e.label for e in sub.examples} == {"book", "drink"}
    with pytest.raises(ISLRDataError, match="missing pose file"):
        load_wlasl(ann, poses, strict=True)


def test_wlasl_frame_ranges_are_one_based_inclusive_at_25_fps(tmp_path):
    ann = wlasl_json(tmp_path / "WLASL_v0.3.json")
    poses = write_poses(tmp_path / "poses", ["00001", "00002", "00003", "00004", "00005", "00007"], frames=40)
    d = load_wlasl(ann, poses, frame_ranges=True)
    e = next(x for x in d.examples if x.id == "00001")   # frame_start 5, frame_end 14 (1-based, inclusive)
    assert (e.start, e.end, e.unit, e.range_fps) == (4, 14, "frame", 25.0)
    assert e.frame_bounds(25.0) == (4, 14)
    assert e.frame_bounds(50.0) == (8, 28)                 # a pose file at 50 fps: same times
    clip = load_clip(e, layout=BH)
    assert np.allclose(clip.coords[:, WRIST, 0].astype(np.float32) + 0.5, np.arange(4, 14))
    whole = next(x for x in d.examples if x.id == "00002")  # frame_end -1 = to the last frame
    assert whole.frame_bounds(25.0) == (0, None) and load_clip(whole, layout=BH).num_frames == 40


# ------------------------------------------------------------------------------------ ASL Citizen
def test_asl_citizen_split_csvs(tmp_path):
    splits = tmp_path / "ASL_Citizen" / "splits"
    splits.mkdir(parents=True)
    head = "Participant ID,Video file,Gloss,ASL-LEX Code\n"
    (splits / "train.csv").write_text(head + "P1,111-BOOK.mp4,BOOK,E_01_001\nP2,222-THINKCHIN.mp4,THINKCHIN ,A_02_002\n"
                                      "P2,333-BOOK.mp4,BOOK,E_01_001\n")
    (splits / "val.csv").write_text(head + "P3,444-BOOK.mp4,BOOK,E_01_001\n")
    (splits / "test.csv").write_text(head + "P4,555-THINKCHIN.mp4,THINKCHIN,A_02_002\n"
                                     "P4,666-RARE.mp4,RARE,X_00_000\nP5,777-BOOK.mp4,BOOK,E_01_001\n")
    poses = write_poses(tmp_path / "poses", ["111-BOOK", "222-THINKCHIN", "333-BOOK", "444-BOOK",
                                             "555-THINKCHIN", "666-RARE"])
    d = load_asl_citizen(tmp_path / "ASL_Citizen", poses)
    assert d.classes == ["BOOK", "THINKCHIN"]               # trailing space of the released gloss stripped
    assert d.counts() == {"train": 3, "val": 1, "test": 1}
    assert d.excluded_counts() == {"unknown label": 1, "missing pose file": 1}
    assert ("666-RARE", "unknown label: 'RARE' is not in the training split (test example)") in d.excluded
    assert {e.signer for e in d.split("train")} == {"P1", "P2"}
    one = load_asl_citizen(splits / "val.csv", poses, classes=["BOOK", "THINKCHIN"])
    assert one.counts() == {"val": 1}
    (splits / "val.csv").write_text("Participant,Video file,Gloss\nP3,444-BOOK.mp4,BOOK\n")
    with pytest.raises(ISLRDataError, match=r"val.csv: missing column\(s\) \['Participant ID'\]"):
        load_asl_citizen(tmp_path / "ASL_Citizen", poses)


# ------------------------------------------------------------------------------------------ Slovo
SLOVO_HEADER = "attachment_id\tuser_id\twidth\theight\tlength\ttext\ttrain\tbegin\tend\n"


def test_slovo_tab_separated_train_flag_and_ranges(tmp_path):
    rows = [("a1", "u1", "привет", "True", 3, 9), ("a2", "u1", "утро", "True", 0, 12),
            ("a3", "u2", "привет", "False", 5, 15), ("a4", "u2", "no_event", "True", 0, 10),
            ("a5", "u3", "утро", "False", 9, 9)]
    ann = tmp_path / "annotations.csv"
    ann.write_text(SLOVO_HEADER + "".join(f"{a}\t{u}\t1920\t1080\t40\t{t}\t{tr}\t{b}\t{e}\n"
                                          for a, u, t, tr, b, e in rows), encoding="utf-8")
    poses = write_poses(tmp_path / "poses", ["a1", "a2", "a3", "a4", "a5"], frames=30)
    d = load_slovo(tmp_path, poses)
    assert d.classes == ["no_event", "привет", "утро"]      # no_event is one of Slovo's 1,001 classes
    assert d.counts() == {"train": 3, "val": 2} and not d.excluded   # train False = the validation signers
    assert all(e.start is None for e in d.examples)           # released videos are already trimmed
    r = load_slovo(ann, poses, frame_ranges=True)
    assert r.excluded_counts() == {"invalid frame range": 1}  # begin 9 == end 9
    e = next(x for x in r.examples if x.id == "a1")
    assert (e.start, e.end, e.range_fps, e.signer) == (3, 9, None, "u1")
    assert np.allclose(load_clip(e, layout=BH).coords[:, WRIST, 0].astype(np.float32) + 0.5, np.arange(3, 9))
    comma = tmp_path / "comma.csv"                            # a comma-separated copy reads the same
    comma.write_text(ann.read_text(encoding="utf-8").replace("\t", ","), encoding="utf-8")
    assert load_slovo(comma, poses).counts() == d.counts()
    # As released: slovo/train/*.mp4 and slovo/test/*.mp4, so `msmae extract slovo/` writes poses/{train,test}/.
    tree = tmp_path / "tree"
    write_poses(tree / "train", ["a1", "a2", "a4"], frames=30)
    write_poses(tree / "test", ["a3", "a5"], frames=30)
    t = load_slovo(ann, tree)
    assert t.counts() == {"train": 3, "val": 2} and not t.excluded
    assert next(x for x in t.examples if x.id == "a3").pose_path.parent.name == "test"
    ann.write_text(SLOVO_HEADER + "a1\tu1\t1\t1\t1\tx\tmaybe\t0\t1\n")
    with pytest.raises(ISLRDataError, match="train flag of 'a1' is 'maybe'"):
        load_slovo(ann, poses)


# ------------------------------------------------------------------------------------------ GISLR
def test_gislr_real_train_csv_participant_splits():
    from conftest import shared_path

    csv_path = shared_path("gislr-asl-signs", "train.csv")
    d = load_gislr(csv_path, val_participants=["2044"], test_participants=[4718, 16069])
    assert d.classes == ["hello", "thankyou"] and not d.excluded
    assert d.counts() == {"train": 72, "val": 4, "test": 8}
    assert {e.signer for e in d.split("test")} == {"4718", "16069"}
    assert all(e.pose_path.is_file() and e.pose_path.suffix == ".parquet" for e in d.examples)
    clip = load_clip(d.split("val")[0], layout=BH)
    assert clip.num_frames > 0 and clip.present[:, :2].all()
    with pytest.raises(ISLRDataError, match=r"participants \['99'\]"):
        load_gislr(csv_path, test_participants=["99"])
    with pytest.raises(ISLRDataError, match="in both"):
        load_gislr(csv_path, val_participants=["2044"], test_participants=["2044"])


def test_gislr_label_map_and_missing_parquet(tmp_path):
    (tmp_path / "train.csv").write_text("path,participant_id,sequence_id,sign\n"
                                        "train_landmark_files/1/10.parquet,1,10,hello\n"
                                        "train_landmark_files/1/11.parquet,1,11,tv\n"
                                        "train_landmark_files/2/12.parquet,2,12,bye\n")
    (tmp_path / "sign_to_prediction_index_map.json").write_text(json.dumps({"tv": 1, "hello": 0, "bye": 2}))
    for rel in ("1/10", "1/11"):
        (tmp_path / "train_landmark_files" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "train_landmark_files" / f"{rel}.parquet").write_bytes(b"x")
    d = load_gislr(tmp_path)
    assert d.classes == ["hello", "tv", "bye"]               # the official map's order
    assert [e.id for e in d.examples] == ["10", "11"] and d.excluded_counts() == {"missing pose file": 1}
    # An unreadable parquet is found when clips are loaded, and reported with the example.
    clips, problems = load_clips(d.examples, layout=BH, progress=False)
    assert clips == [None, None] and problems[0][0] == "10" and problems[0][1].startswith("unreadable pose file")


# ---------------------------------------------------------------------------------------- manifest
def test_manifest_paths_splits_seconds_and_errors(tmp_path):
    write_poses(tmp_path / "clips", ["v1", "v2", "v3"], frames=50, fps=25.0)
    man = tmp_path / "jsl.csv"
    man.write_text("path,label,split,start,end,signer\nclips/v1.npz,ame,train,0.2,0.6,s1\n"
                   "clips/v2.npz,kaze,valid,,,s2\nclips/v3.npz,ame,test,1.0,0.5,s3\n"
                   "clips/v9.npz,kaze,train,,,s1\n" + f"{tmp_path / 'clips' / 'v3.npz'},kaze,dev,,,\n")
    d = load_manifest(man)
    assert d.classes == ["ame"] and d.excluded_counts() == {
        "invalid time range": 1, "missing pose file": 1, "unknown label": 2}
    e = d.split("train")[0]
    assert (e.unit, e.start, e.end, e.signer) == ("second", 0.2, 0.6, "s1")
    assert e.frame_bounds(25.0) == (5, 15)                   # frames whose time lies in [0.2, 0.6)
    assert np.allclose(load_clip(e, layout=BH).coords[:, WRIST, 0].astype(np.float32) + 0.5, np.arange(5, 15))
    d2 = load_manifest(man, classes=["ame", "kaze"])
    assert d2.counts() == {"train": 1, "val": 2}
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,split\nclips/v1.npz,ame,holdout\n")
    with pytest.raises(ISLRDataError, match="unknown split 'holdout'"):
        load_manifest(bad)
    with pytest.raises(ISLRDataError, match="unknown ISLR dataset"):
        load_islr_dataset("msasl", annotations=man)
    with pytest.raises(ISLRDataError, match="a pose folder is needed"):
        load_islr_dataset("wlasl", annotations=man)


def test_class_list_files(tmp_path):
    (tmp_path / "c.txt").write_text("# glosses\nbook\ndrink\n\n")
    (tmp_path / "c.json").write_text(json.dumps({"drink": 1, "book": 0}))
    (tmp_path / "gap.json").write_text(json.dumps({"drink": 2, "book": 0}))
    assert read_class_list(tmp_path / "c.txt") == ["book", "drink"]
    assert read_class_list(tmp_path / "c.json") == ["book", "drink"]
    with pytest.raises(ISLRDataError, match="without gaps"):
        read_class_list(tmp_path / "gap.json")


@pytest.mark.parametrize("name, text", [("twice.txt", "book\ndrink\nbook\n"),
                                        ("twice.json", json.dumps(["book", "drink", "book"]))])
def test_class_list_repeating_a_name_is_refused(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    with pytest.raises(ISLRDataError, match=r"repeated class names \['book'\]"):
        read_class_list(tmp_path / name)


# ------------------------------------------------------------------------------------------ clips
def test_empty_clips_are_reported(tmp_path):
    write_npz(marker_sequence(20, present=False), tmp_path / "nothing.npz")
    write_npz(marker_sequence(20), tmp_path / "short.npz")
    exs = [ISLRExample("nothing", tmp_path / "nothing.npz", "a", "train"),
           ISLRExample("late", tmp_path / "short.npz", "a", "train", start=30, end=40),
           ISLRExample("ok", tmp_path / "short.npz", "a", "train", start=2, end=None)]
    clips, problems = load_clips(exs, layout=BH, progress=False)
    assert clips[0] is None and clips[1] is None and clips[2].num_frames == 18
    assert [p[0] for p in problems] == ["nothing", "late"]
    assert all(p[1].startswith("empty clip") for p in problems)


def test_clip_dataset_sampling_and_augmentation():
    from msmae.data.islr import prepare_clip

    clips = [prepare_clip(marker_sequence(n), layout=BH) for n in (10, 50)]
    ev = ClipDataset(clips, [0, 1], num_frames=8, train=False)
    assert ev[0]["coords"].shape == (8, BH.num_points, 2) and ev[1]["label"] == 1
    assert np.allclose(ev[1]["coords"][:, WRIST, 0] + 0.5, [3, 9, 15, 21, 28, 34, 40, 46])  # uniform, evenly spread

    def frames(ds, i):
        return np.round(ds[i]["coords"][:, WRIST, 0] + 0.5).astype(int)

    plain = ClipDataset(clips, [0, 1], num_frames=8, train=True, affine=False, seed=3)
    a = frames(plain, 1)
    assert np.all(np.diff(a) > 0)                                # random frames, in time order, no repeats
    assert np.array_equal(a, frames(ClipDataset(clips, [0, 1], num_frames=8, train=True, affine=False, seed=3), 1))
    assert len(set(frames(plain, 0))) == 8 and frames(plain, 0).max() <= 9
    plain.set_epoch(1)
    assert not np.array_equal(frames(plain, 1), a)               # new frames each epoch
    plain.set_epoch(0)
    aug = ClipDataset(clips, [0, 1], num_frames=8, train=True, affine=True, seed=3)
    x, y = aug[1]["coords"], plain[1]["coords"]
    missing = ~clips[1].present[0]
    assert np.all(x[:, missing] == 0)                            # missing points stay 0 after the affine
    # The same frames, moved by one 2x2 matrix (rotation, shear, scale) that is not the identity.
    pts_y, pts_x = y[:, ~missing].reshape(-1, 2), x[:, ~missing].reshape(-1, 2)
    m, *_ = np.linalg.lstsq(pts_y, pts_x, rcond=None)
    assert np.allclose(pts_y @ m, pts_x, atol=1e-4) and not np.allclose(m, np.eye(2), atol=1e-3)
