"""The shipped value scorers: artefacts, shapes, plausible rankings, measured quality and calibration."""

from __future__ import annotations

import time

import numpy as np
import pytest

from agent import value_model
from agent.datasets import DatasetMissingError
from agent.encoder import EMBEDDING_DIM, load_encoder
from agent.value_model import (
    TRAINED_ARTEFACT,
    ZERO_SHOT_ARTEFACT,
    ValueModelMissingError,
    active_values,
    embed_cached,
    evaluate_on_valueeval,
    load_value_scorer,
    read_valueeval_split,
)
from agent.values import VALUE_NAMES

KINDS = ("trained", "zero-shot")

# Measured with the shipped artefacts on the first 300 validation premises (see agent/models/VALUES_MODEL.md):
# trained 0.411, zero-shot 0.317 (all 1896 rows: 0.460 and 0.358). The floors leave a margin of 0.03.
MACRO_F1_FLOOR = {"trained": 0.38, "zero-shot": 0.29}
# Mean predicted probability minus label rate (0.17) on those rows, measured: trained +0.009, zero-shot +0.001.
CALIBRATION_TOLERANCE = 0.03


@pytest.fixture(scope="module")
def encoder():
    return load_encoder()


@pytest.fixture(scope="module")
def first_validation_rows():
    try:
        return read_valueeval_split("validation")
    except DatasetMissingError as missing:
        pytest.skip(str(missing))


def _random_unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, EMBEDDING_DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_artefacts_are_small_plain_arrays_named_in_order():
    total = 0
    for path in (TRAINED_ARTEFACT, ZERO_SHOT_ARTEFACT):
        with np.load(path, allow_pickle=False) as archive:  # loads without pickle
            assert tuple(str(name) for name in archive["value_names"]) == VALUE_NAMES
            assert archive["thresholds"].shape == (len(VALUE_NAMES),)
        total += path.stat().st_size
    assert total < 3_000_000


@pytest.mark.parametrize("kind", KINDS)
def test_outputs_are_probabilities_of_shape_n_by_20(kind):
    scorer = load_value_scorer(kind)
    assert load_value_scorer(kind) is scorer  # cached
    probs = scorer.predict_proba(_random_unit_rows(7))
    assert probs.shape == (7, len(VALUE_NAMES))
    assert np.all((probs >= 0) & (probs <= 1))
    single = scorer.predict_proba(_random_unit_rows(1)[0])
    assert single.shape == (1, len(VALUE_NAMES))
    assert scorer.thresholds.shape == (len(VALUE_NAMES),)
    assert np.all((scorer.thresholds > 0) & (scorer.thresholds < 1))


def test_wrong_embedding_width_is_rejected():
    with pytest.raises(ValueError, match="384"):
        load_value_scorer("trained").predict_proba(np.zeros((2, 100), dtype=np.float32))


@pytest.mark.parametrize("kind", KINDS)
def test_one_embedding_is_scored_in_under_two_milliseconds(kind):
    scorer = load_value_scorer(kind)
    row = _random_unit_rows(1)[0]
    timings = []
    for _ in range(50):
        started = time.perf_counter()
        scorer.predict_proba(row)
        timings.append(time.perf_counter() - started)
    assert float(np.median(timings)) < 0.002


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("We must protect the rainforest from logging.", "Universalism: nature"),
        (
            "Tradition and faith hold our community together; we should honour the customs of our ancestors.",
            "Tradition",
        ),
        ("Police need more officers so that our cities are safe from crime.", "Security: societal"),
        ("Everyone deserves equal rights and fair treatment, whatever their origin.", "Universalism: concern"),
        ("Looking after your friends and family when they are ill is what matters.", "Benevolence: caring"),
    ],
)
def test_hand_written_texts_rank_plausible_values_on_top(encoder, text, expected):
    embedding = encoder.encode([text])[0]
    probs = load_value_scorer("trained").predict_proba(embedding)[0]
    top3 = [VALUE_NAMES[i] for i in np.argsort(-probs)[:3]]
    assert expected in top3, top3


def test_active_values_are_the_names_at_or_above_threshold_most_probable_first():
    scorer = load_value_scorer("trained")
    probs = np.zeros(len(VALUE_NAMES), dtype=np.float32)  # every threshold is above 0
    probs[17], probs[2] = 1.0, 0.99  # every threshold is below 0.95
    probs[5] = scorer.thresholds[5]  # reaching the threshold counts
    assert active_values(probs, scorer) == [VALUE_NAMES[17], VALUE_NAMES[2], VALUE_NAMES[5]]
    assert active_values(np.zeros(len(VALUE_NAMES)), scorer) == []


def test_missing_trained_artefact_says_to_run_make_train(monkeypatch, tmp_path):
    load_value_scorer.cache_clear()
    monkeypatch.setattr(value_model, "TRAINED_ARTEFACT", tmp_path / "values_trained.npz")
    try:
        with pytest.raises(ValueModelMissingError, match="make train"):
            load_value_scorer("trained")
    finally:
        load_value_scorer.cache_clear()


@pytest.mark.parametrize("kind", KINDS)
def test_macro_f1_on_first_300_validation_rows_is_above_measured_floor(first_validation_rows, encoder, kind):
    result = evaluate_on_valueeval(load_value_scorer(kind), "validation", encoder=encoder, limit=300)
    assert result["n"] == 300
    assert set(result["f1"]) == set(VALUE_NAMES)
    assert result["macro_f1"] > MACRO_F1_FLOOR[kind]


@pytest.mark.parametrize("kind", KINDS)
def test_mean_probability_matches_label_rate_on_validation(first_validation_rows, encoder, kind):
    premises = first_validation_rows.premises[:300]
    labels = first_validation_rows.labels[:300]
    embeddings = embed_cached(premises, encoder, progress=False, label="valueeval-validation")
    probs = load_value_scorer(kind).predict_proba(embeddings)
    assert abs(float(probs.mean()) - float(labels.mean())) < CALIBRATION_TOLERANCE
