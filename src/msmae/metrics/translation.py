"""Translation metrics as the paper reports them (section 4.3, DESIGN.md "SLT").

- BLEU-1 and BLEU-4: sacrebleu corpus BLEU with maximum n-gram order 1 and 4 (brevity penalty
  included, default ``exp`` smoothing, case-sensitive), tokenizer ``zh`` for Chinese and ``13a``
  otherwise. The BLEU-4 figure equals ``sacrebleu REF -i HYP -m bleu -tok 13a|zh`` on the same
  files; BLEU-1 is the same computation with n-grams up to 1 (= BP x unigram precision).
- ROUGE-L as the paper's named source (TwoStreamSLT) computes it, ``rouge_l``: per sentence the
  longest common subsequence (LCS) of ``str.split()`` words (characters for Chinese) gives
  R = LCS/len(ref), P = LCS/len(hyp), beta = P/R and F = (1 + beta^2) R P / (R + beta^2 P); the
  mean over sentences x100. COCO's ROUGE-L (fixed beta 1.2) is reported beside it as
  ``rouge_l_coco``. Both, and their edge cases, are in :mod:`msmae.metrics.rouge`.
- The Chinese punctuation fix: mBART-50's sentencepiece model normalises text with NFKC, which
  turns the full-width marks of Chinese references (，？！：；（）) into ASCII ones in decoded
  hypotheses. :func:`fix_zh_punctuation` maps those ASCII marks back to their full-width forms;
  the ``*_punct_fixed`` figures apply it to both sides. The raw figures score the text as given.

Scores are 0-100, as papers print them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

# the ROUGE names are re-exported here, where earlier releases defined them
from msmae.metrics.rouge import (check_pairs, coco_rouge_tokens, is_chinese, lcs_length, rouge_l,  # noqa: F401
                                 rouge_l_coco, rouge_l_coco_sentence, rouge_l_sentence, rouge_tokens)

# ASCII marks that NFKC produces from Chinese full-width punctuation, and their full-width forms.
_ZH_PUNCT = str.maketrans({",": "，", "?": "？", "!": "！", ":": "：", ";": "；", "(": "（", ")": "）"})


def bleu_tokenizer(lang: str) -> str:
    """sacrebleu tokenizer the paper uses for a language: ``zh`` for Chinese, ``13a`` otherwise."""
    return "zh" if is_chinese(lang) else "13a"


def fix_zh_punctuation(text: str) -> str:
    """Map ASCII , ? ! : ; ( ) to the full-width marks Chinese text uses (see module docstring)."""
    return text.translate(_ZH_PUNCT)


def bleu(hypotheses: Sequence[str], references: Sequence[str], *, lang: str = "en") -> dict[str, float]:
    """Corpus BLEU-1 and BLEU-4 (0-100) with the paper's sacrebleu settings.

    Returns {"bleu1", "bleu4"} plus the BLEU-4 details ``bleu_bp`` (brevity penalty),
    ``bleu_hyp_len`` and ``bleu_ref_len`` (token counts after tokenisation).
    """
    from sacrebleu.metrics import BLEU

    check_pairs(hypotheses, references)
    tok = bleu_tokenizer(lang)
    hyps, refs = list(hypotheses), [list(references)]
    b1 = BLEU(tokenize=tok, max_ngram_order=1).corpus_score(hyps, refs)
    b4 = BLEU(tokenize=tok, max_ngram_order=4).corpus_score(hyps, refs)
    return {"bleu1": float(b1.score), "bleu4": float(b4.score), "bleu_bp": float(b4.bp),
            "bleu_hyp_len": int(b4.sys_len), "bleu_ref_len": int(b4.ref_len)}


def translation_metrics(hypotheses: Sequence[str], references: Sequence[str], *,
                        lang: str = "en") -> dict[str, float]:
    """All paper metrics for one corpus: ``bleu1``, ``bleu4``, ``rouge_l`` (the paper's ROUGE-L) and
    ``rouge_l_coco`` (0-100) on the text as given, and for Chinese also ``bleu1_punct_fixed``,
    ``bleu4_punct_fixed``, ``rouge_l_punct_fixed``, ``rouge_l_coco_punct_fixed``.
    Extra keys: ``num_sentences``, ``lang``, ``bleu_tokenizer`` and the BLEU-4 details."""
    out: dict = dict(bleu(hypotheses, references, lang=lang))
    out["rouge_l"] = rouge_l(hypotheses, references, lang=lang)
    out["rouge_l_coco"] = rouge_l_coco(hypotheses, references, lang=lang)
    if is_chinese(lang):
        hyps = [fix_zh_punctuation(h) for h in hypotheses]
        refs = [fix_zh_punctuation(r) for r in references]
        fixed = bleu(hyps, refs, lang=lang)
        out["bleu1_punct_fixed"] = fixed["bleu1"]
        out["bleu4_punct_fixed"] = fixed["bleu4"]
        out["rouge_l_punct_fixed"] = rouge_l(hyps, refs, lang=lang)
        out["rouge_l_coco_punct_fixed"] = rouge_l_coco(hyps, refs, lang=lang)
    out.update(num_sentences=len(hypotheses), lang=lang, bleu_tokenizer=bleu_tokenizer(lang))
    return out


def read_lines(path: str | Path) -> list[str]:
    """One sentence per line, read as the sacrebleu command line reads it (UTF-8, split on ``\\n``
    only, trailing whitespace removed). Raises ValueError naming the file when it is missing,
    not UTF-8 text, or empty."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    try:
        with open(p, encoding="utf-8-sig", newline="\n") as f:  # -sig: a byte-order mark is not text
            lines = [line.rstrip() for line in f]
    except UnicodeDecodeError as e:
        raise ValueError(f"{p}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not lines:
        raise ValueError(f"{p}: empty file (expected one sentence per line)")
    return lines


def score_files(hyp_path: str | Path, ref_path: str | Path, *, lang: str = "en") -> dict[str, float]:
    """:func:`translation_metrics` of two line-parallel text files, with clear errors."""
    hyps, refs = read_lines(hyp_path), read_lines(ref_path)
    if len(hyps) != len(refs):
        raise ValueError(f"line count mismatch: {hyp_path} has {len(hyps)} lines, "
                         f"{ref_path} has {len(refs)}")
    return translation_metrics(hyps, refs, lang=lang)
