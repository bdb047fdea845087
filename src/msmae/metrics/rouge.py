"""ROUGE-L, two ways: as the paper computed it (``rouge_l``) and as COCO computes it (``rouge_l_coco``).

The paper (section 4.3, footnote 3) takes ROUGE-L from TwoStreamSLT's code, whose ``rouge()`` is
tf-seq2seq's sentence-level ROUGE-L, *not* the COCO caption scorer. Both start from the longest
common subsequence (LCS) of the token lists of one hypothesis and its reference:
``R = LCS / len(ref)``, ``P = LCS / len(hyp)``, and both report the mean sentence F x 100.

- ``rouge_l`` (the paper's): ``beta = P / (R + 1e-12)`` and
  ``F = (1 + beta^2) R P / (R + beta^2 P + 1e-12)``. Tokens are the words of ``str.split()``, or for
  Chinese the characters of ``list(text)``. Worked example: hypothesis ``a b c d``, reference
  ``a b x``: LCS 2, R 2/3, P 1/2, beta 0.75, F = 0.5494 -> 54.94.
- ``rouge_l_coco``: the COCO caption evaluation's ``F = (1 + b^2) P R / (R + b^2 P)`` with a fixed
  b = 1.2 (0 when P or R is 0); tokens are COCO's ``text.split(" ")`` (a doubled, leading or trailing
  space gives an empty token), or for Chinese the characters without whitespace. The same example
  gives 58.65. Some SLT papers print this figure; it is kept for comparison with them.

Edge cases of the paper's definition, kept as its code has them (it joins the tokens with single
spaces and splits the result again on ``" "``):
- an empty sentence is one empty token, never zero tokens, so ``len(hyp)`` and ``len(ref)`` are
  never 0 and no division by zero can happen: an empty hypothesis scores 0 against any non-empty
  reference (LCS 0 -> R = 0 -> beta = 0 -> F = 0 / 1e-12 = 0), and two empty sentences score 1
  (to within 1e-12);
- when LCS is 0 the two ``1e-12`` terms make beta and F exactly 0 instead of 0/0;
- in character mode a space character (U+0020) becomes two empty tokens (they can only match other
  spaces); other characters, including other whitespace, are one token each.
"""

from __future__ import annotations

from typing import Sequence

COCO_BETA = 1.2  # COCO caption evaluation's recall weight
_EPS = 1e-12     # the paper's code adds this to the two denominators of its F


def is_chinese(lang: str) -> bool:
    """True for ``zh``, ``zh_CN``, ``zh-tw``, ``chinese``...: the languages scored by character."""
    code = lang.strip().lower().replace("-", "_").split("_")[0]
    return code in ("zh", "chinese", "cmn")


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence of two token sequences (O(len(a) len(b)))."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


# ------------------------------------------------------------------------- the paper's ROUGE-L
def rouge_tokens(text: str, *, lang: str = "en") -> list[str]:
    """Tokens of the paper's ROUGE-L: ``str.split()`` words, or for Chinese one token per character
    with a space as two empty tokens; an empty text is ``[""]`` (see the module docstring)."""
    if is_chinese(lang):
        tokens: list[str] = []
        for c in text:
            tokens.extend(("", "") if c == " " else (c,))
    else:
        tokens = text.split()
    return tokens or [""]


def rouge_l_sentence(hyp_tokens: Sequence[str], ref_tokens: Sequence[str]) -> float:
    """The paper's ROUGE-L F (0-1) of one hypothesis against one reference (beta = P / R).

    An empty token list is scored as the paper's code scores an empty sentence: as ``[""]``."""
    hyp = list(hyp_tokens) or [""]
    ref = list(ref_tokens) or [""]
    lcs = lcs_length(hyp, ref)
    r, p = lcs / len(ref), lcs / len(hyp)
    beta = p / (r + _EPS)
    return (1 + beta**2) * r * p / (r + beta**2 * p + _EPS)


def rouge_l(hypotheses: Sequence[str], references: Sequence[str], *, lang: str = "en") -> float:
    """The paper's ROUGE-L (0-100): mean sentence F over line-parallel hypotheses and references."""
    check_pairs(hypotheses, references)
    total = sum(rouge_l_sentence(rouge_tokens(h, lang=lang), rouge_tokens(r, lang=lang))
                for h, r in zip(hypotheses, references))
    return 100.0 * total / len(hypotheses)


# ------------------------------------------------------------------------- COCO's ROUGE-L
def coco_rouge_tokens(text: str, *, lang: str = "en") -> list[str]:
    """COCO ROUGE tokens: characters without whitespace for Chinese; otherwise ``text.split(" ")``,
    which keeps an empty token for every doubled, leading or trailing space (as COCO's scores do)."""
    if is_chinese(lang):
        return [c for c in text if not c.isspace()]
    return text.split(" ")


def rouge_l_coco_sentence(hyp_tokens: Sequence[str], ref_tokens: Sequence[str], *,
                          beta: float = COCO_BETA) -> float:
    """COCO's ROUGE-L F (0-1) of one hypothesis against one reference (fixed beta, default 1.2).

    Two empty sentences count as a perfect match (COCO's split on ``" "`` gives ``['']`` for both)."""
    if not hyp_tokens and not ref_tokens:
        return 1.0
    if not hyp_tokens or not ref_tokens:
        return 0.0
    lcs = lcs_length(hyp_tokens, ref_tokens)
    p, r = lcs / len(hyp_tokens), lcs / len(ref_tokens)
    if p == 0 or r == 0:
        return 0.0
    return (1 + beta**2) * p * r / (r + beta**2 * p)


def rouge_l_coco(hypotheses: Sequence[str], references: Sequence[str], *, lang: str = "en",
                 beta: float = COCO_BETA) -> float:
    """COCO's ROUGE-L (0-100): mean sentence F over line-parallel hypotheses and references."""
    check_pairs(hypotheses, references)
    total = sum(rouge_l_coco_sentence(coco_rouge_tokens(h, lang=lang), coco_rouge_tokens(r, lang=lang),
                                      beta=beta)
                for h, r in zip(hypotheses, references))
    return 100.0 * total / len(hypotheses)


def check_pairs(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    """ValueError unless there are as many hypotheses as references, and at least one."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references: "
                         "they must be line-parallel, one sentence per line")
    if not hypotheses:
        raise ValueError("no sentences to score")
