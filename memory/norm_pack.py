"""Community norm packs: typed models, a safe line-aware YAML loader and a few statistics.

A norm pack is one community's norms, kept as a data file under version control so that changing a
norm is a reviewed edit, not a code change. Norm ids are ``<community>.<topic>``: norms of different
communities that share a topic describe the same situation (worded in parallel so retrieval finds
them together) and may take different stances on it; ``find_disagreements`` lists those.

Pack files are untrusted input. They are parsed with ``yaml.SafeLoader`` semantics, anchors and
aliases are refused outright (an alias bomb expands exponentially during validation), files above
``MAX_PACK_BYTES`` are refused before reading, and every error names the file, the line and the field.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agent.vocabulary import DOMAINS, ContextSlot, Stance

MAX_PACK_BYTES = 5 * 1024 * 1024
_PACKS_DIR = Path(__file__).resolve().parent / "packs"

_SLUG = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
_ID = r"^[a-z0-9][a-z0-9._-]*$"
# Semantic Versioning 2.0.0, core plus optional pre-release and build metadata.
_SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)

FieldPath = tuple[str | int, ...]


class NormPackError(ValueError):
    """One or more problems in norm pack files; each message reads ``file:line: field: problem``."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


def _known_domain(name: str) -> str:
    if name not in DOMAINS:
        raise ValueError(f"unknown domain '{name}'; expected one of: {', '.join(DOMAINS)}")
    return name


def _non_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


# Openers of the behaviour-specification wording that a user-facing phrasing must not copy.
_SPEC_OPENER = re.compile(r"^\s*(the|an|this)\s+(ai\s+)?assistant\b", re.IGNORECASE)


def _plain_words(value: str) -> str:
    value = _non_blank(value)
    if _SPEC_OPENER.match(value):
        raise ValueError("must say what the norm is about in a person's words, not 'The assistant ...'")
    return value


DomainName = Annotated[str, AfterValidator(_known_domain)]
Text = Annotated[str, AfterValidator(_non_blank)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Votes(_Strict):
    """Counts of one statement's votes; ``pass`` is spelled ``pass_`` in Python."""

    model_config = ConfigDict(populate_by_name=True)  # merged with _Strict's config

    agree: int = Field(ge=0, strict=True)
    disagree: int = Field(ge=0, strict=True)
    pass_: int = Field(default=0, ge=0, strict=True, alias="pass")

    @property
    def agreement(self) -> float | None:
        """Share of decided votes that agree; passes are undecided and left out. None without votes."""
        decided = self.agree + self.disagree
        return self.agree / decided if decided else None


class Support(_Strict):
    """How people voted on a norm: overall and per opinion group."""

    overall: Votes
    groups: dict[str, Votes] = Field(default_factory=dict)
    contested: bool = False

    @property
    def agreement(self) -> float | None:
        return self.overall.agreement

    @property
    def group_agreement(self) -> dict[str, float | None]:
        return {name: votes.agreement for name, votes in self.groups.items()}


class Norm(_Strict):
    """One community's stance on one behaviour, optionally limited to a context."""

    id: str = Field(pattern=_ID)
    text: Text
    # What the norm is about in words a person would use, shown to users where ``text`` (worded
    # as a behaviour specification, "The assistant helps ...") is what retrieval matches on.
    # Parallel norms share it, so it names the situation and leaves the judgement to ``stance``.
    says: Annotated[str, AfterValidator(_plain_words)]
    # What to keep in mind when acting in this situation, said to the person ("Tell your teenager
    # ..."); shown with the perspectives. Optional: most situations need none.
    safeguard: Annotated[str, AfterValidator(_plain_words)] | None = None
    domains: list[DomainName] = Field(min_length=1)
    applies_when: dict[ContextSlot, Text | list[Text]] = Field(default_factory=dict)
    stance: Stance
    support: Support | None = None

    @field_validator("domains")
    @classmethod
    def _domains_once(cls, domains: list[str]) -> list[str]:
        repeated = sorted(name for name, count in Counter(domains).items() if count > 1)
        if repeated:
            raise ValueError(f"domain listed twice: {', '.join(repeated)}")
        return domains

    @field_validator("applies_when")
    @classmethod
    def _no_empty_any_of(cls, conditions: dict[ContextSlot, str | list[str]]) -> dict[ContextSlot, Any]:
        for slot, value in conditions.items():
            if isinstance(value, list) and not value:
                raise ValueError(f"'{slot.value}' lists no values; leave the slot out to match anything")
        return conditions

    @property
    def topic(self) -> str:
        """The part of the id after the community prefix; shared topics make norms comparable."""
        return self.id.split(".", 1)[-1]


class Governance(_Strict):
    """Who decided that these norms stand for the community, how, and when."""

    ratified_by: Text
    method: Text
    date: date


class NormPack(_Strict):
    """A versioned set of one community's norms."""

    id: str = Field(pattern=_ID)
    community: str = Field(pattern=_SLUG)
    community_name: Text
    description: Text
    version: str = Field(pattern=_SEMVER)
    governance: Governance
    source: Text
    licence: Text
    norms: list[Norm]

    @model_validator(mode="after")
    def _unique_norm_ids(self) -> NormPack:
        repeated = sorted(norm_id for norm_id, n in Counter(n.id for n in self.norms).items() if n > 1)
        if repeated:
            raise ValueError(f"duplicate norm ids: {', '.join(repeated)}")
        return self


# ---------------------------------------------------------------------------------------------
# Line-aware, alias-free YAML reading


try:  # libyaml's parser is about ten times faster; the safe constructor is the same either way
    from yaml import CSafeLoader as _SafeBase
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _SafeBase  # type: ignore[assignment]


class _PackLoader(_SafeBase):
    """Safe loading with YAML 1.2 booleans: ``consent: yes`` stays the string "yes", not True."""


_PackLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PackLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def format_field(path: FieldPath) -> str:
    """``('norms', 3, 'stance')`` -> ``norms[3].stance``; the empty path is the whole document."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(document)"


def _message(file: Path, line: int, path: FieldPath, problem: str) -> str:
    return f"{file}:{line}: {format_field(path)}: {problem}"


@dataclass
class _Frame:
    """Where the event scanner is inside one open mapping or sequence."""

    is_mapping: bool
    expecting_key: bool = True
    key: str | int | None = None
    index: int = 0

    def position(self) -> str | int | None:
        return self.index if not self.is_mapping else (None if self.expecting_key else self.key)

    def child_done(self, scalar: str | None) -> None:
        if not self.is_mapping:
            self.index += 1
        elif self.expecting_key:
            self.key, self.expecting_key = scalar, False
        else:
            self.expecting_key = True


def _refuse_anchors(text: str, file: Path) -> None:
    """Walk the parser's events (nothing is built) and refuse any anchor or alias, naming its field."""
    stack: list[_Frame] = []
    for event in yaml.parse(text, Loader=_PackLoader):
        if isinstance(event, yaml.NodeEvent):
            if isinstance(event, yaml.AliasEvent) or event.anchor is not None:
                where = tuple(p for p in (f.position() for f in stack) if p is not None)
                is_alias = isinstance(event, yaml.AliasEvent)
                kind, sigil = ("alias", "*") if is_alias else ("anchor", "&")
                raise NormPackError(
                    [
                        _message(
                            file,
                            event.start_mark.line + 1 if event.start_mark else 1,
                            where,
                            f"YAML {kind} '{sigil}{event.anchor}' refused: norm packs may not use anchors or "
                            "aliases (they allow exponential expansion)",
                        )
                    ]
                )
            if isinstance(event, yaml.ScalarEvent):
                if stack:
                    stack[-1].child_done(event.value)
            elif isinstance(event, yaml.CollectionStartEvent):
                stack.append(_Frame(is_mapping=isinstance(event, yaml.MappingStartEvent)))
        elif isinstance(event, yaml.CollectionEndEvent):
            stack.pop()
            if stack:
                stack[-1].child_done(None)


def _line_map(node: yaml.Node, file: Path, path: FieldPath = ()) -> Iterator[tuple[FieldPath, int]]:
    """Every field path with its 1-based line; refuses duplicate and non-scalar mapping keys."""
    yield path, node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                raise NormPackError([_message(file, line, path, "mapping keys must be plain names")])
            key = str(key_node.value)
            if key in seen:
                raise NormPackError(
                    [_message(file, line, (*path, key), f"key given twice (first on line {seen[key]})")]
                )
            seen[key] = line
            yield from _line_map(value_node, file, (*path, key))
            yield (*path, key), line  # the key's own line wins over its value's, for nested values
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            yield from _line_map(item, file, (*path, index))


@dataclass(frozen=True)
class _Document:
    data: Any
    lines: dict[FieldPath, int]

    def line_of(self, path: FieldPath) -> int:
        """Line of the deepest known prefix of ``path`` (pydantic adds parts like '[key]')."""
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return self.lines[path[:end]]
        return 1


def _field_on_line(lines: dict[FieldPath, int], line: int, deepest: bool = True) -> FieldPath:
    """The most (or least) specific field that starts on ``line``; the document when none does."""
    on_line = [path for path, start in lines.items() if start == line]
    if not on_line:
        return ()
    return max(on_line, key=len) if deepest else min(on_line, key=len)


def _decode(raw: bytes, file: Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        bad = raw[error.start : error.end].hex(" ")
        field: FieldPath = ()
        try:  # name the field holding the bad bytes when the rest of the file still parses
            lenient = _compose(raw.decode("utf-8", errors="replace"), file)
            field = _field_on_line(lenient.lines, line)
        except (NormPackError, yaml.YAMLError, RecursionError):
            pass
        raise NormPackError(
            [_message(file, line, field, f"file is not valid UTF-8 (bytes {bad} at byte offset {error.start})")]
        ) from None


def _compose(text: str, file: Path) -> _Document:
    _refuse_anchors(text, file)
    loader = _PackLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise NormPackError([_message(file, 1, (), "file is empty; a norm pack must be a mapping")])
        lines = dict(_line_map(node, file))
        try:
            data = loader.construct_document(node)
        except yaml.MarkedYAMLError as error:  # e.g. a !!python/object tag, which SafeLoader refuses
            line = error.problem_mark.line + 1 if error.problem_mark else 1
            raise NormPackError(
                [_message(file, line, _field_on_line(lines, line, deepest=False), f"invalid YAML: {error.problem}")]
            ) from None
    finally:
        loader.dispose()
    return _Document(data, lines)


def _read_document(file: Path) -> _Document:
    try:
        size = file.stat().st_size
        if size > MAX_PACK_BYTES:
            raise NormPackError([_message(file, 1, (), f"file is {size} bytes, above the {MAX_PACK_BYTES}-byte limit")])
        raw = file.read_bytes()
    except OSError as error:
        raise NormPackError([f"{file}:1: (document): cannot read file: {error.strerror}"]) from None
    try:
        return _compose(_decode(raw, file), file)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark else 1
        problem = " ".join(str(p) for p in (error.context, error.problem) if p)
        raise NormPackError([_message(file, line, (), f"invalid YAML: {problem}")]) from None
    except yaml.YAMLError as error:
        raise NormPackError([_message(file, 1, (), f"invalid YAML: {error}")]) from None
    except RecursionError:
        raise NormPackError([_message(file, 1, (), "invalid YAML: nested too deeply")]) from None


def _duplicate_norm_ids(document: _Document, file: Path) -> list[str]:
    norms = document.data.get("norms") if isinstance(document.data, dict) else None
    if not isinstance(norms, list):
        return []
    first: dict[str, int] = {}
    errors = []
    for index, norm in enumerate(norms):
        norm_id = norm.get("id") if isinstance(norm, dict) else None
        if not isinstance(norm_id, str):
            continue
        if norm_id in first:
            earlier = ("norms", first[norm_id], "id")
            errors.append(
                _message(
                    file,
                    document.line_of(("norms", index, "id")),
                    ("norms", index, "id"),
                    f"duplicate norm id '{norm_id}' (first at {file}:{document.line_of(earlier)}: "
                    f"{format_field(earlier)})",
                )
            )
        else:
            first[norm_id] = index
    return errors


def _validation_messages(error: ValidationError, document: _Document, file: Path) -> list[str]:
    messages = []
    for problem in error.errors(include_url=False):
        located = tuple(problem["loc"])
        path = tuple(part for part in located if part != "[key]")  # pydantic's marker for dict keys
        if located != path:
            text = f"'{path[-1]}' is not allowed here: {problem['msg']}"
        elif problem["type"] == "extra_forbidden":
            text = f"unknown field '{path[-1]}'"
        elif problem["type"] == "missing":
            text = f"required field '{path[-1]}' is missing"
        else:
            text = problem["msg"].removeprefix("Value error, ")
        messages.append(_message(file, document.line_of(path), path, text))
    return messages


def _load_located(file: Path) -> tuple[NormPack, _Document]:
    document = _read_document(file)
    if not isinstance(document.data, dict):
        kind = type(document.data).__name__
        raise NormPackError([_message(file, 1, (), f"a norm pack must be a mapping, not a {kind}")])
    duplicates = _duplicate_norm_ids(document, file)
    if duplicates:
        raise NormPackError(duplicates)
    try:
        return NormPack.model_validate(document.data), document
    except ValidationError as error:
        raise NormPackError(_validation_messages(error, document, file)) from None


def load_pack(path: str | Path) -> NormPack:
    """Read and validate one pack file; raises NormPackError naming file, line and field."""
    return _load_located(Path(path))[0]


def shipped_packs_dir() -> Path:
    """The folder of the packs that ship with Edge Align (memory/packs)."""
    return _PACKS_DIR


def _pack_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[str]]:
    files: list[Path] = []
    errors: list[str] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(path.glob("*.yaml"))
            if not found:
                errors.append(f"{path}:1: (document): folder holds no *.yaml norm packs")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(f"{path}:1: (document): no such file or folder")
    return files, errors


def packs_digest(paths: Iterable[str | Path]) -> str:
    """A key of the pack files ``paths`` name (their names and bytes): equal keys, equal packs, no parsing."""
    from agent.install_cache import content_key

    files, _ = _pack_files(paths)
    parts: list[str | bytes] = []
    for file in files:
        parts += [file.name, file.read_bytes()]
    return content_key(parts, length=32)


def _load_all(paths: Iterable[str | Path]) -> tuple[list[NormPack], list[str]]:
    files, errors = _pack_files(paths)
    packs: list[NormPack] = []
    pack_home: dict[str, str] = {}
    norm_home: dict[str, str] = {}
    seen_files: set[Path] = set()
    for file in files:
        if file.resolve() in seen_files:
            continue  # the same file named twice (a folder and one of its files) is one pack
        seen_files.add(file.resolve())
        try:
            pack, document = _load_located(file)
        except NormPackError as error:
            errors.extend(error.messages)
            continue
        clashes = []
        if pack.id in pack_home:
            clashes.append(
                _message(
                    file,
                    document.line_of(("id",)),
                    ("id",),
                    f"duplicate pack id '{pack.id}' (also at {pack_home[pack.id]})",
                )
            )
        for index, norm in enumerate(pack.norms):
            if norm.id in norm_home:
                field = ("norms", index, "id")
                clashes.append(
                    _message(
                        file,
                        document.line_of(field),
                        field,
                        f"duplicate norm id '{norm.id}' (also at {norm_home[norm.id]})",
                    )
                )
        if clashes:
            errors.extend(clashes)
            continue
        pack_home[pack.id] = f"{file}:{document.line_of(('id',))}: id"
        for index, norm in enumerate(pack.norms):
            field = ("norms", index, "id")
            norm_home[norm.id] = f"{file}:{document.line_of(field)}: {format_field(field)}"
        packs.append(pack)
    return packs, errors


def load_packs(paths: Iterable[str | Path]) -> list[NormPack]:
    """Load packs from files and folders (a folder means its *.yaml files); ids must be unique across all."""
    packs, errors = _load_all(paths)
    if errors:
        raise NormPackError(errors)
    return packs


def validate_paths(paths: Iterable[str | Path]) -> list[str]:
    """Every problem found in the given files and folders; empty when all packs are valid."""
    return _load_all(paths)[1]


def find_disagreements(packs: Iterable[NormPack]) -> dict[str, dict[str, Stance]]:
    """Situations on which communities differ: same topic and context, different stances.

    Keys are ``topic`` or ``topic | slot=value, ...`` when the context is not empty; values map each
    community to its stance. Only situations with at least two distinct stances are listed.
    """
    situations: dict[str, dict[str, Stance]] = {}
    for pack in packs:
        for norm in pack.norms:
            context = ", ".join(
                f"{slot.value}={'|'.join(sorted(v)) if isinstance(v, list) else v}"
                for slot, v in sorted(norm.applies_when.items())
            )
            key = f"{norm.topic} | {context}" if context else norm.topic
            situations.setdefault(key, {})[pack.community] = norm.stance
    return {key: s for key, s in sorted(situations.items()) if len(set(s.values())) > 1}


def pack_stats(packs: Iterable[NormPack]) -> dict[str, Any]:
    """JSON-ready counts: communities, packs and versions, norms per community, domain and stance."""
    packs = list(packs)
    norms = [norm for pack in packs for norm in pack.norms]
    per_community = Counter({pack.community: 0 for pack in packs})
    for pack in packs:
        per_community[pack.community] += len(pack.norms)
    return {
        "communities": sorted(per_community),
        "packs": [{"id": p.id, "community": p.community, "version": p.version, "norms": len(p.norms)} for p in packs],
        "norms": len(norms),
        "per_community": dict(sorted(per_community.items())),
        "per_domain": dict(sorted(Counter(d for n in norms for d in n.domains).items())),
        "per_stance": {s.value: sum(n.stance is s for n in norms) for s in Stance},
        "contested": sum(bool(n.support and n.support.contested) for n in norms),
        "disagreements": len(find_disagreements(packs)),
    }
