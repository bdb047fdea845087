"""Evaluation metrics (translation: BLEU, ROUGE-L, the Chinese punctuation fix)."""
from msmae.metrics.translation import (bleu, fix_zh_punctuation, lcs_length, read_lines, rouge_l,
                                       rouge_l_sentence, score_files, translation_metrics)

__all__ = ["bleu", "fix_zh_punctuation", "lcs_length", "read_lines", "rouge_l", "rouge_l_sentence",
           "score_files", "translation_metrics"]
