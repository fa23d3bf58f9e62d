"""agent.metrics computes in numpy what scikit-learn defines (sklearn cost every eval process 2.2 s to import)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

from agent.metrics import auroc, binary_metrics, multiclass_metrics, multilabel_f1, weighted_f1


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 300)
    scores = np.round(rng.random(300) + 0.3 * labels, 1)  # rounded: many ties
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert auroc(np.ones(5), np.arange(5)) is None


@pytest.mark.parametrize("seed", range(5))
def test_binary_and_multilabel_scores_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels, predictions = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    got = binary_metrics(labels, predictions, rng.random(200))
    assert got["f1"] == pytest.approx(f1_score(labels, predictions, zero_division=0))
    assert got["accuracy"] == pytest.approx(accuracy_score(labels, predictions))
    truth, said = rng.integers(0, 2, (100, 6)), rng.integers(0, 2, (100, 6))
    truth[:, 5] = said[:, 5] = 0  # a column with no positives at all scores 0, as zero_division=0 says
    per = f1_score(truth, said, average=None, zero_division=0)
    assert multilabel_f1(truth, said, list("abcdef"))["macro_f1"] == pytest.approx(float(np.mean(per)))


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_scores_equal_sklearn_even_with_labels_outside_the_classes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = np.array(["answer", "clarify", "refuse", "other"])
    truth, said = list(names[rng.integers(0, 4, 150)]), list(names[rng.integers(0, 3, 150)])
    classes = ["answer", "clarify", "refuse"]
    got = multiclass_metrics(truth, said, classes)
    assert got["weighted_f1"] == pytest.approx(f1_score(truth, said, labels=classes, average="weighted", zero_division=0))
    assert got["accuracy"] == pytest.approx(accuracy_score(truth, said))
    assert got["confusion"] == confusion_matrix(truth, said, labels=classes).tolist()
    assert weighted_f1(truth, said) == pytest.approx(f1_score(truth, said, average="weighted", zero_division=0))
