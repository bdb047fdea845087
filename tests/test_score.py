"""``msmae score``: JSON keys and values, Chinese extras, one-line errors."""

from __future__ import annotations

import json

import pytest

from msmae.cli import main
from msmae.metrics.translation import translation_metrics


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_score_prints_paper_metrics(tmp_path, capsys):
    hyps = ["the cat sat on mat", "a dog barks"]
    refs = ["the cat sat on the mat", "a dog barks loudly"]
    h, r = _write(tmp_path / "hyp.txt", hyps), _write(tmp_path / "ref.txt", refs)
    assert main(["score", "--hyp", h, "--ref", r, "--lang", "en", "--out", str(tmp_path / "s.json")]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = translation_metrics(hyps, refs, lang="en")
    for key in ("bleu1", "bleu4", "rouge_l"):
        assert out[key] == pytest.approx(expected[key])
        assert 0 < out[key] < 100
    assert "bleu4_punct_fixed" not in out
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8")) == out


def test_score_chinese_reports_fixed_scores(tmp_path, capsys):
    h = _write(tmp_path / "hyp.txt", ["你好,世界!", "谢谢"])
    r = _write(tmp_path / "ref.txt", ["你好，世界！", "谢谢你"])
    assert main(["score", "--hyp", h, "--ref", r, "--lang", "zh"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bleu_tokenizer"] == "zh"
    assert out["rouge_l_punct_fixed"] > out["rouge_l"]
    assert out["bleu1_punct_fixed"] > out["bleu1"]
    assert out["bleu4_punct_fixed"] >= out["bleu4"]


@pytest.mark.parametrize("case,message", [
    ("mismatch", "line count mismatch"),
    ("empty", "empty file"),
    ("missing", "no such file"),
])
def test_score_errors_are_one_line(tmp_path, capsys, case, message):
    h = _write(tmp_path / "hyp.txt", ["a b", "c d"])
    r = {"mismatch": _write(tmp_path / "ref.txt", ["a b"]),
         "empty": str(tmp_path / "empty.txt"),
         "missing": str(tmp_path / "missing.txt")}[case]
    if case == "empty":
        (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    assert main(["score", "--hyp", h, "--ref", r]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("msmae score: error:") and message in err
    assert "\n" not in err and "Traceback" not in err


def test_score_accepts_json_like_the_other_commands(tmp_path, capsys):
    h, r = _write(tmp_path / "hyp.txt", ["a dog barks"]), _write(tmp_path / "ref.txt", ["a dog barks loudly"])
    assert main(["score", "--hyp", h, "--ref", r, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["bleu1"] > 0
