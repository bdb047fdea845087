"""SLT dataset adapters: real annotation files where we have them, exact-format fixtures otherwise."""

from __future__ import annotations

import pickle

import pytest
from conftest import shared_path

from msmae.data.slt import (SLTDataError, load_csl_daily, load_dgs_sentences, load_how2sign, load_manifest,
                            load_p14t, load_slt_dataset)


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


# ----------------------------------------------------------------------------- PHOENIX-2014T
def test_p14t_real_sample():
    root = shared_path("phoenix14t-holistic-sample")
    data = load_p14t(root / "PHOENIX-2014-T.train.corpus.csv", root)
    assert data.counts() == {"train": 1} and not data.excluded
    ex = data.examples[0]
    assert ex.id == "25October_2010_Monday_tagesschau-17"
    assert ex.pose_path == root / "25October_2010_Monday_tagesschau-17.pose"
    assert ex.text.startswith("regen und schnee lassen an den alpen") and ex.text.endswith("sonst ist das klar")
    assert ex.split == "train" and ex.start is None and ex.end is None


def _p14t_fixture(tmp_path):
    ann = tmp_path / "annotations" / "manual"
    ann.mkdir(parents=True)
    header = "name|video|start|end|speaker|orth|translation\n"
    (ann / "PHOENIX-2014-T.train.corpus.csv").write_text(
        header + "a1|a1/1/*.png|-1|-1|Signer01|REGEN|es regnet\n"
        "a2|a2/1/*.png|-1|-1|Signer02|SONNE|\n"          # empty translation
        "a3|a3/1/*.png|-1|-1|Signer03|WIND|es wird \"windig\"\n", encoding="utf-8")
    (ann / "PHOENIX-2014-T.dev.corpus.csv").write_text(
        header + "d1|d1/1/*.png|-1|-1|Signer01|NEBEL|nebel im tal\n", encoding="utf-8")
    (ann / "PHOENIX-2014-T.test.corpus.csv").write_text(
        header + "t1|t1/1/*.png|-1|-1|Signer04|SCHNEE|schnee\n", encoding="utf-8")
    poses = tmp_path / "poses"
    touch(poses / "a1.pose"), touch(poses / "dev" / "d1.pose"), touch(poses / "t1.npz")  # a3 has no pose
    return tmp_path / "annotations", poses


def test_p14t_counts_and_reasons(tmp_path, caplog):
    ann, poses = _p14t_fixture(tmp_path)
    data = load_p14t(ann, poses)
    assert data.counts() == {"train": 1, "dev": 1, "test": 1}
    assert [e.pose_path.name for e in data.examples] == ["a1.pose", "d1.pose", "t1.npz"]
    assert data.examples[1].pose_path.parent.name == "dev"
    reasons = dict(data.excluded)
    assert reasons["a2"].startswith("empty text") and reasons["a3"].startswith("missing pose file")
    assert data.excluded_counts() == {"empty text": 1, "missing pose file": 1}
    assert "excluded 2" in caplog.text and "1 empty text" in caplog.text
    with pytest.raises(SLTDataError, match="excluded 2"):
        load_p14t(ann, poses, strict=True)
    assert load_p14t(ann, poses, splits=["dev"]).counts() == {"dev": 1}
    with pytest.raises(SLTDataError, match="unknown split"):
        load_p14t(ann, poses, splits=["val"])
    with pytest.raises(SLTDataError, match="pose folder not found"):
        load_p14t(ann, tmp_path / "nowhere")
    with pytest.raises(SLTDataError, match="train annotations not found"):
        load_p14t(tmp_path, poses)


# ----------------------------------------------------------------------------- CSL-Daily
def _csl_fixture(tmp_path, info=None):
    lab = tmp_path / "csl" / "sentence_label"
    lab.mkdir(parents=True)
    info = info if info is not None else [
        {"name": "S000000_P0000_T00", "length": 90, "label_gloss": ["你", "好"], "label_char": list("你好。"),
         "label_word": ["你好", "。"], "signer": 0, "time": 0},
        {"name": "S000001_P0001_T00", "length": 80, "label_gloss": ["谢谢"], "label_char": list("谢谢你！"),
         "label_word": ["谢谢", "你", "！"], "signer": 1, "time": 0},
        {"name": "S000002_P0002_T00", "length": 70, "label_gloss": [], "label_char": [],
         "label_word": [], "signer": 2, "time": 0},
    ]
    with open(lab / "csl2020ct_v2.pkl", "wb") as f:
        pickle.dump({"info": info, "gloss_map": ["你", "好", "谢谢"], "char_map": list("你好。谢！")}, f)
    (lab / "split_1.txt").write_text("name|split\nS000000_P0000_T00|train\nS000001_P0001_T00|dev\n"
                                     "S000002_P0002_T00|train\nS000003_P0003_T00|test\n", encoding="utf-8")
    poses = tmp_path / "poses"
    for n in ("S000000_P0000_T00", "S000001_P0001_T00", "S000002_P0002_T00"):
        touch(poses / f"{n}.pose")
    return tmp_path / "csl", poses


def test_csl_daily_split_and_labels(tmp_path):
    ann, poses = _csl_fixture(tmp_path)
    data = load_csl_daily(ann, poses)
    assert [(e.id, e.text, e.split) for e in data.examples] == [
        ("S000000_P0000_T00", "你好。", "train"), ("S000001_P0001_T00", "谢谢你！", "dev")]
    reasons = dict(data.excluded)
    assert reasons["S000002_P0002_T00"].startswith("empty text")
    assert reasons["S000003_P0003_T00"].startswith("no sentence label")
    assert load_slt_dataset("csl_daily", annotations=ann / "sentence_label", poses=poses,
                            splits=["dev"]).counts() == {"dev": 1}


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_csl_daily_refuses_code_in_pickle_and_bad_files(tmp_path):
    ann, poses = _csl_fixture(tmp_path)
    with open(ann / "sentence_label" / "csl2020ct_v2.pkl", "wb") as f:
        pickle.dump({"info": [Evil()]}, f)
    with pytest.raises(SLTDataError, match="refusing to load builtins.print"):
        load_csl_daily(ann, poses)
    (ann / "sentence_label" / "csl2020ct_v2.pkl").write_bytes(b"not a pickle")
    with pytest.raises(SLTDataError, match="not a readable CSL-Daily label pickle"):
        load_csl_daily(ann, poses)
    with pytest.raises(SLTDataError, match="sentence labels not found"):
        load_csl_daily(tmp_path, poses)


# ----------------------------------------------------------------------------- How2Sign
def test_how2sign_real_annotations_comma_separated(tmp_path):
    root = shared_path("how2sign-annotations")
    poses = tmp_path / "poses"
    names = ["-d5dN54tH2E_0-1-rgb_front", "-d5dN54tH2E_1-1-rgb_front"]
    for n in names:
        touch(poses / f"{n}.pose")
    data = load_how2sign(root, poses, splits=["dev", "test"])
    assert [e.id for e in data.examples] == names
    assert data.examples[1].text == "I call it painting the wall."
    assert data.examples[0].text.startswith("We're going to work on a arm drill")
    assert all(e.split == "dev" and e.start is None for e in data.examples)  # sentence clips: whole file
    # every other row of the real val (1741) and test (2357) files is reported missing, none dropped silently
    assert len(data.examples) + len(data.excluded) == 1741 + 2357
    assert data.excluded_counts() == {"missing pose file": 1741 + 2357 - 2}


def test_how2sign_tab_separated_with_video_fallback_and_invalid_range(tmp_path):
    ann = tmp_path / "h2s"
    ann.mkdir()
    (ann / "how2sign_realigned_train.csv").write_text(
        "VIDEO_ID\tVIDEO_NAME\tSENTENCE_ID\tSENTENCE_NAME\tSTART_REALIGNED\tEND_REALIGNED\tSENTENCE\n"
        "vid\tvid-1-rgb_front\tvid_0\tvid_0-1-rgb_front\t1.5\t4.25\tHello, my friend.\n"
        "vid\tvid-1-rgb_front\tvid_1\tvid_1-1-rgb_front\t5.0\t9.0\tNow we paint.\n"
        "vid\tvid-1-rgb_front\tvid_2\tvid_2-1-rgb_front\t9.0\t8.0\tBackwards.\n", encoding="utf-8")
    poses = tmp_path / "poses"
    touch(poses / "vid_0-1-rgb_front.pose"), touch(poses / "vid-1-rgb_front.pose")
    data = load_how2sign(ann / "how2sign_realigned_train.csv", poses)
    a, b = data.examples
    assert (a.id, a.text, a.start, a.end) == ("vid_0-1-rgb_front", "Hello, my friend.", None, None)
    assert b.pose_path.name == "vid-1-rgb_front.pose" and (b.start, b.end) == (5.0, 9.0)
    assert data.excluded == [("vid_2-1-rgb_front", data.excluded[0][1])]
    assert data.excluded[0][1].startswith("invalid time range: 9.0..8.0")


# ----------------------------------------------------------------------------- manifest
def test_manifest(tmp_path):
    touch(tmp_path / "p" / "x.pose"), touch(tmp_path / "p" / "y.npz")
    (tmp_path / "m.csv").write_text(
        "path,text,split,start,end\np/x.pose,\"hallo, welt\",train,,\np/y.npz,guten tag,val,0.5,2\n"
        "p/z.pose,fehlt,test,,\np/x.pose,,train,,\n", encoding="utf-8")
    data = load_manifest(tmp_path / "m.csv")
    assert [(e.id, e.text, e.split, e.start, e.end) for e in data.examples] == [
        ("x", "hallo, welt", "train", None, None), ("y", "guten tag", "dev", 0.5, 2.0)]
    assert data.examples[0].pose_path == tmp_path / "p" / "x.pose"
    assert data.excluded_counts() == {"missing pose file": 1, "empty text": 1}
    # With a pose folder, relative paths are relative to it (as in the ISLR manifest).
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "m.csv").write_text("path,text,split\nx.pose,hallo,train\n", encoding="utf-8")
    moved = load_slt_dataset("manifest", annotations=tmp_path / "elsewhere" / "m.csv", poses=tmp_path / "p")
    assert [e.pose_path for e in moved.examples] == [tmp_path / "p" / "x.pose"] and not moved.excluded
    (tmp_path / "bad.csv").write_text("path,words,split\na,b,train\n", encoding="utf-8")
    with pytest.raises(SLTDataError, match=r"bad.csv: missing column\(s\) \['text'\]"):
        load_manifest(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text("path,text,split\na,b,holdout\n", encoding="utf-8")
    with pytest.raises(SLTDataError, match="line 2: unknown split 'holdout'"):
        load_manifest(tmp_path / "bad2.csv")
    with pytest.raises(SLTDataError, match="annotation file not found"):
        load_manifest(tmp_path / "none.csv")


# ----------------------------------------------------------------------------- DGS Corpus sample
def test_dgs_sentences_real():
    root = shared_path("dgs-corpus-sentences")
    en = load_dgs_sentences(root)
    assert en.counts() == {"test": 16, "train": 15}
    assert [i for i, _ in en.excluded] == ["train_7"]  # its English text is empty
    de = load_dgs_sentences(root, language="german")
    assert de.counts() == {"test": 16, "train": 16} and not de.excluded
    t7 = next(e for e in de.examples if e.id == "train_7")
    assert t7.text.startswith("Sie sprachen und gestikulierten etwas")
    assert t7.pose_path == root / "train_7_original.pose"
    assert [e.id for e in de.split("train")][:3] == ["train_1", "train_2", "train_3"]
    with pytest.raises(SLTDataError, match="unknown SLT dataset"):
        load_slt_dataset("phoenix", annotations=root)
