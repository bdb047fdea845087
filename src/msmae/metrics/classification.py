"""Classification metrics of isolated sign recognition: top-1/top-5 recall per instance, mean per-class
top-1, confusion matrices and the most confused pairs (and a plot of them)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) counts, rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(labels, np.int64), np.asarray(pred, np.int64)), 1)
    return cm


def most_confused(cm: np.ndarray, classes: Sequence[str], n: int = 10) -> list[dict]:
    """The ``n`` largest off-diagonal cells: [{true, predicted, count, fraction_of_true}], largest first."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="stable")[:n]
    out = []
    for f in flat:
        t, p = divmod(int(f), cm.shape[1])
        if off[t, p] == 0:
            break
        out.append({"true": classes[t], "predicted": classes[p], "count": int(off[t, p]),
                    "fraction_of_true": float(off[t, p] / max(cm[t].sum(), 1))})
    return out


def classification_metrics(logits: np.ndarray, labels: np.ndarray, classes: Sequence[str], *,
                           top_confusions: int = 10) -> dict:
    """Top-1 and top-5 recall per instance, mean per-class top-1 (over the classes present in
    ``labels``), all fractions in [0, 1], plus the most confused pairs.

    logits (N, C) float, labels (N,) int class indices.
    """
    logits, labels = np.asarray(logits), np.asarray(labels, np.int64)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(f"logits must be (N, C) with N = {labels.shape[0]}, got {logits.shape}")
    if len(labels) == 0:
        raise ValueError("no examples to score")
    c = logits.shape[1]
    k = min(5, c)
    top = np.argsort(-logits, axis=1, kind="stable")[:, :k]                     # (N, k)
    pred = top[:, 0]
    hit1 = pred == labels
    hitk = (top == labels[:, None]).any(axis=1)
    present = np.unique(labels)
    per_class = np.array([hit1[labels == cl].mean() for cl in present])
    cm = confusion_matrix(labels, pred, c)
    return {"top1": float(hit1.mean()), "top5": float(hitk.mean()), "per_class_top1": float(per_class.mean()),
            "num_examples": int(len(labels)), "num_classes_scored": int(len(present)),
            "confusions": most_confused(cm, classes, top_confusions)}


def plot_confusion(labels: np.ndarray, pred: np.ndarray, classes: Sequence[str], path: str | Path, *,
                   max_classes: int = 30, title: str = "") -> None:
    """Row-normalised confusion matrix as a PNG; above ``max_classes`` classes, only those most involved
    in confusions are drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from msmae.utils import atomic_path

    cm = confusion_matrix(labels, pred, len(classes))
    keep = np.arange(len(classes))
    if len(classes) > max_classes:
        off = cm - np.diag(np.diag(cm))
        keep = np.sort(np.argsort(-(off.sum(0) + off.sum(1)), kind="stable")[:max_classes])
    sub = cm[np.ix_(keep, keep)].astype(np.float64)
    sub = sub / np.maximum(sub.sum(1, keepdims=True), 1)
    n = len(keep)
    size = min(3 + 0.28 * n, 14)
    fig, ax = plt.subplots(figsize=(size, size), dpi=100)
    im = ax.imshow(sub, cmap="Blues", vmin=0, vmax=1)
    names = [str(classes[i])[:14] for i in keep]
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion (row-normalised)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
