"""Every threshold of the decision in one validated file, each written by the command that set it.

``agent/data/policy.json`` holds, per entry, its value, the command that wrote it, the data it was
chosen on and the rule that chose it. ``python -m agent.training.train_judge`` writes ``judge`` (the
stated decision costs and the cut points they imply); ``python -m graphs.tune_policy --write`` writes
``question_value`` and ``disagreement``; ``python -m agent.training.tune_task_questions --write`` writes
``task_question_similarity`` and ``bank_question_similarity``; ``python -m agent.training.tune_clause_harm
--write`` writes ``clause_harm``. Nothing else sets a threshold: ``graphs.context.Context``
falls back to this file for every one it is not given.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

POLICY_FILE = Path(__file__).resolve().parent / "data" / "policy.json"
DECISIONS = ("answer", "clarify", "refuse")


class PolicyConfigError(ValueError):
    """The policy file is missing, malformed or out of range; the message names the file and field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Setting(_Strict):
    value: float = Field(ge=0.0, le=1.0)
    written_by: str
    chosen_on: str
    rule: str


class JudgeSetting(_Strict):
    written_by: str
    rule: str
    # costs[truth][action], in units of one needless question
    costs: dict[str, dict[str, float]]
    refuse_from_p_harmful_when_clear: float
    refuse_from_p_harmful_when_ambiguous: float
    clarify_from_p_clarify_when_harmless: float

    def model_post_init(self, __context: Any) -> None:
        for truth in DECISIONS:
            row = self.costs.get(truth)
            if row is None or set(row) != set(DECISIONS):
                raise ValueError(f"costs.{truth} must give a cost for each of {list(DECISIONS)}")
            if row[truth] != 0 or any(v < 0 for v in row.values()):
                raise ValueError(f"costs.{truth}: the right action costs 0 and no cost is negative")


class ClauseHarmSetting(_Strict):
    """The logistic rule that combines a message's and its clauses' harmful probabilities (agent.judge.ClauseRule)."""

    message: float
    clause: float
    intercept: float
    written_by: str
    chosen_on: str
    rule: str


class PolicyConfig(_Strict):
    judge: JudgeSetting
    question_value: Setting
    disagreement: Setting
    relevance_floor: Setting
    # How close a request must be to an IN3 vague task to ask that task's question (agent/task_questions.py).
    task_question_similarity: Setting | None = None
    # How close ClariQ's question must be to the request to be asked rather than the generic one (same tuner).
    bank_question_similarity: Setting | None = None
    # How a message's clauses weigh in its harmful probability; absent: the highest of message and clauses.
    clause_harm: ClauseHarmSetting | None = None


def read_policy_config(path: Path = POLICY_FILE) -> PolicyConfig:
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as problem:
        raise PolicyConfigError(f"{path}: cannot read the policy file ({problem.strerror})") from None
    try:
        return PolicyConfig.model_validate(json.loads(raw))
    except json.JSONDecodeError as problem:
        raise PolicyConfigError(f"{path}:{problem.lineno}: not valid JSON ({problem.msg})") from None
    except ValidationError as problem:
        first = problem.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "file"
        raise PolicyConfigError(f"{path}: {where}: {first['msg']}") from None


@lru_cache(maxsize=1)
def shipped_policy() -> PolicyConfig:
    """The file that ships with the package (read once per process)."""
    return read_policy_config(POLICY_FILE)


def update_policy_file(entries: dict[str, Any], path: Path = POLICY_FILE) -> PolicyConfig:
    """Replace ``entries`` in the file (the other entries stay as their commands wrote them), validated first."""
    current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    merged = {**current, **entries}
    config = PolicyConfig.model_validate(merged)
    path.write_text(json.dumps(merged, indent=2) + "\n", encoding="utf-8")
    shipped_policy.cache_clear()
    return config
