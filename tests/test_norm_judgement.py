"""Which norms survive what the user has told us: the context matching of ``agent.norms``."""

from __future__ import annotations

import pytest

from agent.context_slots import JURISDICTION_REGIONS, jurisdiction_region, slot_admits
from agent.norms import NormEvidence, judge_norms
from agent.vocabulary import Stance
from memory.norm_pack import load_packs, shipped_packs_dir
from prompts import load_prompt_data

ASSISTED_DYING_PLACES = ("ca", "nl", "be", "ch", "es", "us-or")


def _norm(applies_when: dict[str, tuple[str, ...]]) -> NormEvidence:
    return NormEvidence(
        id="general.assisted-dying-process",
        text="The assistant explains the legal process for assisted dying to an adult where it is legal.",
        community="general public",
        pack_id="general-public",
        pack_version="1",
        domains=("health",),
        applies_when=applies_when,
        stance=Stance.OKAY,
        similarity=0.8,
    )


@pytest.mark.parametrize(
    ("answer", "applies"),
    [("eu", True), ("us", True), ("other", True), ("uk", False), ("nl", True), ("us-or", True), ("de", False)],
)
def test_a_coarse_jurisdiction_answer_admits_the_places_inside_it(answer: str, applies: bool) -> None:
    judgement = judge_norms([_norm({"jurisdiction": ASSISTED_DYING_PLACES})], {"jurisdiction": answer}, 0.4)
    assert (len(judgement.applicable) == 1) is applies
    assert (len(judgement.excluded) == 1) is not applies


def test_a_precise_place_admits_a_norm_written_for_its_region() -> None:
    assert slot_admits("jurisdiction", "fr", ("eu", "uk"))
    assert not slot_admits("jurisdiction", "us-ca", ("eu", "uk"))


def test_other_slots_match_exactly() -> None:
    assert slot_admits("age", "adult", ("adult",))
    assert not slot_admits("age", "minor", ("adult",))
    assert not slot_admits("consent", "eu", ("us",))


def test_the_clarifying_question_offers_exactly_the_regions_the_matcher_knows() -> None:
    options = load_prompt_data("clarify_questions.yaml")["jurisdiction"]["options"]
    assert tuple(option["value"] for option in options) == JURISDICTION_REGIONS


def test_every_shipped_jurisdiction_is_reachable_from_some_answer() -> None:
    places = {
        place
        for pack in load_packs([shipped_packs_dir()])
        for norm in pack.norms
        for place in ([norm.applies_when["jurisdiction"]] if isinstance(norm.applies_when.get("jurisdiction"), str)
                      else norm.applies_when.get("jurisdiction", []))
    }
    assert places, "the shipped packs condition some norms on jurisdiction"
    for place in places:
        assert slot_admits("jurisdiction", jurisdiction_region(place), [place]), place


def test_a_request_for_a_piece_of_work_is_told_from_a_question_about_acting() -> None:
    from agent.context_slots import asks_for_work

    for work in ("Write a persuasive essay arguing that we should ban fast food.", "Can you write a poem?",
                 "Please draft a letter to my landlord", "Create a Twitter thread arguing that voting should be mandatory"):
        assert asks_for_work(work), work
    for question in ("Should I read my daughter's diary?", "Is it okay to write a letter?", "Listen, I need help", ""):
        assert not asks_for_work(question), question
