"""The Python API (``import msmae``): it stays light to import, and a script using all of it runs on tiny
synthetic data (only the configs are shrunk to a tiny model and a few steps)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import msmae
from msmae.layout import get_layout
from msmae.poses import PoseSequence, write_npz

REPO = Path(__file__).resolve().parents[1]
TINY = {
    "pretrain": ["model.size=tiny", "model.extra={dim: 32, depth: 1, heads: 2, decoder_dim: 32, decoder_depth: 1, "
                 "decoder_heads: 2}", "data.window=32", "data.num_workers=0", "data.eval_windows=4",
                 "train.batch_size=4", "train.warmup_steps=1", "train.steps=4", "train.checkpoint_every=0"],
    "islr": ["train.batch_size=4", "train.warmup_epochs=1", "train.lr=1e-3", "train.epochs=2",
             "data.num_workers=0", "data.load_workers=1"],
}


# The whole API in two scripts: from pose files to a fine-tuned classifier, then every kind of run loaded.
# (docs/api.md runs its own examples on real data; these add a translator, which needs a tiny mBART.)
SCRIPTS = [
    """
import msmae

msmae.pack(["clips/"], "corpus")
cfg = msmae.task_config("pretrain", overrides=["train.steps=20000"])
msmae.pretrain(cfg, "corpus", "runs/pretrain")

cfg = msmae.task_config("islr", overrides=["data.dataset=manifest", "data.annotations=clips/signs.csv"])
cfg.init = "runs/pretrain"
metrics = msmae.finetune(cfg, "runs/signs")
print(metrics["top1"], metrics["top5"])
""",
    """
import msmae

seq = msmae.read("clips/hello.npz")
encoder = msmae.load("runs/pretrain")
signs = msmae.load("runs/signs")
for p in signs.predict(seq, top=3):
    print(p["rank"], p["label"], round(p["probability"], 3))
slt = msmae.load("runs/slt")
print(slt.translate(seq))
""",
]


def write_clips(root: Path) -> None:
    """Two synthetic 'signs' (the right hand circles clockwise or anticlockwise) and signs.csv."""
    bh = get_layout("body,hands")
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for label, direction in (("cw", 1.0), ("ccw", -1.0)):
        for i in range(5):
            t = int(rng.integers(20, 40))
            ang = direction * np.linspace(0, 2 * np.pi, t)
            c = np.zeros((t, bh.num_points, 2), np.float32)
            c[:, 0], c[:, 1] = (1.0, 0.0), (0.0, 0.0)
            c[:, 6:] = rng.normal(0, 0.05, (t, 42, 2)) + np.stack([np.cos(ang), np.sin(ang)], 1)[:, None]
            write_npz(PoseSequence(c, np.ones(c.shape[:2], bool), 25.0, bh), root / f"{label}{i}.npz")
            rows.append(f"{label}{i}.npz,{label},{'train' if i < 3 else 'val' if i == 3 else 'test'}")
    (root / "signs.csv").write_text("\n".join(rows) + "\n")
    (root / "hello.npz").write_bytes((root / "cw4.npz").read_bytes())


def test_import_msmae_does_not_import_torch():
    code = "import sys, msmae; assert 'torch' not in sys.modules; msmae.read; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    assert {"read", "load", "predict", "translate", "pack", "pretrain", "finetune", "task_config"} <= set(dir(msmae))


def test_python_api_runs_on_tiny_data(tmp_path, monkeypatch, capsys):
    from msmae import api
    from msmae.models.translator import make_tiny_mbart

    blocks = SCRIPTS
    (tmp_path / "clips").mkdir()
    write_clips(tmp_path / "clips")
    monkeypatch.chdir(tmp_path)
    real = api.task_config
    monkeypatch.setattr(api, "task_config", lambda kind, path=None, overrides=(): real(
        kind, path, [*overrides, *TINY[kind]]))

    ns: dict = {}
    exec(compile(blocks[0], "api script 1", "exec"), ns)
    assert 0.0 <= ns["metrics"]["top1"] <= ns["metrics"]["top5"] <= 1.0
    assert (tmp_path / "runs" / "pretrain" / "model").is_dir() and (tmp_path / "corpus").is_dir()

    # The second block also loads an SLT run: a tiny one on the same clips, with a tiny random mBART.
    words = {"cw": "the hand turns right", "ccw": "the hand turns left"}
    rows = ["path,text,split"] + [f"{p.name},{words[p.stem.rstrip('0123456789')]},{s}"
                                  for p, s in zip(sorted((tmp_path / "clips").glob("c*.npz")), ["train", "dev"] * 5)]
    (tmp_path / "clips" / "sentences.csv").write_text("\n".join(rows) + "\n")
    mbart = make_tiny_mbart(tmp_path / "mbart", list(words.values()) * 4, vocab_size=60, d_model=16, heads=2,
                            ffn_dim=32)
    slt = real("slt", None, ["model.size=tiny", "model.streams=body,hands", "model.extra={dim: 32, depth: 1, heads: 2}",
                             "data.dataset=manifest", "data.annotations=clips/sentences.csv", "data.language=en_XX",
                             f"translator.mbart={mbart}", "translator.num_beams=1", "translator.max_new_tokens=6",
                             "train.epochs=1", "train.batch_size=5", "data.num_workers=0", "data.load_workers=1"])
    slt.init = "none"
    msmae.finetune(slt, "runs/slt", progress=False)
    capsys.readouterr()

    ns = {}
    exec(compile(blocks[1], "api script 2", "exec"), ns)
    printed = capsys.readouterr().out.splitlines()
    assert isinstance(ns["signs"], msmae.Classifier) and ns["signs"].classes == ["ccw", "cw"]
    preds = ns["signs"].predict(ns["seq"], top=3)
    assert [p["rank"] for p in preds] == [1, 2] and sum(p["probability"] for p in preds) == pytest.approx(1.0)
    assert printed[0].split()[:2] == ["1", preds[0]["label"]]
    assert ns["encoder"].config.to_dict() == ns["signs"].model.encoder.config.to_dict()
    assert isinstance(ns["slt"], msmae.Translator) and printed[-1] == ns["slt"].translate(ns["seq"])
    # The one-line forms agree with the loaded objects.
    assert msmae.predict("runs/signs", "clips/hello.npz", top=2) == preds
    assert msmae.translate("runs/slt", ns["seq"]) == printed[-1]
    with pytest.raises(ValueError, match="not an SLT run"):
        msmae.translate("runs/signs", ns["seq"])
