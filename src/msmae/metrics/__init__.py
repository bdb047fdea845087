"""Evaluation metrics (translation: BLEU, ROUGE-L as the paper and as COCO compute it, the Chinese
punctuation fix)."""
from msmae.metrics.rouge import lcs_length, rouge_l, rouge_l_coco, rouge_l_coco_sentence, rouge_l_sentence
from msmae.metrics.translation import bleu, fix_zh_punctuation, read_lines, score_files, translation_metrics

__all__ = ["bleu", "fix_zh_punctuation", "lcs_length", "read_lines", "rouge_l", "rouge_l_coco",
           "rouge_l_coco_sentence", "rouge_l_sentence", "score_files", "translation_metrics"]
