"""Size and opening time of the ``msmae view`` page for a 5-minute, 30 fps clip in headless Chromium.

The clip is made of real keypoints: the shared DGS Corpus sentences (body, hands and face) and the reference
MediaPipe keypoints of How2Sign clips, joined end to end until 5 minutes (9000 frames) at 30 fps. The heatmap
and segments come from a ``tiny`` encoder with random weights run as ``msmae attention`` runs a pre-training
run (every 2nd frame, 300-frame chunks: 1125 tokens); the page is written without a video, as issue 16 sizes it.

Prints JSON lines: ``view_page`` (bytes of view.html, of its keypoints and heatmap, seconds to build it) and
``view_page_open`` (milliseconds from navigation start until the page has inflated the keypoints and drawn
its first frame, ``document.body.dataset.readyMs``, median of ``--loads`` fresh loads, each in a new tab
state after a blank page). Needs Chromium + chromedriver (Debian: ``chromium chromium-driver``) and selenium;
prints ``skipped`` lines without them or without the shared data.

Usage: ``python benchmarks/view_page.py [--minutes 5] [--fps 30] [--loads 5] [--out DIR]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from msmae.utils import cpu_model

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MSMAE_SHARED_DATA", REPO.parent / "shared" / "data"))


def long_clip(frames: int, fps: float):
    """Real keypoints joined end to end to ``frames`` frames (canonical layout)."""
    from msmae.poses.readers import read_sequence
    from msmae.poses.sequence import PoseSequence

    parts = [read_sequence(p) for p in sorted((SHARED / "dgs-corpus-sentences").glob("*.pose"))]
    for p in sorted((SHARED / "videos" / "reference-holistic").glob("_*.npy")):  # the How2Sign clips
        parts.append(read_sequence(p, fps=24, width=1280, height=720))
    coords, present, n, i = [], [], 0, 0
    while n < frames:
        s = parts[i % len(parts)]
        coords.append(s.coords)
        present.append(s.present)
        n += s.num_frames
        i += 1
    c, p = np.concatenate(coords)[:frames], np.concatenate(present)[:frames]
    return PoseSequence(c, p, fps, parts[0].layout, width=1280, height=720, source="joined real clips")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--fps", type=float, default=30.0)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--out", default=None, help="keep the page here (default: a temporary folder)")
    args = ap.parse_args()
    if not (SHARED / "dgs-corpus-sentences").is_dir():
        print(json.dumps({"name": "view_page", "skipped": f"shared data not found at {SHARED}"}))
        return 0
    import torch

    from msmae.analysis.report import analyze
    from msmae.analysis.view import write_view
    from msmae.models import MultiStreamEncoder, model_config
    from msmae.poses.normalize import normalize

    torch.manual_seed(0)
    frames = int(round(args.minutes * 60 * args.fps))
    seq = long_clip(frames, args.fps)
    encoder = MultiStreamEncoder(config=model_config("tiny", streams="body,hands")).eval()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="msmae-view-bench-"))
    t0 = time.perf_counter()
    analysis = analyze(encoder, normalize(seq).select(encoder.layout), frame_stride=2, chunk_frames=300)
    t_att = time.perf_counter() - t0
    t0 = time.perf_counter()
    page = write_view(out, seq, analysis=analysis, source="5-minute clip of joined real keypoints")
    t_page = time.perf_counter() - t0
    data = page.read_text(encoding="utf-8")
    kp = data.split('"keypoints":', 1)[1]
    kp_bytes = len(kp.split('"coords":"', 1)[1].split('"', 1)[0]) + len(kp.split('"present":"', 1)[1].split('"', 1)[0])
    heat = data.split('"png":"', 1)[1].split('"', 1)[0]
    print(json.dumps({"name": "view_page", "frames": frames, "fps": args.fps, "points": seq.layout.num_points,
                      "present_fraction": round(float(seq.present.mean()), 3),
                      "tokens": analysis.attention.num_tokens, "segments": len(analysis.segments),
                      "page_bytes": page.stat().st_size, "page_mb": round(page.stat().st_size / 1e6, 2),
                      "keypoints_base64_bytes": kp_bytes, "heatmap_data_uri_bytes": len(heat),
                      "attention_s": round(t_att, 2), "write_page_s": round(t_page, 2), "cpu": cpu_model()}))
    sys.stdout.flush()

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        chromium = None
    if not chromium or not driver_path:
        print(json.dumps({"name": "view_page_open", "skipped": "needs chromium, chromedriver and selenium"}))
        return 0
    os.environ["SE_OFFLINE"] = "true"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    times, errors = [], []
    try:
        for _ in range(args.loads):
            drv.get("about:blank")
            drv.get(page.resolve().as_uri())
            end = time.monotonic() + 60
            while time.monotonic() < end and not drv.execute_script("return document.body.dataset.ready === '1'"):
                time.sleep(0.02)
            times.append(float(drv.execute_script("return +document.body.dataset.readyMs")))
            errors += [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]
        version = drv.capabilities.get("browserVersion")
    finally:
        drv.quit()
    print(json.dumps({"name": "view_page_open", "loads": args.loads, "ready_ms_median": statistics.median(times),
                      "ready_ms_max": max(times), "ready_ms": times, "console_errors": errors[:3],
                      "chromium": version, "cpu": cpu_model(), "cores": os.cpu_count()}))
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
