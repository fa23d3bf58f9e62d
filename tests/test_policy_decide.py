"""Unit tests of agent.policy.decide: pure judgement on hand-made inputs, no encoder, store or graph."""

from __future__ import annotations

from agent.constraints import ConstraintMatch, ConstraintReport
from agent.judge import Verdict
from agent.norms import NormJudgement
from agent.policy import PolicyInputs, PolicyThresholds, ResponseStyle, decide
from agent.vocabulary import ConstraintAction, Decision

THRESHOLDS = PolicyThresholds(question_value=0.15, disagreement=0.3)
ANSWER_VERDICT = Verdict(p_harmful=0.05, p_clarify=0.1, p_conflict=0.9, decision="answer", expected_costs={})


def _borderline() -> ConstraintReport:
    match = ConstraintMatch(
        id="covert-tracking",
        tier=1,
        action=ConstraintAction.REQUIRE_CLARIFICATION,
        score=0.5,
        explanation="Covertly monitoring another person.",
        safe_alternative="Talk to them first.",
        tentative=True,
    )
    return ConstraintReport(checked=(), matches=(match,), threshold=0.6, tier_count=3)


def _inputs(
    report: ConstraintReport, *, questions_asked: int, budget: int = 2, concerns_asked: tuple[str, ...] = ()
) -> PolicyInputs:
    return PolicyInputs(
        constraints=report,
        conflict_score=0.9,
        conflict_detected=True,  # privacy against safety: the judge sees a value conflict
        verdict=ANSWER_VERDICT,
        norms=NormJudgement(applicable=[], excluded=[], response={"help": 0.7, "caveat": 0.3}),
        relevant_norms=[],
        known_context={"risk": "concrete"},
        asked_about=["risk"] if questions_asked else [],
        questions_asked=questions_asked,
        budget=budget,
        answer_now=False,
        personal=True,
        concerns_asked=concerns_asked,
    )


def test_an_answer_that_settles_the_concern_gets_safeguarded_help_even_when_values_conflict() -> None:
    outcome = decide(_inputs(_borderline(), questions_asked=1), THRESHOLDS)
    assert outcome.decision == Decision.ANSWER
    assert outcome.style == ResponseStyle.CAVEATED, outcome.reason
    assert "settles the concern" in outcome.reason


def test_the_concern_a_question_was_asked_for_is_settled_even_when_the_answer_leaves_no_match() -> None:
    # Request and answer read together may fall below the match threshold; the question was still
    # asked for that constraint, and the answer addresses it.
    empty = ConstraintReport(checked=(), matches=(), threshold=0.6, tier_count=3)
    outcome = decide(_inputs(empty, questions_asked=1, concerns_asked=("covert-tracking",)), THRESHOLDS)
    assert outcome.decision == Decision.ANSWER
    assert outcome.style == ResponseStyle.CAVEATED, outcome.reason


def test_a_borderline_match_that_cannot_be_asked_about_gets_safeguards_not_a_survey_of_views() -> None:
    outcome = decide(_inputs(_borderline(), questions_asked=0, budget=0), THRESHOLDS)
    assert outcome.decision == Decision.ANSWER
    assert outcome.style == ResponseStyle.CAVEATED
    assert "covert-tracking" in outcome.reason


def test_a_conflict_with_no_constraint_in_play_is_still_answered_pluralistically() -> None:
    empty = ConstraintReport(checked=(), matches=(), threshold=0.6, tier_count=3)
    outcome = decide(_inputs(empty, questions_asked=0), THRESHOLDS)
    assert outcome.decision == Decision.ANSWER
    assert outcome.style == ResponseStyle.PLURALISTIC


def test_a_borderline_match_with_questions_left_asks_first() -> None:
    outcome = decide(_inputs(_borderline(), questions_asked=0), THRESHOLDS)
    assert outcome.decision == Decision.CLARIFY


def test_after_asking_what_was_meant_the_answer_says_so_rather_than_that_nothing_was_ambiguous() -> None:
    vague = Verdict(p_harmful=0.0, p_clarify=0.9, p_conflict=0.0, decision="clarify", expected_costs={})
    empty = ConstraintReport(checked=(), matches=(), threshold=0.6, tier_count=3)
    inputs = PolicyInputs(
        constraints=empty,
        conflict_score=0.0,
        conflict_detected=False,
        verdict=vague,
        norms=NormJudgement(applicable=[], excluded=[], response={"help": 1.0}),
        relevant_norms=[],
        known_context={},
        asked_about=["intent"],
        questions_asked=1,
        budget=2,
        answer_now=False,
        personal=False,
    )
    outcome = decide(inputs, THRESHOLDS)
    assert outcome.decision == Decision.ANSWER and outcome.style == ResponseStyle.DIRECT
    assert "what you told me" in outcome.reason and "Nothing here" not in outcome.reason
