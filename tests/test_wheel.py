"""The built artifact, not the checkout: build the wheel, install it into a fresh virtual environment and use it
there as a user with only ``pip install msmae-*.whl`` would — version, shipped configs by name, and a tiny
pre-training + ISLR fine-tune on real data, run from a folder that holds no ``configs/``.

The fresh environment has no pip packages of its own: a ``.pth`` file points it at this interpreter's
site-packages for the heavy dependencies (torch, ...). Lines of a ``.pth`` file are only appended to
``sys.path`` (the ``.pth`` files in that folder, among them the checkout's editable install, are not run),
and ``PYTHONPATH`` is cleared, so ``msmae`` can only come from the wheel: the test checks that it does.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(args, *, cwd, env, timeout=300) -> str:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, (f"{' '.join(map(str, args))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n"
                               f"{r.stderr[-3000:]}")
    return r.stdout


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory):
    """(venv bin folder, environment, work folder) with the freshly built wheel installed."""
    root = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.setdefault("OMP_NUM_THREADS", "2")
    env["MPLBACKEND"] = "Agg"
    # Build from a copy of exactly what the sdist would hold, so that nothing is written into the checkout.
    src = root / "src-tree"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for f in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / f).is_file():
            shutil.copy2(REPO / f, src / f)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", root / "dist", src], cwd=root, env=env)
    (wheel,) = (root / "dist").glob("msmae-*.whl")

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root, env=env)
    py = venv / "bin" / "python"
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=root,
                     env=env).strip())
    deps = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "_msmae_test_dependencies.pth").write_text("\n".join(deps) + "\n")
    _run([py, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", wheel], cwd=root,
         env=env)
    work = root / "work"  # the user's folder: no configs/ in it
    work.mkdir()
    return venv / "bin", env, work, wheel


def test_wheel_installs_with_version_and_configs(wheel_env):
    bin_, env, work, wheel = wheel_env
    out = _run([bin_ / "python", "-c", "import importlib.metadata as m, msmae; "
                "print(msmae.__version__, m.version('msmae'), msmae.__file__)"], cwd=work, env=env).split()
    version, meta_version, where = out
    assert version == meta_version and f"msmae-{version}-" in wheel.name
    assert where.startswith(str(bin_.parent)), f"msmae imported from {where}, not from the installed wheel"
    assert _run([bin_ / "msmae", "--version"], cwd=work, env=env).strip() == f"msmae {version}"
    listing = _run([bin_ / "msmae", "configs"], cwd=work, env=env)
    for name in ("pretrain/paper", "pretrain/tiny", "islr/wlasl", "islr/asl_citizen", "islr/slovo", "islr/jsl",
                 "slt/p14t", "slt/csl_daily", "slt/how2sign"):
        line = next(ln for ln in listing.splitlines() if ln.startswith(name + " "))
        assert len(line.split(None, 1)[1]) > 20, line  # a description
    # The page template of `msmae view` is package data: the installed package renders a page.
    page = _run([bin_ / "python", "-c", "from msmae.analysis.view import render_page; "
                 "print(len(render_page({'title': 't'})))"], cwd=work, env=env)
    assert int(page) > 5000


def test_wheel_pretrains_and_finetunes_with_config_names_on_real_data(wheel_env):
    from conftest import shared_path

    gislr = shared_path("gislr-asl-signs")
    bin_, env, work, _ = wheel_env
    msmae = bin_ / "msmae"
    _run([msmae, "pack", gislr / "train_landmark_files", "--out", "corpus", "--workers", "1"], cwd=work, env=env)
    sets = lambda items: sum((["--set", s] for s in items), [])  # noqa: E731
    _run([msmae, "pretrain", "--config", "pretrain/tiny", "--data", "corpus", "--out", "pre", "--no-progress",
          *sets(["train.steps=12", "train.batch_size=8", "train.warmup_steps=2", "data.window=64",
                 "data.eval_windows=8", "train.checkpoint_every=0", "train.log_every=4"])], cwd=work, env=env)
    _run([msmae, "finetune", "islr", "--config", "wlasl", "--dataset", "gislr", "--annotations",
          gislr / "train.csv", "--init", "pre", "--out", "islr", "--no-progress",
          *sets(["data.val_participants=[2044, 4718, 16069]",
                 "data.test_participants=[25571, 26734, 27610, 28656, 29302]", "train.epochs=2",
                 "train.batch_size=16", "train.warmup_epochs=1", "train.lr=1e-3", "data.num_workers=0",
                 "data.load_workers=1"])], cwd=work, env=env)
    # The saved config is the shipped one's: WLASL's settings with the given dataset.
    islr_cfg = json.loads((work / "islr" / "model" / "config.json").read_text())
    task_cfg = islr_cfg["task_config"]
    assert task_cfg["augment"]["affine"] is True and task_cfg["data"]["dataset"] == "gislr"

    # RUN/model is a complete model: its card says what it is and what it was trained on, and loaders take it.
    pre_card = (work / "pre" / "model" / "README.md").read_text()
    pre_metrics = json.loads((work / "pre" / "metrics.json").read_text())
    assert f"{pre_metrics['videos']['train']} for training" in pre_card and "| eval_loss |" in pre_card
    assert pre_metrics["videos"]["train"] + pre_metrics["videos"]["held_out"] == 84
    assert 0 < pre_metrics["hours"]["train"] < 1  # 84 clips of a few seconds
    card = (work / "islr" / "model" / "README.md").read_text()
    m = json.loads((work / "islr" / "metrics.json").read_text())
    assert "isolated sign language recognition" in card and "gislr" in card
    assert f"| top1 | {m['top1']:.4g} |" in card and f"train {m['examples']['train']} (" in card
    assert "body (6 keypoints), left_hand (21 keypoints), right_hand (21 keypoints)" in card
    assert "```yaml" in card and "select_metric: top1" in card
    code = [ln for ln in card.splitlines() if "load_encoder(" in ln or "model_from_run(" in ln]
    assert len(code) == 2
    out = _run([bin_ / "python", "-c", "\n".join([
        "import json, msmae",
        "from msmae.tasks.islr import model_from_run",
        "enc = msmae.load_encoder('islr/model')",
        "model, meta = model_from_run('islr/model')",
        "print(json.dumps({'dim': enc.config.dim, 'classes': meta['classes']}))"])], cwd=work, env=env)
    assert json.loads(out) == {"dim": 128, "classes": ["hello", "thankyou"]}
