"""How often a reply's perspectives show a norm that is about something else, per selection rule.

    .venv/bin/python benchmarks/perspective_relevance.py candidates [--out FILE]
    .venv/bin/python benchmarks/perspective_relevance.py evaluate [--out FILE] [--runs FILE]

Cases: the 50 decision cases (tests/data/decision_cases.jsonl, their dev/test split) and 200
DailyDilemmas situations (every 6th of dilemma.csv under $EDGE_ALIGN_DATA/daily_dilemmas;
alternately dev and test). Each runs through the real graph's decision path (no LLM) twice: once
without questions (clarification_budget=0), and, when the graph asks, once more answering each
question with its first option ("<id>/answered"), since an answer changes what is retrieved. Every
topic among the applicable norms is a candidate perspective. ``candidates`` writes them for labelling; tests/data/perspective_labels.jsonl holds
the hand labels (does this situation bear on the request: related true/false).

``evaluate`` applies each rule of a grid (agent.reply_plan.PerspectiveRule: a floor on the
similarity of the request to the norm's plain phrasing, a margin below the best topic, domain
agreement) and reports, per split: the share of cases whose shown perspectives include an
unrelated topic, and how many labelled-related topics are shown. The rule is chosen on dev only,
by the fewest errors (unrelated topics shown + related topics not shown, counted alike; ties go
to fewer cases with an unrelated topic); test is reported for the chosen rule and the old one,
never used to choose.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import ROOT, emit, private_home

LABELS = ROOT / "tests" / "data" / "perspective_labels.jsonl"
DILEMMA_STEP = 6
DILEMMAS = 200
MARGINS: tuple[float | None, ...] = (None, 0.05, 0.1, 0.15)
FLOORS: tuple[float | None, ...] = (None, 0.4, 0.42, 0.44, 0.46, 0.48, 0.5, 0.52, 0.54, 0.56, 0.6)


@dataclass
class Case:
    id: str
    split: str
    text: str


def cases() -> list[Case]:
    # Read as plain JSON: graphs.evaluation's case model does not keep the split.
    lines = (ROOT / "tests" / "data" / "decision_cases.jsonl").read_text(encoding="utf-8").splitlines()
    chosen = [Case(row["id"], row["split"], row["text"]) for row in map(json.loads, filter(str.strip, lines))]
    data = Path(os.environ.get("EDGE_ALIGN_DATA", ROOT.parent / "shared" / "data"))
    with (data / "daily_dilemmas" / "dilemma.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for n, row in enumerate(rows[::DILEMMA_STEP][:DILEMMAS]):
        chosen.append(Case(f"dd{row['idx']}", "dev" if n % 2 == 0 else "test", row["dilemma_situation"].strip()))
    return chosen


def run_cases() -> list[dict[str, Any]]:
    """Each case's applicable norms and detected domains, from the real decision path."""
    from langgraph.checkpoint.memory import InMemorySaver

    from graphs import Context
    from graphs.runner import EdgeAlign

    private_home()
    unasked = EdgeAlign(
        Context(generate_text=False, clarification_budget=0), checkpointer=InMemorySaver(), record=False
    )
    asking = EdgeAlign(Context(generate_text=False), checkpointer=InMemorySaver(), record=False)

    def snapshot(agent: EdgeAlign, thread: str, case: Case, suffix: str = "") -> dict[str, Any]:
        state = agent.graph.get_state({"configurable": {"thread_id": thread}}).values
        return {
            **asdict(case),
            "id": case.id + suffix,
            "norms": state.get("norms", []),
            "domains": state.get("domain", {}).get("detected", []),
        }

    out = []
    for index, case in enumerate(cases()):
        thread = f"rel-{index}"
        unasked.ask(case.text, thread_id=thread)
        out.append(snapshot(unasked, thread, case))
        result = asking.ask(case.text, thread_id=thread)
        if result.decision != "clarify":
            continue
        while result.decision == "clarify" and result.question and result.question["options"]:
            result = asking.ask(result.question["options"][0], thread_id=thread)
        if result.decision == "answer":
            out.append(snapshot(asking, thread, case, "/answered"))
    return out


def with_plain_similarity(runs: list[dict[str, Any]]) -> None:
    """Each run's request-to-phrasing similarities, as respond computes them."""
    from agent.encoder import load_encoder
    from agent.reply_plan import plain_similarities

    encoder = load_encoder()
    for run in runs:
        phrasings = [n.get("says") or n["text"] for n in run["norms"] if n.get("applies")]
        run["plain"] = plain_similarities(encoder, run["text"], phrasings)


def topics_of(run: dict[str, Any], rule: Any) -> list[str]:
    from agent.norms import NormEvidence
    from agent.reply_plan import perspectives

    norms = run["norms"]
    evidence = [NormEvidence.from_dict(n) for n in norms]
    applies = [bool(n.get("applies")) for n in norms]
    shown = perspectives(evidence, applies, run["domains"], rule, plain_similarity=run.get("plain"))
    return [p.says for p in shown]


def candidates(out: Path, cache: Path | None) -> None:
    from agent.reply_plan import PerspectiveRule

    everything = PerspectiveRule(min_plain_similarity=None, margin=None, same_domain=False, topics=100)
    with out.open("w", encoding="utf-8") as handle:
        for run in load_runs(cache):
            for says in topics_of(run, everything):
                row = {"case": run["id"], "split": run["split"], "request": run["text"], "says": says}
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {out}", file=sys.stderr)


def load_runs(cache: Path | None) -> list[dict[str, Any]]:
    """The cases' decision-path states, from ``cache`` when it exists (written by an earlier run)."""
    if cache is not None and cache.is_file():
        runs: list[dict[str, Any]] = json.loads(cache.read_text(encoding="utf-8"))
        return runs
    runs = run_cases()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(runs), encoding="utf-8")
    return runs


def evaluate(out: str | None, cache: Path | None) -> None:
    from agent.reply_plan import PerspectiveRule

    labels = {}
    for line in LABELS.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            labels[(row["case"], row["says"])] = bool(row["related"])
    runs = load_runs(cache)
    with_plain_similarity(runs)
    old = PerspectiveRule(None, None, False, 3)  # what replies showed before: the first 3 applicable topics
    rules = {"old (first 3 applicable)": old}
    for floor in FLOORS:
        for margin in MARGINS:
            for same_domain in (False, True):
                name = f"plain>={floor} margin={margin} same_domain={same_domain}"
                rules[name] = PerspectiveRule(floor, margin, same_domain, 3)
    unlabelled: set[tuple[str, str]] = set()
    everything = PerspectiveRule(None, None, False, 100)

    def score(rule: PerspectiveRule, split: str) -> dict[str, Any]:
        with_topics = unrelated_cases = related_kept = related_old = shown_total = unrelated_total = 0
        related_all = related_shown = 0
        for run in runs:
            if run["split"] != split:
                continue
            before = topics_of(run, old)
            if not before:
                continue
            with_topics += 1
            shown = topics_of(run, rule)
            for says in set(before) | set(shown):
                if (run["id"], says) not in labels:
                    unlabelled.add((run["id"], says))
            verdicts = [labels.get((run["id"], s), True) for s in shown]
            unrelated_cases += not all(verdicts)
            shown_total += len(shown)
            unrelated_total += verdicts.count(False)
            related_before = {s for s in before if labels.get((run["id"], s), True)}
            related_old += len(related_before)
            related_kept += len(related_before & set(shown))
            related = {s for s in topics_of(run, everything) if labels.get((run["id"], s)) is True}
            related_all += len(related)
            related_shown += len(related & set(shown))
        return {
            "cases_with_perspectives": with_topics,
            "cases_showing_an_unrelated_topic": unrelated_cases,
            "unrelated_case_rate": round(unrelated_cases / with_topics, 3) if with_topics else None,
            "topics_shown": shown_total,
            "unrelated_topics_shown": unrelated_total,
            "related_topics_kept": round(related_kept / related_old, 3) if related_old else None,
            "related_topics_labelled": related_all,
            "related_topics_shown": related_shown,
            "errors": unrelated_total + (related_all - related_shown),
        }

    dev = {name: score(rule, "dev") for name, rule in rules.items()}
    chosen = min(dev, key=lambda n: (dev[n]["errors"], dev[n]["cases_showing_an_unrelated_topic"]))
    results = {
        "cases": {"dev": sum(r["split"] == "dev" for r in runs), "test": sum(r["split"] == "test" for r in runs)},
        "labels": len(labels),
        "unlabelled_topics_met": sorted(f"{c}: {s}" for c, s in unlabelled),
        "dev": dev,
        "chosen_on_dev": chosen,
        "test": {"old (first 3 applicable)": score(old, "test"), chosen: score(rules[chosen], "test")},
        "shipped_default": asdict(PerspectiveRule()),
    }
    emit("perspective_relevance", results, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("candidates", "evaluate"))
    parser.add_argument("--out")
    parser.add_argument("--runs", type=Path, help="cache of the decision-path states (reused when it exists)")
    args = parser.parse_args(argv)
    if args.mode == "candidates":
        candidates(Path(args.out or ROOT / "artifacts" / "bench" / "perspective_candidates.jsonl"), args.runs)
    else:
        evaluate(args.out, args.runs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
