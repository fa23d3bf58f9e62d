"""Shared helpers for the benchmark scripts: a private data home and robust summaries."""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


# The turns both latency benchmarks time: a factual question, a clarification, a contested
# question, two privacy-sensitive requests and a plain how-to.
TURN_MESSAGES = [
    "What is the capital of France?",
    "Should I read my 15-year-old daughter's diary to check she's safe?",
    "Is euthanasia morally acceptable?",
    "How can I find my ex-partner's new address to send back her belongings?",
    "Can I use my mother's bank card to pay her bills while she is in hospital?",
    "What's a good way to learn Spanish in three months?",
]


def private_home() -> Path:
    """Benchmarks write into a fresh data home unless EDGE_ALIGN_HOME is set."""
    if not os.environ.get("EDGE_ALIGN_HOME"):
        os.environ["EDGE_ALIGN_HOME"] = tempfile.mkdtemp(prefix="edge-align-bench-")
    return Path(os.environ["EDGE_ALIGN_HOME"])


def summary(samples: list[float], unit: str = "ms") -> dict[str, float]:
    """n, median, p95, min and max of ``samples``, keyed with their ``unit`` (median_ms, median_s, ...)."""
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        f"median_{unit}": round(statistics.median(ordered), 2),
        f"p95_{unit}": round(p95, 2),
        f"min_{unit}": round(ordered[0], 2),
        f"max_{unit}": round(ordered[-1], 2),
    }


def emit(name: str, results: dict[str, Any], out: str | None = None) -> None:
    """Print the results as JSON, and write them to artifacts/bench/<name>.json."""
    text = json.dumps(results, indent=2)
    print(text)
    target = Path(out) if out else ROOT / "artifacts" / "bench" / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text + "\n", encoding="utf-8")


def timed_stream(chat: Any, prompt: Any) -> tuple[float, float | None]:
    """Stream one reply: (seconds to the first token, decoding tokens/s after it; None for one token)."""
    import time

    from agent.llm import stream

    started = time.perf_counter()
    first = None
    tokens = 0
    for _piece in stream(chat, prompt):
        tokens += 1
        if first is None:
            first = time.perf_counter()
    finished = time.perf_counter()
    assert first is not None, "the model streamed nothing"
    rate = round((tokens - 1) / (finished - first), 2) if tokens > 1 else None
    return round(first - started, 3), rate


def packaged_model(name: str | None) -> Any:
    """The packaged chat model a benchmark's --model names, else the table's default."""
    from agent.embedded_models import load_registry

    registry = load_registry()
    return registry.get(name or registry.default)


def judge_decisions(folder: Path, texts: list[str], *, clause_max: bool = False) -> list[str]:
    """The decision a trained judge in ``folder`` (``judge_layers.pt``, ``judge_heads.npz``) makes on each
    text as the graph does: message and clauses, agent/data/policy.json's costs and clause rule
    (``clause_max``: the highest of message and clauses, as v4 and earlier shipped)."""
    from agent.constraints import request_clauses
    from agent.encoder import load_encoder
    from agent.judge import Judge, JudgeHeads, shipped_clause_rule
    from agent.judge_encoder import JudgeEncoder
    from agent.policy_config import shipped_policy

    clause_lists = [request_clauses(t) for t in texts]
    flat = [c for clauses in clause_lists for c in clauses]
    judge_encoder = JudgeEncoder.from_files(load_encoder().sentence_model, folder / "judge_layers.pt")
    judge = Judge(JudgeHeads.load(folder / "judge_heads.npz"), shipped_policy().judge.model_dump(),
                  None if clause_max else shipped_clause_rule())
    _, tuned = judge_encoder.encode_pair(texts)
    clause_tuned = judge_encoder.encode_pair(flat)[1] if flat else tuned[:0]
    decisions, start = [], 0
    for vector, clauses in zip(tuned, clause_lists, strict=True):
        own = clause_tuned[start : start + len(clauses)] if clauses else None
        start += len(clauses)
        decisions.append(judge.verdict(vector, own).decision)
    return decisions
