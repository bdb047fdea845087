"""Evaluation metrics: translation (BLEU, ROUGE-L, the Chinese punctuation fix) and classification
(top-k, per-class, confusions)."""
from msmae.metrics.classification import (classification_metrics, confusion_matrix, most_confused,
                                          plot_confusion)
from msmae.metrics.translation import (bleu, fix_zh_punctuation, lcs_length, read_lines, rouge_l,
                                       rouge_l_sentence, score_files, translation_metrics)

__all__ = ["bleu", "classification_metrics", "confusion_matrix", "fix_zh_punctuation", "lcs_length",
           "most_confused", "plot_confusion", "read_lines", "rouge_l", "rouge_l_sentence", "score_files",
           "translation_metrics"]
