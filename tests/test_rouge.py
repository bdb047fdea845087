"""ROUGE-L as the paper computed it (TwoStreamSLT's tf-seq2seq sentence F with beta = P/R), beside COCO's."""

from __future__ import annotations

import json
import random

import pytest

from msmae.cli import main
from msmae.metrics.rouge import lcs_length, rouge_l, rouge_l_coco, rouge_l_sentence, rouge_tokens
from msmae.metrics.translation import translation_metrics


def paper_f(r: float, p: float) -> float:
    """The paper's F with beta = P/R, in closed form: R P (R^2 + P^2) / (R^3 + P^3) (no epsilons)."""
    return r * p * (r * r + p * p) / (r**3 + p**3) if r and p else 0.0


def test_issue_example_and_coco_beside_it():
    # hypothesis a b c d, reference a b x: LCS 2, R = 2/3, P = 1/2, beta = 0.75 -> F = 50/91
    assert rouge_l_sentence("a b c d".split(), "a b x".split()) == pytest.approx(50 / 91, abs=1e-10)
    assert rouge_l(["a b c d"], ["a b x"]) == pytest.approx(100 * 50 / 91, abs=1e-8)
    assert round(rouge_l(["a b c d"], ["a b x"]), 2) == 54.95
    # COCO: 2.44 P R / (R + 1.44 P) = 2.44 / 4.16
    assert rouge_l_coco(["a b c d"], ["a b x"]) == pytest.approx(100 * 2.44 / 4.16, abs=1e-8)
    assert round(rouge_l_coco(["a b c d"], ["a b x"]), 2) == 58.65
    m = translation_metrics(["a b c d"], ["a b x"], lang="de")
    assert round(m["rouge_l"], 2) == 54.95 and round(m["rouge_l_coco"], 2) == 58.65


def test_beta_is_p_over_r_both_ways():
    # hypothesis shorter than the reference: LCS 2, R = 1/2, P = 1 -> F = (1/2)(5/4)/(9/8) = 5/9
    assert rouge_l_sentence("a c".split(), "a b c d".split()) == pytest.approx(5 / 9, abs=1e-10)
    # 5 of 6 reference words: R = 5/6, P = 1 -> 305/341 (equal to COCO's here, since R = 1/1.2)
    assert rouge_l_sentence("the cat sat on mat".split(), "the cat sat on the mat".split()) == pytest.approx(
        305 / 341, abs=1e-10)
    assert rouge_l_sentence(["x"], ["y"]) == 0.0
    rng = random.Random(0)
    for _ in range(200):
        hyp = [rng.choice("abcde") for _ in range(rng.randint(1, 9))]
        ref = [rng.choice("abcde") for _ in range(rng.randint(1, 9))]
        lcs = lcs_length(hyp, ref)
        assert rouge_l_sentence(hyp, ref) == pytest.approx(paper_f(lcs / len(ref), lcs / len(hyp)), abs=1e-9)


def test_words_are_str_split():
    # any run of whitespace separates words; leading/trailing space adds nothing (unlike COCO's split(" "))
    assert rouge_tokens("  the  cat\tsat ") == ["the", "cat", "sat"]
    assert rouge_l(["the  cat "], ["the cat"]) == pytest.approx(100.0, abs=1e-9)
    assert rouge_l_coco(["the  cat "], ["the cat"]) < 90
    hyps, refs = ["a b c d", "hello world"], ["a b x", "goodbye"]
    assert rouge_l(hyps, refs) == pytest.approx(100 * (50 / 91 + 0.0) / 2, abs=1e-8)


def test_chinese_by_character():
    # 我们爱你 / 我爱他: LCS 我爱 = 2 of 4 hypothesis and 3 reference characters -> 50/91 again
    assert rouge_tokens("我们爱你", lang="zh") == ["我", "们", "爱", "你"]
    assert rouge_l(["我们爱你"], ["我爱他"], lang="zh_CN") == pytest.approx(100 * 50 / 91, abs=1e-8)
    assert rouge_l_coco(["我们爱你"], ["我爱他"], lang="zh") == pytest.approx(100 * 2.44 / 4.16, abs=1e-8)
    # a space is two empty tokens (the paper's code joins characters with spaces and splits on " "):
    # 我们 爱你 is 6 tokens, LCS 2 -> R = 2/3, P = 1/3 -> F = 10/27
    assert rouge_tokens("我们 爱你", lang="zh") == ["我", "们", "", "", "爱", "你"]
    assert rouge_l(["我们 爱你"], ["我爱他"], lang="zh") == pytest.approx(100 * 10 / 27, abs=1e-8)
    # the same strings as words have nothing in common
    assert rouge_l(["我们爱你"], ["我爱他"], lang="en") == 0.0


def test_character_tokens_match_the_join_split_round_trip():
    # what the paper's code scores: " ".join(list(text)).split(" "); checked on random mixed text
    rng = random.Random(1)
    for _ in range(300):
        text = "".join(rng.choice("天气 好a\t，") for _ in range(rng.randint(0, 8)))
        assert rouge_tokens(text, lang="zh") == " ".join(list(text)).split(" ")
        assert rouge_tokens(text, lang="de") == " ".join(text.split()).split(" ")


def test_empty_sentences_do_not_crash():
    assert rouge_tokens("") == [""] and rouge_tokens("", lang="zh") == [""] and rouge_tokens("   ") == [""]
    assert rouge_l([""], ["a b"]) == 0.0                     # empty hypothesis: 0
    assert rouge_l(["a b"], [""]) == 0.0                     # empty reference: 0
    assert rouge_l([""], [""]) == pytest.approx(100.0, abs=1e-9)  # both empty: a match
    assert rouge_l([""], [""], lang="zh") == pytest.approx(100.0, abs=1e-9)
    assert rouge_l_sentence([], ["a"]) == 0.0 and rouge_l_sentence([], []) == pytest.approx(1.0, abs=1e-9)
    # an empty line among others counts as 0 in the mean
    assert rouge_l(["a b c d", ""], ["a b x", "x"]) == pytest.approx(100 * 50 / 91 / 2, abs=1e-8)
    with pytest.raises(ValueError, match="no sentences"):
        rouge_l([], [])


def test_score_command_reports_both(tmp_path, capsys):
    (tmp_path / "h.txt").write_text("a b c d\n\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text("a b x\nsomething\n", encoding="utf-8")
    assert main(["score", "--hyp", str(tmp_path / "h.txt"), "--ref", str(tmp_path / "r.txt")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["rouge_l"] == pytest.approx(100 * 50 / 91 / 2, abs=1e-8)
    assert out["rouge_l_coco"] == pytest.approx(100 * 2.44 / 4.16 / 2, abs=1e-8)
    (tmp_path / "hz.txt").write_text("我们爱你,\n", encoding="utf-8")
    (tmp_path / "rz.txt").write_text("我爱他，\n", encoding="utf-8")
    assert main(["score", "--hyp", str(tmp_path / "hz.txt"), "--ref", str(tmp_path / "rz.txt"), "--lang", "zh"]) == 0
    out = json.loads(capsys.readouterr().out)
    # raw: LCS 2 of 5 / 4 characters; fixed: LCS 3 of 5 / 4
    assert out["rouge_l"] == pytest.approx(100 * paper_f(2 / 4, 2 / 5), abs=1e-8)
    assert out["rouge_l_punct_fixed"] == pytest.approx(100 * paper_f(3 / 4, 3 / 5), abs=1e-8)
    assert out["rouge_l_coco_punct_fixed"] > out["rouge_l_coco"]


def test_slt_scores_with_the_papers_rouge():
    from msmae.tasks.slt import score

    m = score(["a b c d"], ["a b x"], "de_DE")
    assert m["rouge_l"] == pytest.approx(100 * 50 / 91, abs=1e-8)
    assert m["rouge_l_coco"] == pytest.approx(100 * 2.44 / 4.16, abs=1e-8)
