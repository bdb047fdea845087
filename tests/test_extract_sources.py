"""Inputs, clip files, frame ranges and shards of ``msmae extract`` (no MediaPipe needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import shared_path
from msmae.extract.frames import frame_range, list_images
from msmae.extract.runner import parse_shard, shard_of
from msmae.extract.sources import Clip, InputError, find_clips, read_clips_file


def _touch(p: Path, data: bytes = b"x") -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_frame_range_seconds_to_frames():
    # frames i with start <= i / fps < end
    assert frame_range(None, None, 25) == (0, None)
    assert frame_range(1.0, 2.0, 25) == (25, 50)
    assert frame_range(12.97, 19.52, 25) == (325, 488)  # 324.25 -> 325, 488.0 stays 488
    assert frame_range(0.5, None, 24) == (12, None)
    assert frame_range(0.0, 0.5, 29.916666) == (0, 15)


def test_clip_frames_prefers_frame_range():
    c = Clip(source=Path("v.mp4"), name="v", start_frame=9, stop_frame=20)
    assert c.frames(25) == (9, 20)
    assert Clip(source=Path("v.mp4"), name="v", start_s=1.0, end_s=1.5).frames(30) == (30, 45)


def test_find_clips_tree_names_and_list_file(tmp_path):
    root = tmp_path / "corpus"
    _touch(root / "a.mp4")
    _touch(root / "dev" / "b.MOV")
    for i in (1, 2, 10):  # a PHOENIX-style frame folder
        _touch(root / "dev" / "sent1" / f"images{i}.png")
    _touch(root / "notes.csv")  # ignored inside folders
    _touch(root / ".hidden" / "c.mp4")
    clips = find_clips([root])
    assert [(c.name, c.source.name) for c in clips] == [("a", "a.mp4"), ("dev/b", "b.MOV"), ("dev/sent1", "sent1")]
    assert clips[2].is_frames
    # natural order of frame images: images2 before images10
    assert [p.name for p in list_images(root / "dev" / "sent1")] == ["images1.png", "images2.png", "images10.png"]

    single = find_clips([root / "dev" / "sent1"])  # a frame folder given directly
    assert [(c.name, c.is_frames) for c in single] == [("sent1", True)]

    lst = tmp_path / "inputs.txt"
    lst.write_text("# videos\ncorpus/a.mp4\n\ncorpus/dev/sent1\n")
    assert [c.name for c in find_clips([lst])] == ["a", "sent1"]


def test_find_clips_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        find_clips([tmp_path / "nope.mp4"])
    bad = _touch(tmp_path / "x.csv")
    with pytest.raises(InputError, match="not a video"):
        find_clips([bad])
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no video files"):
        find_clips([tmp_path / "empty"])
    _touch(tmp_path / "one" / "x.mp4")
    _touch(tmp_path / "two" / "x.mp4")
    with pytest.raises(InputError, match="same output x.pose"):
        find_clips([tmp_path / "one" / "x.mp4", tmp_path / "two" / "x.mp4"])
    lst = tmp_path / "l.txt"
    lst.write_text("missing.mp4\n")
    with pytest.raises(InputError, match=r"listed in .*l\.txt"):
        find_clips([lst])


@pytest.mark.parametrize("sep", ["\t", ","])
def test_how2sign_csv_tab_or_comma(tmp_path, sep):
    vids = tmp_path / "videos"
    _touch(vids / "vidA-1-rgb_front.mp4")
    rows = [["VIDEO_ID", "VIDEO_NAME", "SENTENCE_ID", "SENTENCE_NAME", "START_REALIGNED", "END_REALIGNED",
             "SENTENCE"],
            ["vidA", "vidA-1-rgb_front", "vidA_0", "vidA_0-1-rgb_front", "12.97", "19.52", "Hello there."],
            ["vidA", "vidA-1-rgb_front", "vidA_1", "vidA_1-1-rgb_front", "20.65", "24.28", "I call it, so."],
            ["vidB", "vidB-1-rgb_front", "vidB_0", "vidB_0-1-rgb_front", "1.0", "2.0", "Gone."]]
    text = "\n".join(sep.join(f'"{c}"' if "," in c and sep == "," else c for c in r) for r in rows)
    f = tmp_path / "how2sign.csv"
    f.write_text(text + "\n")
    cl = read_clips_file(f, [vids])
    assert [(c.name, c.source.name, c.start_s, c.end_s) for c in cl.clips] == [
        ("vidA_0-1-rgb_front", "vidA-1-rgb_front.mp4", 12.97, 19.52),
        ("vidA_1-1-rgb_front", "vidA-1-rgb_front.mp4", 20.65, 24.28)]
    assert [m["name"] for m in cl.missing] == ["vidB_0-1-rgb_front"]
    assert "vidB-1-rgb_front" in cl.missing[0]["reason"]


def test_how2sign_real_annotation_file(tmp_path):
    """The real re-aligned val CSV (comma-separated, quoted sentences) parses row by row."""
    import pandas as pd

    f = shared_path("how2sign-annotations", "how2sign_realigned_val.csv")
    cl = read_clips_file(f, [tmp_path])  # no videos here: every row is "missing"
    df = pd.read_csv(f)
    assert cl.clips == [] and len(cl.missing) == len(df)
    assert [m["name"] for m in cl.missing[:3]] == list(df["SENTENCE_NAME"][:3])


def test_wlasl_json_frames_are_one_based_inclusive(tmp_path):
    vids = tmp_path / "videos"
    _touch(vids / "00335.mp4")
    _touch(vids / "00336.mp4")
    _touch(vids / "abcdefghijk.mp4")  # a raw YouTube download, named by the id at the end of the url
    data = [{"gloss": "book", "instances": [
        {"video_id": "00335", "frame_start": 1, "frame_end": -1, "url": "http://aslbricks.org/x.mp4"},
        {"video_id": "00336", "frame_start": 10, "frame_end": 40, "url": "http://x.org/y.mp4"},
        {"video_id": "69241", "frame_start": 5, "frame_end": 60,
         "url": "https://www.youtube.com/watch?v=abcdefghijk"},
        {"video_id": "99999", "frame_start": 1, "frame_end": -1, "url": "http://gone.org/z.mp4"}]}]
    f = tmp_path / "WLASL_v0.3.json"
    f.write_text(json.dumps(data))
    cl = read_clips_file(f, [vids])
    got = [(c.name, c.source.name, c.frames(25.0)) for c in cl.clips]
    assert got == [("00335", "00335.mp4", (0, None)), ("00336", "00336.mp4", (9, 40)),
                   ("69241", "abcdefghijk.mp4", (4, 60))]
    assert [m["name"] for m in cl.missing] == ["99999"]
    f.write_text(json.dumps([{"gloss": "x", "instances": [{"video_id": "1", "frame_start": 0}]}]))
    with pytest.raises(InputError, match="1-based"):
        read_clips_file(f, [vids])


def test_plain_csv_seconds_with_and_without_header(tmp_path):
    _touch(tmp_path / "v" / "a.mp4")
    (tmp_path / "v" / "frames").mkdir()
    f = tmp_path / "clips.csv"
    f.write_text("path,start,end,name\nv/a.mp4,1.5,3,first\nv/a.mp4,,2,\nv/frames,0.2,,fr\n")
    cl = read_clips_file(f)
    assert [(c.name, c.source.name, c.start_s, c.end_s) for c in cl.clips] == [
        ("first", "a.mp4", 1.5, 3.0), ("a_0-2", "a.mp4", None, 2.0), ("fr", "frames", 0.2, None)]
    g = tmp_path / "noheader.csv"
    g.write_text("a.mp4,0,1.25,x\nmissing.mp4,0,1,y\n")
    cl = read_clips_file(g, [tmp_path / "v"])  # relative paths are also looked up in the INPUT folders
    assert [(c.name, c.source, c.end_s) for c in cl.clips] == [("x", tmp_path / "v" / "a.mp4", 1.25)]
    assert cl.missing[0]["name"] == "y"
    h = tmp_path / "bad.csv"
    h.write_text("path,start,end\nv/a.mp4,3,1\n")
    with pytest.raises(InputError, match="line 2: the clip ends"):
        read_clips_file(h)
    h.write_text("path,start,end\nv/a.mp4,soon,1\n")
    with pytest.raises(InputError, match="start must be a number of seconds"):
        read_clips_file(h)
    h.write_text("who,what\nx,y\n")
    with pytest.raises(InputError, match="unknown clips file"):
        read_clips_file(h)


def test_shards_partition_names():
    names = [f"clip_{i:04d}" for i in range(500)]
    for n in (1, 3, 8):
        parts = [{x for x in names if shard_of(x, n) == i} for i in range(n)]
        assert set().union(*parts) == set(names)
        assert sum(len(p) for p in parts) == len(names)  # disjoint
        if n > 1:  # and reasonably balanced
            assert min(len(p) for p in parts) > 0.6 * len(names) / n
    # stable: a clip's shard does not depend on the other clips
    assert shard_of("clip_0042", 8) == shard_of("clip_0042", 8)
    assert parse_shard("2/8") == (2, 8)
    for bad in ("8/8", "-1/4", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
