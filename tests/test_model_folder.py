"""Model folders checked before use: a config that does not match its weights, a malformed or absurd config, a
damaged weight file and NaN weights are each refused with one line naming the file, before anything is built,
by the library loaders and by every command that takes a model; no JSON msmae writes holds NaN."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from msmae.cli import main
from msmae.layout import get_layout
from msmae.models import MultiStreamEncoder, model_config
from msmae.models.classifier import ISLRClassifier
from msmae.poses import PoseSequence, write_npz
from msmae.train import checkpoint as ck

BH = get_layout("body,hands")


def _folder(path: Path, task: str = "pretrain") -> Path:
    torch.manual_seed(0)
    enc = MultiStreamEncoder(config=model_config("tiny", dim=16, depth=1, heads=2, decoder_dim=16, decoder_depth=1,
                                                 decoder_heads=2))
    config = {"task": task, "model": enc.config.to_dict(), "layout": enc.config.layout.to_dict(),
              "encoder_prefix": "encoder.", "task_config": {}}
    if task == "islr":
        model = ISLRClassifier(encoder=enc, num_classes=2, pooling="cls")
        config.update(classes=["cw", "ccw"], mode="finetune", num_frames=8)
        sd = model.state_dict()
    else:
        sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    return ck.save_checkpoint(path, state_dict=sd, config=config)


def _edit_config(folder: Path, change) -> None:
    meta = json.loads((folder / ck.CONFIG).read_text())
    (folder / ck.CONFIG).write_text(json.dumps(change(meta)))


def _set_model(**fields):
    return lambda meta: {**meta, "model": {**meta["model"], **fields}}


def _nan_weights(folder: Path, fraction: str) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(str(folder / ck.WEIGHTS))
    for i, k in enumerate(sorted(sd)):
        if fraction == "all" or i == 3:
            sd[k] = torch.full_like(sd[k], float("nan"))
    save_file(sd, str(folder / ck.WEIGHTS))


def _header_claims(folder: Path, **fields) -> None:
    """A config asking for a bigger model and a weight header claiming its shapes, holding 4 bytes per tensor: the
    shapes match, so only the header's byte counts tell, before that model is built."""
    import struct

    from msmae.models import ModelConfig

    _edit_config(folder, _set_model(**fields))
    with torch.device("meta"):
        big = MultiStreamEncoder(config=ModelConfig.from_dict(json.loads((folder / ck.CONFIG).read_text())["model"]))
    header = {f"encoder.{k}": {"dtype": "F32", "shape": list(v.shape), "data_offsets": [4 * i, 4 * i + 4]}
              for i, (k, v) in enumerate(big.state_dict().items())}
    text = json.dumps(header).encode()
    (folder / ck.WEIGHTS).write_bytes(struct.pack("<Q", len(text)) + text + bytes(4 * len(header)))


BROKEN = {  # name -> (how the folder is broken, the file the error names, what it says)
    "dim": (lambda f: _edit_config(f, _set_model(dim=32)), ck.WEIGHTS, r"has shape \[(1, 1, )?16.*needs \[(1, 1, )?32"),
    "streams": (lambda f: _edit_config(f, _set_model(streams="body,hands,face")), ck.WEIGHTS, "missing .*face"),
    "depth": (lambda f: _edit_config(f, _set_model(depth=2)), ck.WEIGHTS, r"tensors missing \(encoder.blocks.1"),
    "depth-less": (lambda f: _edit_config(f, _set_model(depth=0)), ck.CONFIG, "depth must be a positive"),
    "format": (lambda f: _edit_config(f, lambda m: {**m, "format": "one"}), ck.CONFIG, "unknown checkpoint format"),
    "format-new": (lambda f: _edit_config(f, lambda m: {**m, "format": 99}), None, "newer msmae"),
    "list": (lambda f: _edit_config(f, lambda m: [m]), ck.CONFIG, "not an msmae checkpoint config"),
    "model-null": (lambda f: _edit_config(f, lambda m: {**m, "model": None}), ck.CONFIG, "expected a mapping"),
    "model-float": (lambda f: _edit_config(f, _set_model(dim=16.5)), ck.CONFIG, "dim must be a positive integer"),
    "absurd": (lambda f: _edit_config(f, _set_model(dim=2 ** 20, heads=1)), ck.CONFIG, "refused before anything"),
    "absurd-layers": (lambda f: _edit_config(f, _set_model(depth=10 ** 6, dim=2, heads=1)), ck.CONFIG,
                      "more than 1000 layers; refused before anything"),
    "absurd-depth": (lambda f: _edit_config(f, _set_model(depth=10 ** 9)), ck.CONFIG, "refused before anything"),
    "header": (lambda f: (f / ck.WEIGHTS).write_bytes((10 ** 12).to_bytes(8, "little") + b"{}"), ck.WEIGHTS,
               "not a readable safetensors"),
    "header-shapes": (lambda f: _header_claims(f, cubelet=1000), ck.WEIGHTS, r"does not hold 4 bytes"),
    "nan-all": (lambda f: _nan_weights(f, "all"), ck.WEIGHTS, "weights are not finite"),
    "nan-one": (lambda f: _nan_weights(f, "one"), ck.WEIGHTS, "weights are not finite"),
}


def _check_one_line(message: str, folder: Path, file: str | None, pattern: str) -> None:
    import re

    assert "\n" not in message.strip() and "Traceback" not in message, message
    assert re.search(pattern, message), message
    if file is not None:
        assert str(folder / file) in message, message


@pytest.mark.timeout(120)  # an absurd size that slipped through would build for hours: fail instead of hanging
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_load_encoder_refuses_a_broken_folder_before_building(tmp_path, case):
    breaks, file, pattern = BROKEN[case]
    folder = _folder(tmp_path / "m")
    breaks(folder)
    start = time.perf_counter()
    with pytest.raises(ck.CheckpointError) as e:
        ck.load_encoder(folder)
    assert time.perf_counter() - start < 5  # refused from the sizes, not after allocating them
    _check_one_line(str(e.value), folder, file, pattern)


def _clips(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny ISLR manifest (2 signs, 3 clips each) and one clip to predict."""
    rng = np.random.default_rng(0)
    rows = ["path,label,split"]
    for label in ("cw", "ccw"):
        for i, split in enumerate(("train", "train", "val")):
            c = rng.normal(0, 1, (12, BH.num_points, 2)).astype(np.float32)
            write_npz(PoseSequence(c, np.ones(c.shape[:2], bool), 25.0, BH), tmp_path / f"{label}{i}.npz")
            rows.append(f"{label}{i}.npz,{label},{split}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    return tmp_path / "m.csv", tmp_path / "cw0.npz"


@pytest.mark.parametrize("case", ["dim", "format", "list", "model-null", "absurd", "nan-all", "header"])
def test_every_command_taking_a_model_says_one_line(tmp_path, capsys, case):
    breaks, file, pattern = BROKEN[case]
    man, clip = _clips(tmp_path)
    pre, islr = _folder(tmp_path / "pre"), _folder(tmp_path / "islr", task="islr")
    breaks(pre)
    breaks(islr)
    calls = [
        (["predict", str(clip), "--model", str(islr), "--json"], islr),
        (["evaluate", str(islr), "--split", "val"], islr),
        (["attention", str(clip), "--model", str(pre), "--out", str(tmp_path / "att")], pre),
        (["view", str(clip), "--model", str(islr), "--out", str(tmp_path / "view")], islr),
        (["finetune", "islr", "--annotations", str(man), "--init", str(pre), "--out", str(tmp_path / "ft"),
          "--no-progress", "--set", "train.epochs=1", "--set", "data.load_workers=1"], pre),
    ]
    for argv, folder in calls:
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 1 and out == "", (argv, out, err)
        _check_one_line(err, folder, file if case != "list" or folder is pre else None, pattern)


@pytest.mark.parametrize("case", ["format", "list", "model-null", "model-float", "absurd", "header", "model-list",
                                  "stride-text", "fps-negative"])
def test_inspect_of_a_malformed_model_folder_says_one_line(tmp_path, capsys, case):
    """``inspect RUN`` reads the time scale only (no weights), but from a checked config and weight header."""
    more = {"model-list": (lambda f: _edit_config(f, lambda m: {**m, "model": [1]}), ck.CONFIG, "expected a mapping"),
            "stride-text": (lambda f: _edit_config(f, lambda m: {**m, "encoder_frame_stride": "two"}), ck.CONFIG,
                            "frame stride is not an integer"),
            "fps-negative": (lambda f: _edit_config(f, lambda m: {**m, "encoder_source_fps": -24}), ck.CONFIG,
                             "source frame rate is not valid")}
    breaks, file, pattern = {**BROKEN, **more}[case]
    islr = _folder(tmp_path / "islr", task="islr")
    breaks(islr)
    assert main(["inspect", str(islr)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    _check_one_line(err, islr, file if case != "list" else None, pattern)


def test_finetune_on_nan_weights_says_they_are_not_finite_not_lower_the_learning_rate(tmp_path, capsys):
    man, _ = _clips(tmp_path)
    pre = _folder(tmp_path / "pre")
    _nan_weights(pre, "all")
    assert main(["finetune", "islr", "--annotations", str(man), "--init", str(pre), "--out", str(tmp_path / "ft"),
                 "--no-progress", "--set", "train.epochs=1", "--set", "data.load_workers=1"]) == 1
    err = capsys.readouterr().err
    assert "weights are not finite" in err and "learning rate" not in err and "lr" not in err
    assert not (tmp_path / "ft" / "model").exists()


def test_a_good_folder_still_loads_and_predict_json_is_strict(tmp_path, capsys):
    _, clip = _clips(tmp_path)
    islr = _folder(tmp_path / "islr", task="islr")
    assert ck.load_encoder(islr).config.dim == 16
    assert main(["predict", str(clip), "--model", str(islr), "--json"]) == 0
    out = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert [p["label"] for p in out["predictions"]] and all(np.isfinite(p["probability"]) for p in out["predictions"])


def test_json_files_never_hold_nan(tmp_path):
    from msmae.utils import atomic_write_json, json_text

    atomic_write_json(tmp_path / "m.json", {"loss": float("nan"), "top": [np.float32("inf"), 1.5],
                                            "arr": np.array([np.nan, 2.0])})
    text = (tmp_path / "m.json").read_text()
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}")) == {
        "loss": None, "top": [None, 1.5], "arr": [None, 2.0]}
    assert json_text(-float("inf")) == "null"
