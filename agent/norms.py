"""Judgement over retrieved community norms: which apply here, what they imply, where they disagree.

The norms are handed in (the store lives in ``memory``); everything here is arithmetic on them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from agent.context_slots import slot_admits
from agent.vocabulary import Stance


class ResponseKind(StrEnum):
    """The shape of response a set of norms points to."""

    HELP = "help"  # help fully
    CAVEAT = "caveat"  # help, with caveats or safeguards
    DECLINE = "decline"  # decline or redirect


STANCE_RESPONSE: dict[Stance, ResponseKind] = {
    Stance.EXPECTED: ResponseKind.HELP,
    Stance.OKAY: ResponseKind.HELP,
    Stance.DISCOURAGED: ResponseKind.CAVEAT,
    Stance.FORBIDDEN: ResponseKind.DECLINE,
}

# A signed position per stance, so that communities can be compared on one axis.
STANCE_POSITION: dict[Stance, float] = {
    Stance.EXPECTED: 1.0,
    Stance.OKAY: 0.5,
    Stance.DISCOURAGED: -0.5,
    Stance.FORBIDDEN: -1.0,
}

UNKNOWN = "unknown"


@dataclass(frozen=True)
class NormEvidence:
    """One norm as retrieved for a message, with what the store knows about it."""

    id: str
    text: str
    community: str
    pack_id: str
    pack_version: str
    domains: tuple[str, ...]
    applies_when: Mapping[str, tuple[str, ...]]
    stance: Stance
    similarity: float
    support: Mapping[str, Any] | None = None
    contested: bool = False
    says: str = ""  # the pack's phrasing in a person's words; empty in indexes written before it existed
    community_name: str = ""  # the pack's name for its community ("Parents and caregivers")
    safeguard: str = ""  # what to keep in mind when acting in the situation, in the person's words

    @property
    def plain(self) -> str:
        """What users are shown: the plain phrasing, or the behaviour wording when there is none."""
        return self.says or self.text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormEvidence:
        """The inverse of :meth:`to_dict` (norms travel through the checkpointed state as dicts)."""
        return cls(
            id=data["id"],
            text=data["text"],
            community=data["community"],
            pack_id=data["pack_id"],
            pack_version=data["pack_version"],
            domains=tuple(data["domains"]),
            applies_when={k: tuple(v) for k, v in data["applies_when"].items()},
            stance=Stance(data["stance"]),
            similarity=float(data["similarity"]),
            support=data.get("support"),
            contested=bool(data.get("contested", False)),
            says=str(data.get("says") or ""),
            community_name=str(data.get("community_name") or ""),
            safeguard=str(data.get("safeguard") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["domains"] = list(self.domains)
        data["applies_when"] = {k: list(v) for k, v in self.applies_when.items()}
        data["stance"] = str(self.stance)
        data["domain"] = self.domains[0] if self.domains else None
        data["score"] = round(self.similarity, 4)
        return data


def contradicts(norm: NormEvidence, context: Mapping[str, str]) -> bool:
    """True when a known fact of the user's situation rules the norm out."""
    for slot, allowed in norm.applies_when.items():
        known = context.get(slot)
        if known and known != UNKNOWN and not slot_admits(slot, known, allowed):
            return True
    return False


def open_conditions(norm: NormEvidence, context: Mapping[str, str]) -> list[str]:
    """The slots the norm is conditioned on that the user has not told us yet."""
    return [slot for slot in norm.applies_when if context.get(slot) in (None, UNKNOWN)]


@dataclass
class NormJudgement:
    """The applicable norms for a request and what they jointly imply."""

    applicable: list[NormEvidence]
    excluded: list[NormEvidence]
    by_community: dict[str, list[NormEvidence]] = field(default_factory=dict)
    community_positions: dict[str, float] = field(default_factory=dict)
    disagreement: float = 0.0
    response: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "disagreement": round(self.disagreement, 4),
            "community_positions": {k: round(v, 4) for k, v in self.community_positions.items()},
            "response": {k: round(v, 4) for k, v in self.response.items()},
            "by_community": {c: [n.id for n in ns] for c, ns in self.by_community.items()},
            "excluded": [n.id for n in self.excluded],
        }


def relevant(norms: Iterable[NormEvidence], floor: float) -> list[NormEvidence]:
    """Norms close enough to the message to speak to it at all."""
    return [n for n in norms if n.similarity >= floor]


def response_distribution(norms: Sequence[NormEvidence]) -> dict[str, float]:
    """Similarity-weighted share of each response kind the norms point to (empty when none apply)."""
    weights: dict[str, float] = defaultdict(float)
    for norm in norms:
        weights[STANCE_RESPONSE[norm.stance]] += max(norm.similarity, 1e-6)
    total = sum(weights.values())
    return {kind: weights.get(kind, 0.0) / total for kind in ResponseKind} if total else {}


def community_positions(norms: Sequence[NormEvidence]) -> dict[str, float]:
    """Each community's similarity-weighted mean stance position in [-1, 1]."""
    sums: dict[str, float] = defaultdict(float)
    weights: dict[str, float] = defaultdict(float)
    for norm in norms:
        weight = max(norm.similarity, 1e-6)
        sums[norm.community] += weight * STANCE_POSITION[norm.stance]
        weights[norm.community] += weight
    return {c: sums[c] / weights[c] for c in sums}


def disagreement_score(norms: Sequence[NormEvidence]) -> float:
    """How far apart the communities (and the voting groups of contested norms) stand, in [0, 1].

    Half the range of community positions: 1.0 when one community expects what another forbids.
    A contested norm (its voting groups split) adds its own split, so collective dissent inside
    one community counts as disagreement too.
    """
    positions = community_positions(norms)
    spread = (max(positions.values()) - min(positions.values())) / 2 if len(positions) > 1 else 0.0
    contested = max((1.0 for n in norms if n.contested), default=0.0) * 0.5
    return float(min(1.0, max(spread, contested)))


def judge_norms(norms: Sequence[NormEvidence], context: Mapping[str, str], relevance_floor: float) -> NormJudgement:
    """Keep the relevant norms the known context does not rule out, and summarise them."""
    close = relevant(norms, relevance_floor)
    applicable = [n for n in close if not contradicts(n, context)]
    excluded = [n for n in close if contradicts(n, context)]
    grouped: dict[str, list[NormEvidence]] = defaultdict(list)
    for norm in sorted(applicable, key=lambda n: -n.similarity):
        grouped[norm.community].append(norm)
    return NormJudgement(
        applicable=applicable,
        excluded=excluded,
        by_community=dict(grouped),
        community_positions=community_positions(applicable),
        disagreement=disagreement_score(applicable),
        response=response_distribution(applicable),
    )
