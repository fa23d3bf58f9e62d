"""The level-head study's feature families, with the real encoder."""

from __future__ import annotations

import numpy as np
import pytest

from agent.encoder import load_encoder
from agent.training.study_level_heads import (
    CONTEXT_FRAMES,
    context_probe_features,
    fold_of,
    rarity_features,
    request_topic,
)

AMBIGUOUS_NAMES = ["Tell me about iron.", "jaguar", "I\u2019m looking for mercury"]
SPECIFIC = "What is the melting point of cast iron used in engine blocks, in degrees Celsius?"
MEAN_BARE_TO_FRAMED, BEST_FRAME_COSINE, FRAMED_PAIRWISE = 0, 3, 5


@pytest.fixture(scope="module")
def probe() -> np.ndarray:
    return context_probe_features([*AMBIGUOUS_NAMES, SPECIFIC], load_encoder())


def test_request_topic_keeps_only_what_was_named() -> None:
    assert request_topic("Tell me about iron.") == "iron"
    assert request_topic("I\u2019m looking for universal animal cuts reviews") == "universal animal cuts reviews"
    assert request_topic("What is von Willebrand Disease?") == "what is von willebrand disease"


def test_rarity_reads_the_topic_not_the_request_boilerplate() -> None:
    assert rarity_features("Tell me about iron") == rarity_features("iron")
    single_common, single_rare = rarity_features("iron")[4:]
    assert (single_common, single_rare) == (1.0, 0.0)


def test_probe_has_one_finite_row_of_six_per_request(probe: np.ndarray) -> None:
    assert probe.shape == (len(AMBIGUOUS_NAMES) + 1, 6)
    assert np.isfinite(probe).all()
    entropy = probe[:, 4]
    assert ((entropy >= 0) & (entropy <= np.log(len(CONTEXT_FRAMES)) + 1e-6)).all()


def test_a_bare_name_moves_more_under_domain_frames_than_a_specific_request(probe: np.ndarray) -> None:
    names, specific = probe[:-1], probe[-1]
    # A name's framed readings drift from the bare name and from each other; the specific request keeps its meaning.
    assert (names[:, MEAN_BARE_TO_FRAMED] < specific[MEAN_BARE_TO_FRAMED]).all()
    assert (names[:, FRAMED_PAIRWISE] < specific[FRAMED_PAIRWISE]).all()
    # A bare name sits close to some domain phrase; a whole question sits close to none.
    assert (names[:, BEST_FRAME_COSINE] > specific[BEST_FRAME_COSINE]).all()


def test_folds_are_balanced_and_repeatable() -> None:
    folds = fold_of(237, seed=300)
    assert np.array_equal(folds, fold_of(237, seed=300))
    assert sorted(np.bincount(folds).tolist()) == [47, 47, 47, 48, 48]
