"""Value conflict as stakes on both sides: acting costs something and not acting costs something too.

Two linear heads on the message embedding, both trained on MoralChoice (per-action rule annotations and
the scenarios' ambiguity), measure the two sides:
- cost stake: how likely doing what is asked breaks a moral rule (harm to someone, a law, the truth);
- other-side stake: how likely the situation is a dilemma, i.e. refusing or not acting is costly too
  (MoralChoice "high ambiguity": both actions break a rule; "low": one action is clearly right).
A clear-cut harmful request has a cost but nothing on the other side; a benign request has neither; a
conflict has both. The raw score is their geometric mean, mapped to a probability by a Platt step fitted
on the dev minimal pairs. When the user names options, the cost stake is the smallest cost among the
options (every option is costly), each option embedded in one batched encoder call.

For explanation, each candidate action (the named options, else: do it / do not do it / do it with a
safeguard) gets value gains and costs over the 20 ValueEval categories: the cost stake spread over the
values that the likely broken rules protect, the other-side stake spread over the values the message
engages (the caller's value probabilities). The conflicting value pairs are the values on which doing
wins against the values on which not doing wins.

Weights: ``agent/models/conflict_heads.npz`` + ``conflict_meta.json`` written by
``python -m agent.training.train_conflict``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from agent.encoder import EMBEDDING_DIM, Encoder
from agent.values import VALUE_NAMES

MODELS_DIR = Path(__file__).resolve().parent / "models"
HEADS_ARTEFACT = MODELS_DIR / "conflict_heads.npz"
META_ARTEFACT = MODELS_DIR / "conflict_meta.json"

MAX_PAIRS = 3
# An action is "dominated" when the side it wins on carries under this share of the side it loses on.
DOMINANCE_RATIO = 0.1
# Every value keeps a little weight even when the value model calls it inactive: the value model scores
# the message, not the consequences of acting on it.
RELEVANCE_FLOOR = 0.05
# A safeguard keeps part of the benefit and removes part of the harm; no data measures how much, so it is
# the midpoint of doing and not doing: it never changes which side dominates, it only gives the agent a
# named compromise to offer.
SAFEGUARD_SHARE = 0.5

DO, DO_NOT, SAFEGUARD = "do it", "do not do it", "do it with a safeguard"


class ConflictModelMissingError(FileNotFoundError):
    """The conflict heads have not been trained yet."""


@dataclass(frozen=True)
class ActionProfile:
    name: str
    gains: dict[str, float]
    costs: dict[str, float]

    def utility(self) -> np.ndarray:
        """Gains minus costs in the order of VALUE_NAMES."""
        return np.array([self.gains[v] - self.costs[v] for v in VALUE_NAMES], dtype=np.float64)

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        return {"name": self.name, "gains": _top(self.gains, top), "costs": _top(self.costs, top)}


@dataclass(frozen=True)
class ConflictPair:
    values: tuple[str, str]
    score: float


@dataclass(frozen=True)
class ConflictAssessment:
    score: float
    detected: bool
    pairs: list[ConflictPair]
    actions: list[ActionProfile]
    dominated: bool
    baseline_pairs: list[ConflictPair] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": float(self.score),
            "detected": bool(self.detected),
            "pairs": [{"values": list(p.values), "score": float(p.score)} for p in self.pairs],
            "actions": [a.to_dict() for a in self.actions],
            "dominated": bool(self.dominated),
        }


def _top(vector: dict[str, float], top: int | None) -> dict[str, float]:
    items = sorted(vector.items(), key=lambda kv: -kv[1])
    return {k: round(float(v), 4) for k, v in (items[:top] if top else items)}


def _sigmoid(z: np.ndarray | float) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))))


# --- the named options ------------------------------------------------------------------------------

_SUBJECT = r"(?:i|we)"
_OPTION_PATTERNS = (
    re.compile(
        rf"\b(?:should|shall|do|would|could|must|can|ought)\s+{_SUBJECT}\s+(?:rather\s+|just\s+)?"
        rf"(?P<a>[^?.!;]+?)\s*,?\s+or\s+(?:should\s+{_SUBJECT}\s+)?(?P<b>[^?.!;]+)",
        re.IGNORECASE,
    ),
    re.compile(
        r"\b(?:whether\s+(?:to|i\s+should)|is\s+it\s+better\s+to|better\s+to)\s+"
        r"(?P<a>[^?.!;]+?)\s*,?\s+or\s+(?:to\s+)?(?P<b>[^?.!;]+)",
        re.IGNORECASE,
    ),
)
_NOT_AN_OPTION = re.compile(r"^(?:not|no|something else|otherwise|anything else|neither)$", re.IGNORECASE)
_MAX_OPTION_WORDS = 16


def extract_options(text: str) -> list[str]:
    """The alternatives the user names ("should I A or B?"); [] when none (or only "A or not")."""
    for pattern in _OPTION_PATTERNS:
        match = pattern.search(text)
        if not match:
            continue
        first, second = match.group("a").strip(" ,"), match.group("b").strip(" ,")
        options = [o.strip() for o in first.split(", ") if o.strip()] + [second]
        # "A, B or C": the comma split only holds when every piece is short; otherwise keep A whole.
        if len(options) > 2 and any(len(o.split()) > 6 for o in options[:-1]):
            options = [first, second]
        if any(_NOT_AN_OPTION.match(o) for o in options) or any(
            not o or len(o.split()) > _MAX_OPTION_WORDS for o in options
        ):
            continue
        return options
    return []


# --- the Schwartz circle baseline --------------------------------------------------------------------

# VALUE_NAMES follow the refined Schwartz circle (self-direction ... universalism), with ValueEval's
# "objectivity" closing the circle next to self-direction: angle k * 360 / 20 degrees.
_ANGLES = 2.0 * np.pi * np.arange(len(VALUE_NAMES)) / len(VALUE_NAMES)
OPPOSITION = np.maximum(0.0, -np.cos(_ANGLES[:, None] - _ANGLES[None, :]))


def schwartz_opposition(value_probs: np.ndarray) -> tuple[float, list[ConflictPair]]:
    """Values on opposite sides of the circle active at once: score = max p_i * p_j * opposition(i, j)."""
    probs = np.clip(np.asarray(value_probs, dtype=np.float64).reshape(-1), 0.0, 1.0)
    if probs.shape[0] != len(VALUE_NAMES):
        raise ValueError(f"expected {len(VALUE_NAMES)} value probabilities, got shape {probs.shape}")
    strength = np.triu(probs[:, None] * probs[None, :] * OPPOSITION, k=1)
    order = np.argsort(-strength, axis=None)[:MAX_PAIRS]
    pairs = [
        ConflictPair((VALUE_NAMES[i], VALUE_NAMES[j]), float(strength[i, j]))
        for i, j in (np.unravel_index(flat, strength.shape) for flat in order)
        if strength[i, j] > 0
    ]
    return (pairs[0].score if pairs else 0.0), pairs


# --- the trained model ------------------------------------------------------------------------------


# MoralChoice annotates which moral rule an action breaks; each rule protects these ValueEval values
# (a fixed reading of the rule, not a fitted table: ValueEval's own descriptions of the categories).
RULES: tuple[str, ...] = (
    "death",
    "pain",
    "disable",
    "freedom",
    "pleasure",
    "deceive",
    "cheat",
    "break_promise",
    "break_law",
    "duty",
)
RULE_VALUES: dict[str, tuple[str, ...]] = {
    "death": ("Security: personal", "Benevolence: caring"),
    "pain": ("Security: personal", "Benevolence: caring"),
    "disable": ("Security: personal", "Benevolence: caring"),
    "freedom": ("Self-direction: action",),
    "pleasure": ("Hedonism",),
    "deceive": ("Universalism: objectivity", "Benevolence: dependability"),
    "cheat": ("Universalism: concern", "Conformity: rules"),
    "break_promise": ("Benevolence: dependability",),
    "break_law": ("Conformity: rules", "Security: societal"),
    "duty": ("Benevolence: dependability", "Conformity: rules"),
}


def rule_value_matrix() -> np.ndarray:
    """(10, 20): row r spreads a broken rule r evenly over the values it protects."""
    matrix = np.zeros((len(RULES), len(VALUE_NAMES)))
    for r, rule in enumerate(RULES):
        for value in RULE_VALUES[rule]:
            matrix[r, VALUE_NAMES.index(value)] = 1.0 / len(RULE_VALUES[rule])
    return matrix


@dataclass(frozen=True)
class StakesHeads:
    """Linear heads on one embedding: how costly taking the action is, which rules the cost falls on, and
    how likely the situation is a dilemma (not acting is costly too)."""

    cost_w: np.ndarray  # (384,) logit that taking the action breaks at least one moral rule
    cost_b: float
    rule_w: np.ndarray  # (10, 384) logit that it breaks each rule
    rule_b: np.ndarray  # (10,)
    dilemma_w: np.ndarray  # (384,) logit that both sides are costly (MoralChoice high ambiguity)
    dilemma_b: float

    def cost_probability(self, embeddings: np.ndarray) -> np.ndarray:
        """(n,) probability that taking each embedded action breaks a moral rule."""
        return np.asarray(_sigmoid(np.atleast_2d(embeddings) @ self.cost_w + self.cost_b))

    def dilemma_probability(self, embeddings: np.ndarray) -> np.ndarray:
        """(n,) probability that the embedded situation has stakes on both sides."""
        return np.asarray(_sigmoid(np.atleast_2d(embeddings) @ self.dilemma_w + self.dilemma_b))

    def rule_spread(self, embeddings: np.ndarray, relevance: np.ndarray) -> np.ndarray:
        """(n, 20) shares: the values protected by the rules each action likely breaks, weighted by the
        message's relevance."""
        rows = np.atleast_2d(embeddings)
        return _shares((_sigmoid(rows @ self.rule_w.T + self.rule_b) @ rule_value_matrix()) * relevance)

    def costs(self, embeddings: np.ndarray, relevance: np.ndarray) -> np.ndarray:
        """(n, 20) value costs of taking each embedded action: the probability that it is costly, spread
        over the values protected by the rules it likely breaks."""
        return np.asarray(self.cost_probability(embeddings)[:, None] * self.rule_spread(embeddings, relevance))


def two_sided_stakes(cost: float, other_side: float) -> float:
    """Raw conflict score: geometric mean of the two stakes (high only when both are)."""
    return float(np.sqrt(max(cost, 0.0) * max(other_side, 0.0)))


def _logit(p: float) -> float:
    q = min(max(p, 1e-6), 1.0 - 1e-6)
    return float(np.log(q / (1.0 - q)))


@dataclass(frozen=True)
class Calibration:
    """Platt step on the logit of the raw score: P(conflict) = sigmoid(slope * logit(raw) + intercept)."""

    slope: float = 1.0
    intercept: float = 0.0

    def __call__(self, raw: float) -> float:
        return float(_sigmoid(self.slope * _logit(raw) + self.intercept))


def _shares(weights: np.ndarray) -> np.ndarray:
    """Rows rescaled to sum to 1 (non-negative input)."""
    return np.asarray(weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-9))


def request_gains(value_probs: np.ndarray, stake: float) -> np.ndarray:
    """(20,) what fulfilling the request serves: the other-side stake spread over the values the message
    engages (the value probabilities, floored so that no value is ruled out)."""
    probs = np.clip(np.asarray(value_probs, dtype=np.float64).reshape(-1), 0.0, 1.0) + RELEVANCE_FLOOR
    return np.asarray(stake * _shares(probs))


def nondominance(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Value mass on which ``first`` beats ``second`` and mass on which it loses (halved: a - b counts twice)."""
    diff = (first - second) / 2.0
    return float(np.maximum(diff, 0.0).sum()), float(np.maximum(-diff, 0.0).sum())


def conflicting_pairs(first: np.ndarray, second: np.ndarray) -> list[ConflictPair]:
    """Value i where ``first`` wins against value j where ``second`` wins, scored by the smaller margin."""
    diff = (first - second) / 2.0
    wins, losses = np.flatnonzero(diff > 0), np.flatnonzero(diff < 0)
    candidates = [
        ConflictPair((VALUE_NAMES[i], VALUE_NAMES[j]), float(min(diff[i], -diff[j]))) for i in wins for j in losses
    ]
    candidates.sort(key=lambda pair: -pair.score)
    return candidates[:MAX_PAIRS]


def _as_profile(name: str, gains: np.ndarray, costs: np.ndarray) -> ActionProfile:
    return ActionProfile(
        name=name,
        gains={v: float(g) for v, g in zip(VALUE_NAMES, gains, strict=True)},
        costs={v: float(c) for v, c in zip(VALUE_NAMES, costs, strict=True)},
    )


def option_text(text: str, option: str) -> str:
    """How a named option is embedded: the request as context, the option as a first-person action."""
    return f"{text.strip()} I {option.strip().rstrip('.')}."


@dataclass(frozen=True)
class Stakes:
    """The two sides of a request and the candidate actions that carry them."""

    cost: float  # P(doing what is asked breaks a moral rule); with named options, the least costly option's
    other_side: float  # P(not doing it is costly too)
    actions: list[ActionProfile]

    @property
    def raw(self) -> float:
        return two_sided_stakes(self.cost, self.other_side)


@dataclass(frozen=True)
class ConflictModel:
    heads: StakesHeads
    threshold: float
    meta: dict[str, Any]
    calibration: Calibration = field(default_factory=Calibration)

    def stakes(
        self,
        text: str,
        embedding: np.ndarray,
        value_probs: np.ndarray,
        options: list[str] | None = None,
        encoder: Encoder | None = None,
    ) -> Stakes:
        probs = np.clip(np.asarray(value_probs, dtype=np.float64).reshape(-1), 0.0, 1.0)
        if probs.shape[0] != len(VALUE_NAMES):
            raise ValueError(f"expected {len(VALUE_NAMES)} value probabilities, got {probs.shape}")
        # Harm falls on the values the broken rules protect, tilted towards the values the message is
        # about by the square root of their relevance: fully weighted, the cost side mirrors the gain side
        # and the two cancel; unweighted, the weakest rule heads name values the message never touches.
        harm_weights = np.sqrt(probs + RELEVANCE_FLOOR)
        row = np.asarray(embedding, dtype=np.float64).reshape(1, -1)
        if row.shape[1] != EMBEDDING_DIM:
            raise ValueError(f"expected an embedding of {EMBEDDING_DIM} numbers, got shape {row.shape}")
        other_side = float(self.heads.dilemma_probability(row)[0])
        named = extract_options(text) if options is None else options
        if len(named) >= 2 and encoder is not None:
            vectors = np.asarray(encoder.encode([option_text(text, o) for o in named]), dtype=np.float64)
            costs = self.heads.costs(vectors, harm_weights)  # one batched call
            # Choosing one option avoids the costs of the others: its gains are what it spares.
            spared = [np.delete(costs, k, axis=0).max(axis=0) for k in range(len(named))]
            actions = [_as_profile(o, g, c) for o, g, c in zip(named, spared, costs, strict=True)]
            # Every option costly: even the cheapest way out breaks a rule.
            return Stakes(float(self.heads.cost_probability(vectors).min()), other_side, actions)
        cost = float(self.heads.cost_probability(row)[0])
        gains = request_gains(probs, other_side)
        costs = cost * self.heads.rule_spread(row, harm_weights)[0]
        # Not acting avoids the costs and forgoes the gains.
        actions = [
            _as_profile(DO, gains, costs),
            _as_profile(DO_NOT, costs, gains),
            _as_profile(SAFEGUARD, SAFEGUARD_SHARE * gains, SAFEGUARD_SHARE * costs),
        ]
        return Stakes(cost, other_side, actions)

    def candidate_actions(
        self,
        text: str,
        embedding: np.ndarray,
        value_probs: np.ndarray,
        options: list[str] | None = None,
        encoder: Encoder | None = None,
    ) -> list[ActionProfile]:
        return self.stakes(text, embedding, value_probs, options, encoder).actions

    def assess(
        self,
        text: str,
        embedding: np.ndarray,
        value_probs: np.ndarray,
        options: list[str] | None = None,
        encoder: Encoder | None = None,
    ) -> ConflictAssessment:
        stakes = self.stakes(text, embedding, value_probs, options, encoder)
        actions, score = stakes.actions, self.calibration(stakes.raw)
        utilities = [a.utility() for a in actions]
        best, widest = (0, 1), -1.0
        for i, j in combinations(range(len(actions)), 2):
            wins, losses = nondominance(utilities[i], utilities[j])
            if min(wins, losses) > widest:
                widest, best = min(wins, losses), (i, j)
        # Dominance is judged between the two most different actions (doing vs not doing, or the best pair):
        # one of them wins on (almost) all the value mass at stake.
        wins, losses = nondominance(utilities[best[0]], utilities[best[1]])
        dominated = min(wins, losses) < DOMINANCE_RATIO * max(wins, losses, 1e-9)
        _, baseline = schwartz_opposition(value_probs)
        return ConflictAssessment(
            score=float(np.clip(score, 0.0, 1.0)),
            detected=bool(score >= self.threshold),
            pairs=conflicting_pairs(utilities[best[0]], utilities[best[1]]),
            actions=actions,
            dominated=bool(dominated),
            baseline_pairs=baseline,
        )


def save_conflict_model(model: ConflictModel, out_dir: Path = MODELS_DIR) -> None:
    h = model.heads
    np.savez_compressed(
        out_dir / HEADS_ARTEFACT.name,
        value_names=np.array(VALUE_NAMES),
        rules=np.array(RULES),
        cost_w=h.cost_w.astype(np.float32),
        cost_b=np.float32(h.cost_b),
        rule_w=h.rule_w.astype(np.float32),
        rule_b=h.rule_b.astype(np.float32),
        dilemma_w=h.dilemma_w.astype(np.float32),
        dilemma_b=np.float32(h.dilemma_b),
    )
    calibration = {"slope": model.calibration.slope, "intercept": model.calibration.intercept}
    meta = dict(model.meta, threshold=model.threshold, calibration=calibration)
    (out_dir / META_ARTEFACT.name).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


@lru_cache(maxsize=1)
def load_conflict_model() -> ConflictModel:
    """The shipped conflict model (loaded once per process)."""
    if not HEADS_ARTEFACT.is_file() or not META_ARTEFACT.is_file():
        raise ConflictModelMissingError(
            f"conflict model artefacts {HEADS_ARTEFACT.name} / {META_ARTEFACT.name} are missing in "
            f"{MODELS_DIR}: run `make train` (or `python -m agent.training.train_conflict`)."
        )
    with np.load(HEADS_ARTEFACT, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    if tuple(str(n) for n in arrays["value_names"]) != VALUE_NAMES:
        raise ValueError(f"{HEADS_ARTEFACT.name} was trained for other value names")
    if tuple(str(n) for n in arrays["rules"]) != RULES:
        raise ValueError(f"{HEADS_ARTEFACT.name} was trained for other moral rules")
    f64 = {k: v.astype(np.float64) for k, v in arrays.items() if v.dtype.kind == "f"}
    meta = json.loads(META_ARTEFACT.read_text(encoding="utf-8"))
    if "dilemma_w" not in f64:
        raise ConflictModelMissingError(f"{HEADS_ARTEFACT.name} predates the dilemma head: re-run train_conflict")
    heads = StakesHeads(
        cost_w=f64["cost_w"],
        cost_b=float(f64["cost_b"]),
        rule_w=f64["rule_w"],
        rule_b=f64["rule_b"],
        dilemma_w=f64["dilemma_w"],
        dilemma_b=float(f64["dilemma_b"]),
    )
    calibration = Calibration(**meta["calibration"])
    return ConflictModel(heads=heads, threshold=float(meta["threshold"]), meta=meta, calibration=calibration)
