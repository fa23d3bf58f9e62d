"""How each packaged chat model words answers, side by side, through the prompts the agent uses.

    .venv/bin/python benchmarks/wording.py [--models smollm2-135m,qwen2.5-coder-0.5b,...]
        [--max-tokens 256] [--limit N] [--out FILE]

The requests are benchmarks/data/wording_requests.jsonl: factual questions with a known answer,
how-to, advice, value-laden questions and the safe alternatives a refusal offers. Every request is
worded by every model, model order rotating per request so machine load hits all alike.

What is measured is the wording, not the decisions: each request runs once through the real graph
without generation (``generate_text=False``) to get the state the respond node would see (norms,
situation, plan); where the graph would clarify or refuse, the plan is set to the style its
category calls for. The prompt is then built by graphs.nodes.build_answer_prompt from the files in
prompts/ (the compact or full one, as the model's table entry says), sent through agent.llm.stream
to the model's own embedded llama.cpp server, and cleaned as the respond node cleans it.

Per model: share of factual replies containing the known answer; replies with meta-talk ("the
user", "the assistant"); replies with non-Latin letters (another language); replies that repeat a
sentence; replies retelling the prompt's instructions ("lay out the main considerations...");
first-token and whole-reply latency; a 120-token reply (3 runs of a long-answer request
capped at 120 tokens); the server's peak RSS (VmHWM). The load average is recorded, since the
cores are shared. Results go to stdout, artifacts/bench/wording.json, and (with --figures)
docs/figures/embedded-models.md and .png.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import ROOT, emit, private_home

REQUESTS = ROOT / "benchmarks" / "data" / "wording_requests.jsonl"
FIGURES = ROOT / "docs" / "figures"
META_TALK = re.compile(r"\bthe (user|assistant)\b|\b(user|assistant)'s\b|\bas an ai\b", re.IGNORECASE)
# Replies that retell the prompt's own instructions or blocks instead of answering.
PROMPT_ECHO = re.compile(
    r"lay out the main considerations|communities listed|the request asks|the task is|help with the request"
    r"|answer the request|the plan\b|data block|situation is empty|norms point to",
    re.IGNORECASE,
)
# The plan a category calls for when the graph itself would clarify or refuse.
CATEGORY_STYLE = {"value_laden": "pluralistic", "safe_alternative": "caveated"}
LONG_REQUEST = "Explain in detail how to plan a small vegetable garden, step by step."
LONG_TOKENS = 120


@dataclass
class Reply:
    model: str
    id: str
    category: str
    request: str
    decision: str
    text: str
    tokens: int
    first_token_s: float
    total_s: float
    known_answer: bool | None
    meta_talk: bool
    prompt_echo: bool
    non_english: bool
    repeated: bool
    error: str | None = None


@dataclass
class ModelRun:
    name: str
    replies: list[Reply] = field(default_factory=list)
    long_s: list[float] = field(default_factory=list)
    long_tokens: list[int] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    startup_s: float = 0.0


def read_requests(limit: int | None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in REQUESTS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit] if limit else rows


def has_answer(text: str, answers: list[str]) -> bool:
    return any(re.search(rf"(?<![\w]){re.escape(a)}(?![\w])", text, re.IGNORECASE) for a in answers)


def non_latin(text: str) -> bool:
    """Letters of another script (the Qwen models drift into Chinese); accented Latin letters are fine."""
    return any(ch.isalpha() and not unicodedata.name(ch, "").startswith("LATIN") for ch in text)


def repeats_a_sentence(text: str) -> bool:
    sentences = [s.strip().lower() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s.strip()) > 15]
    return len(sentences) != len(set(sentences))


def peak_rss_mb(pid: int | None) -> float:
    """The process's peak resident set (VmHWM), in MB."""
    if pid is None:
        return 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def answer_states(requests: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
    """The state the respond node would see for each request, and the graph's own decision."""
    from langgraph.checkpoint.memory import InMemorySaver

    from graphs import Context
    from graphs.runner import EdgeAlign

    runner = EdgeAlign(Context.from_env(generate_text=False), checkpointer=InMemorySaver(), record=False)
    states = []
    for number, row in enumerate(requests):
        thread = f"wording-{number}"
        result = runner.ask(row["text"], thread_id=thread)
        values = dict(runner.graph.get_state({"configurable": {"thread_id": thread}}).values)
        if result.decision != "answer":
            style = CATEGORY_STYLE.get(row["category"], "direct")
            values["policy"] = {**values.get("policy", {}), "style": style}
        values.setdefault("request", row["text"])
        states.append((values, result.decision))
    return states


def word(chat_model: Any, prompt: list[Any]) -> tuple[str, int, float, float]:
    from agent.llm import stream

    started = time.perf_counter()
    first = None
    pieces = []
    for piece in stream(chat_model, prompt):
        if first is None:
            first = time.perf_counter() - started
        pieces.append(piece)
    total = time.perf_counter() - started
    return "".join(pieces), len(pieces), first if first is not None else total, total


def summarise(run: ModelRun, load: tuple[float, float]) -> dict[str, Any]:
    replies = [r for r in run.replies if r.error is None]
    factual = [r for r in replies if r.known_answer is not None]
    ok = len(replies) or 1

    def median(values: list[float]) -> float:
        return round(statistics.median(values), 2) if values else float("nan")

    decode = [(r.tokens - 1) / (r.total_s - r.first_token_s) for r in replies if r.tokens > 5 and r.total_s > r.first_token_s]
    return {
        "replies": len(replies),
        "errors": len(run.replies) - len(replies),
        "factual_right": sum(bool(r.known_answer) for r in factual),
        "factual_total": len(factual),
        "factual_right_rate": round(sum(bool(r.known_answer) for r in factual) / max(len(factual), 1), 3),
        "meta_talk": sum(r.meta_talk for r in replies),
        "meta_talk_rate": round(sum(r.meta_talk for r in replies) / ok, 3),
        "prompt_echo": sum(r.prompt_echo for r in replies),
        "non_english": sum(r.non_english for r in replies),
        "repeated": sum(r.repeated for r in replies),
        "first_token_median_s": median([r.first_token_s for r in replies]),
        "first_token_p90_s": round(sorted(r.first_token_s for r in replies)[int(0.9 * (len(replies) - 1))], 2)
        if replies
        else float("nan"),
        "reply_median_s": median([r.total_s for r in replies]),
        "reply_tokens_median": median([float(r.tokens) for r in replies]),
        "decode_tokens_per_s_median": median(decode),
        "reply_120_tokens_median_s": median(run.long_s),
        "reply_120_tokens_runs": [round(s, 2) for s in run.long_s],
        "reply_120_tokens_counts": run.long_tokens,
        "server_peak_rss_mb": round(run.peak_rss_mb, 1),
        "server_startup_s": round(run.startup_s, 1),
        "load_average_start_end": [round(load[0], 2), round(load[1], 2)],
    }


def markdown(summary: dict[str, dict[str, Any]], meta: dict[str, Any]) -> str:
    from agent.embedded_models import load_registry

    registry = load_registry()
    rows = [
        ("Factual requests with the known answer", lambda s: f"{s['factual_right']}/{s['factual_total']} ({100 * s['factual_right_rate']:.0f}%)"),
        ("Replies with meta-talk (\"the user\", \"the assistant\")", lambda s: f"{s['meta_talk']}/{s['replies']}"),
        ("Replies retelling the prompt's instructions", lambda s: f"{s['prompt_echo']}/{s['replies']}"),
        ("Replies with non-Latin script", lambda s: f"{s['non_english']}/{s['replies']}"),
        ("Replies repeating a sentence", lambda s: f"{s['repeated']}/{s['replies']}"),
        ("First token, median (p90)", lambda s: f"{s['first_token_median_s']:.2f} s ({s['first_token_p90_s']:.2f} s)"),
        ("Whole reply, median", lambda s: f"{s['reply_median_s']:.1f} s ({s['reply_tokens_median']:.0f} tokens)"),
        ("Decoding, median", lambda s: f"{s['decode_tokens_per_s_median']:.1f} tokens/s"),
        ("A 120-token reply, median of 3", lambda s: f"{s['reply_120_tokens_median_s']:.1f} s"),
        ("Server peak RSS", lambda s: f"{s['server_peak_rss_mb']:.0f} MB"),
        ("Server start-up", lambda s: f"{s['server_startup_s']:.1f} s"),
        ("Load average at start / end", lambda s: f"{s['load_average_start_end'][0]:.1f} / {s['load_average_start_end'][1]:.1f}"),
    ]
    names = list(summary)
    header = "| | " + " | ".join(registry.get(n).title + (" (default)" if n == registry.default else "") for n in names) + " |"
    lines = [
        "# Packaged chat models, side by side",
        "",
        f"Measured by `{meta['command']}` on {meta['date']} ({meta['requests']} requests, "
        f"max {meta['max_tokens']} tokens, {meta['threads']} decode thread(s), {os.cpu_count()} shared cores; "
        f"load average {meta['load_before'][0]:.1f} before, {meta['load_after'][0]:.1f} after: the cores were busy, "
        "so read the latencies as ratios between models)"
        + ("; text checks recomputed by `benchmarks/wording.py --rescore` after fixing an answer list." if meta.get("rescored_from") else "."),
        "",
        header,
        "|---|" + "---|" * len(names),
    ]
    lines += [f"| {label} | " + " | ".join(cell(summary[n]) for n in names) + " |" for label, cell in rows]
    lines += ["", "![Side by side](embedded-models.png)", ""]
    return "\n".join(lines)


def plot(summary: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    quality = [
        ("factual right", [100 * summary[n]["factual_right_rate"] for n in names]),
        ("meta-talk", [100 * summary[n]["meta_talk_rate"] for n in names]),
        ("other script", [100 * summary[n]["non_english"] / max(summary[n]["replies"], 1) for n in names]),
        ("repeats", [100 * summary[n]["repeated"] / max(summary[n]["replies"], 1) for n in names]),
    ]
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        axes[0].bar([j + i * width for j in range(len(quality))], [q[1][i] for q in quality], width, label=name)
    axes[0].set_xticks([j + width * (len(names) - 1) / 2 for j in range(len(quality))], [q[0] for q in quality])
    axes[0].set_ylabel("% of replies")
    axes[0].set_title("Wording")
    axes[0].legend(fontsize=7)
    axes[1].bar(names, [summary[n]["first_token_median_s"] for n in names], color="tab:orange", label="first token")
    axes[1].bar(names, [summary[n]["reply_120_tokens_median_s"] for n in names], color="tab:blue", alpha=0.4,
                label="120-token reply")
    axes[1].axhline(3, color="tab:orange", linestyle=":", linewidth=1)
    axes[1].axhline(20, color="tab:blue", linestyle=":", linewidth=1)
    axes[1].set_ylabel("seconds (median)")
    axes[1].set_title("Latency (busy cores)")
    axes[1].legend(fontsize=7)
    axes[2].bar(names, [summary[n]["server_peak_rss_mb"] for n in names], color="tab:green")
    axes[2].set_ylabel("MB")
    axes[2].set_title("Server peak RSS")
    for axis in axes:
        axis.tick_params(axis="x", labelsize=7, rotation=15)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def rescore(saved: Path, figures: bool, out: str | None) -> int:
    """Score a saved run's replies again with the current checks and request file (e.g. a fixed answer list).

    Latencies, memory and load are the saved run's own; only the text checks are recomputed.
    """
    results = json.loads(saved.read_text(encoding="utf-8"))
    answers = {row["id"]: row.get("answer") for row in read_requests(None)}
    for name, replies in results["replies"].items():
        for reply in replies:
            known = answers.get(reply["id"])
            reply["known_answer"] = has_answer(reply["text"], known) if known else None
            reply["meta_talk"] = bool(META_TALK.search(reply["text"]))
            reply["prompt_echo"] = bool(PROMPT_ECHO.search(reply["text"]))
            reply["non_english"] = non_latin(reply["text"])
            reply["repeated"] = repeats_a_sentence(reply["text"])
        kept = results["models"][name]
        run = ModelRun(name, replies=[Reply(**r) for r in replies], long_s=kept["reply_120_tokens_runs"],
                       long_tokens=kept["reply_120_tokens_counts"], peak_rss_mb=kept["server_peak_rss_mb"],
                       startup_s=kept["server_startup_s"])  # fmt: skip
        load = kept["load_average_start_end"]
        results["models"][name] = summarise(run, (load[0], load[1]))
    results["rescored_from"] = str(saved)
    emit("wording", results, out)
    if figures:
        FIGURES.mkdir(parents=True, exist_ok=True)
        (FIGURES / "embedded-models.md").write_text(markdown(results["models"], results), encoding="utf-8")
        plot(results["models"], FIGURES / "embedded-models.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", help="comma-separated model names (default: every model whose packages are installed)")
    parser.add_argument("--max-tokens", type=int, default=256, help="longest reply, as the agent's default")
    parser.add_argument("--limit", type=int, help="only the first N requests")
    parser.add_argument("--prompt", choices=["auto", "compact", "full"], default="auto",
                        help="answer prompt for every model (auto: the one each model's table entry names)")
    parser.add_argument("--figures", action="store_true", help="write docs/figures/embedded-models.md and .png")
    parser.add_argument("--rescore", metavar="JSON", help="recompute the scores of a saved run's replies (no model runs)")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if args.rescore:
        return rescore(Path(args.rescore), args.figures, args.out)
    home = private_home()

    from langchain_core.messages import HumanMessage, SystemMessage

    from agent.embedded_models import load_registry, status
    from agent.llm import PLACEHOLDER_API_KEY, LLMSettings, LLMUnavailableError, make_chat_model
    from agent.llm_server import EmbeddedLlamaServer, default_llm_threads
    from graphs import Context
    from graphs.nodes import build_answer_prompt
    from prompts import load_prompt, strip_echoed_markup
    from prompts.reply import whole_sentences

    registry = load_registry()
    installed = [row["name"] for row in status() if row["packages_installed"]]
    names = args.models.split(",") if args.models else installed
    requests = read_requests(args.limit)
    load_before = os.getloadavg()
    print(f"[wording] {len(requests)} requests; graph state first", file=sys.stderr, flush=True)
    states = answer_states(requests)
    ctx = Context.from_env()
    runs = {name: ModelRun(name) for name in names}
    servers: dict[str, EmbeddedLlamaServer] = {}
    chat_models: dict[str, Any] = {}
    loads: dict[str, list[float]] = {name: [os.getloadavg()[0]] for name in names}
    try:
        for name in names:
            server = EmbeddedLlamaServer(home / "logs", model=registry.get(name), progress=False).start()
            servers[name] = server
            runs[name].startup_s = server.startup_s or 0.0
            settings = LLMSettings(base_url=server.base_url, api_key=PLACEHOLDER_API_KEY, model=server.model_name,
                                   timeout_s=600, max_retries=0, max_tokens=args.max_tokens)
            chat_models[name] = make_chat_model(settings)
            server.warm_up(load_prompt("system.md"))  # as the demo does at start (agent.llm_server)
        total = len(requests) * len(names)
        done = 0
        for number, (row, (state, decision)) in enumerate(zip(requests, states, strict=True)):
            order = names[number % len(names):] + names[: number % len(names)]
            for name in order:
                model = registry.get(name)
                compact = model.answer_prompt == "compact" if args.prompt == "auto" else args.prompt == "compact"
                prompt = build_answer_prompt(state, ctx, compact=compact)
                try:
                    raw, tokens, first, whole = word(chat_models[name], prompt)
                    error = None
                except LLMUnavailableError as failure:
                    raw, tokens, first, whole, error = failure.partial_text, 0, 0.0, 0.0, str(failure.kind)
                text = whole_sentences(strip_echoed_markup(raw))
                runs[name].replies.append(Reply(
                    model=name, id=row["id"], category=row["category"], request=row["text"], decision=decision,
                    text=text, tokens=tokens, first_token_s=round(first, 3), total_s=round(whole, 3),
                    known_answer=has_answer(text, row["answer"]) if row.get("answer") else None,
                    meta_talk=bool(META_TALK.search(text)), prompt_echo=bool(PROMPT_ECHO.search(text)),
                    non_english=non_latin(text),
                    repeated=repeats_a_sentence(text), error=error,
                ))  # fmt: skip
                done += 1
                print(f"[wording] {done}/{total} {name} {row['id']}: {first:.2f} s / {whole:.1f} s, {tokens} tok",
                      file=sys.stderr, flush=True)  # fmt: skip
        long_prompt = [SystemMessage(load_prompt("system.md")), HumanMessage(LONG_REQUEST)]
        long_models = {
            name: make_chat_model(LLMSettings(base_url=servers[name].base_url, api_key=PLACEHOLDER_API_KEY,
                                              model=servers[name].model_name, timeout_s=600, max_retries=0,
                                              max_tokens=LONG_TOKENS))
            for name in names
        }
        for _ in range(3):  # round by round, so a change of machine load hits every model alike
            for name in names:
                _, tokens, _, whole = word(long_models[name], long_prompt)
                runs[name].long_s.append(whole)
                runs[name].long_tokens.append(tokens)
        for name in names:
            runs[name].peak_rss_mb = peak_rss_mb(servers[name].pid)
            loads[name].append(os.getloadavg()[0])
    finally:
        for server in servers.values():
            server.stop()
    load_after = os.getloadavg()
    summary = {name: summarise(runs[name], (loads[name][0], loads[name][-1])) for name in names}
    meta = {
        "command": " ".join([".venv/bin/python benchmarks/wording.py", *(argv if argv is not None else sys.argv[1:])]),
        "prompt": args.prompt,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "requests": len(requests),
        "max_tokens": args.max_tokens,
        "threads": default_llm_threads(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }
    results = {**meta, "models": summary, "replies": {n: [asdict(r) for r in runs[n].replies] for n in names}}
    emit("wording", results, args.out)
    if args.figures:
        FIGURES.mkdir(parents=True, exist_ok=True)
        (FIGURES / "embedded-models.md").write_text(markdown(summary, meta), encoding="utf-8")
        plot(summary, FIGURES / "embedded-models.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
