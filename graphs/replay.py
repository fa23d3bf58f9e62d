"""Replay recorded conversations through the current graph and say exactly where decisions changed.

Each recorded user message is sent again on a fresh thread. When the agent asks a question that
the recording also asked (same subject), it is fed the recorded answer; when it asks a question
the recording did not, the conversation is marked "diverged" and replay of it stops there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from graphs.runner import EdgeAlign, TurnResult, new_thread_id
from memory.transcripts import TranscriptEvent, conversations

OUTCOMES = {TranscriptEvent.CLARIFICATION_ASKED, TranscriptEvent.ANSWER, TranscriptEvent.REFUSAL}


@dataclass
class TurnComparison:
    turn: int
    message: str
    recorded_decision: str
    replayed_decision: str
    differences: dict[str, Any] = field(default_factory=dict)
    recorded_decision_ms: float | None = None
    replayed_decision_ms: float | None = None

    @property
    def same_decision(self) -> bool:
        return self.recorded_decision == self.replayed_decision


@dataclass
class ConversationReplay:
    conversation_id: str
    status: str = "same"  # same | changed | diverged
    turns: list[TurnComparison] = field(default_factory=list)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for turn, original in zip(data["turns"], self.turns, strict=True):
            turn["same_decision"] = original.same_decision
        return data


def _top_values(values: dict[str, float], k: int = 3) -> list[str]:
    return [name for name, _ in sorted(values.items(), key=lambda item: -item[1])[:k]]


def compare(recorded: dict[str, Any], replayed: TurnResult, with_text: bool) -> dict[str, Any]:
    """Field by field differences between a recorded outcome and the replayed turn."""
    trace = recorded.get("trace", {})
    differences: dict[str, Any] = {}
    if recorded.get("decision") != replayed.decision:
        differences["decision"] = [recorded.get("decision"), replayed.decision]
    pairs = {
        "top_values": (_top_values(trace.get("values", {})), _top_values(replayed.values)),
        "conflict_detected": (trace.get("conflict", {}).get("detected"), replayed.conflict.get("detected")),
        "conflict_pairs": (
            [p["values"] for p in trace.get("conflict", {}).get("pairs", [])],
            [p["values"] for p in replayed.conflict.get("pairs", [])],
        ),
        "norms": ([n["id"] for n in trace.get("norms", [])], [n["id"] for n in replayed.norms]),
        "question_about": ((recorded.get("question") or {}).get("about"), (replayed.question or {}).get("about")),
    }
    if with_text:
        pairs["reply"] = (recorded.get("text"), replayed.reply)
    for name, (old, new) in pairs.items():
        if old != new:
            differences[name] = [old, new]
    return differences


def _comparison(
    turn: int, message: str, recorded: dict[str, Any], result: TurnResult, with_text: bool
) -> TurnComparison:
    timings = recorded.get("trace", {}).get("timings_ms", {})
    return TurnComparison(
        turn=turn,
        message=message,
        recorded_decision=str(recorded.get("decision")),
        replayed_decision=result.decision,
        differences=compare(recorded, result, with_text),
        recorded_decision_ms=timings.get("decision_path"),
        replayed_decision_ms=result.decision_path_ms(),
    )


def replay_conversation(
    agent: EdgeAlign, conversation_id: str, records: list[dict[str, Any]], with_text: bool = False
) -> ConversationReplay:
    outcome = ConversationReplay(conversation_id)
    thread = f"replay-{new_thread_id()}"
    index = 0
    result: TurnResult | None = None
    while index < len(records):
        record = records[index]
        event = record["event"]
        if event == TranscriptEvent.USER_MESSAGE or (
            event == TranscriptEvent.CLARIFICATION_ANSWERED and result is not None and result.decision == "clarify"
        ):
            recorded_outcome = next((r for r in records[index + 1 :] if r["event"] in OUTCOMES), None)
            result = agent.ask(record["text"], thread_id=thread)
            if recorded_outcome is None:
                break
            comparison = _comparison(record["turn"], record["text"], recorded_outcome, result, with_text)
            outcome.turns.append(comparison)
            if comparison.differences:
                outcome.status = "changed"
            if result.decision == "clarify" and recorded_outcome.get("decision") != "clarify":
                outcome.status = "diverged"
                outcome.note = f"turn {record['turn']}: asked a question the recording did not ask"
                break
            if result.decision == "clarify" and (recorded_outcome.get("question") or {}).get("about") != (
                result.question or {}
            ).get("about"):
                outcome.status = "diverged"
                outcome.note = f"turn {record['turn']}: asked about something else than the recording"
                break
            index = records.index(recorded_outcome) + 1
            if result.decision != "clarify":
                # Skip recorded answers to questions this replay did not ask.
                while index < len(records) and records[index]["event"] != TranscriptEvent.USER_MESSAGE:
                    index += 1
            continue
        index += 1
    return outcome


def replay(agent: EdgeAlign, records: list[dict[str, Any]], with_text: bool = False) -> dict[str, Any]:
    """Replay every conversation; returns per-conversation results and the summary figures."""
    results = [replay_conversation(agent, cid, recs, with_text) for cid, recs in conversations(records)]
    turns = [t for r in results for t in r.turns]
    recorded_ms = [t.recorded_decision_ms for t in turns if t.recorded_decision_ms is not None]
    replayed_ms = [t.replayed_decision_ms for t in turns if t.replayed_decision_ms is not None]
    import statistics

    return {
        "conversations": len(results),
        "turns": len(turns),
        "decision_agreement": (sum(t.same_decision for t in turns) / len(turns)) if turns else None,
        "turns_with_differences": sum(1 for t in turns if t.differences),
        "decision_differences": sum(1 for t in turns if not t.same_decision),
        "diverged": sum(1 for r in results if r.status == "diverged"),
        "median_decision_ms": {
            "recorded": statistics.median(recorded_ms) if recorded_ms else None,
            "replayed": statistics.median(replayed_ms) if replayed_ms else None,
        },
        "results": [r.to_dict() for r in results],
    }
