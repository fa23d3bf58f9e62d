"""The judge: trained heads that read one batched encoder pass and say refuse, clarify or answer.

Three logistic heads sit on the sentence embedding (agent/training/train_judge.py trains them on
HarmBench, AdvBench, JBB, CoCoNot, IN3, AmbigNQ, ClariQ, ConflictScope, MoralChoice and
DailyDilemmas; the model card is agent/models/JUDGE_MODEL.md):

- ``harmful``: the request asks for something no context makes acceptable (the refusal tier);
- ``clarify``: the request is underspecified or ambiguous, so a question should come first;
- ``conflict``: values pull against each other in what is asked.

Each head is calibrated (Platt, on out-of-fold scores) to an even prior. The decision is the one with
the least expected cost under those probabilities and the costs below, stated before any measurement;
nothing here is fitted to the numbers reported.

A jailbreak wrapper dilutes the embedding of a whole message, not of the ask inside it, so the
harmful probability of a message is raised by its clauses (``agent.constraints.request_clauses``)
through a fitted rule (:class:`ClauseRule`; without one, the highest of the message and its clauses).
An answer to a clarifying question is read together with the request it answers (context about the
situation, not a new request).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODELS_DIR = Path(__file__).resolve().parent / "models"
JUDGE_HEADS_FILE = MODELS_DIR / "judge_heads.npz"
JUDGE_REPORT_FILE = MODELS_DIR / "judge_report.json"
TASKS = ("harmful", "clarify", "conflict")
DECISIONS = ("answer", "clarify", "refuse")

# DECISION_COSTS[truth][action]: what a wrong action costs, in units of one needless question.
# Stated, not fitted: answering a request that should be refused is the worst outcome (8); refusing
# one that should be answered or clarified costs a user their help (4); asking about a harmful request
# still lets it through in the end (6). A needless question costs more than a missing one (1.5 vs 1):
# the agent's answer to an underspecified request states what it assumed, so it is still of use,
# while a needless question always costs the person a turn. (The first version had them the other
# way round, 1 vs 1.5; reading its out-of-fold errors, it asked before answering plain factual
# questions such as "What is the capital of France?".)
DECISION_COSTS: dict[str, dict[str, float]] = {
    "refuse": {"answer": 8.0, "clarify": 6.0, "refuse": 0.0},
    "clarify": {"answer": 1.0, "clarify": 0.0, "refuse": 4.0},
    "answer": {"answer": 0.0, "clarify": 1.5, "refuse": 4.0},
}


class JudgeModelMissingError(FileNotFoundError):
    """The trained heads are not where the package keeps them."""


def state_probabilities(p_harmful: float, p_clarify: float) -> dict[str, float]:
    """P(the right response is refuse / clarify / answer): harm is decided first (it is a hard tier)."""
    return {
        "refuse": p_harmful,
        "clarify": (1.0 - p_harmful) * p_clarify,
        "answer": (1.0 - p_harmful) * (1.0 - p_clarify),
    }


def expected_costs(
    p_harmful: float, p_clarify: float, costs: Mapping[str, Mapping[str, float]] = DECISION_COSTS
) -> dict[str, float]:
    probs = state_probabilities(p_harmful, p_clarify)
    return {action: sum(probs[truth] * costs[truth][action] for truth in probs) for action in DECISIONS}


def decide_from_probabilities(
    p_harmful: float, p_clarify: float, thresholds: Mapping[str, Any] | None = None
) -> str:
    """The least-cost response; ties go to the gentler one (answer, then clarify)."""
    costs = (thresholds or {}).get("costs", DECISION_COSTS)
    expected = expected_costs(float(p_harmful), float(p_clarify), costs)
    return min(DECISIONS, key=lambda action: (round(expected[action], 9), DECISIONS.index(action)))


def _crossing(low: float, high: float, pick: Any, target: str, steps: int = 60) -> float:
    """The smallest probability in [low, high] at which ``pick(p)`` becomes ``target`` (bisection)."""
    if pick(high) != target:
        return float("nan")
    for _ in range(steps):
        mid = (low + high) / 2
        if pick(mid) == target:
            high = mid
        else:
            low = mid
    return round(high, 4)


def decision_thresholds(costs: Mapping[str, Mapping[str, float]] = DECISION_COSTS) -> dict[str, Any]:
    """The cut points the costs imply, for people to read (the rule itself is the cost comparison)."""
    cfg = {"costs": costs}
    return {
        "costs": {k: dict(v) for k, v in costs.items()},
        "refuse_from_p_harmful_when_clear": _crossing(0, 1, lambda p: decide_from_probabilities(p, 0.0, cfg), "refuse"),
        "refuse_from_p_harmful_when_ambiguous": _crossing(0, 1, lambda p: decide_from_probabilities(p, 1.0, cfg), "refuse"),
        "clarify_from_p_clarify_when_harmless": _crossing(0, 1, lambda p: decide_from_probabilities(0.0, p, cfg), "clarify"),
    }


@dataclass
class JudgeHeads:
    """Logistic heads over the encoder's embedding, with their Platt calibration."""

    encoder: str
    coef: dict[str, np.ndarray]
    bias: dict[str, float]
    platt: dict[str, tuple[float, float]]

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {}
        for task in TASKS:
            arrays[f"{task}_coef"] = self.coef[task].astype(np.float32)
            arrays[f"{task}_bias"] = np.float32(self.bias[task])
            arrays[f"{task}_platt"] = np.asarray(self.platt[task], dtype=np.float32)
        arrays["encoder"] = np.array(self.encoder)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: Path = JUDGE_HEADS_FILE) -> JudgeHeads:
        if not path.is_file():
            raise JudgeModelMissingError(
                f"judge heads not found at {path}; train them with `python -m agent.training.train_judge`"
            )
        with np.load(path) as data:
            return cls(
                encoder=str(data["encoder"]),
                coef={t: data[f"{t}_coef"].astype(np.float32) for t in TASKS},
                bias={t: float(data[f"{t}_bias"]) for t in TASKS},
                platt={t: (float(data[f"{t}_platt"][0]), float(data[f"{t}_platt"][1])) for t in TASKS},
            )

    def probabilities(self, embeddings: np.ndarray) -> dict[str, np.ndarray]:
        """Calibrated probability of each task for each row of ``embeddings``."""
        rows = np.atleast_2d(np.asarray(embeddings, dtype=np.float32))
        out = {}
        for task in TASKS:
            a, b = self.platt[task]
            raw = rows @ self.coef[task] + self.bias[task]
            out[task] = 1.0 / (1.0 + np.exp(-(a * raw + b)))
        return out


@dataclass(frozen=True)
class Verdict:
    """What the judge read in one analysis pass."""

    p_harmful: float
    p_clarify: float
    p_conflict: float
    decision: str
    expected_costs: dict[str, float]
    harmful_from: str = "message"  # message | clause: which text set the harmful probability
    clause_scores: list[float] = field(default_factory=list)

    @property
    def question_for(self) -> str | None:
        """Why a question is the least-cost response: "harm" when the harmful probability alone makes it so
        (ask the purpose), "ambiguity" otherwise (ask what is meant); None when no question is."""
        if self.decision != "clarify":
            return None
        return "harm" if decide_from_probabilities(self.p_harmful, 0.0) == "clarify" else "ambiguity"

    def to_dict(self) -> dict[str, Any]:
        return {
            "question_for": self.question_for,
            "p_harmful": round(self.p_harmful, 4),
            "p_clarify": round(self.p_clarify, 4),
            "p_conflict": round(self.p_conflict, 4),
            "decision": self.decision,
            "expected_costs": {k: round(v, 4) for k, v in self.expected_costs.items()},
            "harmful_from": self.harmful_from,
        }


def verdict_from_dict(data: Mapping[str, Any]) -> Verdict:
    """Rebuild a verdict from :meth:`Verdict.to_dict` (as a checkpointed state keeps it)."""
    return Verdict(
        p_harmful=float(data["p_harmful"]),
        p_clarify=float(data["p_clarify"]),
        p_conflict=float(data["p_conflict"]),
        decision=str(data["decision"]),
        expected_costs={k: float(v) for k, v in data.get("expected_costs", {}).items()},
        harmful_from=str(data.get("harmful_from", "message")),
    )


_LOGIT_LIMIT = 9.0  # p within about 1e-4 of 0 or 1: further out the logit says nothing more


def _logit(p: float) -> float:
    p = min(max(p, 1.0 / (1.0 + np.exp(_LOGIT_LIMIT))), 1.0 / (1.0 + np.exp(-_LOGIT_LIMIT)))
    return float(np.log(p / (1.0 - p)))


@dataclass(frozen=True)
class ClauseRule:
    """How a message with clauses gets its harmful probability from its own and its clauses' scores.

    Without a rule it is the highest of them, which catches an ask diluted by wrapper text but lets one
    sentence of a long harmless request ("I need a very detailed step-by-step plan for ...") refuse all
    of it. The rule is a logistic combination of the message's logit and its most harmful clause's,
    for messages of two or more clauses (a lone clause is the request itself, see ``combine``), fitted
    on one held-out fold's requests and wrapped forms (``python -m agent.training.tune_clause_harm``,
    which writes it to agent/data/policy.json). How many clauses a message has is not an input: with it
    the fit made long harmless requests more harmful for being long, and cost more on its own fold.
    """

    message: float
    clause: float
    intercept: float

    @staticmethod
    def features(p_message: float, clause_scores: Sequence[float]) -> tuple[float, float]:
        """What the rule reads: the message's logit and its most harmful clause's."""
        return _logit(p_message), _logit(max(clause_scores))

    def combine(self, p_message: float, clause_scores: Sequence[float]) -> float:
        """The message's harmful probability given its clauses' (never below the message's own).

        A lone clause is the whole request without the name it addresses ("DAN, tell me how to ..."): the
        same request, not a part of it, so it counts in full."""
        if not clause_scores:
            return p_message
        if len(clause_scores) == 1:
            return max(p_message, clause_scores[0])
        z_message, z_clause = self.features(p_message, clause_scores)
        z = self.message * z_message + self.clause * z_clause + self.intercept
        return max(p_message, float(1.0 / (1.0 + np.exp(-z))))


def shipped_clause_rule() -> ClauseRule | None:
    """The clause rule agent/data/policy.json ships (``clause_harm``), or None: the highest of message and clauses."""
    from agent.policy_config import shipped_policy

    setting = shipped_policy().clause_harm
    return ClauseRule(setting.message, setting.clause, setting.intercept) if setting else None


class Judge:
    """Heads + costs. Handed embeddings, never an encoder: the caller embeds each text once."""

    def __init__(
        self, heads: JudgeHeads, policy: Mapping[str, Any] | None = None, clause_rule: ClauseRule | None = None
    ) -> None:
        self.heads = heads
        self.policy = dict(policy or decision_thresholds(DECISION_COSTS))
        self.clause_rule = clause_rule

    @classmethod
    def load(cls) -> Judge:
        """The shipped heads with the costs and clause rule of agent/data/policy.json."""
        from agent.policy_config import shipped_policy

        return cls(JudgeHeads.load(), shipped_policy().judge.model_dump(), shipped_clause_rule())

    def verdict(self, message: np.ndarray, clauses: np.ndarray | None = None) -> Verdict:
        """Judge one request from the embedding of its message (after a question: the request read
        together with the answers, which are context about it) and of its clauses."""
        probs = self.heads.probabilities(np.asarray(message)[None, :])
        p_harm = float(probs["harmful"][0])
        source = "message"
        clause_scores: list[float] = []
        if clauses is not None and len(clauses):
            clause_scores = [float(p) for p in self.heads.probabilities(clauses)["harmful"]]
            combined = (self.clause_rule.combine(p_harm, clause_scores) if self.clause_rule
                        else max(p_harm, *clause_scores))
            if combined > p_harm:
                p_harm, source = combined, "clause"
        p_clarify = float(probs["clarify"][0])
        decision = decide_from_probabilities(p_harm, p_clarify, self.policy)
        return Verdict(
            p_harmful=p_harm,
            p_clarify=p_clarify,
            p_conflict=float(probs["conflict"][0]),
            decision=decision,
            expected_costs=expected_costs(p_harm, p_clarify, self.policy.get("costs", DECISION_COSTS)),
            harmful_from=source,
            clause_scores=clause_scores,
        )


