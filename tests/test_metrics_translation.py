"""BLEU / ROUGE-L / punctuation fix: hand-worked values and parity with the sacrebleu command line."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from conftest import shared_path

from msmae.metrics.rouge import coco_rouge_tokens, rouge_l_coco, rouge_l_coco_sentence
from msmae.metrics.translation import (bleu, bleu_tokenizer, fix_zh_punctuation, lcs_length, read_lines,
                                       rouge_l, rouge_l_sentence, score_files, translation_metrics)


def sacrebleu_cli(ref, hyp, tok):
    """BLEU-4 JSON from the real sacrebleu command line (sacrebleu 2.x has no --max-ngram-order)."""
    out = subprocess.run([sys.executable, "-m", "sacrebleu", str(ref), "-i", str(hyp), "-m", "bleu",
                          "-tok", tok, "-w", "10", "-f", "json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def cli_bleu1(res):
    """BLEU-1 from the CLI's own figures: BP (from its exact token counts) x unigram precision."""
    verbose = res["verbose_score"]
    p1 = float(verbose.split("/")[0])
    hyp_len = int(verbose.split("hyp_len = ")[1].split()[0])
    ref_len = int(verbose.split("ref_len = ")[1].split(")")[0])
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return bp * p1


def test_lcs_hand_examples():
    assert lcs_length("ABCBDAB", "BDCABA") == 4  # the textbook example (BCBA)
    assert lcs_length([], ["a"]) == 0
    assert lcs_length("the cat sat on the mat".split(), "the cat sat on mat".split()) == 5
    assert lcs_length("a b c".split(), "c b a".split()) == 1


def test_rouge_l_coco_sentence_hand_worked():
    # P = 5/5, R = 5/6, F = (1 + 1.44) P R / (R + 1.44 P) = (2.44 * 5/6) / (5/6 + 1.44) = 12.2 / 13.64
    f = rouge_l_coco_sentence("the cat sat on mat".split(), "the cat sat on the mat".split())
    assert f == pytest.approx(12.2 / 13.64, abs=1e-12)
    # hypothesis longer than the reference: LCS 2, P = 1/2, R = 1 -> 2.44 * 0.5 / (1 + 0.72) = 1.22 / 1.72
    assert rouge_l_coco_sentence("a b c d".split(), "a c".split()) == pytest.approx(1.22 / 1.72, abs=1e-12)
    # beta weighs recall: swapping hyp and ref changes the score
    assert rouge_l_coco_sentence("a c".split(), "a b c d".split()) == pytest.approx(1.22 / (0.5 + 1.44), abs=1e-12)
    assert rouge_l_coco_sentence(["x"], ["y"]) == 0.0
    assert rouge_l_coco_sentence([], ["y"]) == 0.0
    assert rouge_l_coco_sentence(["x", "y"], ["x", "y"]) == pytest.approx(1.0)


def test_rouge_l_coco_corpus_mean_and_chinese_characters():
    hyps = ["the cat sat on mat", "hello"]
    refs = ["the cat sat on the mat", "goodbye"]
    assert rouge_l_coco(hyps, refs) == pytest.approx(100 * (12.2 / 13.64 + 0.0) / 2)
    # Chinese: by character, whitespace dropped; 今天天气好 vs 今天天气很好 is the same 5-of-6 case
    assert coco_rouge_tokens("今天 天气好", lang="zh") == list("今天天气好")
    assert rouge_l_coco(["今天 天气好"], ["今天天气很好"], lang="zh_CN") == pytest.approx(100 * 12.2 / 13.64)
    # the same strings scored as words are two/one tokens with nothing in common
    assert rouge_l_coco(["今天 天气好"], ["今天天气很好"], lang="en") == 0.0
    # Words are COCO's split(" "): a doubled space is an empty token. "the  cat" vs "the cat": LCS 2 of
    # 3 hypothesis / 2 reference tokens, F = 2.44 * (2/3) * 1 / (1 + 1.44 * 2/3).
    assert coco_rouge_tokens("the  cat") == ["the", "", "cat"]
    assert rouge_l_coco(["the  cat"], ["the cat"]) == pytest.approx(100 * 2.44 * (2 / 3) / (1 + 1.44 * 2 / 3))
    assert rouge_l_coco([""], [""]) == 100.0 and rouge_l_coco([""], ["a"]) == 0.0


def test_bleu_hand_worked_unigram():
    # 5 hypothesis tokens all in the reference (p1 = 1), ref has 6: BP = exp(1 - 6/5)
    r = bleu(["the cat sat on mat"], ["the cat sat on the mat"])
    assert r["bleu1"] == pytest.approx(100 * math.exp(-0.2), abs=1e-9)
    assert r["bleu_hyp_len"] == 5 and r["bleu_ref_len"] == 6
    # BLEU-4 with exp smoothing: p = 5/5, 3/4, 2/3, 1/2 (the 4-gram 'cat sat on mat' is absent)
    p = [1.0, 3 / 4, 2 / 3, 1 / 2]
    expected = 100 * math.exp(-0.2) * math.exp(sum(math.log(x) for x in p) / 4)
    assert r["bleu4"] == pytest.approx(expected, abs=1e-9)
    assert bleu_tokenizer("de") == "13a" and bleu_tokenizer("zh_CN") == "zh" and bleu_tokenizer("ZH") == "zh"


def test_bleu_equals_sacrebleu_command_line(tmp_path):
    # real German PHOENIX-2014T translations (dev as hypotheses for test references: a realistic, low score)
    root = shared_path("phoenix14t-3d-skeletons")
    hyp = root / "dev.text"
    ref = root / "test.text"
    ours = score_files(hyp, ref, lang="de")
    cli = sacrebleu_cli(ref, hyp, "13a")
    assert ours["bleu4"] == pytest.approx(cli["score"], abs=1e-8)
    assert 0 < ours["bleu4"] < 100
    assert ours["bleu1"] == pytest.approx(cli_bleu1(cli), abs=0.051)
    # a corpus with partial matches, a brevity penalty and a trailing-space line, written here
    (tmp_path / "h.txt").write_text("und nun die wettervorhersage für morgen  \nes wird kalt\nregen\n",
                                    encoding="utf-8")
    (tmp_path / "r.txt").write_text("und nun die wettervorhersage für morgen freitag\nes wird sehr kalt\n"
                                    "regen und schnee\n", encoding="utf-8")
    ours = score_files(tmp_path / "h.txt", tmp_path / "r.txt", lang="de")
    cli = sacrebleu_cli(tmp_path / "r.txt", tmp_path / "h.txt", "13a")
    assert ours["bleu4"] == pytest.approx(cli["score"], abs=1e-8)
    assert ours["bleu1"] == pytest.approx(cli_bleu1(cli), abs=0.051)


def test_chinese_bleu_matches_cli_and_punctuation_fix(tmp_path):
    refs = ["我今天很高兴，你呢？", "明天下雨吗？", "他（老师）说：好！"]
    hyps = ["我今天很高兴,你呢?", "明天下雪吗?", "他(老师)说:好!"]  # what NFKC-normalised mBART output looks like
    (tmp_path / "h.txt").write_text("\n".join(hyps) + "\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text("\n".join(refs) + "\n", encoding="utf-8")
    ours = score_files(tmp_path / "h.txt", tmp_path / "r.txt", lang="zh")
    cli = sacrebleu_cli(tmp_path / "r.txt", tmp_path / "h.txt", "zh")
    assert ours["bleu4"] == pytest.approx(cli["score"], abs=1e-8)
    # the fix: only the half-width marks differ, so fixed scores are those of the full-width hypotheses
    assert fix_zh_punctuation(hyps[2]) == refs[2]
    fixed_h = [fix_zh_punctuation(h) for h in hyps]
    direct = translation_metrics(fixed_h, refs, lang="zh")
    assert ours["bleu4_punct_fixed"] == pytest.approx(direct["bleu4"])
    assert ours["bleu1_punct_fixed"] == pytest.approx(direct["bleu1"])
    assert ours["rouge_l_punct_fixed"] == pytest.approx(direct["rouge_l"])
    assert ours["bleu4_punct_fixed"] > ours["bleu4"] and ours["rouge_l_punct_fixed"] > ours["rouge_l"]
    # sentence 1 and 3 become identical, sentence 2 has one wrong character in 7 -> by character
    f2 = rouge_l_sentence(list("明天下雪吗？"), list("明天下雨吗？"))
    assert f2 == pytest.approx(12.2 / 14.64)  # P = R = 5/6 -> F = 5/6
    assert ours["rouge_l_punct_fixed"] == pytest.approx(100 * (1 + f2 + 1) / 3)
    # non-Chinese languages have no *_punct_fixed keys
    assert "bleu4_punct_fixed" not in translation_metrics(["a b"], ["a b"], lang="de")


def test_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no sentences"):
        rouge_l([], [])
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "one.txt").write_text("a b c\n", encoding="utf-8")
    (tmp_path / "two.txt").write_text("a b c\nd e\n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("für\n".encode("latin-1"))
    with pytest.raises(ValueError, match="empty.txt: empty file"):
        read_lines(tmp_path / "empty.txt")
    with pytest.raises(ValueError, match="nope.txt: no such file"):
        read_lines(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="latin1.txt: not UTF-8"):
        read_lines(tmp_path / "latin1.txt")
    with pytest.raises(ValueError, match="line count mismatch.*one.txt has 1 lines.*two.txt has 2"):
        score_files(tmp_path / "one.txt", tmp_path / "two.txt")
