"""Importing the real Collective Constitutional AI Pol.is export as a norm pack."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from agent.datasets import DatasetMissingError, dataset_dir
from agent.vocabulary import DOMAINS, Stance
from memory.norm_pack import NormPack, load_pack, load_packs, pack_stats, shipped_packs_dir
from memory.polis import import_polis, tossed_participants, write_pack_yaml


@pytest.fixture(scope="module")
def polis_dir() -> Path:
    try:
        return dataset_dir("ccai_polis")
    except DatasetMissingError as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="module")
def pack(polis_dir: Path) -> NormPack:
    return import_polis(polis_dir)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def test_one_norm_per_moderated_in_statement(pack: NormPack, polis_dir: Path) -> None:
    moderated_in = {r["comment-id"] for r in _rows(polis_dir / "comments.csv") if r["moderated"] == "1"}
    moderated_out = {r["comment-id"] for r in _rows(polis_dir / "comments.csv") if r["moderated"] == "-1"}
    assert len(moderated_in) == 275
    assert {norm.id for norm in pack.norms} == {f"ccai-polis.c{cid}" for cid in moderated_in}
    assert not {f"ccai-polis.c{cid}" for cid in moderated_out} & {norm.id for norm in pack.norms}


def test_support_is_recounted_from_the_raw_votes(pack: NormPack, polis_dir: Path) -> None:
    cid = "1"
    counts = {"group_0": [0, 0, 0], "group_1": [0, 0, 0]}
    for row in _rows(polis_dir / "clean_votes.csv"):
        if row[cid] == "":
            continue
        slot = {1.0: 0, -1.0: 1, 0.0: 2}[float(row[cid])]
        counts[f"group_{row['group-id']}"][slot] += 1
    norm = next(n for n in pack.norms if n.id == f"ccai-polis.c{cid}")
    assert norm.support is not None
    clean = next(r for r in _rows(polis_dir / "clean_comments.csv") if r["comment-id"] == cid)
    assert norm.text == clean["comment-body"]
    for group, (agree, disagree, passes) in counts.items():
        votes = norm.support.groups[group]
        assert (votes.agree, votes.disagree, votes.pass_) == (agree, disagree, passes)
        # The export's consensus column is the group's agree share over all its votes, passes included.
        assert float(clean[f"{group}_consensus"]) == pytest.approx(agree / (agree + disagree + passes))
    overall = norm.support.overall
    assert (overall.agree, overall.disagree, overall.pass_) == (
        int(clean["agrees"]),
        int(clean["disagrees"]),
        int(clean["passes"]),
    )
    assert overall.agree == counts["group_0"][0] + counts["group_1"][0]
    assert norm.support.agreement == pytest.approx(overall.agree / (overall.agree + overall.disagree))


def test_contested_flags_follow_the_group_gap(pack: NormPack, polis_dir: Path) -> None:
    contested = [n for n in pack.norms if n.support and n.support.contested]
    assert 0 < len(contested) < len(pack.norms)
    for norm in pack.norms:
        assert norm.support is not None
        shares = [a for a in norm.support.group_agreement.values() if a is not None]
        gap = max(shares) - min(shares) if len(shares) == 2 else 0.0
        assert norm.support.contested == (gap >= 0.3), norm.id
    looser = import_polis(polis_dir, contested_gap=0.1)
    assert sum(bool(n.support and n.support.contested) for n in looser.norms) > len(contested)


def test_stances_follow_overall_agreement(pack: NormPack) -> None:
    for norm in pack.norms:
        assert norm.support is not None
        agreement = norm.support.agreement
        assert agreement is not None
        expected = Stance.EXPECTED if agreement >= 0.7 else Stance.DISCOURAGED if agreement <= 0.3 else Stance.OKAY
        assert norm.stance is expected, norm.id
    assert {n.stance for n in pack.norms} >= {Stance.EXPECTED, Stance.OKAY, Stance.DISCOURAGED}


def test_domains_and_governance(pack: NormPack, polis_dir: Path) -> None:
    assert all(set(n.domains) <= set(DOMAINS) for n in pack.norms)
    by_id = {n.id: n for n in pack.norms}
    assert "privacy" in by_id["ccai-polis.c584"].domains  # "AI shouldn't invade privacy"
    assert by_id["ccai-polis.c0"].domains == ["technology"]  # no keyword: the default
    assert pack.governance.method == "Pol.is votes"
    assert pack.governance.ratified_by.startswith("1,000+ Pol.is participants")
    assert "3ff5dce9a1299d6035f1dd9e2f95be995311cb6e" in pack.source
    assert pack.licence == "unstated: research use, not redistributed"
    clean_participants = {r["participant"] for r in _rows(polis_dir / "clean_votes.csv")}
    assert not tossed_participants(polis_dir) & clean_participants


def test_round_trip_through_yaml(pack: NormPack, tmp_path: Path) -> None:
    path = tmp_path / "ccai-polis.yaml"
    write_pack_yaml(pack, path)
    assert load_pack(path) == pack
    combined = load_packs([shipped_packs_dir(), path])
    stats = pack_stats(combined)
    assert "ccai-polis" in stats["communities"]
    assert stats["contested"] == sum(bool(n.support and n.support.contested) for n in pack.norms)


def test_imported_statements_are_their_own_plain_phrasing(pack: NormPack) -> None:
    """Participants wrote the statements: shown to users as voted on, they need no rewording."""
    assert all(norm.says == norm.text for norm in pack.norms)
