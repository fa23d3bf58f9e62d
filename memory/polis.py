"""Import the Collective Constitutional AI Pol.is export as a norm pack with real vote support.

What the export gives (checked against the files in ``/work/shared/data/ccai_polis``):

- ``comments.csv``: all 1,418 statements with a ``moderated`` flag (1 = moderated in, 0 = not reviewed,
  -1 = moderated out) and raw agree/disagree counts from every participant (no pass counts).
- ``clean_comments.csv``: the 275 moderated-in statements after the CCAI team's cleaning, with
  ``agrees``/``disagrees``/``passes`` recounted over the cleaned participants and
  ``group_0_consensus``/``group_1_consensus``. The latter equal agree / (agree + disagree + pass)
  within the group, i.e. passes count against agreement; they are not used (see ``Votes.agreement``).
- ``clean_votes.csv``: one row per kept participant (1,002) with its opinion ``group-id`` (0 or 1;
  group 0 is group A of the Pol.is report) and one column per moderated-in statement holding
  1.0 (agree), -1.0 (disagree), 0.0 (pass) or blank (not shown / not voted).
- ``ids-to-toss.csv``: *participant* ids (not statement ids) removed for spammy input. Their votes are
  already absent from ``clean_votes.csv``; the importer drops them again in case a future export
  keeps them. Statements they wrote that moderators accepted stay, as in the CCAI processing.

So a norm is made for every statement that is moderated in (``moderated == 1`` in ``comments.csv``
and present in ``clean_comments.csv``; the two sets must agree). Its support is tallied from
``clean_votes.csv``: overall and per group ``group_0``/``group_1``; the overall tally is checked
against ``clean_comments.csv``. ``contested`` is True when the groups' agreement shares
(agree / (agree + disagree)) differ by at least ``contested_gap``.

Stance from the overall agreement share: >= 0.7 expected, <= 0.3 discouraged, otherwise okay (also
okay when nobody decided). Domains: statements are about AI behaviour, so each gets every domain whose
keywords it mentions (``DOMAIN_KEYWORDS``), and ``technology`` when none matches. The statement, written
by a participant, is also the norm's plain phrasing (``says``), shown to users as it was voted on.

The data carries no licence, so an imported pack is built at run time and never committed.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from agent.vocabulary import Stance
from memory.norm_pack import Governance, Norm, NormPack, Support, Votes

COMMUNITY = "ccai-polis"
EXPECTED_FROM = 0.7
DISCOURAGED_UP_TO = 0.3
GROUP_COLUMN = "group-id"
VOTE_META_COLUMNS = ("participant", "xid", GROUP_COLUMN, "n-comments", "n-votes", "n-agree", "n-disagree")

# Word stems; a statement gets a domain when one of its words starts with a stem.
DOMAIN_KEYWORDS: dict[str, tuple[str, ...]] = {
    "health": ("health", "medic", "doctor", "disease", "mental", "therap", "illness", "drug", "suicid"),
    "parenting": ("child", "kid", "parent", "minor", "youth", "teen"),
    "privacy": ("privacy", "private", "personal data", "personal information", "surveil", "track", "data"),
    "workplace": ("job", "workplace", "worker", "employ", "labor", "labour", "career"),
    "finance": ("money", "financ", "econom", "wealth", "profit", "bank", "rich", "poor"),
    "relationships": ("relationship", "friend", "famil", "love", "emotion", "feeling", "companion"),
    "expression": (
        "speech",
        "opinion",
        "politic",
        "censor",
        "religio",
        "offens",
        "bias",
        "racis",
        "hate",
        "free expression",
        "freedom of",
        "controversial",
        "belief",
        "diversity",
        "discriminat",
    ),
    "legal": ("law", "legal", "illegal", "rights", "court", "crim", "regulat", "govern"),
    "education": ("educat", "learn", "teach", "school", "student", "knowledge"),
    "safety": ("harm", "safe", "danger", "weapon", "violen", "kill", "threat", "risk", "abuse"),
}
DEFAULT_DOMAIN = "technology"


@dataclass
class _Tally:
    agree: int = 0
    disagree: int = 0
    passes: int = 0

    def add(self, vote: float) -> None:
        if vote > 0:
            self.agree += 1
        elif vote < 0:
            self.disagree += 1
        else:
            self.passes += 1

    def votes(self) -> Votes:
        return Votes.model_validate({"agree": self.agree, "disagree": self.disagree, "pass": self.passes})


@dataclass
class _StatementVotes:
    overall: _Tally = field(default_factory=_Tally)
    groups: dict[str, _Tally] = field(default_factory=dict)


def _read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def tossed_participants(polis_dir: Path) -> set[str]:
    """Participant ids the CCAI team removed for spam (the file has no header row)."""
    lines = (polis_dir / "ids-to-toss.csv").read_text(encoding="utf-8").split()
    return {line.strip() for line in lines if line.strip().isdigit()}


def moderated_in_statements(polis_dir: Path) -> dict[str, dict[str, str]]:
    """comment-id -> clean_comments.csv row for every moderated-in statement."""
    clean = {row["comment-id"]: row for row in _read_rows(polis_dir / "clean_comments.csv")}
    moderated = {row["comment-id"] for row in _read_rows(polis_dir / "comments.csv") if row["moderated"] == "1"}
    if set(clean) != moderated:
        raise ValueError(
            f"{polis_dir}: clean_comments.csv and the moderated-in statements of comments.csv differ "
            f"({len(set(clean) - moderated)} only in clean, {len(moderated - set(clean))} only moderated)"
        )
    return clean


def tally_votes(polis_dir: Path, comment_ids: Iterable[str]) -> dict[str, _StatementVotes]:
    """Votes per statement from clean_votes.csv, overall and per opinion group, without tossed people."""
    tossed = tossed_participants(polis_dir)
    wanted = list(comment_ids)
    tallies = {cid: _StatementVotes() for cid in wanted}
    for row in _read_rows(polis_dir / "clean_votes.csv"):
        if row["participant"] in tossed:
            continue
        group = f"group_{row[GROUP_COLUMN]}" if row[GROUP_COLUMN] != "" else None
        for cid in wanted:
            cell = row.get(cid, "")
            if cell == "":
                continue
            vote = float(cell)
            tallies[cid].overall.add(vote)
            if group is not None:
                tallies[cid].groups.setdefault(group, _Tally()).add(vote)
    return tallies


def stance_from_agreement(agreement: float | None) -> Stance:
    if agreement is None:
        return Stance.OKAY
    if agreement >= EXPECTED_FROM:
        return Stance.EXPECTED
    if agreement <= DISCOURAGED_UP_TO:
        return Stance.DISCOURAGED
    return Stance.OKAY


def domains_for(text: str) -> list[str]:
    lowered = text.lower()
    found = [
        domain
        for domain, stems in DOMAIN_KEYWORDS.items()
        if any(re.search(r"\b" + re.escape(stem), lowered) for stem in stems)
    ]
    return found or [DEFAULT_DOMAIN]


def _provenance_source(polis_dir: Path) -> str:
    provenance = (polis_dir / "PROVENANCE.md").read_text(encoding="utf-8")
    match = re.search(r"Source:\s*(\S+?),\s*commit\s+([0-9a-f]{40})(?:\s*\(([^)]*)\))?", provenance)
    if not match:
        raise ValueError(f"{polis_dir / 'PROVENANCE.md'}: no 'Source: <repo>, commit <sha>' line")
    repo, commit, when = match.groups()
    dated = f" ({when})" if when else ""
    return f"Pol.is export of the Collective Constitutional AI process, {repo} at commit {commit}{dated}"


def _support(votes: _StatementVotes, contested_gap: float) -> Support:
    groups = {name: tally.votes() for name, tally in sorted(votes.groups.items())}
    shares = [v.agreement for v in groups.values() if v.agreement is not None]
    contested = len(shares) >= 2 and max(shares) - min(shares) >= contested_gap
    return Support(overall=votes.overall.votes(), groups=groups, contested=contested)


def import_polis(polis_dir: Path, contested_gap: float = 0.3) -> NormPack:
    """One norm per moderated-in statement, with overall and per-group votes (see module docstring)."""
    polis_dir = Path(polis_dir)
    statements = moderated_in_statements(polis_dir)
    order = sorted(statements, key=int)
    tallies = tally_votes(polis_dir, order)
    norms = []
    for cid in order:
        row, votes = statements[cid], tallies[cid]
        recorded = (int(row["agrees"]), int(row["disagrees"]), int(row["passes"]))
        counted = (votes.overall.agree, votes.overall.disagree, votes.overall.passes)
        if recorded != counted:
            raise ValueError(
                f"{polis_dir}: statement {cid}: clean_comments.csv says agree/disagree/pass {recorded} "
                f"but clean_votes.csv counts {counted}"
            )
        support = _support(votes, contested_gap)
        text = " ".join(row["comment-body"].split())
        norms.append(
            Norm(
                id=f"{COMMUNITY}.c{cid}",
                text=text,
                says=text,  # written and voted on by people: already in a person's words
                domains=domains_for(text),
                stance=stance_from_agreement(support.agreement),
                support=support,
            )
        )
    last_vote = max(int(row["timestamp"]) for row in _read_rows(polis_dir / "comments.csv"))
    return NormPack(
        id=COMMUNITY,
        community=COMMUNITY,
        community_name="Collective Constitutional AI Pol.is participants (US, 2023)",
        description=(
            "Statements about how an AI should behave, written and voted on by a representative sample "
            "of US adults in the Collective Constitutional AI Pol.is; support holds their real votes, "
            "stances follow the overall agreement share."
        ),
        version="1.0.0",
        governance=Governance(
            ratified_by="1,000+ Pol.is participants (Collective Constitutional AI, Anthropic x CIP, 2023)",
            method="Pol.is votes",
            date=datetime.fromtimestamp(last_vote / 1000, tz=UTC).date(),
        ),
        source=_provenance_source(polis_dir),
        licence="unstated: research use, not redistributed",
        norms=norms,
    )


try:
    from yaml import CSafeDumper as _SafeDumperBase
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeDumper as _SafeDumperBase  # type: ignore[assignment]


class _PlainDumper(_SafeDumperBase):
    """Never writes anchors or aliases: load_pack refuses them."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def write_pack_yaml(pack: NormPack, path: Path) -> None:
    """Write ``pack`` as YAML that ``load_pack`` reads back to an equal NormPack."""
    data = pack.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["governance"]["date"] = pack.governance.date  # a YAML date, not a quoted string
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(data, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True, width=110)
    path.write_text(text, encoding="utf-8")
