"""The judge's decision rule, its heads' plumbing and the one policy file (no encoder, store or graph)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.judge import (
    DECISION_COSTS,
    TASKS,
    ClauseRule,
    Judge,
    JudgeHeads,
    JudgeModelMissingError,
    decide_from_probabilities,
    decision_thresholds,
    expected_costs,
    verdict_from_dict,
)
from agent.policy_config import POLICY_FILE, PolicyConfigError, read_policy_config, shipped_policy, update_policy_file


def test_the_least_cost_response_follows_the_stated_costs() -> None:
    assert decide_from_probabilities(0.02, 0.05) == "answer"
    assert decide_from_probabilities(0.95, 0.05) == "refuse"
    assert decide_from_probabilities(0.02, 0.9) == "clarify"
    # A harmful request stays refused however ambiguous it is.
    assert decide_from_probabilities(0.9, 0.99) == "refuse"


def test_expected_costs_weigh_each_state_by_its_probability() -> None:
    costs = expected_costs(0.5, 0.0)
    assert costs["answer"] == pytest.approx(0.5 * DECISION_COSTS["refuse"]["answer"])
    assert costs["refuse"] == pytest.approx(0.5 * DECISION_COSTS["answer"]["refuse"])


def test_the_cut_points_written_down_are_where_the_rule_changes() -> None:
    cuts = decision_thresholds()
    t = cuts["refuse_from_p_harmful_when_clear"]
    assert decide_from_probabilities(t - 0.01, 0.0) != "refuse"
    assert decide_from_probabilities(t + 0.01, 0.0) == "refuse"
    c = cuts["clarify_from_p_clarify_when_harmless"]
    assert decide_from_probabilities(0.0, c - 0.01) == "answer"
    assert decide_from_probabilities(0.0, c + 0.01) == "clarify"


def test_the_shipped_policy_file_holds_the_costs_the_rule_uses() -> None:
    policy = shipped_policy()
    assert policy.judge.costs == {k: dict(v) for k, v in DECISION_COSTS.items()}
    for setting in (policy.question_value, policy.disagreement, policy.relevance_floor):
        assert setting.written_by and setting.rule


def _heads(harm_direction: np.ndarray) -> JudgeHeads:
    zeros = np.zeros(384, dtype=np.float32)
    return JudgeHeads(
        encoder="test",
        coef={"harmful": harm_direction.astype(np.float32), "clarify": zeros, "conflict": zeros},
        bias={"harmful": -2.0, "clarify": -2.0, "conflict": -2.0},
        platt={t: (1.0, 0.0) for t in TASKS},
    )


def test_a_clause_raises_the_harm_of_a_wrapped_message() -> None:
    direction = np.zeros(384, dtype=np.float32)
    direction[0] = 8.0
    judge = Judge(_heads(direction))
    message = np.zeros(384, dtype=np.float32)
    message[1] = 1.0  # the wrapper: nothing harmful in the whole message's direction
    clause = np.zeros(384, dtype=np.float32)
    clause[0] = 1.0  # the ask inside it
    alone = judge.verdict(message)
    wrapped = judge.verdict(message, np.stack([message, clause]))
    assert alone.decision == "answer" and alone.harmful_from == "message"
    assert wrapped.decision == "refuse" and wrapped.harmful_from == "clause"
    assert wrapped.p_harmful > 0.99


def test_a_clause_rule_weighs_a_lone_harmful_sounding_clause_against_the_message() -> None:
    # A rule that trusts the message twice as much as its worst clause: one harmful-sounding sentence in a
    # long harmless request no longer refuses all of it; a wrapper around a harmful ask still does.
    rule = ClauseRule(message=2.0, clause=1.0, intercept=0.0)
    assert rule.combine(0.02, []) == 0.02
    harmless_with_one_sentence = rule.combine(0.01, [0.02, 0.9, 0.03])
    wrapped_ask = rule.combine(0.3, [0.05, 0.999])
    assert harmless_with_one_sentence < decision_thresholds()["refuse_from_p_harmful_when_clear"]
    assert wrapped_ask > 0.9
    # Never below what the message alone reads; a lone clause (the request without its address) in full.
    assert rule.combine(0.6, [0.001, 0.002]) == 0.6
    assert rule.combine(0.01, [0.65]) == 0.65
    assert ClauseRule.features(0.5, [0.5, 0.1]) == pytest.approx((0.0, 0.0))


def test_a_judge_with_a_clause_rule_uses_it_and_names_the_clause_when_it_raised_the_harm() -> None:
    direction = np.zeros(384, dtype=np.float32)
    direction[0] = 8.0
    message = np.zeros(384, dtype=np.float32)
    message[1] = 1.0
    clause = np.zeros(384, dtype=np.float32)
    clause[0] = 1.0
    clauses = np.stack([message, clause])
    sceptical = Judge(_heads(direction), clause_rule=ClauseRule(2.0, 0.5, -3.0))
    verdict = sceptical.verdict(message, clauses)
    assert verdict.harmful_from == "message" and verdict.decision == "answer"
    assert verdict.clause_scores[1] > 0.99
    trusting = Judge(_heads(direction), clause_rule=ClauseRule(1.0, 1.0, 0.0))
    assert trusting.verdict(message, clauses).harmful_from == "clause"


def test_a_verdict_survives_the_checkpoint_round_trip() -> None:
    judge = Judge(_heads(np.zeros(384, dtype=np.float32)))
    verdict = judge.verdict(np.zeros(384, dtype=np.float32))
    data = json.loads(json.dumps(verdict.to_dict()))
    again = verdict_from_dict(data)
    assert again.decision == verdict.decision and again.question_for == verdict.question_for


def test_heads_save_and_load(tmp_path: Path) -> None:
    heads = _heads(np.arange(384, dtype=np.float32) / 384)
    heads.save(tmp_path / "h.npz")
    loaded = JudgeHeads.load(tmp_path / "h.npz")
    rows = np.eye(384, dtype=np.float32)[:3]
    for task in TASKS:
        assert np.allclose(heads.probabilities(rows)[task], loaded.probabilities(rows)[task])
    with pytest.raises(JudgeModelMissingError, match="train_judge"):
        JudgeHeads.load(tmp_path / "missing.npz")


def test_a_malformed_policy_file_names_the_field(tmp_path: Path) -> None:
    good = json.loads(POLICY_FILE.read_text())
    bad = tmp_path / "policy.json"
    bad.write_text(json.dumps({**good, "question_value": {**good["question_value"], "value": 3}}))
    with pytest.raises(PolicyConfigError, match=r"question_value\.value"):
        read_policy_config(bad)
    costs = json.loads(json.dumps(good))
    costs["judge"]["costs"]["answer"]["answer"] = 2.0
    bad.write_text(json.dumps(costs))
    with pytest.raises(PolicyConfigError, match="right action costs 0"):
        read_policy_config(bad)
    bad.write_text("{not json")
    with pytest.raises(PolicyConfigError, match="not valid JSON"):
        read_policy_config(bad)


def test_updating_one_entry_keeps_the_others(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text(POLICY_FILE.read_text())
    setting = {"value": 0.25, "written_by": "test", "chosen_on": "nothing", "rule": "by hand"}
    config = update_policy_file({"question_value": setting}, path)
    assert config.question_value.value == 0.25
    assert read_policy_config(path).disagreement == shipped_policy().disagreement
