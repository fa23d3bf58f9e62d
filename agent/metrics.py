"""Metrics for labelled evaluation, in one place so every report computes them the same way."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
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


def auroc_or_nan(labels: ArrayLike, scores: ArrayLike) -> float:
    """auroc() as a float in every case (NaN where it is undefined), for tables and formatted log lines."""
    value = auroc(labels, scores)
    return float("nan") if value is None else value


def pairwise_accuracy(pair_ids: Sequence[Hashable | None], labels: Sequence[bool], scores: ArrayLike) -> float:
    """Share of minimal pairs whose positive member scores above its negative one (a tie counts half).

    Rows whose pair id is None belong to no pair and are skipped.
    """
    by_pair: dict[Hashable, dict[bool, float]] = defaultdict(dict)
    for pair, label, score in zip(pair_ids, labels, np.asarray(scores), strict=True):
        if pair is not None:
            by_pair[pair][bool(label)] = float(score)
    wins = [1.0 if p[True] > p[False] else 0.5 if p[True] == p[False] else 0.0 for p in by_pair.values()]
    return float(np.mean(wins))


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score cut that maximises balanced accuracy (Youden's J = TPR - FPR); the first of equal cuts."""
    best_j, best_t = -1.0, float(np.median(scores))
    for t in np.unique(scores):
        predicted = scores >= t
        tpr = predicted[labels == 1].mean()
        fpr = predicted[labels == 0].mean()
        if tpr - fpr > best_j:
            best_j, best_t = float(tpr - fpr), float(t)
    return best_t


@dataclass(frozen=True)
class DetectionScores:
    """Precision, recall and F1 of one detection task with the counts they come from."""

    precision: float
    recall: float
    f1: float
    true_positives: int
    false_positives: int
    false_negatives: int


def detection_scores(
    true_positives: int, false_positives: int, false_negatives: int, digits: int | None = None
) -> DetectionScores:
    """Scores from counts, 0 where a ratio has no denominator; ``digits`` rounds the three ratios."""
    tp, fp, fn = true_positives, false_positives, false_negatives
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    if digits is not None:
        precision, recall, f1 = round(precision, digits), round(recall, digits), round(f1, digits)
    return DetectionScores(precision, recall, f1, tp, fp, fn)


def binary_metrics(labels: ArrayLike, predictions: ArrayLike, scores: ArrayLike) -> dict[str, Any]:
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


def column_f1(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """F1 of each column of two 0/1 integer arrays (0 where a column has neither gold nor predicted
    positives); in numpy, because threshold searches call it thousands of times."""
    true_pos = (labels & predictions).sum(axis=0).astype(np.float64)
    denominator = labels.sum(axis=0) + predictions.sum(axis=0)
    return np.divide(2 * true_pos, denominator, out=np.zeros(labels.shape[1]), where=denominator > 0)


def macro_f1_at(probabilities: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> float:
    """Mean of the column F1s when each column is cut at its own threshold."""
    return float(column_f1(labels.astype(np.int8), (probabilities >= thresholds).astype(np.int8)).mean())


def best_f1_thresholds(probabilities: np.ndarray, labels: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per column, the grid threshold with the highest F1 on (probabilities, labels); the lowest of equals."""
    gold_all = labels.astype(bool)
    best = np.zeros(probabilities.shape[1], dtype=np.float32)
    for column in range(probabilities.shape[1]):
        predicted = probabilities[:, column][:, None] >= grid[None, :]
        gold = gold_all[:, column][:, None]
        true_pos = (predicted & gold).sum(axis=0)
        denominator = predicted.sum(axis=0) + gold.sum()
        f1 = np.divide(2 * true_pos, denominator, out=np.zeros(len(grid)), where=denominator > 0)
        best[column] = grid[int(np.argmax(f1))]
    return best


def split_half_macro_f1(probabilities: np.ndarray, labels: np.ndarray, grid: np.ndarray, seed: int) -> dict[str, float]:
    """Thresholds tuned on one random half, macro-F1 measured on the other (both ways): an estimate of
    the macro-F1 on data the thresholds never saw."""
    order = np.random.default_rng(seed).permutation(len(labels))
    first, second = order[: len(order) // 2], order[len(order) // 2 :]
    tuned_on_first = best_f1_thresholds(probabilities[first], labels[first], grid)
    tuned_on_second = best_f1_thresholds(probabilities[second], labels[second], grid)
    a_to_b = macro_f1_at(probabilities[second], labels[second], tuned_on_first)
    b_to_a = macro_f1_at(probabilities[first], labels[first], tuned_on_second)
    return {"tune_a_score_b": a_to_b, "tune_b_score_a": b_to_a, "mean": (a_to_b + b_to_a) / 2}


def multiclass_metrics(truth: Sequence[Any], predicted: Sequence[Any], classes: Sequence[Any]) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    return {
        "n": len(truth),
        "accuracy": float(accuracy_score(truth, predicted)),
        "weighted_f1": float(f1_score(truth, predicted, labels=list(classes), average="weighted", zero_division=0)),
        "labels": [str(c) for c in classes],
        "confusion": confusion_matrix(truth, predicted, labels=list(classes)).tolist(),
    }


def _calibration_bins(
    labels: np.ndarray, probabilities: np.ndarray, bins: int
) -> list[tuple[int, np.ndarray, float, float]]:
    """(bin, members, mean probability, observed rate) of each non-empty equal-width bin.

    The means are taken in the arrays' own dtype: float32 model outputs are averaged as float32, which
    is how the figures in the training reports were computed.
    """
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(probabilities, edges[1:-1]), 0, bins - 1)
    rows = []
    for b in range(bins):
        mask = index == b
        if mask.any():
            rows.append((b, mask, float(probabilities[mask].mean()), float(labels[mask].mean())))
    return rows


def expected_calibration_error(labels: ArrayLike, probabilities: ArrayLike, bins: int = 10) -> float:
    """Expected calibration error over equal-width bins of all the values given (flattened)."""
    y = np.asarray(labels).reshape(-1).astype(np.float64)
    p = np.asarray(probabilities).reshape(-1)
    ece = 0.0
    for _, mask, confidence, observed in _calibration_bins(y, p, bins):
        ece += mask.mean() * abs(confidence - observed)
    return float(ece)


def reliability(labels: ArrayLike, probabilities: ArrayLike, bins: int = 10) -> dict[str, Any]:
    """Expected calibration error over equal-width bins, with the bins for a reliability diagram."""
    y = np.asarray(labels, dtype=float)
    p = np.clip(np.asarray(probabilities, dtype=float), 0.0, 1.0)
    rows = []
    ece = 0.0
    for b, mask, confidence, observed in _calibration_bins(y, p, bins):
        ece += mask.mean() * abs(confidence - observed)
        rows.append({"bin": b, "count": int(mask.sum()), "confidence": confidence, "observed": observed})
    return {"ece": float(ece), "bins": rows}
