"""Metrics for labelled evaluation, in one place so every report computes them the same way.

In numpy, not scikit-learn: importing sklearn.metrics cost every `edge-align eval` process 2.2 s
(benchmarks/startup.py). tests/test_metrics.py checks each against scikit-learn's definition.
"""

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
    # The Mann-Whitney statistic: the chance a positive outscores a negative, ties counted half.
    ranks = _average_ranks(np.asarray(scores, dtype=float))
    positives = y == 1
    n_pos, n_neg = int(positives.sum()), int((~positives).sum())
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks start..end-1 (0-based) -> mean of start+1..end
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def confusion(truth: Sequence[Any], predicted: Sequence[Any], classes: Sequence[Any]) -> np.ndarray:
    """Counts[i, j] of cases labelled classes[i] and predicted classes[j]; labels outside ``classes`` are left out."""
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(truth, predicted, strict=True):
        if t in index and p in index:
            counts[index[t], index[p]] += 1
    return counts


def weighted_f1(truth: Sequence[Any], predicted: Sequence[Any], classes: Sequence[Any] | None = None) -> float:
    """Per-class F1 weighted by each class's gold count (scikit-learn's average="weighted", zero_division=0)."""
    t, p = np.asarray(truth, dtype=object), np.asarray(predicted, dtype=object)
    classes = sorted(set(t.tolist()) | set(p.tolist())) if classes is None else classes
    gold = np.array([(t == c).sum() for c in classes], dtype=float)
    said = np.array([(p == c).sum() for c in classes], dtype=float)
    hits = np.array([((t == c) & (p == c)).sum() for c in classes], dtype=float)
    f1 = np.divide(2 * hits, gold + said, out=np.zeros(len(classes)), where=gold + said > 0)
    return float((f1 * gold).sum() / gold.sum()) if gold.sum() else 0.0


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
    y = np.asarray(labels, dtype=int)
    p = np.asarray(predictions, dtype=int)
    return {
        "n": len(y),
        "auroc": auroc(y, scores),
        "f1": float(column_f1(y.reshape(-1, 1), p.reshape(-1, 1))[0]) if len(y) else 0.0,
        "accuracy": float((y == p).mean()) if len(y) else 0.0,
        "positive_rate": float(y.mean()) if len(y) else None,
    }


def multilabel_f1(truth: np.ndarray, predicted: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """Macro-F1 over the columns (the ValueEval'23 metric) and F1 per column."""
    per = column_f1(np.asarray(truth).astype(np.int64), np.asarray(predicted).astype(np.int64))
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
    return {
        "n": len(truth),
        "accuracy": float(np.mean([t == p for t, p in zip(truth, predicted, strict=True)])) if len(truth) else 0.0,
        "weighted_f1": weighted_f1(truth, predicted, list(classes)),
        "labels": [str(c) for c in classes],
        "confusion": confusion(truth, predicted, list(classes)).tolist(),
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
