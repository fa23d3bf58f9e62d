"""The turn graph's logic on real judgement components, with a scripted LLM and an in-memory checkpointer."""

from __future__ import annotations

import pytest
from langgraph.checkpoint.memory import InMemorySaver

from graphs import Context, builder, graph
from graphs.runner import EdgeAlign, InvalidMessageError
from tests.fake_llm import ScriptedChatModel, UnexpectedLLMCallError

DIARY = "Should I read my 15-year-old daughter's diary to check she's safe?"


def make_agent(replies: list[str], **settings: object) -> tuple[EdgeAlign, ScriptedChatModel]:
    model = ScriptedChatModel(replies)
    return EdgeAlign(Context.validated(**settings), checkpointer=InMemorySaver(), chat_model=model), model


def test_package_exports_compiled_graph_and_builder() -> None:
    assert set(graph.get_graph().nodes) >= {
        "begin_turn",
        "detect_conflict",
        "retrieve_norms",
        "check_constraints",
        "decide",
        "clarify",
        "respond",
        "refuse",
    }
    assert builder.compile() is not graph


def test_factual_question_is_answered_without_a_question() -> None:
    agent, model = make_agent(["Paris is the capital of France."])
    result = agent.ask("What is the capital of France?")
    assert result.decision == "answer"
    assert result.reply.startswith("Paris is the capital of France.")
    assert len(model.prompts) == 1
    assert set(result.values) and len(result.values) == 20
    assert {"detect_conflict", "retrieve_norms", "check_constraints", "decide", "respond"} <= set(result.timings_ms)


def test_diary_request_pauses_on_a_question_then_answers_on_the_same_thread() -> None:
    agent, model = make_agent(["Talk with her first; read it only if there is a concrete danger."])
    first = agent.ask(DIARY, thread_id="diary")
    assert first.decision == "clarify"
    assert first.question is not None
    assert set(first.question) >= {"question", "options", "about"}
    assert 2 <= len(first.question["options"]) <= 4
    assert model.prompts == []  # asking needs no LLM
    assert agent.pending_question("diary") == first.question

    option = first.question["options"][0]
    second = agent.ask(option, thread_id="diary")
    assert second.decision in {"answer", "clarify"}
    if second.decision == "clarify":  # a second question is allowed by the default budget of 2
        assert second.question and second.question["about"] != first.question["about"]
        second = agent.ask(second.question["options"][0], thread_id="diary")
    assert second.decision == "answer"
    assert "concrete danger" in second.reply
    assert agent.pending_question("diary") is None
    history = agent.history("diary")
    assert history[0] == {"role": "user", "content": DIARY}
    assert history[1]["content"] == first.question["question"]
    assert history[2] == {"role": "user", "content": option}


def test_budget_zero_never_asks() -> None:
    agent, _ = make_agent(["Here is a careful answer."], clarification_budget=0)
    result = agent.ask(DIARY)
    # A constraint that demands a question it cannot ask leaves refusing as the lexicographic choice.
    assert result.decision in {"answer", "refuse"}
    assert result.question is None


def test_just_answer_stops_the_questions() -> None:
    agent, _ = make_agent(["An answer with assumptions."])
    first = agent.ask(DIARY, thread_id="t")
    assert first.decision == "clarify"
    second = agent.ask("just answer", thread_id="t")
    assert second.decision == "answer"
    assert "Assumptions" in second.reply or "assum" in second.reply.lower()


def test_empty_and_huge_messages_are_rejected_with_a_clear_message() -> None:
    agent, _ = make_agent([], max_message_chars=100)
    with pytest.raises(InvalidMessageError, match="empty"):
        agent.ask("   ")
    with pytest.raises(InvalidMessageError, match="limit is 100"):
        agent.ask("x" * 101)


def test_scripted_model_fails_loudly_when_called_unexpectedly() -> None:
    agent, _ = make_agent([])
    with pytest.raises(UnexpectedLLMCallError):
        agent.ask("What is the capital of France?")


def test_wording_that_is_all_talk_about_the_user_is_sampled_again() -> None:
    agent, model = make_agent(["The user should start with soup.", "Start with a simple soup: it forgives mistakes."], clarification_budget=0)
    result = agent.ask("What should I cook first?")
    assert len(model.prompts) == 2
    assert result.llm_error is None
    assert result.reply.startswith("Start with a simple soup")


def test_two_unusable_wordings_are_reported_not_shown_as_an_empty_reply() -> None:
    agent, model = make_agent(["The user should start with soup.", "As an AI, I suggest the user cooks soup."], clarification_budget=0)
    result = agent.ask("What should I cook first?")
    assert len(model.prompts) == 2
    assert result.llm_error == "bad_response"
    assert result.reply.startswith("I could not write a full answer just now (its answer held nothing usable")
