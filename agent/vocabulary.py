"""The small typed vocabulary every layer speaks: decisions, stances, actions, modes, context slots."""

from __future__ import annotations

from enum import StrEnum


class Decision(StrEnum):
    """What the agent does with a request this turn."""

    ANSWER = "answer"
    CLARIFY = "clarify"
    REFUSE = "refuse"


class Stance(StrEnum):
    """How a community's norm regards the behaviour it describes."""

    EXPECTED = "expected"
    OKAY = "okay"
    DISCOURAGED = "discouraged"
    FORBIDDEN = "forbidden"


class ConstraintAction(StrEnum):
    """What a matched hard constraint demands."""

    REFUSE = "refuse"
    REDIRECT = "redirect"
    REQUIRE_CLARIFICATION = "require_clarification"


class Mode(StrEnum):
    """How norms of several communities shape the answer."""

    OVERTON = "overton"  # present the spread of reasonable views and whose they are
    STEERABLE = "steerable"  # follow the chosen community, within the hard constraints


class AnswerPrompt(StrEnum):
    """How much of the turn's evidence the wording model is shown."""

    AUTO = "auto"  # compact for the embedded model, full for any configured endpoint
    FULL = "full"  # request, situation, the applicable norms, the plan
    COMPACT = "compact"  # request, situation, the plan: the norms reach the reply deterministically


class ContextSlot(StrEnum):
    """Facts about the user's situation that norms are conditioned on and questions ask about."""

    ROLE = "role"
    AGE = "age"
    CONSENT = "consent"
    RELATIONSHIP = "relationship"
    PURPOSE = "purpose"
    RISK = "risk"
    JURISDICTION = "jurisdiction"


# The domains a message can be about; norm packs tag their norms with these names.
DOMAINS: tuple[str, ...] = (
    "health",
    "parenting",
    "privacy",
    "workplace",
    "finance",
    "relationships",
    "expression",
    "legal",
    "education",
    "technology",
    "safety",
)
