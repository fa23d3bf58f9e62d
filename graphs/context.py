"""Run settings for one graph invocation (LangGraph ``context_schema``), read by nodes via ``Runtime[Context]``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any

from agent.vocabulary import AnswerPrompt, Mode


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the setting."""


@dataclass(kw_only=True)
class Context:
    """Everything a turn may be configured with. The API key is never here: it stays in the environment."""

    llm_base_url: str | None = None  # None: the embedded llama.cpp server (EDGE_ALIGN_EMBEDDED_MODEL)
    # Empty: the endpoint's first listed model (/v1/models); ignored by the embedded server, which
    # serves the packaged model EDGE_ALIGN_EMBEDDED_MODEL names (docs/llm-profiles.md).
    llm_model: str = ""
    communities: tuple[str, ...] = ()  # empty: every community
    mode: Mode = Mode.OVERTON
    steer_community: str | None = None  # with mode=steerable: whose norms to follow
    clarification_budget: int = 2  # questions per request
    # Thresholds default to agent/data/policy.json, where the command that chose each one wrote it with
    # its data and rule (agent/policy_config.py). Set one only to override it.
    question_value_threshold: float = field(default_factory=lambda: _policy_value("question_value"))
    disagreement_threshold: float = field(default_factory=lambda: _policy_value("disagreement"))
    conflict_threshold: float | None = None  # None: the judge's conflict head at p >= 0.5
    relevance_floor: float = field(default_factory=lambda: _policy_value("relevance_floor"))
    # How close a vague request must be to an IN3 task to be asked that task's question (with its
    # options); None: never, ClariQ's bank or the generic question instead (agent/task_questions.py).
    task_question_similarity: float | None = field(default_factory=lambda: _optional_policy_value("task_question_similarity"))
    # How close ClariQ's best-fitting question must be to the request to be asked; None: no floor.
    # Below it the generic question is asked: a question about another topic is worse than none.
    bank_question_similarity: float | None = field(default_factory=lambda: _optional_policy_value("bank_question_similarity"))
    norms_k: int = 12
    value_model: str = "trained"  # or "zero-shot"
    max_message_chars: int = 8000
    generate_text: bool = True  # False: decision path only (evaluation, replay)
    # The 135M embedded model retells norm texts ("The assistant states its opinion...") as stories;
    # benchmarks/wording.py measures it. AUTO gives it the compact prompt, other endpoints the full one.
    answer_prompt: AnswerPrompt = AnswerPrompt.AUTO
    # The judge (agent.judge.Judge) that reads each analysis pass; None: the shipped one, loaded once per
    # process. Embedding apps and tests hand in their own.
    judge: Any = None
    home: str | None = None  # data home; None: $EDGE_ALIGN_HOME or ~/.local/share/edge-align
    user_context: dict[str, str] = field(default_factory=dict)  # facts the user set in the UI

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ, **overrides: Any) -> Context:
        """Settings from EDGE_ALIGN_* variables, then explicit overrides; bad values raise ConfigError."""
        values: dict[str, Any] = {}
        if environ.get("EDGE_ALIGN_LLM_BASE_URL"):
            values["llm_base_url"] = environ["EDGE_ALIGN_LLM_BASE_URL"]
        if environ.get("EDGE_ALIGN_LLM_MODEL"):
            values["llm_model"] = environ["EDGE_ALIGN_LLM_MODEL"]
        if environ.get("EDGE_ALIGN_COMMUNITIES"):
            values["communities"] = tuple(c.strip() for c in environ["EDGE_ALIGN_COMMUNITIES"].split(",") if c.strip())
        numeric = {
            "EDGE_ALIGN_CLARIFICATION_BUDGET": ("clarification_budget", int),
            "EDGE_ALIGN_CONFLICT_THRESHOLD": ("conflict_threshold", float),
            "EDGE_ALIGN_MAX_MESSAGE_CHARS": ("max_message_chars", int),
        }
        for variable, (name, kind) in numeric.items():
            if environ.get(variable):
                try:
                    values[name] = kind(environ[variable])
                except ValueError:
                    raise ConfigError(f"{variable} must be a {kind.__name__}, got {environ[variable]!r}") from None
        if environ.get("EDGE_ALIGN_MODE"):
            values["mode"] = environ["EDGE_ALIGN_MODE"]
        if environ.get("EDGE_ALIGN_ANSWER_PROMPT"):
            values["answer_prompt"] = environ["EDGE_ALIGN_ANSWER_PROMPT"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.validated(**values)

    @classmethod
    def validated(cls, **values: Any) -> Context:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
        _to_enum(values, "mode", Mode.OVERTON)
        _to_enum(values, "answer_prompt", AnswerPrompt.AUTO)
        if "communities" in values:
            values["communities"] = tuple(values["communities"])
        context = cls(**values)
        if context.clarification_budget < 0:
            raise ConfigError("clarification_budget must be 0 or more")
        if context.max_message_chars < 1:
            raise ConfigError("max_message_chars must be positive")
        for name in (
            "question_value_threshold",
            "disagreement_threshold",
            "relevance_floor",
        ):
            if not 0.0 <= getattr(context, name) <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1")
        for name in ("task_question_similarity", "bank_question_similarity"):
            floor = getattr(context, name)
            if floor is not None and not -1.0 <= floor <= 1.0:
                raise ConfigError(f"{name} must be a cosine between -1 and 1, or None")
        if context.mode == Mode.STEERABLE and not context.steer_community:
            raise ConfigError("mode 'steerable' needs steer_community (the community whose norms to follow)")
        return context

    def fingerprint(self) -> dict[str, Any]:
        """The settings that shape decisions, for transcripts and replays (no secrets live here)."""
        return {
            "llm_model": self.llm_model or _default_model_label(self.llm_base_url),
            "llm_endpoint": "embedded" if self.llm_base_url is None else _endpoint_name(self.llm_base_url),
            "communities": list(self.communities),
            "mode": str(self.mode),
            "steer_community": self.steer_community,
            "clarification_budget": self.clarification_budget,
            "question_value_threshold": self.question_value_threshold,
            "disagreement_threshold": self.disagreement_threshold,
            "conflict_threshold": self.conflict_threshold,
            "relevance_floor": self.relevance_floor,
            "task_question_similarity": self.task_question_similarity,
            "bank_question_similarity": self.bank_question_similarity,
            "value_model": self.value_model,
        }


def _policy_value(name: str) -> float:
    value = _optional_policy_value(name)
    if value is None:
        raise ConfigError(f"agent/data/policy.json has no value for {name}")
    return value


def _optional_policy_value(name: str) -> float | None:
    from agent.policy_config import shipped_policy

    setting = getattr(shipped_policy(), name)
    return None if setting is None else float(setting.value)


def _to_enum(values: dict[str, Any], name: str, default: StrEnum) -> None:
    """Turn ``values[name]`` (a string from the environment or a caller) into ``default``'s enum type."""
    kind = type(default)
    try:
        values[name] = kind(values.get(name, default))
    except ValueError:
        raise ConfigError(f"{name} must be one of {[m.value for m in kind]}, got {values[name]!r}") from None


def _default_model_label(base_url: str | None) -> str:
    """What an unset model name stands for, without asking the endpoint."""
    if base_url is None:
        from agent.embedded_models import selected_model

        return selected_model().alias
    return "(the endpoint's first listed model)"


def _endpoint_name(url: str) -> str:
    from urllib.parse import urlparse

    parsed = urlparse(url)
    host = parsed.hostname or "?"
    return f"{parsed.scheme}://{host}" + (f":{parsed.port}" if parsed.port else "")
