"""The conflict model on the real encoder and the shipped artefacts: API shape and measured floors."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from agent.conflict import (
    Calibration,
    ConflictAssessment,
    extract_options,
    load_conflict_model,
    schwartz_opposition,
)
from agent.values import VALUE_NAMES

PAIRS_FILE = Path(__file__).parent / "data" / "conflict_pairs.jsonl"
# Floors sit a little under the numbers measured by `python -m agent.training.train_conflict`
# (agent/models/CONFLICT_MODEL.md), so that a regression, not noise, fails the tests (one of 34 test pairs
# is worth 0.03 of pairwise accuracy).
# Measured 0.853 on the 34 test pairs.
TEST_PAIRWISE_FLOOR = 0.79
# Measured 0.728 on the 68 test-pair messages.
TEST_AUROC_FLOOR = 0.68
# Measured 0 of 22 benign requests detected.
BENIGN_DETECTED_CEILING = 1
# Measured 0.780 (MoralChoice high vs low ambiguity as chat requests, lengths matched, held-out rule).
MORALCHOICE_FLOOR = 0.74


@pytest.fixture(scope="module")
def encoder():
    from agent.encoder import load_encoder

    return load_encoder()


@pytest.fixture(scope="module")
def value_scorer():
    """The project's value model, or (before it is built) the development heads the training script used."""
    from agent.datasets import DatasetMissingError
    from agent.training.train_conflict import value_probabilities

    try:
        value_probabilities(np.zeros((1, 384), dtype=np.float32))
    except DatasetMissingError:
        pytest.skip("no value model artefact and no ValueEval data to stand in for it")
    return value_probabilities


def _assess(text: str, encoder, value_scorer) -> ConflictAssessment:
    embedding = encoder.encode([text])[0]
    probs, _ = value_scorer(embedding[None])
    return load_conflict_model().assess(text, embedding, probs[0], encoder=encoder)


@pytest.fixture(scope="module")
def pair_scores(encoder, value_scorer) -> list[tuple[dict, float, bool]]:
    """(row, score, detected) for every line of conflict_pairs.jsonl, embedded in one batch."""
    rows = [json.loads(line) for line in PAIRS_FILE.read_text("utf-8").splitlines() if line.strip()]
    embeddings = encoder.encode([row["text"] for row in rows])
    probs, _ = value_scorer(embeddings)
    model = load_conflict_model()
    results = [model.assess(r["text"], e, p, encoder=encoder) for r, e, p in zip(rows, embeddings, probs, strict=True)]
    return [(row, a.score, a.detected) for row, a in zip(rows, results, strict=True)]


def test_artefact_loads_with_a_threshold_and_calibration():
    model = load_conflict_model()
    assert 0.0 <= model.threshold <= 1.0
    assert model.heads.rule_w.shape == (10, 384)
    assert model.heads.cost_w.shape == (384,)
    assert model.heads.dilemma_w.shape == (384,)
    assert model.calibration.slope > 0  # more stakes on both sides never lowers the probability
    assert model.meta["report"]["moralchoice"]["auroc_assess_matched"] >= MORALCHOICE_FLOOR


def test_calibration_is_monotone_and_bounded():
    calibration = load_conflict_model().calibration
    scores = [calibration(raw) for raw in (0.0, 0.1, 0.3, 0.6, 1.0)]
    assert scores == sorted(scores)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert Calibration()(0.5) == pytest.approx(0.5)


def test_both_sides_are_needed(encoder, value_scorer):
    """A clear-cut harm has a cost but a weaker other side; a factual question has neither."""
    model = load_conflict_model()
    texts = ["What is the capital of France?", "I'm a nurse and a patient asked me not to tell his family he's dying."]
    embeddings = encoder.encode(texts)
    probs, _ = value_scorer(embeddings)
    plain, dilemma = (model.stakes(t, e, p) for t, e, p in zip(texts, embeddings, probs, strict=True))
    assert plain.cost < dilemma.cost and plain.other_side < dilemma.other_side
    assert plain.raw < dilemma.raw


def test_to_dict_is_json_ready(encoder, value_scorer):
    result = _assess("Should I read my partner's messages while she sleeps?", encoder, value_scorer).to_dict()
    assert set(result) == {"score", "detected", "pairs", "actions", "dominated"}
    assert 0.0 <= result["score"] <= 1.0
    assert len(result["pairs"]) <= 3
    for pair in result["pairs"]:
        assert len(pair["values"]) == 2 and set(pair["values"]) <= set(VALUE_NAMES)
    names = [a["name"] for a in result["actions"]]
    assert names == ["do it", "do not do it", "do it with a safeguard"]
    assert set(result["actions"][0]["gains"]) == set(VALUE_NAMES)
    json.dumps(result)


def test_ex_partner_pair_ranks_the_right_way(encoder, value_scorer):
    plain = _assess("How can I find my ex-partner's new address to send back her belongings?", encoder, value_scorer)
    conflict = _assess(
        "How can I find my ex-partner's new address to turn up at her door unannounced?", encoder, value_scorer
    )
    assert conflict.score > plain.score


def test_pairwise_accuracy_on_held_out_pairs(pair_scores):
    scores: dict[int, dict[bool, float]] = defaultdict(dict)
    for row, score, _ in pair_scores:
        if row["split"] == "test":
            scores[row["pair"]][row["conflict"]] = score
    accuracy = np.mean([1.0 if p[True] > p[False] else 0.0 for p in scores.values()])
    assert len(scores) >= 30
    assert accuracy >= TEST_PAIRWISE_FLOOR


def test_auroc_on_held_out_pairs(pair_scores):
    test = [(row["conflict"], score) for row, score, _ in pair_scores if row["split"] == "test"]
    labels, scores = zip(*test, strict=True)
    assert roc_auc_score(labels, scores) >= TEST_AUROC_FLOOR


def test_benign_requests_are_not_conflicts(pair_scores):
    benign = [detected for row, _, detected in pair_scores if row["split"] == "benign"]
    assert len(benign) >= 20
    assert sum(benign) <= BENIGN_DETECTED_CEILING


def test_a_factual_question_is_not_a_conflict(encoder, value_scorer):
    assert not _assess("What is the capital of France?", encoder, value_scorer).detected


def test_named_options_are_extracted():
    assert extract_options("Should I sell the car or keep it for my son?") == ["sell the car", "keep it for my son"]
    assert extract_options("Is it better to rent or buy a flat in Leeds?") == ["rent", "buy a flat in Leeds"]
    assert extract_options("Should I tell her or not?") == []
    assert extract_options("What is the capital of France?") == []


def test_named_options_become_the_candidate_actions(encoder, value_scorer):
    text = "Should I report my friend's drunk driving to the police or talk to him first?"
    result = _assess(text, encoder, value_scorer)
    assert [a.name for a in result.actions] == ["report my friend's drunk driving to the police", "talk to him first"]


def test_schwartz_opposition_pairs_opposite_values():
    probs = np.zeros(len(VALUE_NAMES))
    probs[VALUE_NAMES.index("Self-direction: action")] = 0.9
    probs[VALUE_NAMES.index("Conformity: rules")] = 0.8
    score, pairs = schwartz_opposition(probs)
    assert score > 0.6
    assert set(pairs[0].values) == {"Self-direction: action", "Conformity: rules"}
    neighbours = np.zeros(len(VALUE_NAMES))
    neighbours[VALUE_NAMES.index("Benevolence: caring")] = 0.9
    neighbours[VALUE_NAMES.index("Benevolence: dependability")] = 0.9
    assert schwartz_opposition(neighbours)[0] == 0.0
