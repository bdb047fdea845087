"""ISLR task: metrics on hand-made logits, the classifier and probe heads, a real training run on the GISLR
parquet files (leave-participants-out), evaluate/predict commands, exact resume, the probe's frozen encoder,
and torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from msmae.cli import main
from msmae.layout import get_layout
from msmae.models import model_config, MultiStreamEncoder
from msmae.models.classifier import ISLRClassifier
from msmae.poses import PoseSequence, write_npz
from msmae.tasks.islr import classification_metrics, confusion_matrix, model_from_run, most_confused
from msmae.train import checkpoint as ck

BH = get_layout("body,hands")
SMALL = ["model.size=tiny", "model.extra={dim: 32, depth: 1, heads: 2}", "train.batch_size=4",
         "train.warmup_epochs=1", "train.lr=1e-3", "data.num_workers=0", "data.load_workers=1", "train.log_every=1"]


def sets(items):
    return sum((["--set", s] for s in items), [])


# ------------------------------------------------------------------------------------------ metrics
def test_metrics_on_hand_made_logits():
    classes = ["a", "b", "c", "d", "e", "f"]
    labels = np.array([0, 0, 1, 1, 2, 5])
    logits = np.array([
        [9, 1, 0, 0, 0, 0, ],   # a -> a (hit)
        [1, 9, 0, 0, 0, 0, ],   # a -> b, a 2nd: top-5 hit
        [0, 9, 1, 0, 0, 0, ],   # b -> b
        [9, 0, 1, 0, 0, 0, ],   # b -> a
        [0, 9, 0, 0, 0, 0, ],   # c -> b, c ranks 3rd (tie order): top-5 hit
        [9, 8, 7, 6, 5, 0, ],   # f -> a, f ranked last of 6: top-5 miss
    ], dtype=np.float32)
    m = classification_metrics(logits, labels, classes)
    assert m["top1"] == pytest.approx(2 / 6)
    assert m["top5"] == pytest.approx(5 / 6)
    assert m["per_class_top1"] == pytest.approx((0.5 + 0.5 + 0 + 0) / 4)  # only classes present: a, b, c, f
    assert m["num_examples"] == 6 and m["num_classes_scored"] == 4
    pairs = {(c["true"], c["predicted"]): c["count"] for c in m["confusions"]}
    assert pairs == {("a", "b"): 1, ("b", "a"): 1, ("c", "b"): 1, ("f", "a"): 1}
    assert next(c for c in m["confusions"] if c["true"] == "a")["fraction_of_true"] == 0.5
    cm = confusion_matrix(np.array([0, 0, 0, 1]), np.array([1, 1, 0, 1]), 2)
    assert cm.tolist() == [[1, 2], [0, 1]]
    assert most_confused(cm, ["x", "y"]) == [{"true": "x", "predicted": "y", "count": 2, "fraction_of_true": 2 / 3}]
    # Two classes: top-5 is top-2, always a hit.
    assert classification_metrics(np.array([[0.0, 1.0]]), np.array([0]), ["p", "q"])["top5"] == 1.0
    with pytest.raises(ValueError, match="no examples"):
        classification_metrics(np.zeros((0, 3)), np.zeros(0), ["a", "b", "c"])


# ------------------------------------------------------------------------------------------- models
def small_encoder(seed: int = 0) -> MultiStreamEncoder:
    torch.manual_seed(seed)
    return MultiStreamEncoder(config=model_config("tiny", dim=32, depth=2, heads=2))


def test_finetune_head_cls_token_and_all_parameters_train():
    model = ISLRClassifier(encoder=small_encoder(), num_classes=7)
    x = torch.randn(3, 12, BH.num_points, 2)
    logits = model(x)
    assert logits.shape == (3, 7)
    assert all(p.requires_grad for p in model.parameters()) and model.cls_token.shape == (1, 1, 32)
    logits.sum().backward()
    assert model.cls_token.grad is not None and model.cls_token.grad.abs().sum() > 0
    assert all(p.grad is not None for n, p in model.named_parameters() if n.startswith("encoder.blocks"))
    # The [CLS] output depends on the input (it attends to the stream tokens).
    assert not torch.allclose(model(x)[0], model(x.flip(1))[0])
    assert set(k.split(".")[0] for k in model.state_dict()) == {"encoder", "cls_token", "head"}


def test_probe_freezes_encoder_and_mean_pools_valid_tokens():
    enc = small_encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    model = ISLRClassifier(encoder=enc, num_classes=4, pooling="mean", freeze_encoder=True)
    assert model.cls_token is None
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["head.weight", "head.bias"]
    model.train()
    assert model.training and not model.encoder.training       # a frozen encoder stays in eval mode
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    x, y = torch.randn(5, 16, BH.num_points, 2), torch.tensor([0, 1, 2, 3, 0])
    head0 = model.head.weight.detach().clone()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    assert not torch.equal(head0, model.head.weight)
    # Mean pooling over valid tokens only: padding frames do not change the features.
    valid = torch.ones(5, 16, dtype=torch.bool)
    padded = torch.cat([x, torch.randn(5, 8, BH.num_points, 2)], dim=1)
    pvalid = torch.cat([valid, torch.zeros(5, 8, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        assert torch.allclose(model.features(x, valid), model.features(padded, pvalid), atol=1e-5)
        out = model.encoder(x, valid)
        assert torch.allclose(model.features(x, valid), out.tokens.mean(1), atol=1e-5)


# ------------------------------------------------------------------------- a real run on GISLR parquet
GISLR_SPLIT = ["data.val_participants=[2044, 4718, 16069]",
               "data.test_participants=[25571, 26734, 27610, 28656, 29302]"]


@pytest.fixture(scope="module")
def gislr_run(tmp_path_factory):
    """A tiny model trained from scratch on the real GISLR hello/thankyou parquet files; validation and test
    participants never appear in training."""
    from conftest import shared_path

    csv_path = shared_path("gislr-asl-signs", "train.csv")
    out = tmp_path_factory.mktemp("islr") / "gislr"
    rc = main(["finetune", "islr", "--dataset", "gislr", "--annotations", str(csv_path), "--init", "none",
               "--out", str(out), "--no-progress",
               *sets(GISLR_SPLIT + ["model.size=tiny", "train.epochs=30", "train.batch_size=16", "train.lr=1e-3",
                                    "train.warmup_epochs=2", "data.num_workers=0", "train.seed=1"])])
    assert rc == 0
    return out


def test_real_gislr_run_learns_signer_independently(gislr_run, capsys):
    m = json.loads((gislr_run / "metrics.json").read_text())
    assert m["split"] == "test" and m["examples"] == {"train": 52, "val": 12, "test": 20}
    assert m["top1"] >= 0.75, m                          # chance is 0.5 (two balanced signs, unseen signers)
    assert 0 <= m["per_class_top1"] <= 1 and m["top5"] == 1.0
    assert 1 <= m["selected_on"]["epoch"] <= 30 and m["selected_on"]["metric"] == "top1"
    assert m["splits"]["val"]["top1"] == m["selected_on"]["score"]
    for f in ("config.yaml", "log.csv", "predictions_test.csv", "confusion_test.png", "model/model.safetensors",
              "checkpoints/last/train_state.pt", "checkpoints/best/model.safetensors"):
        assert (gislr_run / f).exists(), f
    assert len((gislr_run / "log.csv").read_text().splitlines()) == 31
    meta = ck.read_checkpoint_config(gislr_run)
    assert meta["task"] == "islr" and meta["classes"] == ["hello", "thankyou"] and meta["epoch"] == m["selected_on"]["epoch"]
    enc = ck.load_encoder(gislr_run)                     # any ISLR run gives its encoder back
    assert enc.config.dim == 128 and enc.config.streams == "body,hands"

    # evaluate reproduces the run's test figures, writes its own metrics.json.
    assert main(["evaluate", str(gislr_run), "--split", "test", "--json", "--out", str(gislr_run / "ev")]) == 0
    ev = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert ev["split"] == "test" and ev["top1"] == pytest.approx(m["top1"]) and ev["top5"] == pytest.approx(m["top5"])
    assert json.loads((gislr_run / "ev" / "metrics.json").read_text())["per_class_top1"] == pytest.approx(
        m["per_class_top1"])
    assert main(["evaluate", str(gislr_run), "--split", "valid"]) == 0
    assert "top-1" in capsys.readouterr().out and (gislr_run / "eval_val" / "metrics.json").is_file()
    assert main(["evaluate", str(gislr_run), "--split", "holdout"]) == 1


def test_predict_pose_file_json_and_text(gislr_run, capsys):
    from conftest import shared_path

    pq = shared_path("gislr-asl-signs", "train_landmark_files", "25571")
    f = sorted(pq.glob("*.parquet"))[0]
    assert main(["predict", str(f), "--model", str(gislr_run), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    probs = [p["probability"] for p in out["predictions"]]
    assert [p["rank"] for p in out["predictions"]] == [1, 2] and probs == sorted(probs, reverse=True)
    assert sum(probs) == pytest.approx(1.0, abs=1e-5) and {p["label"] for p in out["predictions"]} == {"hello", "thankyou"}
    assert main(["predict", str(f), "--model", str(gislr_run), "--top", "1"]) == 0
    text = capsys.readouterr().out
    assert "top 1 of 2 signs" in text and text.strip().splitlines()[-1].lstrip().startswith("1. ")
    bad = f.parent.parent / "missing.parquet"
    assert main(["predict", str(bad), "--model", str(gislr_run)]) == 1


@pytest.mark.slow
def test_predict_video_extracts_on_the_fly(gislr_run, capsys):
    """The LSA64 clip (1080p, 88 frames) goes through MediaPipe Holistic, then the classifier: a ranked list."""
    from conftest import shared_path

    pytest.importorskip("mediapipe")
    video = shared_path("videos", "lsa64_001_001_001.mp4")
    assert main(["predict", str(video), "--model", str(gislr_run), "--top", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "(88 frames): top 2 of 2 signs" in lines[0]
    ranked = [ln.split() for ln in lines[1:]]
    assert [r[0] for r in ranked] == ["1.", "2."] and {r[1] for r in ranked} == {"hello", "thankyou"}
    assert float(ranked[0][2]) >= float(ranked[1][2])


# ----------------------------------------------------------------------- small fixture data set
def manifest(tmp_path: Path, per_class: int = 6) -> Path:
    """Two synthetic 'signs' (the right wrist circles clockwise or anticlockwise), split 4/1/1 per class."""
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for label, direction in (("cw", 1.0), ("ccw", -1.0)):
        for i in range(per_class):
            t = int(rng.integers(20, 40))
            ang = direction * np.linspace(0, 2 * np.pi, t) + rng.normal(0, 0.2)
            c = np.zeros((t, BH.num_points, 2), np.float32)
            c[:, 0], c[:, 1] = (1.0, 0.0), (0.0, 0.0)
            c[:, 6:] = rng.normal(0, 0.05, (t, 42, 2)) + np.stack([np.cos(ang), np.sin(ang)], 1)[:, None]
            write_npz(PoseSequence(c, np.ones(c.shape[:2], bool), 25.0, BH), tmp_path / f"{label}{i}.npz")
            split = "train" if i < per_class - 2 else "val" if i == per_class - 2 else "test"
            rows.append(f"{label}{i}.npz,{label},{split}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.csv"


def test_relative_paths_are_saved_absolute_and_evaluate_can_point_elsewhere(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    data.mkdir()
    manifest(data)
    monkeypatch.chdir(tmp_path)
    assert main(["finetune", "islr", "--annotations", "data/m.csv", "--init", "none", "--out", "run",
                 "--no-progress", *sets(SMALL + ["train.epochs=2"])]) == 0
    saved = ck.read_checkpoint_config(tmp_path / "run")["task_config"]["data"]["annotations"]
    assert saved == str(tmp_path / "data" / "m.csv")
    ref = json.loads((tmp_path / "run" / "metrics.json").read_text())
    monkeypatch.chdir(tmp_path.parent)          # another working directory: the run still finds its data
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top1"] == pytest.approx(ref["top1"])
    (tmp_path / "data").rename(tmp_path / "moved")   # the data moved: the run cannot find it ...
    assert main(["evaluate", str(tmp_path / "run")]) == 1
    assert "m.csv" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "run"), "--json", "--annotations",  # ... unless told where it is
                 str(tmp_path / "moved" / "m.csv")]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top1"] == pytest.approx(ref["top1"])


@pytest.mark.parametrize("name, dataset, affine, select", [
    ("wlasl", "wlasl", True, "top1"), ("asl_citizen", "asl_citizen", True, "top1"),
    ("slovo", "slovo", True, "top5"), ("jsl", "manifest", False, "top1")])
def test_islr_configs_hold_the_papers_settings(name, dataset, affine, select):
    """Appendix C: 32 frames, batch 128, AdamW wd 1e-3, lr 5e-5, 10-epoch warm-up, cosine, 100 epochs;
    rotation/shear/scale on every dataset but the JSL Corpus; Slovo (no test split) selected on top-5."""
    from msmae.config import load_config
    from msmae.tasks.islr import IslrConfig

    cfg = load_config(IslrConfig, name)  # a shipped config, by name
    t = cfg.train
    assert cfg.data.dataset == dataset and cfg.data.num_frames == 32
    assert (t.batch_size, t.weight_decay, t.lr, t.warmup_epochs, t.epochs, t.min_lr_ratio) == (
        128, 1e-3, 5e-5, 10, 100, 0.0)
    assert cfg.augment.affine is affine and t.select_metric == select and cfg.model.size == "paper"


def test_top5_selection_without_a_test_split_reports_validation(tmp_path):
    man = manifest(tmp_path)
    rows = [r for r in man.read_text().splitlines() if not r.endswith(",test")]
    man.write_text("\n".join(rows) + "\n")
    assert main(["finetune", "islr", "--annotations", str(man), "--init", "none", "--out", str(tmp_path / "r"),
                 "--no-progress", *sets(SMALL + ["train.epochs=2", "train.select_metric=top5"])]) == 0
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["split"] == "val" and "test" not in m["splits"] and m["examples"] == {"train": 8, "val": 2}
    assert m["selected_on"]["metric"] == "top5" and m["selected_on"]["split"] == "val"
    assert m["top5"] == m["splits"]["val"]["top5"]


def test_resume_after_interruption_is_exact(tmp_path, monkeypatch):
    """With dropout on: the checkpoint holds every generator's state (exact only since it does)."""
    from test_train_loop import interrupt_after_epoch

    man = manifest(tmp_path)
    args = ["finetune", "islr", "--annotations", str(man), "--init", "none", "--no-progress",
            *sets(SMALL + ["train.epochs=4", "train.head_dropout=0.5",
                           "model.extra={dim: 32, depth: 1, heads: 2, dropout: 0.2}"])]
    assert main(args + ["--out", str(tmp_path / "full")]) == 0
    interrupt_after_epoch(monkeypatch, 2)
    assert main(args + ["--out", str(tmp_path / "part")]) == 130
    monkeypatch.undo()
    assert main(args + ["--out", str(tmp_path / "part")]) == 1          # refuses to overwrite without --resume
    assert main(args + ["--out", str(tmp_path / "part"), "--resume"]) == 0
    a, b = ck.load_state_dict(tmp_path / "full" / "checkpoints" / "last"), ck.load_state_dict(
        tmp_path / "part" / "checkpoints" / "last")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "full" / "log.csv").read_text() == (tmp_path / "part" / "log.csv").read_text()


def test_probe_trains_only_the_head_of_a_pretrained_encoder(tmp_path, capsys):
    from msmae.corpus import pack_sequences

    man = manifest(tmp_path)
    rng = np.random.default_rng(1)
    walks = [PoseSequence(rng.normal(size=(1, 160, 2)) + np.cumsum(rng.normal(0, 0.05, (80, 160, 2)), 0),
                          np.ones((80, 160), bool), 25.0, source=f"w{i}") for i in range(6)]
    pack_sequences(walks, tmp_path / "corpus")
    pre = tmp_path / "pre"
    assert main(["pretrain", "--data", str(tmp_path / "corpus"), "--out", str(pre), "--no-progress",
                 *sets(["model.size=tiny", "model.extra={dim: 32, depth: 1, heads: 2, decoder_dim: 32, "
                        "decoder_depth: 1, decoder_heads: 2}", "data.window=32", "data.num_workers=0",
                        "data.eval_windows=4", "train.batch_size=4", "train.steps=3", "train.warmup_steps=1"])]) == 0
    capsys.readouterr()
    out = tmp_path / "probe"
    assert main(["probe", "--annotations", str(man), "--init", str(pre), "--out", str(out), "--no-progress",
                 *sets(["train.batch_size=4", "train.epochs=3", "data.num_workers=0", "data.load_workers=1"])]) == 0
    meta = ck.read_checkpoint_config(out)
    assert meta["mode"] == "probe" and meta["pooling"] == "mean" and meta["task_config"]["train"]["lr"] == 1e-3
    pre_enc, probe_enc = ck.load_encoder(pre).state_dict(), ck.load_encoder(out).state_dict()
    assert all(torch.equal(pre_enc[k], probe_enc[k]) for k in pre_enc)  # frozen: bit-identical weights
    # RUN/model alone is the model: the loaders take the folder, and its card says what it is
    assert all(torch.equal(probe_enc[k], v) for k, v in ck.load_encoder(out / "model").state_dict().items())
    assert model_from_run(out / "model")[1]["classes"] == meta["classes"]
    card = (out / "model" / "README.md").read_text()
    assert "isolated sign language recognition (ISLR), linear probe" in card and "| top1 |" in card
    sd = ck.load_state_dict(out)
    assert "head.weight" in sd and "cls_token" not in sd
    assert meta["probe_norm"] and "norm.running_var" in sd and not torch.equal(sd["norm.running_var"],
                                                                              torch.ones_like(sd["norm.running_var"]))
    m = json.loads((out / "metrics.json").read_text())
    assert m["mode"] == "probe" and m["split"] == "test" and 0.0 <= m["top1"] <= 1.0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["split"] == "test"
    # The feature statistics are part of the model: evaluate gives the run's own test figures back.
    assert main(["evaluate", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top1"] == pytest.approx(m["top1"])
    # A training batch of one sample (8 training clips, batch 7) does not break the feature normalisation.
    assert main(["probe", "--annotations", str(man), "--init", str(pre), "--out", str(tmp_path / "odd"),
                 "--no-progress", *sets(["train.batch_size=7", "train.epochs=1", "data.num_workers=0",
                                         "data.load_workers=1"])]) == 0


def test_command_errors_are_one_line(tmp_path, capsys):
    man = manifest(tmp_path)
    base = ["finetune", "islr", "--annotations", str(man), "--out", str(tmp_path / "r"), "--no-progress"]
    assert main(base + ["--init", "none", "--set", "train.epochz=3"]) == 1
    assert "unknown config key 'train.epochz'" in capsys.readouterr().err
    assert main(base + ["--init", str(tmp_path / "nowhere")]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(base + ["--init", "none", "--set", "train.select_metric=top3"]) == 1
    assert "select_metric" in capsys.readouterr().err
    with pytest.raises(SystemExit):                     # --init is required: never train from scratch by accident
        main(base)
    # A loss that blows up is one line that says what to do, not a traceback.
    assert main(["finetune", "islr", "--annotations", str(man), "--out", str(tmp_path / "nan"), "--no-progress",
                 "--init", "none", *sets(SMALL + ["train.epochs=2", "train.lr=1e30", "train.warmup_epochs=0"])]) == 1
    err = capsys.readouterr().err
    assert "loss became" in err and "lower train.lr" in err and "Traceback" not in err


def test_torchrun_two_processes_gloo(tmp_path):
    man = manifest(tmp_path)
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531",
           "-m", "msmae", "finetune", "islr", "--annotations", str(man), "--init", "none", "--out", str(out),
           "--no-progress", *sets(SMALL + ["train.epochs=2"])]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["examples"]["train"] == 8 and m["split"] == "test"
    assert len((out / "log.csv").read_text().splitlines()) == 3
