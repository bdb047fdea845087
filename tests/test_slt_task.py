"""SLT task: configs (appendix table 8), data pipeline pieces, the commands end to end on a synthetic
corpus with a tiny mBART-50 directory, and the real-data memorisation check on the DGS Corpus sample."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from conftest import shared_path

from msmae.cli import main
from msmae.config import load_config
from msmae.data.islr import Clip
from msmae.data.slt import SLTExample
from msmae.layout import get_layout
from msmae.metrics.translation import score_files
from msmae.models.translator import make_tiny_mbart
from msmae.poses.sequence import PoseSequence
from msmae.tasks.slt import (SentenceDataset, SltConfig, clip_norm, collate, load_example, peak_lr,
                             prepare_sequence, target_language, tokenize_targets)

WORDS = ["sonne", "regen", "wind", "schnee", "nebel", "wolken"]
EXTRA = ["am tag scheint die sonne im süden", "in der nacht regnet es im norden", "morgen wird es kalt und windig",
         "the weather is nice today", "we are going to paint the wall", "hello my friend how are you"]


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name,lang,lr,clip", [("p14t", "de_DE", 1e-4, 0.1), ("csl_daily", "zh_CN", 1e-4, 0.1),
                                               ("how2sign", "en_XX", 5e-5, 1.0)])
def test_configs_follow_appendix_table_8(name, lang, lr, clip):
    path = f"slt/{name}"  # a shipped config, by name
    cfg = load_config(SltConfig, path)
    assert target_language(cfg) == lang and cfg.data.dataset == name
    assert (peak_lr(cfg), clip_norm(cfg)) == (lr, clip)
    frozen = load_config(SltConfig, path, ["translator.freeze_encoder=true"])
    assert (peak_lr(frozen), clip_norm(frozen)) == (3e-4, 1.0)
    t = cfg.train
    assert (t.epochs, t.warmup_epochs, t.batch_size, t.weight_decay) == (100, 10, 32, 1e-3)
    tr = cfg.translator
    assert (tr.lora_r, tr.lora_alpha, tr.fusion, cfg.augment.drop_duplicate) == (32, 32, "mean", 0.2)
    over = load_config(SltConfig, path, ["model.size=tiny", "train.epochs=3", "train.batch_size=4",
                                         "train.checkpoint_every=2", "train.seed=7"])
    assert (over.model.size, over.train.epochs, over.train.batch_size, over.train.checkpoint_every,
            over.train.seed) == ("tiny", 3, 4, 2, 7)


# ----------------------------------------------------------------------------- data pipeline
def _clip(t, k=48):
    coords = np.arange(t, dtype=np.float16)[:, None, None] * np.ones((1, k, 2), np.float16)
    return Clip(coords, np.ones((t, k), bool), 25.0, get_layout("body,hands"))


def test_drop_duplicate_fraction_and_determinism():
    ds = SentenceDataset([_clip(100), _clip(10)], [[1, 2], [3]], train=True, drop_duplicate=0.2, seed=3)
    idx = ds.frames(0)
    counts = np.bincount(idx, minlength=100)
    assert np.all(np.diff(idx) >= 0)                           # order kept
    assert np.sum(counts != 1) == 20 and set(np.unique(counts)) <= {0, 1, 2}  # 20% deleted or duplicated
    assert np.array_equal(idx, ds.frames(0))
    ds.set_epoch(1)
    assert not np.array_equal(idx, ds.frames(0))
    item = ds[0]
    assert item["coords"].dtype == np.float32 and np.array_equal(item["coords"][:, 0, 0], ds.frames(0))
    ev = SentenceDataset([_clip(100)], [[1]], train=False)
    assert np.array_equal(ev.frames(0), np.arange(100))
    capped = SentenceDataset([_clip(100)], [[1]], train=True, drop_duplicate=0.2, max_frames=50)
    assert len(capped.frames(0)) == 50


def test_collate_pads_frames_and_labels():
    ds = SentenceDataset([_clip(7), _clip(4)], [[5, 6, 7], [8]])
    b = collate([ds[0], ds[1]])
    assert b["coords"].shape == (2, 7, 48, 2) and b["frame_valid"].sum(1).tolist() == [7, 4]
    assert b["labels"].tolist() == [[5, 6, 7], [8, -100, -100]]
    assert torch.all(b["coords"][1, 4:] == 0) and b["coords"][1, 3, 0, 0] == 3


def test_prepare_sequence_stride_cap_and_time_range(tmp_path):
    from msmae.poses.writers import write_npz

    t = 90
    coords = np.random.default_rng(0).normal(size=(t, 160, 2)).astype(np.float32)
    coords[:, 0] = [0.0, 0.0]
    coords[:, 1] = [1.0, 0.0]  # shoulders 1 apart -> normalisation is a translation by (-0.5, 0)
    seq = PoseSequence(coords, np.ones((t, 160), bool), 30.0, source="x")
    clip = prepare_sequence(seq, layout=get_layout("body,hands"), normalize="shoulders", frame_stride=2,
                            max_frames=1024)
    assert clip.num_frames == 45 and clip.fps == 15.0 and clip.coords.shape == (45, 48, 2)
    np.testing.assert_allclose(clip.coords[3, 10], coords[6, 10] - [0.5, 0.0], atol=2e-2)  # float16
    assert prepare_sequence(seq, layout=get_layout("body,hands"), normalize="none", frame_stride=1,
                            max_frames=20).num_frames == 20
    path = write_npz(seq, tmp_path / "v.npz")
    ex = SLTExample("v", path, "text", "train", start=1.0, end=2.0)  # frames 30..59 -> 15 after the stride
    c = load_example(ex, layout=get_layout("body,hands"), normalize="none", frame_stride=2, max_frames=1024)
    np.testing.assert_allclose(c.coords[:, 10].astype(np.float32), coords[30:60:2, 10], atol=2e-2)


def test_tokenize_targets_cuts_and_counts(tmp_path):
    from msmae.models.translator import load_tokenizer

    tok = load_tokenizer(make_tiny_mbart(tmp_path / "m", EXTRA * 3, vocab_size=120, d_model=16, heads=2))
    ids, cut = tokenize_targets(tok, ["am tag scheint die sonne im süden", "es"], lang="de_DE", max_tokens=4)
    assert cut == 1 and len(ids[0]) == 4 and ids[0][0] == tok.lang_code_to_id["de_DE"]
    assert ids[0][-1] == ids[1][-1] == tok.eos_token_id


# ----------------------------------------------------------------------------- end to end (synthetic corpus)
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A SYNTHETIC translation corpus: synthetic-signer sentences whose text names their signs."""
    from msmae.poses.synthetic import SyntheticSigner
    from msmae.poses.writers import write_npz

    root = tmp_path_factory.mktemp("slt_corpus")
    signer = SyntheticSigner(num_classes=len(WORDS), seed=0, fps=25.0)
    rng = np.random.default_rng(0)
    rows, texts = [], []
    for i in range(14):
        seq, signs = signer.sentence(2, rng)
        text = " ".join(WORDS[s["label"]] for s in signs)
        write_npz(seq, root / "poses" / f"s{i}.npz")
        split = "train" if i < 8 else ("dev" if i < 11 else "test")
        rows.append({"path": f"poses/s{i}.npz", "text": text, "split": split})
        texts.append(text)
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["path", "text", "split"])
        w.writeheader()
        w.writerows(rows)
    mbart = make_tiny_mbart(root / "mbart", texts + EXTRA * 2, vocab_size=150, d_model=32, heads=2, ffn_dim=64)
    return root, mbart


def finetune_args(root, mbart, out, *extra):
    return ["finetune", "slt", "--out", str(out), "--init", "none", "--mbart", str(mbart), "--dataset", "manifest",
            "--annotations", str(root / "manifest.csv"), "--no-progress",
            "--set", "model.size=tiny", "--set", "model.streams=body,hands",
            "--set", "model.extra={dim: 32, depth: 1, heads: 2}", "--set", "data.language=de_DE",
            "--set", "train.epochs=3", "--set", "train.batch_size=4", "--set", "train.warmup_epochs=1",
            "--set", "train.lr=3e-3", "--set", "translator.num_beams=2", "--set", "translator.max_new_tokens=12",
            "--set", "data.num_workers=0", "--set", "data.load_workers=1", *extra]


def test_finetune_evaluate_predict_score(corpus, tmp_path, capsys):
    from msmae.train.checkpoint import load_encoder

    root, mbart = corpus
    run = tmp_path / "run"
    assert main(finetune_args(root, mbart, run, "--set", "train.checkpoint_every=2")) == 0
    capsys.readouterr()
    for f in ("config.yaml", "metrics.json", "hypotheses.txt", "references.txt", "log.csv", "model/model.safetensors",
              "checkpoints/best/config.json", "checkpoints/last/train_state.pt", "eval_dev/metrics.json",
              "eval_test/translations.tsv"):
        assert (run / f).is_file(), f
    m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert m["split"] == "test" and m["num_examples"] == 3 and m["examples"] == {"train": 8, "dev": 3, "test": 3}
    assert m["selected_on"]["split"] == "dev" and 1 <= m["selected_on"]["epoch"] <= 3
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3] and all(h["val_bleu4"] is not None for h in m["history"])
    assert m["parameters"]["mbart_other_trainable"] == 0 and m["lr"] == 3e-3
    refs = (run / "references.txt").read_text(encoding="utf-8").splitlines()
    assert refs == [r["text"] for r in csv.DictReader(open(root / "manifest.csv", encoding="utf-8"))][11:]
    # metrics.json equals what `msmae score` computes on the files beside it
    again = score_files(run / "hypotheses.txt", run / "references.txt", lang="de")
    for k in ("bleu1", "bleu4", "rouge_l"):
        assert m[k] == pytest.approx(again[k])
    # the run's encoder loads with the one-call loader and is the trained one
    enc = load_encoder(run)
    assert enc.config.streams == "body,hands" and enc.config.dim == 32
    # evaluate reproduces the dev figures of the run (same weights, same beam search)
    assert main(["evaluate", str(run), "--split", "dev", "--json", "--out", str(tmp_path / "ev")]) == 0
    ev = json.loads(capsys.readouterr().out)
    dev = json.loads((run / "eval_dev" / "metrics.json").read_text(encoding="utf-8"))
    assert ev["bleu4"] == pytest.approx(dev["bleu4"]) and ev["rouge_l"] == pytest.approx(dev["rouge_l"])
    assert (tmp_path / "ev" / "hypotheses.txt").read_text() == (run / "eval_dev" / "hypotheses.txt").read_text()
    # predict on a pose file gives the line evaluate wrote for it (test example s11 is line 1)
    assert main(["predict", str(root / "poses" / "s11.npz"), "--model", str(run), "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["translation"] == (run / "eval_test" / "hypotheses.txt").read_text(encoding="utf-8").splitlines()[0]
    assert pred["language"] == "de_DE"
    (tmp_path / "bad.pose").write_bytes(b"junk")           # an error names the input once, not twice
    assert main(["predict", str(tmp_path / "bad.pose"), "--model", str(run)]) == 1
    assert capsys.readouterr().err.count(str(tmp_path / "bad.pose")) == 1
    # RUN/model is a complete model on its own: a card beside the weights, and the loaders take the folder
    card = (run / "model" / "README.md").read_text(encoding="utf-8")
    assert "sign language translation" in card and "| bleu4 |" in card and "de_DE" in card and "train 8" in card
    assert main(["predict", str(root / "poses" / "s11.npz"), "--model", str(run / "model"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["translation"] == pred["translation"]
    # a second finetune into the same run needs --resume; resuming with more epochs continues the history
    assert main(finetune_args(root, mbart, run)) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(finetune_args(root, mbart, run, "--resume", "--set", "train.epochs=4")) == 0
    m2 = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in m2["history"]] == [1, 2, 3, 4]
    assert m2["history"][:3] == m["history"]


def test_frozen_encoder_keeps_init_weights_and_setup_errors(corpus, tmp_path, capsys):
    from msmae.models import MultiStreamEncoder, model_config
    from msmae.train.checkpoint import load_encoder, save_checkpoint

    root, mbart = corpus
    torch.manual_seed(5)
    enc = MultiStreamEncoder(config=model_config("tiny", streams="body,hands", dim=32, depth=1, heads=2))
    init = save_checkpoint(tmp_path / "pre", state_dict={f"encoder.{k}": v for k, v in enc.state_dict().items()},
                           config={"task": "pretrain", "model": enc.config.to_dict()})
    run = tmp_path / "frozen"
    args = finetune_args(root, mbart, run, "--freeze-encoder", "--set", "train.epochs=2")
    args[args.index("--init") + 1] = str(init)
    assert main(args) == 0
    capsys.readouterr()
    m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert m["freeze_encoder"] and m["lr"] == 3e-4 and m["grad_clip"] == 1.0  # table 8's frozen settings
    assert m["parameters"]["pose_encoder_trainable"] == 0
    after = load_encoder(run).state_dict()
    for k, v in enc.state_dict().items():
        assert torch.equal(after[k], v), k
    # one-line errors for a missing mBART directory and for a hub name
    bad = finetune_args(root, tmp_path / "no_mbart", tmp_path / "r2")
    assert main(bad) == 1
    err = capsys.readouterr().err
    assert "is not a directory" in err and "huggingface-cli download" in err and "Traceback" not in err
    bad[bad.index("--mbart") + 1] = "facebook/mbart-large-50-many-to-many-mmt"
    assert main(bad) == 1
    assert "hub name" in capsys.readouterr().err


def test_frame_stride_follows_the_encoders_pretraining_unless_set(corpus, tmp_path, capsys, caplog):
    """data.frame_stride unset: the stride the init encoder was pre-trained with (2 for --init none); set to
    another value: used, with one warning. The run records the stride it used."""
    import logging

    from msmae.models import MultiStreamEncoder, model_config
    from msmae.train.checkpoint import read_checkpoint_config, save_checkpoint

    root, mbart = corpus
    enc = MultiStreamEncoder(config=model_config("tiny", streams="body,hands", dim=32, depth=1, heads=2))
    init = save_checkpoint(tmp_path / "pre", state_dict={f"encoder.{k}": v for k, v in enc.state_dict().items()},
                           config={"task": "pretrain", "model": enc.config.to_dict(),
                                   "task_config": {"data": {"window": 48, "frame_stride": 3}}})
    strides = {}
    for name, extra in (("auto", []), ("set", ["--set", "data.frame_stride=1"]), ("none", None)):
        args = finetune_args(root, mbart, tmp_path / name, "--set", "train.epochs=1", *(extra or []))
        if extra is not None:
            args[args.index("--init") + 1] = str(init)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert main(args) == 0
        capsys.readouterr()
        strides[name] = read_checkpoint_config(tmp_path / name)["frame_stride"]
        warned = [r for r in caplog.records if "differs from the frame stride" in r.getMessage()]
        assert len(warned) == (1 if name == "set" else 0), name
        assert f"frame_stride: {strides[name]}" in (tmp_path / name / "config.yaml").read_text()
    assert strides == {"auto": 3, "set": 1, "none": 2}


# ----------------------------------------------------------------------------- real data: the whole path learns
@pytest.mark.slow
@pytest.mark.parametrize("text, lang, n_train", [("german", "de_DE", 16), ("english", "en_XX", 15)])
def test_dgs_corpus_sentences_are_memorised(tmp_path, capsys, text, lang, n_train):
    """On the 32 real DGS Corpus sentences (German or English text), a tiny model trained for about half a
    minute on CPU memorises its training sentences (16; 15 in English, where train_7 has no English text and is
    excluded as such): train BLEU-4 goes from ~0 to far above."""
    from msmae.data.slt import load_dgs_sentences

    root = shared_path("dgs-corpus-sentences")
    texts = [e.text for e in load_dgs_sentences(root, language=text).examples]
    mbart = make_tiny_mbart(tmp_path / "mbart", texts, vocab_size=300, d_model=64, heads=4, ffn_dim=128)
    run = tmp_path / "run"
    torch.set_num_threads(2)
    assert main(["finetune", "slt", "--out", str(run), "--init", "none", "--mbart", str(mbart), "--dataset", "dgs",
                 "--annotations", str(root), "--no-progress",
                 "--set", "model.size=tiny", "--set", "model.extra={dim: 64, depth: 2, heads: 4}",
                 "--set", f"data.dgs_text={text}", "--set", "data.val_split=train", "--set", "train.epochs=200",
                 "--set", "train.batch_size=4", "--set", "train.warmup_epochs=2", "--set", "train.lr=3e-3",
                 "--set", "train.grad_clip=1.0", "--set", "train.eval_every=50", "--set", "train.eval_before=true",
                 "--set", "translator.num_beams=2", "--set", "data.num_workers=0",
                 "--set", "data.load_workers=1"]) == 0
    m = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    start = m["history"][0]
    assert start["epoch"] == 0 and start["val_bleu4"] < 5
    train = m["splits"]["train"]
    print(f"DGS memorisation: train BLEU-4 {start['val_bleu4']:.2f} -> {train['bleu4']:.2f}, BLEU-1 "
          f"{start['val_bleu1']:.2f} -> {train['bleu1']:.2f}, ROUGE-L {start['val_rouge_l']:.2f} -> "
          f"{train['rouge_l']:.2f}; unseen test BLEU-4 {m['splits']['test']['bleu4']:.2f}; "
          f"{m['train_time_s']:.0f} s training")
    assert train["num_examples"] == n_train and m["language"] == lang
    assert train["bleu4"] > start["val_bleu4"] + 30 and train["bleu4"] > 30
    shutil.rmtree(run / "checkpoints", ignore_errors=True)
