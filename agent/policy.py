"""Clarify or answer: hard constraints first (lexicographically), then the expected value of a question.

A question is worth asking only when the plausible answers to it would lead to different
responses. That is measured on the norms themselves: for each unknown fact the relevant norms are
conditioned on, we re-judge the norms under each possible value and see how far the response
they point to moves. A conflict that no fact would settle is answered pluralistically instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.constraints import Candidate, ConstraintReport, choose_lexicographic, violations_for
from agent.judge import Verdict
from agent.norms import UNKNOWN, NormEvidence, NormJudgement, contradicts, response_distribution
from agent.values import VALUE_NAMES
from agent.vocabulary import ConstraintAction, Decision, Mode

INTENT = "intent"  # asking what the user means, rather than about their situation
# What to ask when a constraint demands a question and no norm says which fact matters.
REQUIRED_QUESTION_ORDER = ("purpose", "consent")


class ResponseStyle:
    DIRECT = "direct"
    CAVEATED = "caveated"
    PLURALISTIC = "pluralistic"
    STEERED = "steered"
    REFUSAL = "refusal"


@dataclass(frozen=True)
class PolicyThresholds:
    """Where the norm-based signals turn into questions; the values come from agent/data/policy.json
    (the judge's own cut points follow from its costs, in the same file)."""

    question_value: float  # minimal expected change of the response that a question must buy
    disagreement: float


@dataclass(frozen=True)
class PolicyInputs:
    constraints: ConstraintReport
    conflict_score: float
    conflict_detected: bool
    verdict: Verdict  # the judge's reading of this pass: p(harmful), p(clarify), the least-cost response
    norms: NormJudgement
    relevant_norms: Sequence[NormEvidence]
    known_context: Mapping[str, str]
    asked_about: Sequence[str]
    questions_asked: int
    budget: int
    answer_now: bool
    personal: bool
    mode: Mode = Mode.OVERTON
    value_probs: np.ndarray | None = None
    # Constraints that demanded the questions already asked: their concern is what the answers address,
    # even when the request and its answers, read together, no longer come close to them.
    concerns_asked: Sequence[str] = ()


@dataclass
class PolicyOutcome:
    decision: Decision
    reason: str
    style: str
    ask_about: str | None = None
    question_values: dict[str, float] = field(default_factory=dict)
    irreducible: bool = False
    constraint_choice: str = "answer"
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "decision": str(self.decision),
            "reason": self.reason,
            "style": self.style,
            "ask_about": self.ask_about,
            "question_values": {k: round(v, 4) for k, v in self.question_values.items()},
            "irreducible": self.irreducible,
            "constraint_choice": self.constraint_choice,
            "assumptions": self.assumptions,
        }


def _total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def question_values(norms: Sequence[NormEvidence], context: Mapping[str, str]) -> dict[str, float]:
    """For each unknown slot the norms are conditioned on, how much its answer would move the response.

    Every value a norm names for the slot, plus "some other value", is tried in turn; the score is
    the mean total-variation distance between the response distribution under that answer and the
    average over answers. Zero means no answer to the question would change what we do.
    """
    scores: dict[str, float] = {}
    open_slots = {slot for n in norms for slot in n.applies_when if context.get(slot) in (None, UNKNOWN)}
    for slot in sorted(open_slots):
        candidates = [*sorted({v for n in norms for v in n.applies_when.get(slot, ())}), "(other)"]
        outcomes = []
        for value in candidates:
            supposed = {**context, slot: value}
            outcome = response_distribution([n for n in norms if not contradicts(n, supposed)])
            if outcome:
                outcomes.append(outcome)
        if len(outcomes) < 2:
            scores[slot] = 0.0
            continue
        mean = {k: float(np.mean([o.get(k, 0.0) for o in outcomes])) for k in outcomes[0]}
        scores[slot] = float(np.mean([_total_variation(o, mean) for o in outcomes]))
    return scores


def _candidates(report: ConstraintReport, value_probs: np.ndarray | None) -> list[Candidate]:
    gains = value_probs if value_probs is not None else np.zeros(len(VALUE_NAMES))
    # Value gains of each response kind, only used to break ties among candidates that satisfy
    # every tier equally: answering serves the request's values, safeguards most of them,
    # a question defers them, a refusal serves none.
    scale = {"answer": 1.0, "answer_with_safeguards": 0.8, "clarify": 0.5, "refuse": 0.0}
    return [
        Candidate(name=kind, violations=violations_for(report, kind), values=gains * weight)
        for kind, weight in scale.items()
    ]


def _assumptions(norms: Sequence[NormEvidence], context: Mapping[str, str]) -> list[str]:
    open_slots = sorted({s for n in norms for s in n.applies_when if context.get(s) in (None, UNKNOWN)})
    return [f"{slot} not stated" for slot in open_slots[:3]]


def decide(inputs: PolicyInputs, thresholds: PolicyThresholds) -> PolicyOutcome:
    """The decision for this turn, with a one-sentence reason a user can read."""
    report = inputs.constraints
    held: set[str] = set()
    # A constraint that demanded a question asked for context, and now the context is known. A firm
    # match holds when the norms that apply in that context lean to declining rather than helping:
    # the question was asked to find out, not as a toll. Otherwise (and for a borderline match, which
    # may only ever ask) the question has met it; the answer itself was checked too (a confirming
    # answer already refuses), and the reply keeps its safeguards.
    leaning_to_decline = inputs.norms.response.get("decline", 0.0) > inputs.norms.response.get("help", 0.0)
    if inputs.questions_asked and leaning_to_decline:
        held = {m.id for m in report.matches if m.action == ConstraintAction.REQUIRE_CLARIFICATION and not m.tentative}
        report = report.with_action(held, ConstraintAction.REFUSE)
    answered_concern = bool(inputs.questions_asked) and (
        bool(inputs.concerns_asked) or any(m.action == ConstraintAction.REQUIRE_CLARIFICATION for m in report.matches)
    )
    if inputs.questions_asked:
        report = report.without_action(ConstraintAction.REQUIRE_CLARIFICATION)
    choice = choose_lexicographic(_candidates(report, inputs.value_probs)).name
    budget_left = inputs.questions_asked < inputs.budget and not inputs.answer_now
    # A borderline match that demands a question, when none may be asked: the judge has not found the
    # request harmful (it would have refused), so it is answered with the safeguards the match calls
    # for. Only a firm match that demands a question refuses when it cannot ask.
    unaskable_borderline = (
        choice == "clarify"
        and not budget_left
        and all(m.tentative for m in report.matches if m.action == ConstraintAction.REQUIRE_CLARIFICATION)
    )
    near_miss = ""
    if unaskable_borderline:
        near_miss = min((m for m in report.matches if m.tentative), key=lambda m: m.tier).id
        report = report.without_action(ConstraintAction.REQUIRE_CLARIFICATION)
        choice = choose_lexicographic(_candidates(report, inputs.value_probs)).name
    if choice == "refuse" or (choice == "clarify" and not budget_left):
        top = min(report.matches, key=lambda m: m.tier)
        if top.id in held:
            reason = (
                f"The tier-{top.tier} constraint '{top.id}' asked for your situation, and with what you told me "
                "the norms that apply lean to declining."
            )
        elif choice == "refuse" and top.by_classifier:
            reason = (
                f"It asks for something no context makes acceptable (harm probability {inputs.verdict.p_harmful:.2f}); "
                f"closest constraint: tier-{top.tier} '{top.id}', which no benefit may override."
            )
        elif choice == "refuse":
            reason = f"It matches the tier-{top.tier} constraint '{top.id}', which no benefit may override."
        else:
            # A firm match demands a question about the situation, and none may be asked now.
            reason = (
                f"It falls under the tier-{top.tier} constraint '{top.id}', which needs to know your situation "
                "first, and no question may be asked now."
            )
        return PolicyOutcome(
            decision=Decision.REFUSE,
            reason=reason,
            style=ResponseStyle.REFUSAL,
            constraint_choice=choice,
        )

    values = question_values(inputs.relevant_norms, inputs.known_context)
    askable = {s: v for s, v in values.items() if s not in inputs.asked_about}
    best_slot = max(askable, key=lambda s: askable[s]) if askable else None
    best_value = askable.get(best_slot, 0.0) if best_slot else 0.0
    stakes = inputs.conflict_detected or inputs.norms.disagreement >= thresholds.disagreement
    required = choice == "clarify"
    assumptions = _assumptions(inputs.relevant_norms, inputs.known_context)

    verdict = inputs.verdict
    if budget_left and verdict.question_for == "harm" and "purpose" not in inputs.asked_about:
        # The judge is unsure whether this is harmful: a refusal and an answer would both cost more
        # than asking what it is for (agent/judge.py DECISION_COSTS).
        return PolicyOutcome(
            decision=Decision.CLARIFY,
            reason=f"It could be harmful (harm probability {verdict.p_harmful:.2f}), so I ask what it is for first.",
            style=ResponseStyle.CAVEATED,
            ask_about="purpose",
            question_values=values,
            constraint_choice=choice,
        )
    if budget_left and required:
        # A constraint demands a question: ask what most changes the response, else the purpose.
        fallback = next((s for s in REQUIRED_QUESTION_ORDER if s not in inputs.asked_about), None)
        about = best_slot if best_slot and best_value > 0 else fallback
        if about:
            return PolicyOutcome(
                decision=Decision.CLARIFY,
                reason=f"A hard constraint may apply, and whether it does depends on '{about}'.",
                style=ResponseStyle.CAVEATED,
                ask_about=about,
                question_values=values,
                constraint_choice=choice,
            )
    if budget_left and best_slot and inputs.personal and best_value >= thresholds.question_value and stakes:
        return PolicyOutcome(
            decision=Decision.CLARIFY,
            reason=f"Whether '{best_slot}' holds changes which norms apply and so the answer "
            f"(expected change {best_value:.2f}).",
            style=ResponseStyle.CAVEATED,
            ask_about=best_slot,
            question_values=values,
            constraint_choice=choice,
        )
    ambiguous = verdict.question_for == "ambiguity"
    # A tentative hard-constraint match demands a question; with no better one, ask what is meant
    # (before, the demand fell through to a plain answer).
    if budget_left and (ambiguous or required) and INTENT not in inputs.asked_about:
        return PolicyOutcome(
            decision=Decision.CLARIFY,
            reason=f"The request leaves out something the answer depends on (clarification need {verdict.p_clarify:.2f}).",
            style=ResponseStyle.DIRECT,
            ask_about=INTENT,
            question_values=values,
            constraint_choice=choice,
        )

    irreducible = stakes and best_value < thresholds.question_value
    if inputs.mode == Mode.STEERABLE:
        style = ResponseStyle.STEERED
        reason = "Answering with the chosen community's norms, within the hard constraints."
    # A hard constraint that came close outranks the conflict: the user needs its safeguards with
    # practical help, not a survey of views (after "I found messages from an adult stranger" a
    # worried parent needs steps, not "it depends on whose view you share").
    elif near_miss:
        style = ResponseStyle.CAVEATED
        reason = (
            f"It comes close to the constraint '{near_miss}', and as I may not ask about your situation, "
            "I answer with the safeguards it calls for."
        )
    elif answered_concern:
        style = ResponseStyle.CAVEATED
        reason = "Your answer settles the concern I asked about, so I answer, keeping the safeguards it calls for."
    elif irreducible or (stakes and not inputs.personal):
        style = ResponseStyle.PLURALISTIC
        reason = "The values at stake pull apart and no fact about you would settle it, so I lay out the perspectives."
    elif not inputs.personal and inputs.norms.disagreement > 0:
        # Overton: a general question on which communities differ gets the spread of their views.
        style = ResponseStyle.PLURALISTIC
        reason = "Communities see this differently, so I lay out their perspectives rather than pick one."
    elif (
        choice == "answer_with_safeguards"
        or inputs.norms.response.get("caveat", 0) + inputs.norms.response.get("decline", 0) > 0.5
    ):
        style = ResponseStyle.CAVEATED
        reason = "Answering with the safeguards the relevant norms ask for."
    elif ambiguous and INTENT in inputs.asked_about:
        # The request still reads as vague on its own; the answer to the question is what settles it.
        style = ResponseStyle.DIRECT
        reason = "I asked what you meant, so I answer with what you told me."
    else:
        style = ResponseStyle.DIRECT
        reason = "Nothing here is ambiguous or contested enough to be worth a question."
    if inputs.answer_now or (not budget_left and inputs.questions_asked):
        reason = (
            "Answering now as asked, with my assumptions stated."
            if inputs.answer_now
            else ("The question budget is spent, so I answer with my assumptions stated.")
        )
    return PolicyOutcome(
        decision=Decision.ANSWER,
        reason=reason,
        style=style,
        question_values=values,
        irreducible=bool(irreducible),
        constraint_choice=choice,
        assumptions=assumptions,
    )
