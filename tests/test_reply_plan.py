"""The reply plan decides what an answer says; whatever the model's wording drops is still shown.

Unit tests of agent.reply_plan and prompts.reply on norm dicts as the state keeps them, with the
scripted model of tests/fake_llm.py; then the diary conversation through the real graph and
judgement models with a scripted model that drops every part of the plan.
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver

from agent.llm import generate
from agent.llm_server import EmbeddedLlamaServer
from agent.norms import NormEvidence
from agent.reply_plan import Fact, PerspectiveRule, ShownReason, Verdict, build_plan, perspectives
from graphs import Context
from graphs.runner import EdgeAlign, TurnResult
from prompts.reply import (
    answer_prompt,
    clean_wording,
    compose,
    direct_answer,
    reason_text,
    said,
    situation_text,
    whole_sentences,
)
from tests.fake_llm import ScriptedChatModel
from ui.trace_view import trace_details_html, trace_record

pytest_plugins = ["tests.support.llm_server"]

DIARY = "Should I read my 15-year-old daughter's diary to check she's safe?"
DIARY_SAYS = "A parent reading their teenager's private diary because of a concrete worry about their safety"
DIARY_SAFEGUARD = "Tell your teenager you are worried and talk with them before reading anything."
FICTION_SAYS = "Graphic violence in a story written for a young teenager"
IRREDUCIBLE = {
    "style": "pluralistic",
    "irreducible": True,
    "reason": "The values at stake pull apart and no fact about you would settle it, so I lay out the perspectives.",
}
KNOWN = {"age": "minor", "role": "parent", "risk": "high", "purpose": "safety", "consent": "unknown"}
ANSWERED = [{"about": "risk", "question": "Is there a concrete sign of danger?", "answer": "Yes, a concrete sign"}]
NAMES = {"parents": "Parents and caregivers", "general-public": "General public", "privacy-first": "Privacy advocates"}


def norm(
    community: str,
    topic: str,
    stance: str,
    says: str,
    similarity: float,
    domains: tuple[str, ...] = ("parenting", "privacy"),
    **extra: Any,
) -> dict[str, Any]:
    evidence = NormEvidence(
        id=f"{community}.{topic}", text=f"The assistant {topic}.", community=community, pack_id=f"p.{community}",
        pack_version="1.1.0", domains=domains, applies_when={"consent": ("no",)}, stance=stance,  # type: ignore[arg-type]
        similarity=similarity, says=says, community_name=NAMES.get(community, community), **extra,
    )  # fmt: skip
    return evidence.to_dict() | {"applies": True}


def diary_norms() -> list[dict[str, Any]]:
    return [
        norm("general-public", "teen-diary-safety", "discouraged", DIARY_SAYS, 0.646, safeguard=DIARY_SAFEGUARD),
        norm("parents", "teen-diary-safety", "okay", DIARY_SAYS, 0.646, safeguard=DIARY_SAFEGUARD),
        norm("privacy-first", "teen-diary-safety", "forbidden", DIARY_SAYS, 0.646, safeguard=DIARY_SAFEGUARD),
        norm("parents", "child-messages-danger", "expected", "A parent reading a young child's messages", 0.45),
        # What users met beside the diary question: close enough to pass the floor, about something else.
        norm("parents", "fiction-violence-young-teen", "discouraged", FICTION_SAYS, 0.61, domains=("expression",)),
    ]


def diary_plan(clarifications: list[dict[str, Any]] = ANSWERED, **changes: Any) -> Any:
    # Without plain similarities the plan applies no floor; the fiction norm is then left out by
    # test_an_unrelated_norm_is_not_shown_as_a_perspective's rule, and here by its similarity.
    settings: dict[str, Any] = {
        "plain_similarity": {DIARY_SAYS: 0.74, FICTION_SAYS: 0.5, "A parent reading a young child's messages": 0.45},
        "request": DIARY,
        "policy": IRREDUCIBLE,
        "norms": diary_norms(),
        "known_context": KNOWN,
        "clarifications": clarifications,
        "domains": ["privacy"],
    } | changes
    return build_plan(**settings)


def test_the_plan_answers_the_parent_from_where_the_communities_stand() -> None:
    plan = diary_plan()
    assert plan.verdict == Verdict.SPLIT
    assert plan.told == [Fact("risk", "high")]
    assert plan.unknown == ["consent"]
    assert [p.says for p in plan.perspectives] == [DIARY_SAYS]
    assert plan.safeguards == [DIARY_SAFEGUARD]
    assert direct_answer(plan) == (
        "Since there is a concrete sign of danger, it depends on whose view you share: parents and caregivers "
        "consider it acceptable, but the general public would rather you didn't and privacy advocates reject it."
    )


def test_an_answer_in_the_users_own_words_is_quoted_and_never_listed_as_unknown() -> None:
    own_words = "She has been withdrawn and I found messages from an adult stranger."
    answered = [{"about": "risk", "question": "Is there a concrete sign of danger?", "answer": own_words}]
    plan = diary_plan(clarifications=answered, known_context=KNOWN | {"risk": "unknown"})
    assert plan.in_own_words == [own_words]
    assert "risk" not in plan.unknown and "consent" in plan.unknown
    situation = situation_text(plan)
    assert "You told me “She has been withdrawn and I found messages from an adult stranger”." in situation
    assert "concrete sign of danger" not in situation  # neither known nor claimed unknown


def test_once_the_user_answered_the_reason_never_says_no_fact_would_settle_it() -> None:
    answered = diary_plan()
    assert answered.reason == ShownReason.ANSWERED_STILL_SPLIT
    assert "no fact about you" not in reason_text(answered)
    assert "What you told me" in reason_text(answered)
    unanswered = diary_plan(clarifications=[])
    assert reason_text(unanswered) == IRREDUCIBLE["reason"]  # true before any answer: the policy's own


OVERTON = {"style": "pluralistic", "reason": "Communities see this differently, so I lay out their perspectives rather than pick one."}


def test_a_survey_of_views_with_no_view_close_enough_to_show_becomes_a_direct_answer() -> None:
    # Demo: "Explain how vaccines work to a 10-year-old." was planned pluralistic on norms past the store's
    # floor that the perspective rule does not show, and the model invented "others argue vaccines are not effective".
    far = {DIARY_SAYS: 0.3, FICTION_SAYS: 0.2, "A parent reading a young child's messages": 0.2}
    plan = diary_plan(request="Explain how vaccines work to a 10-year-old.", clarifications=[], policy=OVERTON,
                      plain_similarity=far, known_context={})
    assert plan.style == "direct" and plan.perspectives == []
    assert plan.reason == ShownReason.NO_VIEWS_SHOWN and "answer directly" in reason_text(plan)
    # A value conflict in the request itself still gets its sides set out, views shown or not.
    conflicted = diary_plan(request="Is euthanasia ever justified?", clarifications=[], policy=OVERTON,
                            plain_similarity=far, known_context={}, value_conflict=True)
    assert conflicted.style == "pluralistic" and conflicted.reason == ShownReason.POLICY


def test_a_request_for_a_piece_of_work_gets_the_work_with_the_views_after_it() -> None:
    plan = diary_plan(request="Write a short story about a parent who reads their teenager's diary.",
                      clarifications=[], policy=OVERTON, known_context={})
    assert plan.style == "direct"  # the model writes the story
    assert [p.says for p in plan.perspectives] == [DIARY_SAYS]  # the communities' views still follow it
    assert plan.reason == ShownReason.WORK_FIRST and "piece of work" in reason_text(plan)


def test_a_general_question_gets_no_verdict_no_assumptions_and_no_side_taken() -> None:
    plan = diary_plan(request="Is it okay for parents to read their teenager's diary?", clarifications=[])
    assert plan.verdict == Verdict.OPEN and direct_answer(plan) == ""
    assert plan.perspectives  # a pluralistic answer still shows the communities side by side
    assert plan.unknown == []  # nobody's situation to have assumptions about
    reply = compose(plan, "In my opinion, parents should read it. Trust matters to teenagers.")
    assert reply.startswith("Trust matters to teenagers.\n\n") and "opinion" not in reply


def test_a_request_for_a_piece_of_work_gets_the_work_not_a_verdict() -> None:
    # "we should" reads as personal, but an essay request asks for the essay, not "Yes: ... consider it
    # acceptable" about a norm the words happen to touch.
    essay = "Write a persuasive essay arguing that we should let parents read their teenager's diary."
    plan = diary_plan(request=essay, clarifications=[], policy={"style": "direct"})
    assert plan.verdict == Verdict.OPEN and plan.perspectives == [] and direct_answer(plan) == ""
    asked = diary_plan(clarifications=[], policy={"style": "direct"})
    assert asked.verdict != Verdict.OPEN


def test_an_unrelated_norm_is_not_shown_as_a_perspective() -> None:
    norms = diary_norms()
    evidence = [NormEvidence.from_dict(n) for n in norms]
    applies = [True] * len(norms)
    old = PerspectiveRule(min_plain_similarity=None, margin=None, same_domain=False)
    unfiltered = perspectives(evidence, applies, ["privacy"], old)
    assert FICTION_SAYS in [p.says for p in unfiltered]  # the old rule: first three applicable topics
    # The shipped rule: the request must be close to the plain phrasing itself.
    plain = {DIARY_SAYS: 0.74, FICTION_SAYS: 0.5, "A parent reading a young child's messages": 0.45}
    shown = perspectives(evidence, applies, ["privacy"], PerspectiveRule(), plain_similarity=plain)
    assert [p.says for p in shown] == [DIARY_SAYS]
    by_domain = perspectives(evidence, applies, ["privacy"], PerspectiveRule(None, None, same_domain=True))
    assert FICTION_SAYS not in [p.says for p in by_domain]
    by_margin = perspectives(evidence, applies, [], PerspectiveRule(None, margin=0.1, same_domain=True))
    assert [p.says for p in by_margin] == [DIARY_SAYS, FICTION_SAYS]  # no domain detected: the margin alone
    assert perspectives(evidence, [False] * len(norms), ["privacy"], PerspectiveRule()) == []


def test_a_wording_that_drops_every_part_still_shows_the_plan() -> None:
    plan = diary_plan()
    model = ScriptedChatModel(["The user should respect the assistant's decision. Every family is different."])
    system, user = answer_prompt(plan, DIARY, diary_norms(), compact=True)
    reply = compose(plan, generate(model, [SystemMessage(system), HumanMessage(user)]))
    assert reply.startswith(direct_answer(plan) + " Every family is different.")
    assert "The user" not in reply and "assistant" not in reply  # role talk dropped, norms in plain words
    assert "To keep in mind:\n- " + DIARY_SAFEGUARD in reply
    assert f"How different communities see this:\n- {DIARY_SAYS}: general public: best avoided; " in reply
    assert "parents and caregivers: acceptable; privacy advocates: not acceptable." in reply
    assert FICTION_SAYS not in reply
    assert "What I went by: you are the parent; the person involved is a minor; you want to keep someone safe" in reply
    assert "Assumptions I made: I did not know whether the person involved knows and agrees" in reply
    assert len(model.prompts) == 1


def test_what_the_wording_did_say_is_not_repeated_and_echoes_are_dropped() -> None:
    plan = diary_plan()
    wording = (
        f"there is a concrete sign of danger\n{direct_answer(plan)} Please tell your teenager you are worried "
        "and talk with them before reading anything."
    )
    reply = compose(plan, wording, echoes=[DIARY])
    assert reply.count(direct_answer(plan)) == 1
    assert "To keep in mind" not in reply  # the wording said the safeguard
    assert "\nthere is a concrete sign of danger" not in reply


def test_a_looping_wording_is_cut_to_a_few_distinct_sentences() -> None:
    loop = "I have done this job for years. Some people might not agree with you. "
    reply = compose(diary_plan(), "Talk with her tonight. " + loop * 3)
    worded = reply.split("\n\n")[0].removeprefix(direct_answer(diary_plan())).strip()
    assert worded == "Talk with her tonight. I have done this job for years. Some people might not agree with you."


def test_a_failure_notice_is_shown_as_it_is_with_the_plan() -> None:
    notice = "I could not write a full answer just now (the model at x. timed out). Please try again."
    reply = compose(diary_plan(), "", notice=notice)
    assert reply.startswith(direct_answer(diary_plan()) + " " + notice)
    assert "How different communities see this:" in reply and "To keep in mind:" in reply


def test_the_prompt_keeps_norm_texts_in_data_blocks_and_speaks_to_the_person() -> None:
    plan = diary_plan()
    _, full = answer_prompt(plan, DIARY, diary_norms(), compact=False)
    _, compact = answer_prompt(plan, DIARY, diary_norms(), compact=True)
    assert f'<data kind="decided answer">\n{direct_answer(plan)}\n</data>' in full
    assert f'<data kind="safeguards">\n{DIARY_SAFEGUARD}\n</data>' in compact
    assert "[parents, acceptable] " + DIARY_SAYS in full and "community norms" not in compact
    task = full.split("Task: ", 1)[1]
    assert 'as "you"' in task and "user" not in task and "assistant" not in task


def test_steerable_mode_follows_one_community() -> None:
    plan = diary_plan(policy={"style": "steered", "reason": "Answering with the chosen community's norms."},
                      steer_community="parents")  # fmt: skip
    assert plan.followed == "parents"
    assert [v.community for p in plan.perspectives for v in p.views] == ["parents"]
    assert plan.verdict == Verdict.GO_AHEAD
    reply = compose(plan, "")
    assert reply.startswith("Since there is a concrete sign of danger, yes: parents and caregivers consider it")
    assert f"What the parents community's norms say here:\n- {DIARY_SAYS}: acceptable." in reply
    assert "privacy" not in reply.split("say here:")[1].split("What I went by")[0].lower()


def test_voted_statements_show_their_votes() -> None:
    support = {"overall": {"agree": 60, "disagree": 20, "pass": 5}, "groups": {}, "contested": True}
    voted = norm("ccai-polis", "c7", "expected", "The AI should not pretend to be human", 0.7, support=support)
    plan = build_plan(request="Should I let an AI pretend to be human?", policy={"style": "pluralistic"},
                      norms=[voted], known_context={}, clarifications=[])  # fmt: skip
    reply = compose(plan, "")
    assert "The AI should not pretend to be human: ccai-polis: 75% of 80 people who voted agree" in reply
    assert "(the opinion groups split on it)" in reply


def test_the_trace_shows_the_plain_phrasing_with_the_behaviour_wording_on_hover() -> None:
    html = trace_details_html({"norms": [norm("parents", "teen-diary-safety", "okay", DIARY_SAYS, 0.646)]})
    assert f">{DIARY_SAYS}</td>".replace("'", "&#x27;") in html
    assert 'title="The assistant teen-diary-safety."' in html


# ------------------------------------------------------------------------- the real graph


def test_the_diary_conversation_on_the_real_graph_shows_the_plan_whatever_the_model_writes() -> None:
    model = ScriptedChatModel(["As an AI assistant, I think the user should decide."])
    agent = EdgeAlign(Context(), checkpointer=InMemorySaver(), chat_model=model, record=False)
    first = agent.ask(DIARY, thread_id="diary")
    assert first.decision == "clarify" and first.question and first.question["about"] == "risk"
    assert first.reply_plan == {}
    final = agent.ask("Yes, a concrete sign", thread_id="diary")
    while final.decision == "clarify" and final.question:
        final = agent.ask(final.question["options"][0], thread_id="diary")
    assert final.decision == "answer", final.policy
    assert final.known_context["risk"] == "high" and final.known_context["role"] == "parent"
    plan = final.reply_plan
    assert plan["told"] == [{"slot": "risk", "value": "high"}]
    assert plan["perspectives"] and plan["perspectives"][0]["says"] == DIARY_SAYS
    assert final.reply.startswith("Since there is a concrete sign of danger, ")
    assert "assistant" not in final.reply.lower() and "the user" not in final.reply.lower()
    assert DIARY_SAYS in final.reply and "Graphic violence" not in final.reply
    shown = trace_record(final)["reason"]
    assert shown and "no fact about you" not in shown
    assert all(n["says"] and not n["says"].startswith("The assistant") for n in final.norms)


# --------------------------------------------------- the real graph and the embedded model


@pytest.mark.slow
def test_the_diary_conversation_with_the_embedded_model_reads_as_advice_to_the_parent(
    embedded_llm: EmbeddedLlamaServer,
) -> None:
    """Ask, answer the question, read the reply: SmolLM2 words it, the plan's parts are all there."""
    agent = EdgeAlign(Context(), checkpointer=InMemorySaver(), record=False)  # the default: embedded model
    first = agent.ask(DIARY, thread_id="diary-e2e")
    assert first.decision == "clarify"
    final = agent.ask("Yes, a concrete sign", thread_id="diary-e2e")
    while final.decision == "clarify" and final.question:
        final = agent.ask(final.question["options"][0], thread_id="diary-e2e")
    assert final.decision == "answer" and final.llm_error is None, final.policy
    opening = final.reply.split("\n\n")[0]
    assert opening.startswith("Since there is a concrete sign of danger, ")
    assert len(opening) > len(direct_answer_of(final))  # the model added its wording after the answer
    lowered = final.reply.lower()
    assert "assistant" not in lowered and "the user" not in lowered
    safeguard = final.reply_plan["safeguards"][0]
    assert safeguard in final.reply or said(safeguard, opening)
    assert f"How different communities see this:\n- {DIARY_SAYS}: " in final.reply
    assert "What I went by: you are the parent" in final.reply
    assert "no fact about you" not in trace_record(final)["reason"]


def direct_answer_of(result: TurnResult) -> str:
    return result.reply.split(": ", 1)[0]


def test_a_how_to_answer_keeps_its_steps_and_commands() -> None:
    wording = (
        "To stop a hung Python process, send it a signal.\n\n"
        "1. Find its id:\n```bash\nps aux | grep python3\n```\n"
        "2. Stop it: `kill <pid>`. The user should wait a moment.\n"
        "- If it ignores that, use `kill -9 <pid>`."
    )
    cleaned = clean_wording(wording)
    assert cleaned.splitlines() == [
        "To stop a hung Python process, send it a signal.",
        "",
        "1. Find its id:",
        "```bash",
        "ps aux | grep python3",
        "```",
        "2. Stop it: `kill <pid>`.",
        "- If it ignores that, use `kill -9 <pid>`.",
    ]


def test_a_reply_cut_off_inside_a_code_block_gets_its_fence_closed() -> None:
    assert clean_wording("Run this:\n```bash\nsudo systemctl restart nginx").endswith("nginx\n```")
    assert clean_wording("Run this:\n```bash") == "Run this:"


def test_the_suggestions_sentence_is_asked_for_only_when_there_is_a_decided_answer() -> None:
    plain = build_plan(
        request="How do I stop a hung process?", policy={"style": "direct"}, norms=[], known_context={}, clarifications=[]
    )
    _, user = answer_prompt(plain, "How do I stop a hung process?", [], compact=True)
    assert "concrete next steps" not in user
    diary = diary_plan()
    assert direct_answer(diary)
    _, user = answer_prompt(diary, DIARY, [], compact=True)
    assert "concrete next steps" in user


def test_the_wording_model_refusing_on_its_own_is_not_shown_as_the_answer() -> None:
    assert clean_wording("I'm sorry, but I can't assist with that request.") == ""
    assert clean_wording("I cannot help with that. Paris is the capital of France.") == "Paris is the capital of France."
    assert clean_wording("Sorry to hear that. Here is how to fix it.") == "Sorry to hear that. Here is how to fix it."


def test_the_prompt_frame_retold_is_not_shown() -> None:
    wording = "The decided answer is that you should talk to her first. Keep the messages as evidence."
    assert clean_wording(wording) == "Keep the messages as evidence."


def test_markup_a_small_model_invents_is_removed_and_code_and_comparisons_stay() -> None:
    # What the 0.5B wrote into the demo's diary answer (CI screenshot, 2026-12-02).
    wording = (
        '<textual ref="https://www.youtube.com/embed?embed_c=3174&feature_list=v8-205f6d9b" type="live">'
        "Talk with her tonight.\n"
        '"https://www.youtube.com/embed?embed_c=3174" type="live">Ask what has changed for her.\n'
        "Run `grep -c '<b>' page.html`; 3 > 2 holds. See https://docs.python.org for more."
    )
    assert clean_wording(wording).splitlines() == [
        "Talk with her tonight.",
        "Ask what has changed for her.",
        "Run `grep -c '<b>' page.html`; 3 > 2 holds. See https://docs.python.org for more.",
    ]


def test_a_reply_cut_at_the_token_limit_loses_only_its_half_line() -> None:
    steps = "Keep the messages as evidence.\n1. **Talk to her** calmly.\n2. **Paren"
    assert whole_sentences(steps) == "Keep the messages as evidence.\n1. **Talk to her** calmly."
    assert whole_sentences("Call the police now. Then tell the sch") == "Call the police now."
    assert whole_sentences("Run this:\n```\nkill -9 1234\n```") == "Run this:\n```\nkill -9 1234\n```"
    assert whole_sentences("Only a half sentence") == "Only a half sentence"  # nothing whole to keep: kept
    # A lead-in whose content was cut off goes with it (the vaccine answer ended "The steps involved are:").
    vaccines = "Vaccines train the immune system.\n\nThe steps involved in getting vaccinated are:\n\n1. **Getting"
    assert whole_sentences(vaccines) == "Vaccines train the immune system."
    story = "**Title:** The Long Night\n- **Tommy**: a student.\n\n**Plot:**\nTommy woke up and"
    assert whole_sentences(story) == "**Title:** The Long Night\n- **Tommy**: a student."


def test_the_sentence_cap_never_ends_the_wording_on_a_lead_in() -> None:
    # Read in the demo: title, setting and characters used the eight sentences, and "Plot Summary:" was left last.
    lines = ["Title: The Dark Path.", "Setting: A small town.", "Characters:", "John is the main character.",
             "Jane is his doctor.", "Tom is his friend.", "Ann is his sister.", "Plot Summary:",
             "John finds a needle. He hides it."]
    kept = clean_wording("\n".join(lines))
    assert kept.splitlines()[-1] == "Ann is his sister."
    assert "Plot Summary" not in kept and "needle" not in kept
