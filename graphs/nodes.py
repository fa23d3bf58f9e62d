"""The nodes of one turn. Each reads run settings from ``Runtime[Context]`` and records its time.

Order: begin_turn -> detect_conflict -> retrieve_norms -> check_constraints -> decide ->
(clarify -> detect_conflict ...) | respond | refuse.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from string import Template
from typing import Any

import numpy as np
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from agent.conflict import extract_options
from agent.constraints import ConstraintReport, request_clauses
from agent.context_slots import extract_context, is_personal, match_option, wants_answer_now
from agent.encoder import EMBEDDING_DIM
from agent.llm import LLMSettings, LLMUnavailableError, generate, make_chat_model, resolve_settings
from agent.norms import NormEvidence, judge_norms, relevant
from agent.policy import INTENT, PolicyInputs, PolicyThresholds, ResponseStyle, decide
from agent.question_bank import bm25_tokens
from agent.value_model import active_values
from agent.values import VALUE_NAMES
from agent.vocabulary import AnswerPrompt, Decision
from graphs.context import Context
from graphs.resources import get_resources
from graphs.state import Clarification, State
from memory.profiles import load_user_context, remember_user_context
from prompts import data_block, load_prompt, load_prompt_data, message, render, strip_echoed_markup


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
        "answer_embeddings": [],
        "answer_now": False,
        "known_context": stated,
        "pending_question": None,
        "reply": "",
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
    """Embed the message once, score the 20 values, and test the candidate actions for dominance."""
    started = time.perf_counter()
    res = get_resources(runtime.context.home)
    text = _analysis_text(state)
    embedding = res.encoder.encode([text])[0]
    scorer = res.value_scorers[runtime.context.value_model]
    probs = scorer.predict_proba(embedding[None, :])[0]
    conflict = res.conflict.assess(
        state["request"], embedding, probs, options=extract_options(state["request"]) or None, encoder=res.encoder
    )
    conflict_dict = conflict.to_dict()
    if runtime.context.conflict_threshold is not None:
        conflict_dict["detected"] = conflict.score >= runtime.context.conflict_threshold
    need = res.clarification.probability(text, embedding)
    clarification = {
        "probability": round(float(need), 4),
        "need_level": int(res.clarification.need_level(text, embedding)),
        "signals": res.clarification.signals(text),
    }
    return {
        "analysis_text": text,
        "embedding": _state_vector(embedding),
        "values": {name: round(float(p), 4) for name, p in zip(VALUE_NAMES, probs, strict=True)},
        "active_values": active_values(probs, scorer),
        "conflict": conflict_dict,
        "clarification": clarification,
        "uncertainty": {
            "clarification_need": round(float(need), 4),
            "intent": round(float(need), 4),
            "value_conflict": round(float(conflict.score), 4),
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
    """Semantic match of the request against every tier of hard constraints."""
    started = time.perf_counter()
    res = get_resources(runtime.context.home)
    embedding = np.asarray(state["embedding"], dtype=np.float32)
    clauses = request_clauses(state["request"])
    # Only a borderline match of the message alone pays for embedding the clauses: they may confirm
    # it, never start one.
    borderline = bool(clauses) and any(match.tentative for match in res.constraints.check(embedding).matches)
    clause_embeddings = res.encoder.encode(clauses) if borderline else None
    # Answers are user text too, checked on their own (embedded once, when they arrive).
    answered = state.get("answer_embeddings", [])
    answer_embeddings = np.asarray(answered, dtype=np.float32) if answered else None
    report = res.constraints.check(embedding, clause_embeddings, answer_embeddings)
    return {"constraints": report.to_dict(), "timings_ms": _timed(state, "check_constraints", started)}


_YES_NO_OPENERS = ("are ", "is ", "do ", "does ", "would ", "will ", "can ", "did ", "have ", "should ")


def _bank_question(state: State, home: str | None) -> dict[str, Any] | None:
    """The best-ranked ClariQ question for an ambiguous request, with Yes/No buttons when it is a yes/no question."""
    bank = get_resources(home).question_bank
    if bank is None:
        return None
    ranked = bank.rank(state["request"], np.asarray(state["embedding"], dtype=np.float32), k=10)
    # Bank questions were written for other topics; one that names none of the request's words
    # ("... about bobcats?" for a jaguar request) would ask about the wrong thing.
    words = set(bm25_tokens(state["request"]))
    fitting = [q for q in ranked if words & set(bm25_tokens(q.text))]
    if not fitting:
        return None
    text = fitting[0].text.strip()
    text = text[0].upper() + text[1:] + ("" if text.endswith("?") else "?")
    options = ["Yes", "No"] if text.lower().startswith(_YES_NO_OPENERS) else []
    return {"question": text, "options": options, "about": INTENT}


def _question(state: State, about: str, home: str | None = None) -> dict[str, Any]:
    if about == INTENT:
        from_bank = _bank_question(state, home)
        if from_bank:
            return from_bank
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
            clarification_need=float(state["uncertainty"]["clarification_need"]),
            need_level=int(state["clarification"]["need_level"]),
            norms=judgement,
            relevant_norms=relevant(norms, ctx.relevance_floor),
            known_context=context,
            asked_about=state.get("asked_about", []),
            questions_asked=len(state.get("clarifications", [])),
            budget=ctx.clarification_budget,
            answer_now=state.get("answer_now", False),
            personal=is_personal(state["request"]),
            mode=ctx.mode,
            value_probs=np.array([state["values"][v] for v in VALUE_NAMES]),
        ),
        PolicyThresholds(
            clarification_need=ctx.clarification_threshold,
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
        question = _question(state, outcome.ask_about or INTENT, ctx.home)
        update["pending_question"] = question
        update["reply"] = question["question"]
        update["messages"] = [AIMessage(question["question"], additional_kwargs={"edge_align": question})]
    return update


def _state_vector(embedding: np.ndarray) -> list[float]:
    """An embedding as the JSON-friendly list the checkpointed state keeps (6 decimals)."""
    vector: list[float] = embedding.astype(float).round(6).tolist()
    return vector


def _embedding_of(answer: str, home: str | None) -> list[float]:
    if not answer:
        return [0.0] * EMBEDDING_DIM  # an empty answer scores zero against every constraint
    return _state_vector(get_resources(home).encoder.encode([answer])[0])


def clarify(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Pause the thread on the question; on resume, store the answer as context and re-analyse.

    Everything before ``interrupt()`` is a cheap read, because the node re-runs from its start on resume.
    """
    question = state["pending_question"] or _question(state, INTENT)
    answer = str(interrupt(question)).strip()
    about = question["about"]
    templates = load_prompt_data("clarify_questions.yaml")
    value = match_option(answer, templates.get(about, {}).get("options", []))
    record: Clarification = {
        "about": about,
        "question": question["question"],
        "options": question["options"],
        "answer": answer,
    }
    update: dict[str, Any] = {
        "messages": [HumanMessage(answer)],
        "clarifications": [*state.get("clarifications", []), record],
        "answer_embeddings": [*state.get("answer_embeddings", []), _embedding_of(answer, runtime.context.home)],
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


def _perspectives(norms: list[dict[str, Any]], topics: int = 3, community: str | None = None) -> str:
    """The closest situations the norms describe, each with every community's stance on it.

    Parallel norms of several communities share their text, so grouping by text shows at a
    glance where the communities part ways. With ``community`` (steerable mode), only that
    community's stances, so the reply shows what it followed whatever the model wrote.
    """
    stances: dict[str, list[str]] = {}
    for norm in norms:
        if norm.get("applies") and community in (None, norm["community"]):
            entry = f"{norm['community']}: {norm['stance']}"
            if entry not in stances.setdefault(norm["text"], []):
                stances[norm["text"]].append(entry)
    lines = [f"- {text} ({'; '.join(views)})" for text, views in list(stances.items())[:topics]]
    if not lines:
        return ""
    header = message("steered_header", community=community) if community else message("perspectives_header")
    return header + "\n" + "\n".join(lines)


def _assumption_line(policy: dict[str, Any], context: dict[str, str]) -> str:
    known = [f"{k}: {v}" for k, v in sorted(context.items()) if v != "unknown"]
    stated = known + list(policy.get("assumptions", []))
    if not stated:
        return ""
    return message("assumptions", assumptions="; ".join(stated))


def build_answer_prompt(state: State, ctx: Context, *, compact: bool = False) -> list[BaseMessage]:
    """System rules, then the request, context and norms as data blocks, then the plan.

    ``compact`` leaves the norms out and uses the compact plans: for a model too small to read
    norm texts as guidance rather than as a story to retell.
    """
    policy = state.get("policy", {})
    style = policy.get("style", ResponseStyle.DIRECT)
    plans = load_prompt_data("plans.yaml")
    if compact:
        plans = {**plans, **plans["compact"]}
    plan = Template(plans.get(style, plans["direct"])).safe_substitute(community=ctx.steer_community or "")
    norms = [n for n in state.get("norms", []) if n.get("applies")]
    if ctx.mode.value == "steerable" and ctx.steer_community:
        norms = [n for n in norms if n["community"] == ctx.steer_community]
    norm_lines = "\n".join(f"[{n['community']}, {n['stance']}] {n['text']}" for n in norms[:6]) or "(none)"
    context = state.get("known_context", {})
    context_lines = "\n".join(f"{k}: {v}" for k, v in sorted(context.items())) or "(nothing stated)"
    conversation = "\n".join(
        [state["request"]] + [f"Q: {c['question']} A: {c['answer']}" for c in state.get("clarifications", [])]
    )
    blocks = {
        "request_block": data_block("user request", conversation),
        "context_block": data_block("user's situation", context_lines),
    }
    if not compact:
        blocks["norms_block"] = data_block("community norms", norm_lines)
    user = render(
        "answer_compact.md" if compact else "answer.md",
        **blocks,
        plan=plan,
        assumptions=_assumption_line(policy, context),
    )
    return [SystemMessage(load_prompt("system.md")), HumanMessage(user)]


def uses_compact_prompt(ctx: Context, settings: LLMSettings, injected_model: bool) -> bool:
    """AUTO: the prompt the embedded model's table entry names (compact for the 135M model, whose
    retelling of norm texts benchmarks/wording.py measured); the full prompt for any other endpoint."""
    if ctx.answer_prompt == AnswerPrompt.AUTO:
        from agent.embedded_models import selected_model

        return settings.is_embedded and not injected_model and selected_model().answer_prompt == "compact"
    return ctx.answer_prompt == AnswerPrompt.COMPACT


def whole_sentences(text: str) -> str:
    """Drop a trailing half sentence (the model hit its token limit), keeping at least the first sentence."""
    text = text.strip()
    if not text or text[-1] in ".!?\"')":
        return text
    cut = max(text.rfind(mark) for mark in (". ", "! ", "? ", ".\n", "!\n", "?\n"))
    return text[: cut + 1] if cut > 0 else text


def llm_settings(ctx: Context) -> LLMSettings:
    settings = LLMSettings.from_env()
    if ctx.llm_base_url is not None:
        settings = replace(settings, base_url=ctx.llm_base_url, model=ctx.llm_model)
    return settings


def respond(state: State, runtime: Runtime[Context]) -> dict[str, Any]:
    """Word the decided answer with the LLM, then add the parts that must not depend on it.

    A chat model passed as ``configurable.chat_model`` (tests, embedding apps) replaces the
    configured endpoint.
    """
    started = time.perf_counter()
    ctx = runtime.context
    policy = state.get("policy", {})
    extras = []
    if policy.get("style") == ResponseStyle.PLURALISTIC:
        extras.append(_perspectives(state.get("norms", [])))
    elif policy.get("style") == ResponseStyle.STEERED and ctx.steer_community:
        extras.append(_perspectives(state.get("norms", []), community=ctx.steer_community))
    assumption = _assumption_line(policy, state.get("known_context", {}))
    if assumption:
        extras.append(assumption)
    text = ""
    error: str | None = None
    if ctx.generate_text:
        try:
            settings = llm_settings(ctx)
            injected = get_config().get("configurable", {}).get("chat_model")
            model = injected or make_chat_model(resolve_settings(settings))
            prompt = build_answer_prompt(state, ctx, compact=uses_compact_prompt(ctx, settings, injected is not None))
            text = whole_sentences(strip_echoed_markup(generate(model, prompt)))
        except LLMUnavailableError as failure:
            error = str(failure.kind)  # a plain string: the checkpoint serialiser refuses unknown enum types
            text = message("llm_failed", problem=failure.user_message)
    reply = "\n\n".join(part for part in [text, *extras] if part)
    return {
        "reply": reply,
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
