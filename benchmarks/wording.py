"""How well the embedded model words decided answers, with the full prompt and the compact one.

    .venv/bin/python benchmarks/wording.py [--repeats 2] [--out FILE]

Runs every message below through the real graph with the embedded SmolLM2 server, once with
``answer_prompt=full`` (request, situation, applicable norm texts, plan) and once with
``answer_prompt=compact`` (no norm texts), alternating so machine load hits both alike. A clarifying
question is answered with its first option. Of the model-written part of each reply (before the
deterministic perspectives and assumptions) it reports:

* meta-talk rate: the reply talks about "the assistant", i.e. retells norm texts instead of answering;
* topicality: cosine similarity (MiniLM) between reply and request, median over replies;
* the median words and the median time of the ``respond`` node.

Results go to stdout and artifacts/bench/wording.json.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from _common import TURN_MESSAGES, emit, private_home

ROOT = Path(__file__).resolve().parents[1]
META_TALK = re.compile(r"\bthe assistant\b|\bassistant's\b", re.IGNORECASE)
VARIANTS = ("full", "compact")


@dataclass
class Worded:
    request: str
    meta_talk: bool
    topicality: float
    words: int
    respond_ms: float


def messages() -> list[str]:
    from graphs.evaluation import read_cases

    cases = read_cases(ROOT / "tests" / "data" / "decision_cases.jsonl")
    answered = [c.text for c in cases if c.labels.decision == "answer"]
    return list(dict.fromkeys([*TURN_MESSAGES, *answered]))


def model_text(reply: str) -> str:
    """The reply without the parts the graph appends itself."""
    from prompts import message

    markers = (message("perspectives_header"), message("assumptions", assumptions="|").split("|")[0])
    cuts = [reply.find(marker) for marker in markers if marker in reply]
    return reply[: min(cuts, default=len(reply))].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    private_home()

    from langgraph.checkpoint.memory import InMemorySaver

    from graphs import Context
    from graphs.resources import get_resources
    from graphs.runner import EdgeAlign

    runners = {v: EdgeAlign(Context.from_env(answer_prompt=v), checkpointer=InMemorySaver(), record=False)
               for v in VARIANTS}
    encoder = get_resources(None).encoder
    rows: dict[str, list[Worded]] = {v: [] for v in VARIANTS}
    texts = messages()
    total = len(texts) * args.repeats * len(VARIANTS)
    done = 0
    for repeat in range(args.repeats):
        for number, text in enumerate(texts):
            for variant in VARIANTS if (number + repeat) % 2 == 0 else reversed(VARIANTS):
                runner = runners[variant]
                thread = f"{variant}-{repeat}-{number}"
                result = runner.ask(text, thread_id=thread)
                while result.decision == "clarify" and result.question:
                    options = result.question.get("options") or ["Just answer, please."]
                    result = runner.ask(options[0], thread_id=thread)
                done += 1
                print(f"[wording] {done}/{total} {variant}: {result.decision}", file=sys.stderr, flush=True)
                if result.decision != "answer" or result.llm_error:
                    continue
                worded = model_text(result.reply)
                request, reply = encoder.encode([text, worded or "."])
                rows[variant].append(Worded(
                    request=text,
                    meta_talk=bool(META_TALK.search(worded)),
                    topicality=float(request @ reply),
                    words=len(worded.split()),
                    respond_ms=float(result.timings_ms.get("respond", 0.0)),
                ))
    summary = {}
    for variant, items in rows.items():
        summary[variant] = {
            "replies": len(items),
            "meta_talk_rate": round(sum(r.meta_talk for r in items) / max(len(items), 1), 3),
            "topicality_median": round(statistics.median(r.topicality for r in items), 3),
            "words_median": statistics.median(r.words for r in items),
            "respond_median_ms": round(statistics.median(r.respond_ms for r in items), 1),
        }
    replies = {variant: [asdict(r) for r in items] for variant, items in rows.items()}
    emit("wording", {"messages": len(texts), "repeats": args.repeats, "variants": summary, "replies": replies}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
