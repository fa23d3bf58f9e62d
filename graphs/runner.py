"""Run turns on a checkpointed thread: the API the CLI, the UI and evaluators share.

A message on a thread that waits on a clarification answers it (``Command(resume=...)``);
any other message starts a new request on the thread.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessageChunk, HumanMessage
from langgraph.types import Command

from graphs.context import Context
from graphs.graph import compile_graph
from graphs.nodes import InvalidMessageError, check_message
from graphs.resources import get_resources
from memory.backends import open_checkpointer, open_store
from memory.paths import home_dir, transcripts_dir
from memory.transcripts import TranscriptEvent, TranscriptWriter, make_record

RECORD_ENV = "EDGE_ALIGN_RECORD"
# Each step's checkpoint is written before the next step starts: with LangGraph's default ("async")
# a process killed during analysis lost the whole turn, the user's message included.
DURABILITY = "sync"

STEP_LABELS = {
    "begin_turn": "reading your message…",
    "detect_conflict": "analysing values…",
    "retrieve_norms": "consulting norms…",
    "check_constraints": "checking hard constraints…",
    "decide": "deciding whether to ask or answer…",
    "clarify": "noting your answer…",
    "respond": "writing the answer…",
    "refuse": "explaining the refusal…",
}

__all__ = ["STEP_LABELS", "EdgeAlign", "InvalidMessageError", "TurnResult"]


@dataclass
class TurnResult:
    """One turn's outcome in the field names scripts rely on (see README: `ask --json`)."""

    thread_id: str
    decision: str
    reply: str
    question: dict[str, Any] | None = None
    values: dict[str, float] = field(default_factory=dict)
    active_values: list[str] = field(default_factory=list)
    conflict: dict[str, Any] = field(default_factory=dict)
    norms: list[dict[str, Any]] = field(default_factory=list)
    uncertainty: dict[str, float] = field(default_factory=dict)
    clarification: dict[str, Any] = field(default_factory=dict)
    constraints: dict[str, Any] = field(default_factory=dict)
    judge: dict[str, Any] = field(default_factory=dict)  # the judge's verdict: p_harmful, p_clarify, decision
    timings_ms: dict[str, float] = field(default_factory=dict)
    policy: dict[str, Any] = field(default_factory=dict)
    domain: dict[str, Any] = field(default_factory=dict)
    normative: dict[str, Any] = field(default_factory=dict)
    known_context: dict[str, str] = field(default_factory=dict)
    llm_error: str | None = None
    reply_plan: dict[str, Any] = field(default_factory=dict)  # what an answer says; empty for questions and refusals

    @classmethod
    def from_state(cls, thread_id: str, values: dict[str, Any], question: dict[str, Any] | None) -> TurnResult:
        norms = [
            {
                k: n[k]
                for k in ("id", "text", "community", "domain", "score", "stance", "pack_id", "pack_version", "support")
            }
            | {"says": n.get("says") or n["text"]}
            for n in values.get("norms", [])
            if n.get("applies")
        ]
        return cls(
            thread_id=thread_id,
            decision=values.get("decision", "answer"),
            reply=question["question"] if question else values.get("reply", ""),
            question=question,
            values=values.get("values", {}),
            active_values=values.get("active_values", []),
            clarification=values.get("clarification", {}),
            conflict=values.get("conflict", {}),
            norms=norms,
            uncertainty=values.get("uncertainty", {}),
            constraints=values.get("constraints", {}),
            judge=values.get("judge", {}),
            timings_ms=values.get("timings_ms", {}),
            policy=values.get("policy", {}),
            domain=values.get("domain", {}),
            normative=values.get("normative", {}),
            known_context=values.get("known_context", {}),
            llm_error=values.get("llm_error"),
            reply_plan=(values.get("reply_plan") or {}) if not question else {},
        )

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["timings_ms"] = {**self.timings_ms, "decision_path": self.decision_path_ms()}
        return data

    def trace(self) -> dict[str, Any]:
        """The decision trace a transcript record carries."""
        return {
            "values": self.values,
            "conflict": self.conflict,
            "norms": self.norms,
            "uncertainty": self.uncertainty,
            "constraints": self.constraints,
            "judge": self.judge,
            "timings_ms": self.timings_ms,
            "policy": self.policy,
            "known_context": self.known_context,
        }

    def decision_path_ms(self) -> float:
        return round(sum(v for k, v in self.timings_ms.items() if k not in ("respond", "refuse")), 2)


class EdgeAlign:
    """The turn graph on a persistent checkpointer, with the run settings in one Context."""

    def __init__(
        self,
        context: Context | None = None,
        checkpointer: Any = None,
        store: Any = None,
        chat_model: Any = None,
        record: bool | None = None,
    ) -> None:
        self.context = context or Context.from_env()
        get_resources(self.context.home)  # load models before the first turn, so its timings are the turn's own
        self.chat_model = chat_model  # None: the endpoint the context configures
        if record is None:
            record = os.environ.get(RECORD_ENV, "1") not in ("0", "false", "no")
        self.transcripts = TranscriptWriter(transcripts_dir(home_dir(self.context.home))) if record else None
        if checkpointer is None:
            checkpointer = open_checkpointer(home_dir(self.context.home))
        if store is None:
            store = open_store(home_dir(self.context.home))
        self.checkpointer = checkpointer
        self.store = store
        self.graph = compile_graph(checkpointer=checkpointer, store=store)

    def _config(self, thread_id: str) -> Any:
        configurable: dict[str, Any] = {"thread_id": thread_id}
        if self.chat_model is not None:
            configurable["chat_model"] = self.chat_model
        return {"configurable": configurable}

    def pending_question(self, thread_id: str) -> dict[str, Any] | None:
        """The clarifying question the thread waits on, if any."""
        snapshot = self.graph.get_state(self._config(thread_id))
        for pending in snapshot.interrupts:
            return dict(pending.value)
        return None

    def _input(self, message: str, thread_id: str, user_id: str | None) -> Any:
        cleaned = check_message(message, self.context.max_message_chars)
        if self.pending_question(thread_id) is not None:
            return Command(resume=cleaned)
        payload: dict[str, Any] = {"messages": [HumanMessage(cleaned)]}
        if user_id:
            payload["user_id"] = user_id
        return payload

    def _result(self, thread_id: str) -> TurnResult:
        snapshot = self.graph.get_state(self._config(thread_id))
        question = next((dict(p.value) for p in snapshot.interrupts), None)
        return TurnResult.from_state(thread_id, dict(snapshot.values), question)

    def ask(self, message: str, thread_id: str | None = None, user_id: str | None = None) -> TurnResult:
        """Run one turn; raises InvalidMessageError (with the text to show) for empty or huge input."""
        thread_id = thread_id or new_thread_id()
        graph_input = self._input(message, thread_id, user_id)
        turn = self._record_incoming(graph_input, thread_id)
        self.graph.invoke(graph_input, self._config(thread_id), context=self.context, durability=DURABILITY)
        result = self._result(thread_id)
        self._record_outcome(turn, result)
        return result

    def resume(self, thread_id: str) -> TurnResult | None:
        """Finish a turn a crash cut short, from its last checkpoint; None when no turn is unfinished.

        A thread paused on a clarifying question is not unfinished: it waits for the user's answer.
        """
        snapshot = self.graph.get_state(self._config(thread_id))
        if not snapshot.next or snapshot.interrupts:
            return None
        self.graph.invoke(None, self._config(thread_id), context=self.context, durability=DURABILITY)
        result = self._result(thread_id)
        self._record_outcome(self._user_turns(thread_id), result)
        return result

    def fingerprint(self) -> dict[str, Any]:
        """What shaped this agent's decisions: settings, model, endpoint (no secret) and pack versions."""
        return {
            **self.context.fingerprint(),
            "pack_versions": dict(get_resources(self.context.home).pack_versions),
        }

    def _user_turns(self, thread_id: str) -> int:
        return sum(1 for m in self.history(thread_id) if m["role"] == "user")

    def _record_incoming(self, graph_input: Any, thread_id: str) -> int:
        """Write the accepted message before the graph runs, so a crash mid-turn cannot lose it.

        Returns the turn's number (user messages on the thread, this one included).
        """
        turn = self._user_turns(thread_id) + 1
        if self.transcripts is not None:
            resumed = isinstance(graph_input, Command)
            incoming = TranscriptEvent.CLARIFICATION_ANSWERED if resumed else TranscriptEvent.USER_MESSAGE
            text = str(graph_input.resume if resumed else graph_input["messages"][0].content)
            self.transcripts.append(make_record(incoming, thread_id, turn, text, self.fingerprint()))
        return turn

    def _record_outcome(self, turn: int, result: TurnResult) -> None:
        if self.transcripts is None:
            return
        config = self.fingerprint()
        trace = result.trace()
        outcome = {
            "clarify": TranscriptEvent.CLARIFICATION_ASKED,
            "refuse": TranscriptEvent.REFUSAL,
        }.get(result.decision, TranscriptEvent.ANSWER)
        extra: dict[str, Any] = {"decision": result.decision}
        if result.question:
            extra["question"] = result.question
        self.transcripts.append(make_record(outcome, result.thread_id, turn, result.reply, config, trace, **extra))

    def stream(self, message: str, thread_id: str, user_id: str | None = None) -> Iterator[tuple[str, Any]]:
        """Yield ("step", label) as nodes start, ("token", text) while the answer is written,
        then ("result", TurnResult)."""
        graph_input = self._input(message, thread_id, user_id)
        turn = self._record_incoming(graph_input, thread_id)
        for mode, chunk in self.graph.stream(
            graph_input,
            self._config(thread_id),
            context=self.context,
            stream_mode=["messages", "debug"],
            durability=DURABILITY,
        ):
            if mode == "debug" and isinstance(chunk, dict) and chunk.get("type") == "task":
                name = chunk.get("payload", {}).get("name", "")
                if name in STEP_LABELS:
                    yield "step", STEP_LABELS[name]
            elif mode == "messages":
                message_chunk, metadata = chunk
                from_answer = metadata.get("langgraph_node") == "respond"
                if from_answer and isinstance(message_chunk, AIMessageChunk) and message_chunk.content:
                    yield "token", message_chunk.content
        result = self._result(thread_id)
        self._record_outcome(turn, result)
        yield "result", result

    def history(self, thread_id: str) -> list[dict[str, str]]:
        """The thread's messages as role/content pairs, for a UI to redraw after a reload."""
        snapshot = self.graph.get_state(self._config(thread_id))
        history = []
        for message in snapshot.values.get("messages", []):
            role = "user" if message.type == "human" else "assistant"
            history.append({"role": role, "content": str(message.content)})
        return history


def new_thread_id() -> str:
    return uuid.uuid4().hex[:16]
