"""Load a small, trusted-shape YAML data file into a pydantic model, with errors that name file, line and field.

Data files (constraint books, norm packs) are edited by hand and may come from contributors, so the
loader is defensive: SafeLoader only, a size cap, no aliases (an alias bomb expands exponentially at
construction time), no duplicate keys (YAML silently keeps the last one, which hides editing mistakes).
Every problem is raised as :class:`DataFileError`, whose message reads ``file:line: field: problem``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

MAX_DATA_FILE_BYTES = 2 * 1024 * 1024
MAX_NESTING_DEPTH = 64  # data files need a handful of levels; deeper input is an attack on the recursive composer

ModelT = TypeVar("ModelT", bound=BaseModel)


class DataFileError(ValueError):
    """A data file could not be read or does not match its schema."""

    def __init__(self, path: Path, problem: str, line: int | None = None, field: str | None = None) -> None:
        self.path = path
        self.problem = problem
        self.line = line
        self.field = field
        where = f"{path}:{line}" if line is not None else str(path)
        what = f"{field}: {problem}" if field else problem
        super().__init__(f"{where}: {what}")


@dataclass(frozen=True)
class LocatedYaml:
    """Plain Python data plus the node tree it came from, to turn a field path into a line number."""

    path: Path
    data: Any
    root: yaml.Node

    def line_of(self, location: Sequence[str | int]) -> int | None:
        """1-based line of the deepest node reachable along ``location`` (a pydantic error ``loc``)."""
        node: yaml.Node = self.root
        for step in location:
            child = _child(node, step)
            if child is None:
                break
            node = child
        return node.start_mark.line + 1


def _child(node: yaml.Node, step: str | int) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(step):
                return value_node
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        child: yaml.Node = node.value[step]
        return child
    return None


def _refuse_aliases_and_deep_nesting(path: Path, text: str) -> None:
    # Checked on the event stream, before any node is composed, so a bomb never gets expanded.
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_NESTING_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark is not None else None
                raise DataFileError(path, f"nested deeper than {MAX_NESTING_DEPTH} levels", line)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            raise DataFileError(path, f"YAML aliases (*{event.anchor}) are not allowed in data files", line)


def _refuse_duplicate_keys(path: Path, node: yaml.Node) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise DataFileError(path, f"duplicate key '{key}'", key_node.start_mark.line + 1, key)
            seen.add(key)
            _refuse_duplicate_keys(path, value_node)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _refuse_duplicate_keys(path, item)


def load_located_yaml(path: Path, max_bytes: int = MAX_DATA_FILE_BYTES) -> LocatedYaml:
    """Parse ``path`` safely; raise :class:`DataFileError` for size, syntax, aliases, depth or duplicate keys."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise DataFileError(path, f"cannot read file ({error.strerror})") from error
    if size > max_bytes:
        raise DataFileError(path, f"file is {size} bytes; data files are limited to {max_bytes} bytes")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataFileError(path, "file is not valid UTF-8") from error
    try:
        _refuse_aliases_and_deep_nesting(path, text)
        loader = yaml.SafeLoader(text)
        try:
            root = loader.get_single_node()
            if root is None:
                raise DataFileError(path, "file is empty")
            _refuse_duplicate_keys(path, root)
            data = loader.construct_document(root)
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark is not None else None
        raise DataFileError(path, f"invalid YAML: {error.problem or error}", line) from error
    except yaml.YAMLError as error:
        raise DataFileError(path, f"invalid YAML: {error}") from error
    return LocatedYaml(path=path, data=data, root=root)


def _field_name(location: Sequence[str | int]) -> str:
    parts: list[str] = []
    for step in location:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        else:
            parts.append(("." if parts else "") + step)
    return "".join(parts) or "(top level)"


def load_yaml_model(path: Path, model: type[ModelT], max_bytes: int = MAX_DATA_FILE_BYTES) -> ModelT:
    """Load ``path`` and validate it as ``model``; the first schema error is reported with its line."""
    located = load_located_yaml(path, max_bytes)
    try:
        return model.model_validate(located.data)
    except ValidationError as error:
        first = error.errors()[0]
        location = tuple(step for step in first["loc"] if isinstance(step, str | int))
        more = error.error_count() - 1
        problem = first["msg"] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
        raise DataFileError(path, problem, located.line_of(location), _field_name(location)) from error
