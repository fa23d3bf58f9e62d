"""Value conflict as a multi-objective fact: no candidate action dominates and both sides have real stakes.

Each candidate action (the options the user names, else: do it / do not do it / do it with a safeguard)
gets a vector of value gains and a vector of value costs over the 20 ValueEval categories. Costs come
from heads trained on MoralChoice's per-action annotations (how likely taking the action breaks a moral
rule, and which rules: each rule read as the ValueEval values it protects, weighted by the caller's value
probabilities). The gains of doing what the user asks are the values the message engages (the caller's
value probabilities); not doing it avoids the costs and forgoes the gains. Between named options,
choosing one spares the costs of the others. A conflict is the smaller side of a non-dominance contest: between two actions, the value
mass on which the first wins and the mass on which the second wins; the conflict score is the smaller of
the two, so it is high only when neither action dominates and both sides carry weight.

The heads are linear maps of the message embedding, so scoring a message needs no extra encoder call;
named options are embedded in one batched call when an encoder is handed in.

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
    """Linear heads on one action embedding: how costly taking it is, and which rules the cost falls on."""

    cost_w: np.ndarray  # (384,) logit that taking the action breaks at least one moral rule
    cost_b: float
    rule_w: np.ndarray  # (10, 384) logit that it breaks each rule
    rule_b: np.ndarray  # (10,)

    def costs(self, embeddings: np.ndarray, relevance: np.ndarray) -> np.ndarray:
        """(n, 20) value costs of taking each embedded action: the probability that it is costly, spread
        over the values protected by the rules it likely breaks, weighted by the message's relevance."""
        rows = np.atleast_2d(embeddings)
        size = _sigmoid(rows @ self.cost_w + self.cost_b)
        spread = (_sigmoid(rows @ self.rule_w.T + self.rule_b) @ rule_value_matrix()) * relevance
        return np.asarray(size[:, None] * _shares(spread))


def _shares(weights: np.ndarray) -> np.ndarray:
    """Rows rescaled to sum to 1 (non-negative input)."""
    return np.asarray(weights / np.maximum(weights.sum(axis=-1, keepdims=True), 1e-9))


def request_gains(value_probs: np.ndarray) -> np.ndarray:
    """(20,) what fulfilling the request serves: the values the message engages, sized by the strongest."""
    probs = np.clip(np.asarray(value_probs, dtype=np.float64).reshape(-1), 0.0, 1.0)
    return np.asarray(float(probs.max()) * _shares(probs))


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
class ConflictModel:
    heads: StakesHeads
    threshold: float
    meta: dict[str, Any]

    def candidate_actions(
        self,
        text: str,
        embedding: np.ndarray,
        value_probs: np.ndarray,
        options: list[str] | None = None,
        encoder: Encoder | None = None,
    ) -> list[ActionProfile]:
        relevance = np.clip(np.asarray(value_probs, dtype=np.float64).reshape(-1), 0.0, 1.0)
        if relevance.shape[0] != len(VALUE_NAMES):
            raise ValueError(f"expected {len(VALUE_NAMES)} value probabilities, got {relevance.shape}")
        relevance = relevance + RELEVANCE_FLOOR
        named = extract_options(text) if options is None else options
        if len(named) >= 2 and encoder is not None:
            vectors = encoder.encode([option_text(text, o) for o in named])  # one batched call
            costs = self.heads.costs(np.asarray(vectors, dtype=np.float64), relevance)
            # Choosing one option avoids the costs of the others: its gains are what it spares.
            spared = [np.delete(costs, k, axis=0).max(axis=0) for k in range(len(named))]
            return [_as_profile(o, g, c) for o, g, c in zip(named, spared, costs, strict=True)]
        row = np.asarray(embedding, dtype=np.float64).reshape(1, -1)
        if row.shape[1] != EMBEDDING_DIM:
            raise ValueError(f"expected an embedding of {EMBEDDING_DIM} numbers, got shape {row.shape}")
        gains, costs = request_gains(value_probs), self.heads.costs(row, relevance)[0]
        # Not acting avoids the costs and forgoes the gains.
        return [
            _as_profile(DO, gains, costs),
            _as_profile(DO_NOT, costs, gains),
            _as_profile(SAFEGUARD, SAFEGUARD_SHARE * gains, SAFEGUARD_SHARE * costs),
        ]

    def assess(
        self,
        text: str,
        embedding: np.ndarray,
        value_probs: np.ndarray,
        options: list[str] | None = None,
        encoder: Encoder | None = None,
    ) -> ConflictAssessment:
        actions = self.candidate_actions(text, embedding, value_probs, options, encoder)
        utilities = [a.utility() for a in actions]
        score, best, dominated = 0.0, (0, 1), False
        for i, j in combinations(range(len(actions)), 2):
            wins, losses = nondominance(utilities[i], utilities[j])
            if min(wins, losses) > score:
                score, best = min(wins, losses), (i, j)
        # Dominance is judged between the two most different actions (doing vs not doing, or the best pair).
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
    )
    meta = dict(model.meta, threshold=model.threshold)
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
    heads = StakesHeads(cost_w=f64["cost_w"], cost_b=float(f64["cost_b"]), rule_w=f64["rule_w"], rule_b=f64["rule_b"])
    return ConflictModel(heads=heads, threshold=float(meta["threshold"]), meta=meta)
