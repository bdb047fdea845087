"""``predictions_<split>.csv``: one label and one probability column per rank, whatever the labels hold."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from msmae.tasks.islr import SplitData, write_split_outputs

LABELS = ["thank you", "a:b", 'say "hi"', "x,y", "plain", "six"]


@pytest.mark.parametrize("num_classes", [3, 6])
def test_predictions_csv_has_a_column_pair_per_rank(tmp_path, num_classes):
    classes = LABELS[:num_classes]
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4, num_classes)).astype(np.float32)
    split = SplitData(ids=["c0", "c1", "c2", "c3"], labels=np.array([0, 1, 2, 0]), clips=[])
    write_split_outputs(tmp_path, "test", split, logits, classes)
    with open(tmp_path / "predictions_test.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    ranks = min(5, num_classes)
    assert list(rows[0]) == ["id", "label", "predicted", "correct"] + [
        f"top{r}_{w}" for r in range(1, ranks + 1) for w in ("label", "prob")]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for i, row in enumerate(rows):
        order = np.argsort(-probs[i], kind="stable")[:ranks]
        assert [row[f"top{r + 1}_label"] for r in range(ranks)] == [classes[j] for j in order]
        assert [float(row[f"top{r + 1}_prob"]) for r in range(ranks)] == pytest.approx(probs[i, order], abs=1e-6)
        assert row["predicted"] == row["top1_label"] and row["label"] == classes[split.labels[i]]
        assert row["correct"] == str(int(order[0] == split.labels[i]))
