"""Make docs/img/view_how2sign.png from a clean run: the `msmae view` page of a real How2Sign clip, photographed
in headless Chromium.

Everything runs in a fresh temporary folder with relative paths, so the page shows neutral names (``runs/...``,
``how2sign/<clip>``) and no path of the machine it was made on. The runs: a tiny MS-MAE pre-trained for a few steps
on the real DGS Corpus sentences, and a classifier for the two GISLR signs *hello* / *thankyou*.

Usage: ``python docs/img/make_view_screenshot.py [--data ../shared/data] [--out docs/img/view_how2sign.png]``.
Needs the shared data, Chromium with chromium-driver, and selenium (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIP = "_BOJ9cYPRe4_13-8-rgb_front"  # 77 frames, 24 fps, 1280x720, with reference MediaPipe keypoints
TINY = ["--config", "pretrain/tiny", "--set", "train.steps=200", "--set", "train.batch_size=16",
        "--set", "data.window=64", "--set", "data.num_workers=0", "--no-progress"]
ISLR = ["--set", "model.size=tiny", "--set", "train.epochs=10", "--set", "train.batch_size=16",
        "--set", "train.warmup_epochs=1", "--set", "train.lr=1e-3", "--set", "data.num_workers=0",
        "--set", "data.val_participants=[2044,4718,16069]",
        "--set", "data.test_participants=[25571,26734,27610,28656,29302]", "--no-progress"]


def msmae(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "msmae", *args], cwd=cwd, check=True)


def wait(drv, script: str, timeout: float = 30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if drv.execute_script(script):
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for: {script}")


def photograph(page: Path, out: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let Selenium Manager fetch a browser
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,900", "--mute-audio"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        drv.get(page.resolve().as_uri())
        wait(drv, "return document.body.dataset.ready === '1'")
        wait(drv, "return window.msmaeView.videoReady")
        segs = drv.execute_script("return window.msmaeView.segments")
        drv.execute_script(f"window.msmaeView.seek({segs[min(1, len(segs) - 1)]['start_frame'] + 3})")
        wait(drv, "const v = document.querySelector('video'); return !v.seeking && v.readyState >= 2")
        time.sleep(0.3)  # the skeleton is drawn on the next animation frame
        tmp = out.with_suffix(".tmp.png")
        drv.save_screenshot(str(tmp))
        tmp.replace(out)
    finally:
        drv.quit()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "view_how2sign.png")
    args = ap.parse_args()
    data = args.data.resolve()
    with tempfile.TemporaryDirectory(prefix="msmae-screenshot-") as tmp:
        work = Path(tmp)
        (work / "how2sign").mkdir()
        shutil.copy(data / "videos" / "reference-holistic" / f"{CLIP}.npy", work / "how2sign" / f"{CLIP}.npy")
        shutil.copy(data / "how2sign-clips" / f"{CLIP}.mp4", work / "how2sign" / f"{CLIP}.mp4")
        msmae("pack", str(data / "dgs-corpus-sentences"), "--out", "corpus", cwd=work)
        msmae("pretrain", "--data", "corpus", "--out", "runs/pretrain", *TINY, cwd=work)
        msmae("finetune", "islr", "--dataset", "gislr", "--annotations", str(data / "gislr-asl-signs" / "train.csv"),
              "--init", "runs/pretrain", "--out", "runs/signs", *ISLR, cwd=work)
        msmae("view", f"how2sign/{CLIP}.npy", "--video", f"how2sign/{CLIP}.mp4", "--model", "runs/pretrain",
              "--model", "runs/signs", "--segments", "3", "--out", "view", cwd=work)
        photograph(work / "view" / "view.html", args.out.resolve())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
