"""Metrics for labelled evaluation, in one place so every report computes them the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def auroc(labels: ArrayLike, scores: ArrayLike) -> float | None:
    """Area under the ROC curve; None when only one class is present (it is undefined then)."""
    y = np.asarray(labels, dtype=int)
    if len(set(y.tolist())) < 2:
        return None
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.asarray(scores, dtype=float)))


def binary_metrics(
    labels: ArrayLike, predictions: ArrayLike, scores: ArrayLike
) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score

    y = np.asarray(labels, dtype=int)
    p = np.asarray(predictions, dtype=int)
    return {
        "n": len(y),
        "auroc": auroc(y, scores),
        "f1": float(f1_score(y, p, zero_division=0)),
        "accuracy": float(accuracy_score(y, p)),
        "positive_rate": float(y.mean()) if len(y) else None,
    }


def multilabel_f1(truth: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Macro-F1 over the columns (the ValueEval'23 metric) and F1 per column."""
    from sklearn.metrics import f1_score

    per = f1_score(truth, predicted, average=None, zero_division=0)
    return {
        "n": int(truth.shape[0]),
        "macro_f1": float(np.mean(per)),
        "f1": {name: float(v) for name, v in zip(names, per, strict=True)},
    }


def multiclass_metrics(truth: Sequence[Any], predicted: Sequence[Any], classes: Sequence[Any]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    return {
        "n": len(truth),
        "accuracy": float(accuracy_score(truth, predicted)),
        "weighted_f1": float(f1_score(truth, predicted, labels=list(classes), average="weighted", zero_division=0)),
        "labels": [str(c) for c in classes],
        "confusion": confusion_matrix(truth, predicted, labels=list(classes)).tolist(),
    }


def reliability(labels: ArrayLike, probabilities: ArrayLike, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error over equal-width bins, with the bins for a reliability diagram."""
    y = np.asarray(labels, dtype=float)
    p = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    rows = []
    ece = 0.0
    for b in range(bins):
        mask = index == b
        if not mask.any():
            continue
        confidence, accuracy = float(p[mask].mean()), float(y[mask].mean())
        ece += mask.mean() * abs(confidence - accuracy)
        rows.append({"bin": b, "count": int(mask.sum()), "confidence": confidence, "observed": accuracy})
    return {"ece": float(ece), "bins": rows}
