"""``msmae view``: the page's data (compact keypoints, heatmap), the command, and the page itself in a real
browser (Debian's chromium + chromium-driver through selenium; skipped with the reason when absent)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import sys
import time

import numpy as np
import pytest
import torch

from conftest import shared_path
from msmae.analysis.view import decode_keypoints, encode_keypoints, heatmap_png, render_page, write_view
from msmae.cli import main

torch.set_num_threads(1)
CLIP = "_BOJ9cYPRe4_13-8-rgb_front"  # a real How2Sign clip (77 frames, 24 fps, 1280x720) with reference keypoints


def clip_paths():
    return (shared_path("videos", "reference-holistic", f"{CLIP}.npy"),
            shared_path("how2sign-clips", f"{CLIP}.mp4"))


def page_json(path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script id="msmae-data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(m.group(1))


# ------------------------------------------------------------------------------ data of the page
def test_keypoints_round_trip_within_half_a_step_and_compress():
    from msmae.poses.readers import read_sequence

    npy, video = clip_paths()
    seq = read_sequence(npy, fps=24, width=1280, height=720)
    enc = encode_keypoints(seq.coords, seq.present)
    coords, present = decode_keypoints(enc)
    assert np.array_equal(present, seq.present) and 0 < present.mean() < 1   # real gaps survive exactly
    err = np.abs(coords[present] - seq.coords[present]).max()
    assert err <= enc["step"] / 2 + 1e-6 and enc["step"] * 720 < 0.5       # under half a pixel on the 720p frame
    assert np.all(coords[~present] == 0)
    packed = len(base64.b64decode(enc["coords"])) + len(base64.b64decode(enc["present"]))
    assert packed < seq.coords.nbytes / 4, (packed, seq.coords.nbytes)      # vs float32 (T, K, 2)
    # A wild detection far outside the signer jumps by more than int16 holds: the delta wraps and comes back.
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 1, (400, 7, 2)).astype(np.float32)
    c[10, 3], c[11, 3] = (15, -14), (-14, 15)
    p = rng.random((400, 7)) > 0.3
    p[10:12, 3] = True
    enc = encode_keypoints(c, p)
    c2, p2 = decode_keypoints(enc)
    assert abs(c[11, 3, 0] - c[10, 3, 0]) / enc["step"] > 2 ** 15
    assert np.array_equal(p2, p) and np.abs(c2[p] - c[p]).max() <= enc["step"] / 2 + 1e-5


def test_heatmap_png_averages_long_matrices_into_blocks():
    from PIL import Image

    m = np.arange(25.0).reshape(5, 5)
    m[0, 4] = m[4, 0] = np.nan
    png, f = heatmap_png(m)
    with Image.open(io.BytesIO(png)) as im:
        assert im.size == (5, 5) and f == 1
        assert im.getpixel((4, 0)) == (221, 221, 221)  # never computed: grey
    png, f = heatmap_png(np.random.default_rng(0).random((1300, 1300)), max_pixels=600)
    with Image.open(io.BytesIO(png)) as im:
        assert f == 3 and im.size == (434, 434)


def test_page_has_no_network_reference_and_escapes_script_end(tmp_path):
    from msmae.layout import get_layout
    from msmae.poses.sequence import PoseSequence

    lay = get_layout("body,hands")
    seq = PoseSequence(np.random.default_rng(0).random((12, lay.num_points, 2)), np.ones((12, lay.num_points), bool),
                       25.0, lay)
    page = write_view(tmp_path, seq, title="</script><b>x", islr=[{"run": "r", "classes": 2, "segments": [],
                                                                   "clip": [{"rank": 1, "label": "</script>",
                                                                             "probability": 1.0}]}])
    text = page.read_text()
    assert text.count("</script>") == 2                    # only the page's own two script blocks end
    assert not re.search(r"(src|href)=\"(https?:)?//", text) and "http://" not in text.replace(
        "http://www.w3.org", "")
    assert page_json(page)["islr"][0]["clip"][0]["label"] == "</script>"
    assert render_page(page_json(page)) == text


def test_a_file_name_holding_a_placeholder_does_not_put_the_data_in_the_title(tmp_path):
    from msmae.layout import get_layout
    from msmae.poses.sequence import PoseSequence

    lay = get_layout("body,hands")
    seq = PoseSequence(np.zeros((4, lay.num_points, 2)), np.ones((4, lay.num_points), bool), 25.0, lay)
    page = write_view(tmp_path, seq, source=str(tmp_path / "a__MSMAE_DATA__b__MSMAE_TITLE__.pose"))
    title = re.search(r"<title>(.*?)</title>", page.read_text(), re.S).group(1)
    assert title == "a__MSMAE_DATA__b__MSMAE_TITLE__.pose · msmae view"
    assert page_json(page)["title"] == "a__MSMAE_DATA__b__MSMAE_TITLE__.pose"


def test_video_goes_beside_the_page_as_a_copy_and_the_users_file_is_untouched(tmp_path):
    from msmae.analysis.view import place_video

    user = tmp_path / "mine" / "clip.MP4"
    user.parent.mkdir()
    user.write_bytes(b"video bytes")
    os.chmod(user, 0o600)
    before = user.stat()
    out = tmp_path / "out"
    out.mkdir()
    assert place_video(user, out) == "view.mp4"
    assert (out / "view.mp4").stat().st_ino != user.stat().st_ino     # a copy: the page's permissions are its own
    assert (out / "view.mp4").stat().st_mode & 0o077 == 0                # of a private video: private too
    after = user.stat()
    assert (after.st_mode, after.st_nlink, after.st_mtime_ns) == (before.st_mode, 1, before.st_mtime_ns)
    (out / "view.mp4").unlink()
    (out / "view.mp4").write_bytes(b"an older page's video")
    assert place_video(user, out) == "view.mp4"                       # replaced, not written through
    assert (out / "view.mp4").read_bytes() == b"video bytes" and user.read_bytes() == b"video bytes"
    assert place_video(out / "view.mp4", out) == "view.mp4"           # the page's own video: left as it is
    assert sorted(p.name for p in out.iterdir()) == ["view.mp4"]      # no temporary file left
    (out / "view.mp4").unlink()
    os.link(user, out / "view.mp4")                                   # a page an older msmae linked
    assert place_video(user, out) == "view.mp4"
    assert user.stat().st_nlink == 1 and (out / "view.mp4").read_bytes() == b"video bytes"


# ------------------------------------------------------------------------------ runs and the command
SMALL = ["model.size=tiny", "model.extra={dim: 32, depth: 2, heads: 2, decoder_dim: 32, decoder_depth: 1, "
         "decoder_heads: 2}", "data.window=64", "data.frame_stride=2", "data.num_workers=0",
         "data.eval_windows=4", "train.batch_size=4", "train.warmup_steps=1", "train.log_every=1",
         "train.steps=3", "train.checkpoint_every=0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny model pre-trained for a few steps on real DGS poses and a tiny ISLR classifier on real GISLR
    hello/thankyou clips."""
    from msmae.config import load_config
    from msmae.corpus import pack_corpus
    from msmae.tasks.pretrain import PretrainConfig, pretrain

    dgs = shared_path("dgs-corpus-sentences")
    gislr = shared_path("gislr-asl-signs", "train.csv")
    root = tmp_path_factory.mktemp("view_runs")
    pack_corpus([dgs / f"train_{i}_original.pose" for i in range(1, 7)], root / "corpus", progress=False)
    pretrain(load_config(PretrainConfig, None, SMALL), root / "corpus", root / "pre", progress=False)
    sets = ["model.size=tiny", "model.extra={dim: 32, depth: 2, heads: 2}", "train.epochs=2",
            "train.batch_size=16", "data.num_workers=0", "train.warmup_epochs=1"]
    assert main(["finetune", "islr", "--config", "gislr", "--annotations", str(gislr), "--init", "none",
                 "--out", str(root / "islr"), "--no-progress", *[a for s in sets for a in ("--set", s)]]) == 0
    return root / "pre", root / "islr"


@pytest.fixture(scope="module")
def how2sign_page(runs, tmp_path_factory):
    npy, video = clip_paths()
    out = tmp_path_factory.mktemp("view_h2s")
    before = video.stat()
    assert main(["view", str(npy), "--video", str(video), "--model", str(runs[0]), "--model", str(runs[1]),
                 "--segments", "3", "--out", str(out)]) == 0
    after = video.stat()
    assert (after.st_size, after.st_mtime) == (before.st_size, before.st_mtime)   # the user's video untouched
    return out


@pytest.fixture(scope="module")
def slt_run(tmp_path_factory):
    """A tiny translator (random tiny mBART with a vocabulary of the real DGS sentences' English text) trained
    for two epochs on the DGS training sentences."""
    pytest.importorskip("transformers", reason="the `slt` extra is not installed")
    from msmae.data.slt import load_dgs_sentences
    from msmae.models.translator import make_tiny_mbart

    dgs = shared_path("dgs-corpus-sentences")
    root = tmp_path_factory.mktemp("view_slt")
    texts = [e.text for e in load_dgs_sentences(dgs, language="english").examples]
    mbart = make_tiny_mbart(root / "mbart", texts, vocab_size=300, d_model=32, heads=2, ffn_dim=64)
    sets = ["model.size=tiny", "model.extra={dim: 32, depth: 1, heads: 2}", "train.epochs=2", "train.batch_size=8",
            "train.lr=3e-3",
            "train.warmup_epochs=1", "translator.num_beams=2", "translator.max_new_tokens=12",
            "data.num_workers=0", "data.load_workers=1", "data.val_split=train"]
    assert main(["finetune", "slt", "--out", str(root / "slt"), "--init", "none", "--mbart", str(mbart),
                 "--dataset", "dgs", "--annotations", str(dgs), "--no-progress",
                 *[a for s in sets for a in ("--set", s)]]) == 0
    return root / "slt"


@pytest.fixture(scope="module")
def pose_page(runs, slt_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("view_pose")
    src = shared_path("dgs-corpus-sentences", "test_3_original.pose")
    assert main(["view", str(src), "--model", str(runs[0]), "--model", str(slt_run), "--segments", "4",
                 "--out", str(out), "--json"]) == 0
    return out


def test_view_command_writes_the_page_and_the_video_beside_it(how2sign_page, runs, capsys):
    npy, video = clip_paths()
    d = page_json(how2sign_page / "view.html")
    assert d["video"] == "view.mp4" and (how2sign_page / "view.mp4").read_bytes() == video.read_bytes()
    assert d["frames"] == 77 and d["fps"] == 24 and (d["width"], d["height"]) == (1280, 720)
    assert len(d["segments"]) == 3 and d["segments"][0]["start_frame"] == 0 and d["segments"][-1]["end_frame"] == 77
    assert d["attention"]["tokens"] == 10 and d["attention"]["png"].startswith("data:image/png;base64,")
    (r,) = d["islr"]
    assert r["classes"] == 2 and len(r["segments"]) == 3 and {p["label"] for p in r["clip"]} == {"hello", "thankyou"}
    assert sum(p["probability"] for p in r["clip"]) == pytest.approx(1.0, abs=1e-5)
    assert [m["task"] for m in d["models"]] == ["pretrain", "islr"]


def test_view_command_errors_are_one_line(runs, tmp_path, capsys):
    npy, video = clip_paths()
    pre, islr = runs
    for argv, msg in (([str(tmp_path / "nope.npy")], "no such file"),
                      ([str(npy), "--model", str(tmp_path)], "not an msmae checkpoint"),
                      ([str(npy), "--model", str(pre), "--model", str(pre)], "at most one pre-training run"),
                      ([str(video), "--video", str(video)], "--video is for pose files"),
                      ([str(npy), "--video", str(tmp_path / "v.mp4")], "no such file"),
                      ([str(npy), "--model", str(islr), "--top", "0"], "--top must be at least 1")):
        assert main(["view", *argv, "--out", str(tmp_path / "o")]) == 1
        err = capsys.readouterr().err
        assert msg in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o" / "view.html").exists()


def test_attention_command_writes_the_page_beside_its_png(runs, tmp_path, capsys):
    src = shared_path("dgs-corpus-sentences", "test_3_original.pose")
    assert main(["attention", str(src), "--model", str(runs[0]), "--out", str(tmp_path)]) == 0
    assert "view.html" in capsys.readouterr().out
    d = page_json(tmp_path / "view.html")
    seg = json.loads((tmp_path / "segments.json").read_text())["segments"]
    assert d["video"] is None and [s["start_frame"] for s in d["segments"]] == [s["start_frame"] for s in seg]


# ------------------------------------------------------------------------------ in a real browser
def _browser_or_skip():
    """(chromium, chromedriver) of the system, or skip saying what is missing. Nothing is downloaded."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("browser tests need selenium (pip install 'msmae[dev]')")
    chromium = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                     if shutil.which(n)), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None)
    if not chromium or not driver:
        pytest.skip("browser tests need Chromium and its driver (Debian: apt-get install chromium "
                    "chromium-driver); not found on PATH")
    return chromium, driver


@pytest.fixture(scope="module")
def browser():
    chromium, driver_path = _browser_or_skip()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never fetch a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900",
              "--mute-audio"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


def _wait(drv, script, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = drv.execute_script(script)
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for: {script}")


def _errors(drv):
    return [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]


def _canvas(drv) -> str:
    return drv.execute_script("return document.getElementById('skeleton').toDataURL()")


def _check_page(drv, page, tmp_path, shot: str, *, video: bool):
    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    drv.get(page.resolve().as_uri())
    _wait(drv, "return document.body.dataset.ready === '1'")
    if video:
        _wait(drv, "return window.msmaeView.videoReady")
    view = "return window.msmaeView"
    # The skeleton is drawn: the canvas differs between two frames and from an empty one.
    drv.execute_script(view + ".seek(5)")
    first = _canvas(drv)
    drv.execute_script(view + ".seek(40)")
    assert _canvas(drv) != first
    assert drv.execute_script("const c = document.getElementById('skeleton'), g = c.getContext('2d');"
                              "const d = g.getImageData(0, 0, c.width, c.height).data; let n = 0;"
                              "for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n;") > 500
    # Clicking a segment moves the playhead to its start and highlights it.
    segs = drv.execute_script(view + ".segments")
    tiles = drv.find_elements(By.CSS_SELECTOR, "#timeline .seg")
    assert len(tiles) == len(segs) >= 3
    tiles[2].click()
    assert drv.execute_script(view + ".frame") == segs[2]["start_frame"]
    assert "current" in tiles[2].get_attribute("class") and "current" not in tiles[1].get_attribute("class")
    assert f"frame {segs[2]['start_frame']} /" in drv.find_element(By.ID, "clock").text
    if video:
        _wait(drv, f"return Math.floor(document.querySelector('video').currentTime * {page_json(page)['fps']})"
                   f" === {segs[2]['start_frame']}")
    # Keyboard: left/right one frame, [ and ] between segments, space plays and pauses.
    body = drv.find_element(By.TAG_NAME, "body")
    start = segs[2]["start_frame"]
    body.send_keys(Keys.ARROW_RIGHT)
    body.send_keys(Keys.ARROW_RIGHT)
    assert drv.execute_script(view + ".frame") == start + 2
    body.send_keys(Keys.ARROW_LEFT)
    assert drv.execute_script(view + ".frame") == start + 1
    body.send_keys("[")
    assert drv.execute_script(view + ".frame") == segs[1]["start_frame"]
    body.send_keys("]")
    assert drv.execute_script(view + ".frame") == segs[2]["start_frame"]
    body.send_keys("[")
    body.send_keys("[")
    assert drv.execute_script(view + ".frame") == 0
    body.send_keys(Keys.SPACE)
    assert drv.execute_script(view + ".playing") is True
    _wait(drv, view + ".frame > 2")  # the playhead moves while playing
    body.send_keys(Keys.SPACE)
    assert drv.execute_script(view + ".playing") is False
    # The heatmap's playhead follows the clip.
    heat = "return document.querySelector('#heat-wrap canvas').toDataURL()"
    drv.execute_script(view + ".seek(0)")
    assert drv.execute_script(view + ".segment") == 0
    at_start = drv.execute_script(heat)
    drv.execute_script(view + f".seek({segs[-1]['start_frame']})")
    assert drv.execute_script(heat) != at_start
    assert not _errors(drv)
    path = tmp_path / shot
    drv.execute_script(view + f".seek({segs[1]['start_frame'] + 3})")
    if video:  # the picture in the screenshot is the playhead's frame only once the browser has finished seeking
        _wait(drv, "const v = document.querySelector('video'); return !v.seeking && v.readyState >= 2")
    assert drv.save_screenshot(str(path))
    with Image.open(path) as im:
        assert im.size[0] >= 1000 and np.asarray(im.convert("L")).std() > 10  # not a blank page
    return path


def test_how2sign_page_in_a_real_browser(browser, how2sign_page, tmp_path):
    shot = _check_page(browser, how2sign_page / "view.html", tmp_path, "how2sign.png", video=True)
    preds = browser.find_element("id", "predictions").text
    assert "segment 2" in preds and "whole clip" in preds and "hello" in preds
    print(f"screenshot: {shot}", file=sys.stderr)


def test_pose_file_page_in_a_real_browser(browser, pose_page, tmp_path, capsys):
    d = page_json(pose_page / "view.html")
    assert d["video"] is None and any(s["name"] == "face" for s in d["streams"])
    (t,) = d["slt"]
    assert t["language"] == "en_XX" and t["run"] == "slt"
    # The page says what `msmae predict` says for the same file and run (a tiny model may say nothing yet).
    src = shared_path("dgs-corpus-sentences", "test_3_original.pose")
    assert main(["predict", str(src), "--model", t["path"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["translation"] == t["text"]
    _check_page(browser, pose_page / "view.html", tmp_path, "pose.png", video=False)
    shown = browser.find_element("id", "predictions").text
    assert "translation (en_XX) · slt" in shown and (t["text"] or "(empty)") in shown


@pytest.mark.slow
def test_view_of_a_video_extracts_keypoints_on_the_fly(runs, browser, tmp_path, capsys):
    """A How2Sign video as INPUT: MediaPipe Holistic runs first (as in `msmae predict`), the video goes beside."""
    pytest.importorskip("mediapipe")
    video = shared_path("how2sign-clips", "_15CDIexNDM_4-5-rgb_front.mp4")
    assert main(["view", str(video), "--model", str(runs[0]), "--segments", "3", "--out", str(tmp_path)]) == 0
    assert f"page: {tmp_path / 'view.html'}" in capsys.readouterr().out
    d = page_json(tmp_path / "view.html")
    assert d["video"] == "view.mp4" and d["frames"] == 71 and (d["width"], d["height"]) == (1280, 720)
    _check_page(browser, tmp_path / "view.html", tmp_path, "extracted.png", video=True)
