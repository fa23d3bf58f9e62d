"""What an answer says, decided from the turn's evidence before any model words it.

The plan holds the parts of a reply as data: the direct answer to what was asked, the
safeguards, the perspectives of the communities whose norms apply (side by side), the view of
the community followed in steerable mode, what the user told us and what we assumed, and the
reason to show for answering this way. ``prompts.reply`` turns it into the model's task and into
the text that is shown whatever the model writes; this module only decides.

Which norms may appear as perspectives is a measured rule (``PerspectiveRule``): a norm can
pass the store's relevance floor and still be about something else (graphic violence in fiction
beside a diary question). See ``PerspectiveRule`` and ``benchmarks/perspective_relevance.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from agent.context_slots import asks_for_work, is_personal
from agent.encoder import Encoder
from agent.norms import STANCE_POSITION, UNKNOWN, NormEvidence
from agent.policy import INTENT
from agent.vocabulary import ContextSlot, Stance


class Verdict(StrEnum):
    """The direct answer to a personal "should I" request, read off the norms that apply to it."""

    GO_AHEAD = "go_ahead"  # every community that speaks to it finds it fine
    WITH_CARE = "with_care"  # it leans to fine, with some reservation
    SPLIT = "split"  # communities stand on both sides
    ADVISE_AGAINST = "advise_against"  # it leans to not doing it
    REFUSED_BY_ALL = "refused_by_all"  # every community rejects it
    OPEN = "open"  # a general question, or no norm speaks to it: no verdict to give


class ShownReason(StrEnum):
    """Reasons the plan shows instead of the policy's own sentence, when the state contradicts it."""

    POLICY = "policy"  # the policy's sentence fits the state: shown as it is
    ANSWERED_STILL_SPLIT = "answered_still_split"  # the user answered, and the communities still differ
    WORK_FIRST = "work_first"  # a piece of work was asked for: it is done, the views follow it
    NO_VIEWS_SHOWN = "no_views_shown"  # the norms that differ are not close enough to show: answered directly


@dataclass(frozen=True)
class PerspectiveRule:
    """Which applicable norms are shown as perspectives.

    ``min_plain_similarity``: cosine similarity (MiniLM) between the request and the norm's plain
    phrasing that a topic needs (the behaviour wording it was retrieved by carries "The assistant
    helps ..." and matches loosely). ``margin``: a topic's best similarity must be within ``margin``
    of the best topic's. ``same_domain``: when the request's domain was detected, a topic must share
    one. None/False switch a test off. The defaults were chosen on the dev split of
    benchmarks/perspective_relevance.py (0.52: 1 of 28 dev cases shows an unrelated topic, against
    17 of 28 before); margin and domain agreement did not help there.
    """

    min_plain_similarity: float | None = 0.52
    margin: float | None = None
    same_domain: bool = False
    topics: int = 3


@dataclass(frozen=True)
class View:
    community: str
    label: str  # the community's name as people read it
    stance: str
    support: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Perspective:
    """One situation the norms describe, with every applicable community's stance on it."""

    says: str
    similarity: float
    domains: tuple[str, ...]
    views: tuple[View, ...]
    safeguard: str = ""

    @property
    def position(self) -> float:
        """Mean stance position of its views in [-1, 1] (1: all expect it, -1: all forbid it)."""
        return sum(STANCE_POSITION[Stance(v.stance)] for v in self.views) / len(self.views)


@dataclass(frozen=True)
class Fact:
    slot: str
    value: str


@dataclass
class ReplyPlan:
    """Everything a reply must say; the model may word it, the renderer guarantees it."""

    request: str
    style: str
    verdict: Verdict
    about: str  # the situation the verdict is about ('' when the verdict is OPEN)
    told: list[Fact]  # facts the user gave in answer to this request's questions
    known: list[Fact]  # everything known about the situation, told or stated
    unknown: list[str]  # slots the applicable norms depend on that nobody stated
    safeguards: list[str]
    perspectives: list[Perspective]
    followed: str | None  # the community followed in steerable mode
    reason: ShownReason
    policy_reason: str
    answer_now: bool = False
    budget_spent: bool = False
    in_own_words: list[str] = field(default_factory=list)  # answers to our questions that no option matched
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["verdict"] = str(self.verdict)
        data["reason"] = str(self.reason)
        return data


def plain_similarities(encoder: Encoder, request: str | np.ndarray, phrasings: Sequence[str]) -> dict[str, float]:
    """Cosine similarity between the request and each distinct phrasing.

    ``request`` may be its embedding already (the analysis pass computed it); the phrasings are
    fixed pack texts, so a ``MemoEncoder`` serves them without re-embedding.
    """
    distinct = list(dict.fromkeys(p for p in phrasings if p))
    if not distinct:
        return {}
    if isinstance(request, str):
        vectors = encoder.encode([request, *distinct])
        request_vector, phrasing_vectors = vectors[0], vectors[1:]
    else:
        request_vector, phrasing_vectors = np.asarray(request, dtype=np.float32), encoder.encode(distinct)
    return {
        text: round(float(request_vector @ vector), 4) for text, vector in zip(distinct, phrasing_vectors, strict=True)
    }


def perspectives(
    norms: Sequence[NormEvidence],
    applies: Sequence[bool],
    domains: Sequence[str],
    rule: PerspectiveRule,
    community: str | None = None,
    plain_similarity: Mapping[str, float] | None = None,
) -> list[Perspective]:
    """The topics worth showing, closest first, each with its communities' stances.

    Parallel norms share their phrasing, so grouping by it puts the communities side by side.
    ``community`` keeps one community's stances only (steerable mode). ``plain_similarity``
    (request to phrasing, see ``plain_similarities``) is needed for the rule's floor; without it
    the floor is not applied.
    """
    grouped: dict[str, list[NormEvidence]] = {}
    for norm, applicable in zip(norms, applies, strict=True):
        if applicable and community in (None, norm.community):
            grouped.setdefault(norm.plain, []).append(norm)
    if not grouped:
        return []
    best = max(n.similarity for group in grouped.values() for n in group)
    detected = set(domains)
    shown = []
    for says, group in sorted(grouped.items(), key=lambda item: -max(n.similarity for n in item[1])):
        similarity = max(n.similarity for n in group)
        topic_domains = {d for n in group for d in n.domains}
        if rule.margin is not None and similarity < best - rule.margin:
            continue
        floor = rule.min_plain_similarity
        if floor is not None and plain_similarity is not None and plain_similarity.get(says, 0.0) < floor:
            continue
        if rule.same_domain and detected and not topic_domains & detected:
            continue
        views: dict[str, View] = {}
        for norm in sorted(group, key=lambda n: -n.similarity):
            label = norm.community_name or norm.community
            views.setdefault(norm.community, View(norm.community, label, str(norm.stance), norm.support))
        safeguard = next((n.safeguard for n in group if n.safeguard), "")
        shown.append(
            Perspective(says, round(similarity, 4), tuple(sorted(topic_domains)), tuple(views.values()), safeguard)
        )
    return shown[: rule.topics]


def verdict_for(perspective: Perspective | None, personal: bool) -> Verdict:
    """Where the communities stand on the closest situation, as an answer to "should I?"."""
    if perspective is None or not personal:
        return Verdict.OPEN
    stances = {Stance(v.stance) for v in perspective.views}
    if stances <= {Stance.EXPECTED, Stance.OKAY}:
        return Verdict.GO_AHEAD
    if stances == {Stance.FORBIDDEN}:
        return Verdict.REFUSED_BY_ALL
    helps = stances & {Stance.EXPECTED, Stance.OKAY}
    if helps and perspective.position > 0:
        return Verdict.WITH_CARE
    if helps:
        return Verdict.SPLIT
    return Verdict.ADVISE_AGAINST


def shown_reason(
    policy: Mapping[str, Any], told: Sequence[Fact], *, style: str | None = None, work: bool = False
) -> ShownReason:
    """The policy's reason, unless the user's answers or the plan's own style contradict it.

    The policy calls a conflict irreducible when no *further* question would change the answer;
    its sentence says "no fact about you would settle it", which reads as false right after the
    user gave a fact that did settle which norms apply. A plan that left the survey of views for a
    direct answer (``answer_style``) says why, instead of "I lay out their perspectives".
    """
    if style is not None and style != policy.get("style"):
        return ShownReason.WORK_FIRST if work else ShownReason.NO_VIEWS_SHOWN
    if told and policy.get("irreducible") and policy.get("style") == "pluralistic":
        return ShownReason.ANSWERED_STILL_SPLIT
    return ShownReason.POLICY


def answer_style(policy_style: str, *, work: bool, views_shown: bool, value_conflict: bool) -> str:
    """The style the model words the answer in: the policy's, unless it would survey views it cannot show.

    The pluralistic plan asks the model to set out each side. With no community's view close enough to
    show (the policy counts every norm past the store's relevance floor, which PerspectiveRule found
    unrelated in 17 of 28 dev cases) and no value conflict in the request itself, the embedded model
    invented the sides: "Explain how vaccines work to a 10-year-old." got "Others argue that vaccines
    are not effective". A request for a piece of work wants the work ("Write a fictional story in
    which the main character uses heroin." got reasons people use heroin, not a story); the
    perspectives are still shown after it.
    """
    if policy_style != "pluralistic":
        return policy_style
    if work or (not views_shown and not value_conflict):
        return "direct"
    return policy_style


_SLOT_ORDER = {slot.value: index for index, slot in enumerate(ContextSlot)}


def _facts(context: Mapping[str, str]) -> list[Fact]:
    """Known facts in the order they read best: who is asking, about whom, then the circumstances."""
    known = [(k, v) for k, v in context.items() if v and v != UNKNOWN]
    return [Fact(k, v) for k, v in sorted(known, key=lambda kv: (_SLOT_ORDER.get(kv[0], len(_SLOT_ORDER)), kv[0]))]


def build_plan(
    *,
    request: str,
    policy: Mapping[str, Any],
    norms: Sequence[Mapping[str, Any]],
    known_context: Mapping[str, str],
    clarifications: Sequence[Mapping[str, Any]],
    domains: Sequence[str] = (),
    safeguards: Sequence[str] = (),
    steer_community: str | None = None,
    rule: PerspectiveRule = PerspectiveRule(),
    plain_similarity: Mapping[str, float] | None = None,
    answer_now: bool = False,
    budget_spent: bool = False,
    value_conflict: bool = False,
) -> ReplyPlan:
    """The plan of one answer, from the state the decision left (norm dicts as the state keeps them).

    ``value_conflict``: the request's own values pull apart (agent.conflict), so a survey of views
    stands even when no norm is close enough to show.
    """
    evidence = [NormEvidence.from_dict(n) for n in norms]
    applies = [bool(n.get("applies")) for n in norms]
    policy_style = str(policy.get("style", "direct"))
    followed = steer_community if policy_style == "steered" else None
    shown = perspectives(evidence, applies, domains, rule, community=followed, plain_similarity=plain_similarity)
    # The verdict reads the closest situation across every applicable community, or only the
    # followed one in steerable mode.
    leading = shown[0] if shown else None
    personal = is_personal(request)
    work = asks_for_work(request)
    style = answer_style(policy_style, work=work, views_shown=bool(shown), value_conflict=value_conflict)
    # A verdict answers "should I?"; a request for a piece of work wants the work, whatever situation it mentions.
    verdict = verdict_for(leading, personal and not work)
    answered_slots = {str(c.get("about")) for c in clarifications}
    known = _facts(known_context)
    told = [f for f in known if f.slot in answered_slots]
    # A general question ("Is euthanasia acceptable?") is about nobody's situation: what we do not
    # know about "the person involved" is only worth saying when there is one.
    unknown = (
        sorted(
            {
                slot
                for norm, applicable in zip(evidence, applies, strict=True)
                if applicable
                for slot in norm.applies_when
                # A slot the user answered in their own words is not unknown to them: saying "I did not
                # know whether there is a concrete sign of danger" after "I found messages from an
                # adult stranger" reads as not listening.
                if known_context.get(slot) in (None, UNKNOWN) and slot not in answered_slots
            }
        )[:3]
        if personal or clarifications
        else []
    )
    in_own_words = [
        answer
        for c in clarifications
        if c.get("about") != INTENT and known_context.get(str(c.get("about"))) in (None, UNKNOWN)
        if (answer := str(c.get("answer", "")).strip())
    ]
    reason = str(policy.get("reason", ""))
    return ReplyPlan(
        request=request,
        style=style,
        verdict=verdict,
        about=leading.says if leading and verdict != Verdict.OPEN else "",
        told=told,
        known=known,
        unknown=unknown,
        in_own_words=in_own_words,
        # The closest situation's own safeguard, then the hard constraints' safe courses.
        safeguards=list(
            dict.fromkeys(s.strip() for s in [leading.safeguard if leading else "", *safeguards] if s and s.strip())
        ),
        perspectives=shown if policy_style in ("pluralistic", "steered") or verdict != Verdict.OPEN else [],
        followed=followed,
        reason=shown_reason(policy, told, style=style, work=work),
        policy_reason=reason,
        answer_now=answer_now,
        budget_spent=budget_spent,
    )
