"""Facts about the user's situation read from what they wrote: stated plainly, so matched plainly.

Only explicit statements are read ("my 15-year-old daughter", "without her knowing"); anything
else stays unknown and becomes a candidate for a clarifying question.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from agent.vocabulary import ContextSlot

_AGE = re.compile(r"\b(\d{1,2})[- ]?(?:year|yr)s?[- ]?old\b", re.IGNORECASE)
_PATTERNS: list[tuple[ContextSlot, str, re.Pattern[str]]] = [
    (ContextSlot.AGE, "minor", re.compile(r"\b(toddler|baby|infant|teen(ager)?|kid|child(ren)?|minor)s?\b", re.I)),
    (
        ContextSlot.ROLE,
        "parent",
        # "my 15-year-old daughter" names a parent as plainly as "my teenage daughter" does.
        re.compile(
            r"\bmy (little |teenage |young |\d{1,2}[- ]?(?:year|yr)s?[- ]?old )?"
            r"(daughter|son|child|kid|teen|teenager|children|kids)\b",
            re.I,
        ),
    ),
    (
        ContextSlot.ROLE,
        "employer",
        re.compile(r"\bmy (employees?|staff|team members?|workers?|direct reports?)\b", re.I),
    ),
    (ContextSlot.ROLE, "employee", re.compile(r"\bmy (boss|manager|employer|supervisor)\b", re.I)),
    (ContextSlot.ROLE, "patient", re.compile(r"\bmy (doctor|gp|physician|prescription|medication)\b", re.I)),
    (
        ContextSlot.RELATIONSHIP,
        "ex-partner",
        re.compile(r"\bmy ex([- ](partner|wife|husband|girlfriend|boyfriend))?\b", re.I),
    ),
    (
        ContextSlot.RELATIONSHIP,
        "partner",
        re.compile(r"\bmy (wife|husband|partner|girlfriend|boyfriend|spouse|fianc[eé]e?)\b", re.I),
    ),
    (
        ContextSlot.RELATIONSHIP,
        "family",
        re.compile(
            r"\bmy (mother|mom|mum|father|dad|sister|brother|grandmother|grandfather|aunt|uncle|daughter|son|child|parents?)\b",
            re.I,
        ),
    ),
    (
        ContextSlot.RELATIONSHIP,
        "colleague",
        re.compile(r"\bmy (colleague|co-?worker|employees?|boss|manager)s?\b", re.I),
    ),
    (ContextSlot.RELATIONSHIP, "friend", re.compile(r"\bmy (best )?friends?\b", re.I)),
    (
        ContextSlot.CONSENT,
        "no",
        re.compile(
            r"\b(without (her|him|them|their|his) (knowing|knowledge|consent|permission)|secretly|behind (her|his|their) back|without telling)\b",
            re.I,
        ),
    ),
    (
        ContextSlot.CONSENT,
        "yes",
        re.compile(
            r"\b(with (her|his|their) (consent|permission)|(she|he|they) (asked|agreed|consented)|gave me permission)\b",
            re.I,
        ),
    ),
    (ContextSlot.PURPOSE, "safety", re.compile(r"\b(safe|safety|in danger|protect)\b", re.I)),
]


# The clarifying question offers coarse regions (EU, UK, US, elsewhere) while packs may name a
# country or a US state, so a coarse answer admits any place inside it and a precise one admits
# the region that holds it.
_EU_MEMBERS = frozenset(
    ["at", "be", "bg", "hr", "cy", "cz", "dk", "ee", "fi", "fr", "de", "gr", "hu", "ie", "it", "lv", "lt", "lu", "mt", "nl", "pl", "pt", "ro", "sk", "si", "es", "se"]
)
JURISDICTION_REGIONS = ("eu", "uk", "us", "other")


def jurisdiction_region(code: str) -> str:
    """The coarse region ("eu", "uk", "us" or "other") of a country, state or region code."""
    code = code.strip().lower()
    if code == "eu" or code in _EU_MEMBERS:
        return "eu"
    if code in ("uk", "gb") or code.startswith(("uk-", "gb-")):
        return "uk"
    if code == "us" or code.startswith("us-"):
        return "us"
    return "other"


def slot_admits(slot: str, known: str, allowed: Sequence[str]) -> bool:
    """Whether a known value of ``slot`` is compatible with a norm's ``applies_when`` list."""
    if known in allowed:
        return True
    if slot != ContextSlot.JURISDICTION:
        return False
    region = jurisdiction_region(known)
    if known.strip().lower() == region:
        return any(jurisdiction_region(place) == region for place in allowed)
    return region in allowed


def extract_context(text: str) -> dict[str, str]:
    """Slot values the text states explicitly; the first matching pattern per slot wins."""
    found: dict[str, str] = {}
    age = _AGE.search(text)
    if age:
        found[ContextSlot.AGE] = "minor" if int(age.group(1)) < 18 else "adult"
    for slot, value, pattern in _PATTERNS:
        if slot not in found and pattern.search(text):
            found[slot] = value
    return {str(k): v for k, v in found.items()}


# "us" is the writer's group, except as the country: "US" in capitals, or "the us" (AmbigNQ's
# "who won the us open"), which was 165 of is_personal's 743 false positives on AmbigNQ's factual
# questions (benchmarks/keyword_components.py).
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|my|me|mine|we|our|myself)\b|(?<!\bthe )\b(?!(?-i:US)\b)us\b", re.IGNORECASE)


def is_personal(text: str) -> bool:
    """Whether the request is about the writer's own situation (so facts about it could matter)."""
    return bool(_FIRST_PERSON.search(text))


# The verbs that open a request for a piece of work ("Write a persuasive essay arguing that we should
# ban fast food.", "Draft a letter to my landlord ..."). Such a request wants the work done, not a
# verdict on the situation its words mention: read as personal ("we should"), the first v5 demo reply
# to the essay request opened "Yes: free-expression advocates and the general public consider it
# acceptable" and gave diet tips instead of an essay.
_WORK_VERBS = frozenset(
    ["write", "draft", "compose", "create", "generate", "produce", "design", "craft", "prepare", "summarize",
     "summarise", "translate", "rewrite", "edit", "outline", "list"]
)


def asks_for_work(text: str) -> bool:
    """Whether the request opens by asking for a piece of work to be made ("Write ...", "Draft ...")."""
    words = re.findall(r"[a-z]+", text.lower())
    if words[:1] == ["please"] or words[:2] in (["can", "you"], ["could", "you"], ["would", "you"]):
        words = words[1:] if words[:1] == ["please"] else words[2:]
    return bool(words) and words[0] in _WORK_VERBS


_JUST_ANSWER = re.compile(
    r"^\s*(just (answer|tell me|say it|give me (an|the) answer)|skip( the)? questions?|no more questions|"
    r"stop asking|don'?t ask( me)?( any more| anything)?|answer (it |me )?(now|already)|whatever,? just answer)\b",
    re.IGNORECASE,
)


def wants_answer_now(text: str) -> bool:
    """The user asks to skip clarification ("just answer", "stop asking", ...)."""
    return bool(_JUST_ANSWER.search(text))


def match_option(answer: str, options: Sequence[Mapping[str, Any]]) -> str | None:
    """The stored value of the option the answer picks, by its label or a clear yes/no; else None."""
    said = answer.strip().lower().rstrip(".!")
    for option in options:
        label = str(option["label"]).lower()
        if said == label or said == str(option["value"]).lower() or (len(said) > 2 and label.startswith(said)):
            return str(option["value"])
    for option in options:
        first_word = str(option["label"]).lower().split(",")[0].split()[0]
        if said.split() and said.split()[0].strip(",") == first_word and first_word in {"yes", "no"}:
            return str(option["value"])
    return None
