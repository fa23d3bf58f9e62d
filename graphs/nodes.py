"""The nodes of one turn. Each reads run settings from ``Runtime[Context]`` and records its time.

Order: begin_turn -> detect_conflict -> retrieve_norms -> check_constraints -> decide ->
(clarify -> detect_conflict ...) | respond | refuse.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent.conflict import extract_options, option_text
from agent.constraints import ConstraintBook, ConstraintReport, request_clauses
from agent.context_slots import extract_context, is_personal, match_option, wants_answer_now
from agent.encoder import PrecomputedEncoder
from agent.judge import verdict_from_dict
from agent.llm import LLMFailure, LLMSettings, LLMUnavailableError, generate, make_chat_model, resolve_settings
from agent.norms import NormEvidence, judge_norms, relevant
from agent.policy import INTENT, PolicyInputs, PolicyThresholds, decide
from agent.reply_plan import ReplyPlan, build_plan, plain_similarities
from agent.value_model import active_values
from agent.values import VALUE_NAMES
from agent.vocabulary import AnswerPrompt, Decision, Mode
from graphs.context import Context
from graphs.resources import get_resources
from graphs.state import Clarification, State
from memory.profiles import load_user_context, remember_user_context
from prompts import load_prompt_data, message, strip_echoed_markup
from prompts.reply import answer_prompt, compose, direct_answer, reason_text, usable_wording, whole_sentences


class InvalidMessageError(ValueError):
    """A message the graph will not analyse (empty or over the configured length)."""


def _timed(state: State, step: str, started: float) -> dict[str, float]:
    return {**state.get("timings_ms", {}), step: round((time.perf_counter() - started) * 1000, 2)}


def message_text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)


def check_message(text: str, limit: int) -> str:
    """The message stripped, or an InvalidMessageError with the text the user should see."""
    # Lone surrogates (undecodable bytes from a terminal, "\ud800" escapes in JSON) cannot be written
    # as UTF-8: stored as they are, they crashed the transcript writer. They become "?".
    cleaned = text.encode("utf-8", "replace").decode("utf-8").strip()
    if not cleaned:
        raise InvalidMessageError(message("empty_message"))
    if len(cleaned) > limit:
        raise InvalidMessageError(message("too_long", length=len(cleaned), limit=limit))
    return cleaned


def begin_turn(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """A new request starts: reset what belongs to the previous one, keep what the user told us."""
    started = time.perf_counter()
    last = state["messages"][-1]
    request = check_message(message_text(last), runtime.context.max_message_chars)
    remembered = {}
    if state.get("user_id") and runtime.store is not None:
        remembered = load_user_context(runtime.store, str(state["user_id"]))
    stated = {**remembered, **runtime.context.user_context, **extract_context(request)}
    return {
        "request": request,
        "clarifications": [],
        "answer_now": False,
        "known_context": stated,
        "pending_question": None,
        "reply": "",
        "reply_plan": None,
        "llm_error": None,
        "timings_ms": {"begin_turn": round((time.perf_counter() - started) * 1000, 2)},
    }


def _analysis_text(state: State) -> str:
    """The request plus what the user has answered, as one text to embed."""
    parts = [state["request"]]
    for item in state.get("clarifications", []):
        parts.append(f"({item['question']} {item['answer']})")
    return " ".join(parts)


def detect_conflict(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """The analysis pass: embed every text it needs in ONE batch, then the judge, the values and conflict.

    The texts: the request with this turn's answers (one text: an answer is context about the
    request, not a new request), the request's clauses (a wrapper dilutes the whole message, not the
    ask inside it) and the options the user names ("should I A or B?").
    """
    started = time.perf_counter()
    ctx = runtime.context
    res = get_resources(ctx.home)
    judge = ctx.judge or res.judge
    text = _analysis_text(state)
    request = state["request"]
    clauses = request_clauses(request)
    options = extract_options(request)
    option_texts = [option_text(request, o) for o in options] if len(options) >= 2 else []
    texts = [text, *clauses, *option_texts]
    if res.judge_encoder is not None and judge is res.judge:
        # One pass through MiniLM gives both: the packaged embedding and the judge's tuned one.
        vectors, judge_vectors = res.judge_encoder.encode_pair(texts)
    else:
        vectors = res.encoder.encode(texts)
        judge_vectors = vectors
    embedding = vectors[0]
    clause_vectors = vectors[1 : 1 + len(clauses)]
    verdict = judge.verdict(judge_vectors[0], judge_vectors[1 : 1 + len(clauses)] if clauses else None)
    scorer = res.value_scorers[ctx.value_model]
    probs = scorer.predict_proba(embedding[None, :])[0]
    conflict = res.conflict.assess(
        request,
        embedding,
        probs,
        options=options or None,
        encoder=PrecomputedEncoder(option_texts, vectors[1 + len(clauses) :]),
    )
    conflict_dict = conflict.to_dict()
    # Whether values conflict is the judge's trained head (MoralChoice, ConflictScope, DailyDilemmas);
    # the conflict model says which values pull apart.
    conflict_dict["model_detected"] = conflict_dict["detected"]
    conflict_dict["probability"] = round(verdict.p_conflict, 4)
    threshold = 0.5 if ctx.conflict_threshold is None else ctx.conflict_threshold
    conflict_dict["detected"] = verdict.p_conflict >= threshold
    clarification = {
        "probability": round(verdict.p_clarify, 4),
        "need_level": int(res.clarification.need_level(text, embedding)),
        "signals": res.clarification.signals(text),
    }
    return {
        "analysis_text": text,
        "embedding": _state_vector(embedding),
        "clause_embeddings": [_state_vector(v) for v in clause_vectors],
        "judge": verdict.to_dict(),
        "values": {name: round(float(p), 4) for name, p in zip(VALUE_NAMES, probs, strict=True)},
        "active_values": active_values(probs, scorer),
        "conflict": conflict_dict,
        "clarification": clarification,
        "uncertainty": {
            "harmful": round(verdict.p_harmful, 4),
            "clarification_need": round(verdict.p_clarify, 4),
            "intent": round(verdict.p_clarify, 4),
            "value_conflict": round(verdict.p_conflict, 4),
        },
        "timings_ms": _timed(state, "detect_conflict", started),
    }


def retrieve_norms(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Nearest norms of the chosen communities, nudged towards the message's domain, judged against context."""
    started = time.perf_counter()
    ctx = runtime.context
    res = get_resources(ctx.home)
    embedding = np.asarray(state["embedding"], dtype=np.float32)
    domains = res.domains.detect(embedding)
    found = res.norms.query(embedding, communities=ctx.communities, k=ctx.norms_k)
    # A norm tagged with the message's domain is preferred over an equally close one that is not.
    ranked = sorted(found, key=lambda n: -(n.similarity + (0.03 if set(n.domains) & set(domains) else 0.0)))
    judgement = judge_norms(ranked, state.get("known_context", {}), ctx.relevance_floor)
    applicable_ids = {n.id for n in judgement.applicable}
    uncertainty = {**state.get("uncertainty", {}), "normative_disagreement": round(judgement.disagreement, 4)}
    return {
        "domain": {"detected": domains, "scores": {k: round(v, 4) for k, v in res.domains.scores(embedding).items()}},
        "norms": [n.to_dict() | {"applies": n.id in applicable_ids} for n in ranked],
        "normative": judgement.to_dict(),
        "uncertainty": uncertainty,
        "timings_ms": _timed(state, "retrieve_norms", started),
    }


def check_constraints(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Every tier of hard constraints: refusals are the judge's call, exemplars name the constraint."""
    started = time.perf_counter()
    res = get_resources(runtime.context.home)
    embedding = np.asarray(state["embedding"], dtype=np.float32)
    clauses = state.get("clause_embeddings") or []
    clause_embeddings = np.asarray(clauses, dtype=np.float32) if clauses else None
    evidence = res.constraints.check(embedding, clause_embeddings)
    report = res.constraints.governed_by(evidence, harmful=state["judge"]["decision"] == "refuse")
    return {"constraints": report.to_dict(), "timings_ms": _timed(state, "check_constraints", started)}


_YES_NO_OPENERS = ("are ", "is ", "do ", "does ", "would ", "will ", "can ", "did ", "have ", "should ")


def _bank_question(state: State, home: str | None, floor: float | None) -> dict[str, Any] | None:
    """The best-fitting ClariQ question for an ambiguous request, with Yes/No buttons when it is a yes/no question."""
    bank = get_resources(home).question_bank
    if bank is None:
        return None
    found = bank.question_for(state["request"], np.asarray(state["embedding"], dtype=np.float32), floor)
    if found is None:
        return None
    text = found.text.strip()
    text = text[0].upper() + text[1:] + ("" if text.endswith("?") else "?")
    options = ["Yes", "No"] if text.lower().startswith(_YES_NO_OPENERS) else []
    return {"question": text, "options": options, "about": INTENT}


def _task_question(state: State, home: str | None, floor: float | None) -> dict[str, Any] | None:
    """The question (and options) IN3 gives for the nearest vague task, when the request is that close to one."""
    tasks = get_resources(home).task_questions
    if tasks is None or floor is None:
        return None
    found = tasks.question_for(np.asarray(state["embedding"], dtype=np.float32), state["request"], floor)
    if found is None:
        return None
    return {"question": found.question, "options": list(found.options), "about": INTENT}


def _question(state: State, about: str, ctx: Context) -> dict[str, Any]:
    if about == INTENT:
        # A question written for a nearly identical task beats a search-engine question from another topic
        # (tune_task_questions measures both against the request's own gold questions).
        asked = _task_question(state, ctx.home, ctx.task_question_similarity) or _bank_question(
            state, ctx.home, ctx.bank_question_similarity
        )
        if asked:
            return asked
    templates = load_prompt_data("clarify_questions.yaml")
    template = templates.get(about, templates[INTENT])
    return {
        "question": template["question"],
        "options": [o["label"] for o in template["options"]],
        "about": about,
    }


def decide_response(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Clarify, answer or refuse: constraints lexicographically, then the value of a question."""
    started = time.perf_counter()
    ctx = runtime.context
    norms = [NormEvidence.from_dict(n) for n in state.get("norms", [])]
    context = state.get("known_context", {})
    judgement = judge_norms(norms, context, ctx.relevance_floor)
    report = ConstraintReport.from_dict(state["constraints"])
    outcome = decide(
        PolicyInputs(
            constraints=report,
            conflict_score=float(state["conflict"]["score"]),
            conflict_detected=bool(state["conflict"]["detected"]),
            verdict=verdict_from_dict(state["judge"]),
            norms=judgement,
            relevant_norms=relevant(norms, ctx.relevance_floor),
            known_context=context,
            asked_about=state.get("asked_about", []),
            questions_asked=len(state.get("clarifications", [])),
            concerns_asked=_concerns_asked(state),
            budget=ctx.clarification_budget,
            answer_now=state.get("answer_now", False),
            personal=is_personal(state["request"]),
            mode=ctx.mode,
            value_probs=np.array([state["values"][v] for v in VALUE_NAMES]),
        ),
        PolicyThresholds(
            question_value=ctx.question_value_threshold,
            disagreement=ctx.disagreement_threshold,
        ),
    )
    update: dict[str, Any] = {
        "decision": str(outcome.decision),
        "policy": outcome.to_dict(),
        "timings_ms": _timed(state, "decide", started),
    }
    if outcome.decision == Decision.CLARIFY:
        question = _question(state, outcome.ask_about or INTENT, ctx)
        update["pending_question"] = question
        update["reply"] = question["question"]
        update["messages"] = [AIMessage(question["question"], additional_kwargs={"edge_align": question})]
    return update


def _state_vector(embedding: np.ndarray) -> list[float]:
    """An embedding as the JSON-friendly list the checkpointed state keeps (6 decimals)."""
    vector: list[float] = embedding.astype(float).round(6).tolist()
    return vector


def clarify(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Pause the thread on the question; on resume, store the answer as context and re-analyse.

    Everything before ``interrupt()`` is a cheap read, because the node re-runs from its start on resume.
    """
    question = state["pending_question"] or _question(state, INTENT, runtime.context)
    answer = str(interrupt(question)).strip()
    about = question["about"]
    templates = load_prompt_data("clarify_questions.yaml")
    value = match_option(answer, templates.get(about, {}).get("options", []))
    record: Clarification = {
        "about": about,
        "question": question["question"],
        "options": question["options"],
        "answer": answer,
        "for_constraints": _constraints_that_asked(state),
    }
    update: dict[str, Any] = {
        "messages": [HumanMessage(answer)],
        "clarifications": [*state.get("clarifications", []), record],
        "asked_about": [about],
        "answer_now": wants_answer_now(answer),
        "pending_question": None,
    }
    learned = extract_context(answer)
    if value is not None and about != INTENT:
        learned[about] = value
    if learned:
        update["known_context"] = learned
        if state.get("user_id") and runtime.store is not None:
            remember_user_context(runtime.store, str(state["user_id"]), learned)
    return update


def _concerns_asked(state: State) -> list[str]:
    """The constraints the questions asked so far in this request were asked for."""
    return [i for c in state.get("clarifications", []) for i in c.get("for_constraints", [])]


def _constraints_that_asked(state: State) -> list[str]:
    """The constraints whose demand for context made the policy ask (none when it asked for another reason)."""
    if state.get("policy", {}).get("constraint_choice") != "clarify":
        return []
    return [str(m["id"]) for m in state.get("constraints", {}).get("matches", [])
            if m.get("action") == "require_clarification"]


def _safeguards(state: State, book: ConstraintBook) -> list[str]:
    """The safe course of every hard constraint that firmly asked for care rather than refusal, and of
    those whose concern a question was asked about (the answer settled whether to help, not how).

    A tentative match of this pass only came close: its safe course would answer something not asked.
    """
    matches = state.get("constraints", {}).get("matches", [])
    courses = [
        str(m["safe_alternative"])
        for m in matches
        if m.get("action") != "refuse" and not m.get("tentative") and m.get("safe_alternative")
    ]
    asked = set(_concerns_asked(state))
    # Repeats are fine: build_plan keeps each safe course once.
    return courses + [c.safe_alternative for c in book.constraints if c.id in asked and c.safe_alternative]


def reply_plan(state: State, ctx: Context) -> ReplyPlan:
    """What this answer says, from what the decision left in the state (agent.reply_plan decides)."""
    clarifications = state.get("clarifications", [])
    norms = state.get("norms", [])
    phrasings = [n.get("says") or n["text"] for n in norms if n.get("applies")]
    similarity: dict[str, float] = {}
    if phrasings:
        # The perspective floor compares the request alone with each phrasing; before any answer the
        # analysis embedding is exactly the request's.
        request: str | np.ndarray = state["request"]
        if not clarifications and state.get("embedding"):
            request = np.asarray(state["embedding"], dtype=np.float32)
        similarity = plain_similarities(get_resources(ctx.home).phrasings, request, phrasings)
    return build_plan(
        request=state["request"],
        policy=state.get("policy", {}),
        norms=norms,
        known_context=state.get("known_context", {}),
        clarifications=clarifications,
        plain_similarity=similarity,
        domains=state.get("domain", {}).get("detected", []),
        safeguards=_safeguards(state, get_resources(ctx.home).constraints),
        steer_community=ctx.steer_community if ctx.mode == Mode.STEERABLE else None,
        answer_now=state.get("answer_now", False),
        budget_spent=bool(clarifications) and len(clarifications) >= ctx.clarification_budget,
        value_conflict=bool(state.get("conflict", {}).get("detected")),
    )


def _conversation(state: State) -> str:
    return "\n".join(
        [state["request"]] + [f"Q: {c['question']} A: {c['answer']}" for c in state.get("clarifications", [])]
    )


def build_answer_prompt(
    state: State, ctx: Context, *, compact: bool = False, plan: ReplyPlan | None = None
) -> list[BaseMessage]:
    """The model's prompt for this answer (assembled by prompts.reply from the reply plan)."""
    plan = plan or reply_plan(state, ctx)
    system, user = answer_prompt(plan, _conversation(state), state.get("norms", []), compact=compact)
    return [SystemMessage(system), HumanMessage(user)]


def uses_compact_prompt(ctx: Context, settings: LLMSettings, injected_model: bool) -> bool:
    """AUTO: the prompt the embedded model's table entry names (compact for the packaged models, which
    retold norm texts or answered later from the full one in benchmarks/wording.py); the full prompt
    for any other endpoint."""
    if ctx.answer_prompt == AnswerPrompt.AUTO:
        from agent.embedded_models import selected_model

        return settings.is_embedded and not injected_model and selected_model().answer_prompt == "compact"
    return ctx.answer_prompt == AnswerPrompt.COMPACT


WORDING_ATTEMPTS = 2


def llm_settings(ctx: Context) -> LLMSettings:
    settings = LLMSettings.from_env()
    if ctx.llm_base_url is not None:
        settings = replace(settings, base_url=ctx.llm_base_url, model=ctx.llm_model)
    return settings


def respond(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Word the planned answer with the LLM; the plan's parts are shown whatever it writes.

    A chat model passed as ``configurable.chat_model`` (tests, embedding apps) replaces the
    configured endpoint.
    """
    started = time.perf_counter()
    ctx = runtime.context
    plan = reply_plan(state, ctx)
    echoes = _conversation(state).splitlines()
    text = notice = ""
    error: str | None = None
    if ctx.generate_text:
        try:
            settings = llm_settings(ctx)
            injected = get_config().get("configurable", {}).get("chat_model")
            model = injected or make_chat_model(resolve_settings(settings))
            compact = uses_compact_prompt(ctx, settings, injected is not None)
            prompt = build_answer_prompt(state, ctx, compact=compact, plan=plan)
            # Sampled wording that is all echo or talk about "the user" leaves nothing to show when the
            # plan has no direct answer of its own: one more sample usually says something, and a
            # second empty one is reported, not hidden.
            for _ in range(WORDING_ATTEMPTS):
                text = whole_sentences(strip_echoed_markup(generate(model, prompt)))
                if direct_answer(plan) or usable_wording(plan, text, echoes):
                    break
            else:
                error = str(LLMFailure.BAD_RESPONSE)
                notice = message("llm_failed", problem=message("llm_unusable"))
        except LLMUnavailableError as failure:
            error = str(failure.kind)  # a plain string: the checkpoint serialiser refuses unknown enum types
            notice = message("llm_failed", problem=failure.user_message)
    reply = compose(plan, text, echoes=echoes, notice=notice)
    return {
        "reply": reply,
        "reply_plan": plan.to_dict() | {"shown_reason": reason_text(plan)},
        "llm_error": error,
        "messages": [AIMessage(reply)],
        "timings_ms": _timed(state, "respond", started),
    }


def refuse(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """A refusal that explains itself and offers the constraint's safe alternative; no LLM involved."""
    started = time.perf_counter()
    matches = state.get("constraints", {}).get("matches", [])
    top = min(matches, key=lambda m: m["tier"]) if matches else {}
    reply = message(
        "refusal",
        explanation=top.get("explanation", "it crosses a hard limit."),
        alternative=top.get("safe_alternative") or "",
    )
    return {"reply": reply, "messages": [AIMessage(reply)], "timings_ms": _timed(state, "refuse", started)}


def route_decision(state: State) -> str:
    return {"clarify": "clarify", "refuse": "refuse"}.get(state.get("decision", "answer"), "respond")


NODES: dict[str, Callable[..., dict[str, Any]]] = {
    "begin_turn": begin_turn,
    "detect_conflict": detect_conflict,
    "retrieve_norms": retrieve_norms,
    "check_constraints": check_constraints,
    "decide": decide_response,
    "clarify": clarify,
    "respond": respond,
    "refuse": refuse,
}
