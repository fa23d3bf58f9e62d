"""Prompt files and their loader. Every text the LLM sees is assembled here, from files beside this one.

User text and norm text are always wrapped in data blocks and stripped of anything that could
close or imitate a block, so they can never be read as instructions.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

import yaml

PROMPTS_DIR = Path(__file__).resolve().parent

# Tags that could close our data blocks or pose as another role's turn.
_DELIMITER_LOOKALIKES = re.compile(
    r"</?\s*(data|system|assistant|user|instructions?|im_start|im_end|s)\b[^>]*>|<\|[^|>]*\|>",
    re.IGNORECASE,
)


@cache
def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>``."""
    return (PROMPTS_DIR / name).read_text(encoding="utf-8")


@cache
def load_prompt_data(name: str) -> Any:
    """A YAML prompt file (question templates and the like), parsed."""
    return yaml.safe_load(load_prompt(name))


def message(key: str, **fields: object) -> str:
    """A fixed text the user sees (prompts/messages.yaml), with its ``$field`` placeholders filled."""
    return Template(load_prompt_data("messages.yaml")[key]).substitute({k: str(v) for k, v in fields.items()}).strip()


def render(name: str, **fields: object) -> str:
    """Fill ``$field`` placeholders of a prompt file; a missing field is an error, not a blank."""
    return Template(load_prompt(name)).substitute({k: str(v) for k, v in fields.items()}).strip()


def as_data(text: str) -> str:
    """Neutralise text that will sit inside a data block: no tag can close or open a role."""
    cleaned = _DELIMITER_LOOKALIKES.sub(lambda m: m.group(0).replace("<", "‹").replace(">", "›"), text)
    return cleaned.replace("```", "'''")


def strip_echoed_markup(text: str) -> str:
    """Remove block and role tags a small model copies from its prompt into its answer.

    Left in, a stray ``<data ...>`` would be taken for HTML by a chat window and hide the reply.
    """
    return _DELIMITER_LOOKALIKES.sub("", text).strip()


def data_block(label: str, text: str) -> str:
    return f'<data kind="{label}">\n{as_data(text)}\n</data>'
