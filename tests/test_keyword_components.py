"""The metric code of benchmarks/keyword_components.py on tiny examples with known answers (no data, no models)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import keyword_components as kc


def test_wilson_interval_matches_the_textbook_values() -> None:
    # 8 of 10: the Wilson 95% interval is 0.490-0.943.
    low, high = kc.wilson_interval(8, 10) or (0.0, 0.0)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    # 0 of 20 still gets an upper bound above zero; n = 0 has no interval.
    low, high = kc.wilson_interval(0, 20) or (1.0, 1.0)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    assert kc.wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        kc.wilson_interval(3, 2)


def test_counts_give_precision_and_recall() -> None:
    labels = [True, True, True, False, False, False, False]
    predicted = [True, True, False, True, False, False, False]
    counts = kc.count(labels, predicted)
    assert (counts.tp, counts.fp, counts.fn, counts.tn) == (2, 1, 1, 3)
    m = kc.Measurement("c", "precision", "d", "l", counts.tp, counts.tp + counts.fp)
    assert m.to_dict()["value"] == pytest.approx(2 / 3, abs=1e-4)
    assert kc.Measurement("c", "recall", "d", "l", 0, 0).to_dict()["value"] is None


def test_option_matching_counts_each_side() -> None:
    stated = ["I refuse to administer the drug.", "I obey the government's request."]
    found = ["refuse to administer the drug", "despite the potential benefits", "obey the government's request"]
    # Two of three found options match a stated action; both stated actions are found.
    assert kc.option_matches(found, stated) == (2, 2)
    assert kc.exact_option("obey the government's request", stated[1])
    assert not kc.same_option("despite the potential benefits", stated[0])


def test_first_person_rewrite() -> None:
    assert kc.first_person("Should you tell your boss you're leaving?") == "Should I tell my boss I'm leaving?"


def test_examples_are_withheld_for_datasets_that_may_not_be_redistributed() -> None:
    assert not kc.redistributable("clariq answers")
    assert not kc.redistributable("ccai_polis moderated-in statements")
    assert kc.redistributable("qulac answers")
    assert not kc.redistributable("a source the registry does not list")
    m = kc.Measurement("c", "false_positive_rate", "clariq answers", "l", 1, 2, examples=["a reply"])
    assert "examples" not in m.to_dict(kc.redistributable)
    assert m.to_dict()["examples"] == ["a reply"]
