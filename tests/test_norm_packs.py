"""The shipped norm packs and the pack loader's refusal of malformed or hostile files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.vocabulary import DOMAINS, ContextSlot, Stance
from memory.norm_pack import (
    MAX_PACK_BYTES,
    NormPack,
    NormPackError,
    Support,
    Votes,
    find_disagreements,
    load_pack,
    load_packs,
    pack_stats,
    shipped_packs_dir,
    validate_paths,
)

BAD = Path(__file__).parent / "data" / "bad_packs"


@pytest.fixture(scope="module")
def shipped() -> list[NormPack]:
    return load_packs([shipped_packs_dir()])


def test_shipped_packs_are_valid(shipped: list[NormPack]) -> None:
    assert validate_paths([shipped_packs_dir()]) == []
    assert {pack.community for pack in shipped} >= {
        "general-public",
        "medical-ethics",
        "parents",
        "workplace",
        "privacy-first",
        "free-expression",
    }


def test_shipped_packs_meet_the_coverage_targets(shipped: list[NormPack]) -> None:
    stats = pack_stats(shipped)
    assert len(stats["communities"]) >= 6
    assert stats["norms"] >= 300
    assert stats["norms"] == sum(stats["per_community"].values())
    covered = [domain for domain, count in stats["per_domain"].items() if count >= 10]
    assert len(covered) >= 8
    assert set(stats["per_domain"]) <= set(DOMAINS)
    assert all(stats["per_stance"][stance.value] > 0 for stance in Stance)
    assert stats["contested"] == 0  # nobody voted on the shipped packs
    assert stats["disagreements"] >= 40


def test_shipped_packs_are_honest_about_who_wrote_them(shipped: list[NormPack]) -> None:
    for pack in shipped:
        assert pack.governance.ratified_by == "Edge Align maintainers"
        assert pack.governance.method == "maintainer review"
        assert pack.licence == "CC-BY-4.0"
        assert pack.source == "Written by the Edge Align project"
        assert all(norm.support is None for norm in pack.norms)
        assert all(norm.id.startswith(f"{pack.community}.") for norm in pack.norms)


def test_known_disagreements_between_communities(shipped: list[NormPack]) -> None:
    disagreements = find_disagreements(shipped)
    assert len(disagreements) >= 40
    assert disagreements["teen-diary-safety | age=minor, risk=high, role=parent"] == {
        "general-public": Stance.DISCOURAGED,
        "parents": Stance.OKAY,
        "privacy-first": Stance.FORBIDDEN,
    }
    assert disagreements["teen-confidential-contraception | age=minor"]["medical-ethics"] is Stance.EXPECTED
    assert disagreements["teen-confidential-contraception | age=minor"]["parents"] is Stance.DISCOURAGED
    assert disagreements["whistleblow-press | role=employee"]["workplace"] is Stance.DISCOURAGED
    assert disagreements["whistleblow-press | role=employee"]["free-expression"] is Stance.EXPECTED
    assert disagreements["leveraged-crypto | age=adult, risk=high"]["money-advice"] is Stance.DISCOURAGED
    assert disagreements["satire-politician"] == {
        "general-public": Stance.OKAY,
        "free-expression": Stance.EXPECTED,
    }


def test_shared_topics_are_worded_in_parallel(shipped: list[NormPack]) -> None:
    texts: dict[str, set[str]] = {}
    for pack in shipped:
        for norm in pack.norms:
            texts.setdefault(norm.topic, set()).add(norm.text)
    shared = [topic for topic, variants in texts.items() if len(variants) == 1]
    assert len(shared) == len(texts)  # one wording per topic, whatever the community's stance


def test_every_norm_says_what_it_is_about_in_a_persons_words(shipped: list[NormPack]) -> None:
    phrasings: dict[str, set[str]] = {}
    for pack in shipped:
        for norm in pack.norms:
            assert norm.says.strip() and norm.says != norm.text, norm.id
            assert not norm.says.lower().startswith(("the assistant", "the ai assistant")), norm.id
            assert "assistant" not in norm.says.lower() and "the user" not in norm.says.lower(), norm.id
            assert not (norm.safeguard or "").lower().startswith("the assistant"), norm.id
            phrasings.setdefault(norm.topic, set()).add(norm.says)
    # Parallel norms share their text, so they share their phrasing too: one per topic.
    assert all(len(variants) == 1 for variants in phrasings.values())
    assert len(phrasings) == len({n.text for p in shipped for n in p.norms})


def test_safety_norms_agree_where_lives_are_at_stake(shipped: list[NormPack]) -> None:
    stances = {(pack.community, norm.topic): norm.stance for pack in shipped for norm in pack.norms}
    for topic in ("suicide-method", "untraceable-firearm", "home-explosives", "choking-challenge"):
        found = [stance for (_, t), stance in stances.items() if t == topic]
        assert found and set(found) == {Stance.FORBIDDEN}, topic
    found = [stance for (_, t), stance in stances.items() if t == "crisis-resources"]
    assert found and set(found) == {Stance.EXPECTED}


def test_applies_when_uses_context_slots_and_any_of_lists(shipped: list[NormPack]) -> None:
    norm = next(n for p in shipped for n in p.norms if n.id == "general-public.record-call-all-party")
    assert norm.applies_when[ContextSlot.CONSENT] == "no"  # YAML 1.1 would have made this False
    assert norm.applies_when[ContextSlot.JURISDICTION] == ["eu", "us-ca", "us-fl", "us-wa"]


def test_support_agreement_arithmetic() -> None:
    support = Support.model_validate(
        {
            "overall": {"agree": 30, "disagree": 10, "pass": 5},
            "groups": {"group_0": {"agree": 27, "disagree": 3}, "group_1": {"agree": 0, "disagree": 0}},
        }
    )
    assert support.agreement == pytest.approx(0.75)
    assert support.overall.pass_ == 5
    assert support.group_agreement == {"group_0": pytest.approx(0.9), "group_1": None}
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        Votes(agree=-1, disagree=0)


# Each malformed fixture: the line and the field the error must name.
MALFORMED = [
    ("unknown_field.yaml", 23, "norms[1].colour", "unknown field 'colour'"),
    ("bad_stance.yaml", 22, "norms[1].stance", "Input should be 'expected', 'okay', 'discouraged' or 'forbidden'"),
    ("duplicate_id.yaml", 19, "norms[1].id", "duplicate norm id 'fixture.first'"),
    ("missing_field.yaml", 19, "norms[1].text", "required field 'text' is missing"),
    ("missing_says.yaml", 19, "norms[1].says", "required field 'says' is missing"),
    ("spec_wording_says.yaml", 21, "norms[1].says", "in a person's words, not 'The assistant ...'"),
    ("bad_domain.yaml", 21, "norms[1].domains[1]", "unknown domain 'astrology'"),
    ("bad_slot.yaml", 23, "norms[1].applies_when.mood", "Input should be 'role', 'age'"),
    ("duplicate_key.yaml", 23, "norms[1].stance", "key given twice (first on line 22)"),
    ("alias_bomb.yaml", 3, "lol1", "anchors or aliases"),
    ("invalid_utf8.yaml", 20, "norms[1].text", "not valid UTF-8"),
    ("not_mapping.yaml", 1, "(document)", "must be a mapping, not a list"),
    ("python_tag.yaml", 20, "norms[1].text", "could not determine a constructor"),
]


@pytest.mark.parametrize(("name", "line", "field", "problem"), MALFORMED)
def test_malformed_pack_errors_name_file_line_and_field(name: str, line: int, field: str, problem: str) -> None:
    path = BAD / name
    with pytest.raises(NormPackError) as caught:
        load_pack(path)
    first = caught.value.messages[0]
    assert first.startswith(f"{path}:{line}: {field}: "), first
    assert problem in first
    assert any(first == message for message in validate_paths([path]))


def test_validate_reports_every_bad_file_in_a_folder() -> None:
    messages = validate_paths([BAD])
    for name, line, field, _ in MALFORMED:
        assert any(m.startswith(f"{BAD / name}:{line}: {field}: ") for m in messages), name
    with pytest.raises(NormPackError):
        load_packs([BAD])


def test_duplicates_across_files_name_both_places(tmp_path: Path) -> None:
    original = shipped_packs_dir() / "parents.yaml"
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    shutil.copy(original, first)
    shutil.copy(original, second)
    messages = validate_paths([tmp_path])
    assert messages[0].startswith(f"{second}:4: id: duplicate pack id 'edge-align.parents' (also at {first}:4: id)")
    norm_clash = next(m for m in messages if "duplicate norm id" in m)
    assert norm_clash.startswith(f"{second}:")
    assert f"(also at {first}:" in norm_clash
    assert load_pack(first) == load_pack(second)


def test_oversized_file_is_refused_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    with huge.open("wb") as handle:
        handle.truncate(MAX_PACK_BYTES + 1)
    with pytest.raises(NormPackError, match=r"huge\.yaml:1: \(document\): file is \d+ bytes, above"):
        load_pack(huge)


def test_missing_path_is_reported(tmp_path: Path) -> None:
    assert validate_paths([tmp_path / "nowhere.yaml"]) == [
        f"{tmp_path / 'nowhere.yaml'}:1: (document): no such file or folder"
    ]
