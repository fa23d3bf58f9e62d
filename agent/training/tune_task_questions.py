"""Choose how close a request must be to an IN3 vague task to ask that task's question, and measure it.

    python -m agent.training.tune_task_questions [--write] [--figure docs/figures/task_questions.png]

A question "fits" a request when it is close (cosine >= FIT, packaged MiniLM) to one of the request's
own gold clarifying questions: IN3's questions for its missing details, or the ClariQ questions
annotated for a topic that needs clarification. For every request the two candidates are compared:
the nearest *other* IN3 task's question (leave one out), and the ClariQ bank's question as the graph
picks it with the topic's own gold questions left out of the bank. The floor is the lowest candidate
similarity from which the IN3 question fits at least as often as the bank's on the choosing half of
both sources (IN3 tasks at even positions, ClariQ train topics); the other half (odd IN3 tasks,
ClariQ dev topics) is reported, never used to choose. ``--write`` stores the floor in
agent/data/policy.json (``task_question_similarity``).

The bank's own question is asked only when it is at least ``bank_question_similarity`` close to the
request: the lowest floor from which it fits at least half the time on the choosing half of both
sources (a question about another topic is taken to cost as much as a fitting one saves; below the
floor the generic question is asked).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

FIT = 0.6  # cosine between two questions that ask for the same detail (read on pairs by hand; not tuned)
FLOORS = (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
GENERIC = "Could you tell me a little more about what you are looking for?"


def log(message: str) -> None:
    print(f"[tune_task_questions] {message}", file=sys.stderr, flush=True)


def candidates(data_dir: str | None) -> list[dict[str, Any]]:
    """Per request: its source and half, the IN3 candidate's similarity, and whether each candidate fits."""
    from agent.clarification_need import load_clariq_topics
    from agent.encoder import MemoEncoder, load_encoder
    from agent.question_bank import QuestionBank
    from agent.task_questions import TaskQuestions

    encoder = load_encoder()
    tasks = TaskQuestions.load(data_dir, encoder)
    bank = QuestionBank.load(data_dir, encoder)
    text_of = dict(zip(bank.ids, bank.texts, strict=True))
    out: list[dict[str, Any]] = []
    requests: list[tuple[str, str, str, list[str], frozenset[str], int | None]] = []
    for i, task in enumerate(tasks.tasks):
        requests.append(("in3", "choose" if i % 2 == 0 else "report", task.text, list(task.questions), frozenset(), i))
    for split, half in (("train", "choose"), ("dev", "report")):
        for topic in load_clariq_topics(split, data_dir):
            gold = [text_of[q] for q in sorted(topic.question_ids) if q in text_of]
            if topic.need >= 3 and gold:
                requests.append(("clariq", half, topic.request, gold, topic.question_ids, None))
    log(f"{len(requests)} requests ({len(tasks.tasks)} IN3 tasks, {len(requests) - len(tasks.tasks)} ClariQ topics)")
    embeddings = encoder.encode([r[2] for r in requests])
    picked: list[tuple[str, str]] = []
    similarity: list[float] = []
    bank_similarity: list[float] = []
    for (_, _, text, _, gold_ids, own), vector in zip(requests, embeddings, strict=True):
        found = tasks.nearest(vector, text, exclude=own)
        # No fitting task among the nearest: the graph asks the bank's question whatever the floor.
        from_bank = bank.question_for(text, vector, leave_out=gold_ids)
        picked.append((found.question if found else GENERIC, from_bank.text if from_bank else GENERIC))
        similarity.append(found.similarity if found else -1.0)
        bank_similarity.append(from_bank.cosine if from_bank else -1.0)
    # One batched encoder call for every question (thousands of short texts), not two per request.
    questions = [q for pair in picked for q in pair] + [g for r in requests for g in r[3]]
    memo = MemoEncoder(encoder, max_texts=len(questions))
    memo.encode(questions)
    for (source, half, _, gold, _, _), pair, sim, bank_sim in zip(requests, picked, similarity, bank_similarity, strict=True):
        q = memo.encode(list(pair))
        g = memo.encode(gold)
        fits = (g @ q.T).max(axis=0) >= FIT
        out.append({"source": source, "half": half, "similarity": sim,
                    "in3_fits": bool(fits[0]), "bank_fits": bool(fits[1]),
                    # How close the bank's question is to the request itself (-1: none shares a word with it).
                    "bank_similarity": bank_sim})
    return out


def fit_rates(rows: Sequence[dict[str, Any]], floor: float) -> dict[str, Any]:
    """Per source, over requests whose nearest task is at least ``floor`` close: how often each candidate fits."""
    result: dict[str, Any] = {}
    for source in sorted({r["source"] for r in rows}):
        above = [r for r in rows if r["source"] == source and r["similarity"] >= floor]
        mine = [r for r in rows if r["source"] == source]
        result[source] = {
            "n": len(mine),
            "n_above": len(above),
            "in3_fits": round(float(np.mean([r["in3_fits"] for r in above])), 3) if above else None,
            "bank_fits": round(float(np.mean([r["bank_fits"] for r in above])), 3) if above else None,
            # What the graph's rule gives every request of the source: IN3's question above the floor, else the bank's.
            "rule_fits": round(float(np.mean([r["in3_fits"] if r["similarity"] >= floor else r["bank_fits"]
                                              for r in mine])), 3),
            "bank_only_fits": round(float(np.mean([r["bank_fits"] for r in mine])), 3),
        }
    return result


def choose_floor(rows: Sequence[dict[str, Any]]) -> float | None:
    """The lowest floor from which IN3's question fits at least as often as the bank's, on every source."""
    for floor in FLOORS:
        rates = fit_rates(rows, floor)
        if all(cell["in3_fits"] is not None and cell["in3_fits"] >= (cell["bank_fits"] or 0.0) for cell in rates.values()):
            return floor
    return None


def bank_fit_rates(rows: Sequence[dict[str, Any]], floor: float) -> dict[str, Any]:
    """Per source: how many requests the bank would ask at ``floor``, and how often its question fits."""
    result: dict[str, Any] = {}
    for source in sorted({r["source"] for r in rows}):
        above = [r for r in rows if r["source"] == source and r["bank_similarity"] >= floor]
        result[source] = {"n_asked": len(above),
                          "bank_fits": round(float(np.mean([r["bank_fits"] for r in above])), 3) if above else None}
    return result


def choose_bank_floor(rows: Sequence[dict[str, Any]]) -> float | None:
    """The lowest floor from which the bank's question fits at least as often as not, on every source.

    The stated cost: a question about another topic costs the user at least what a fitting one saves, so
    below a 1-in-2 fit rate the generic question, which is never about the wrong thing, is asked instead.
    """
    for floor in FLOORS:
        rates = bank_fit_rates(rows, floor)
        if all(cell["bank_fits"] is not None and cell["bank_fits"] >= 0.5 for cell in rates.values()):
            return floor
    return None


def figure(rows: Sequence[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    edges = np.arange(0.3, 1.01, 0.1)
    for ax, source in zip(axes, ("in3", "clariq"), strict=True):
        mine = [r for r in rows if r["source"] == source]
        centres, in3, bank, counts = [], [], [], []
        for lo, hi in itertools.pairwise(edges):
            part = [r for r in mine if lo <= r["similarity"] < hi]
            if part:
                centres.append((lo + hi) / 2)
                in3.append(np.mean([r["in3_fits"] for r in part]))
                bank.append(np.mean([r["bank_fits"] for r in part]))
                counts.append(len(part))
        ax.plot(centres, in3, "o-", label="nearest IN3 task's question")
        ax.plot(centres, bank, "s--", label="ClariQ bank (gold left out)")
        for x, y, n in zip(centres, in3, counts, strict=True):
            ax.annotate(f"n={n}", (x, y), fontsize=7, textcoords="offset points", xytext=(0, 5))
        ax.set_title(f"{source}: {len(mine)} requests that need a question")
        ax.set_xlabel("similarity of the request to the nearest IN3 task")
    axes[0].set_ylabel(f"share asking a gold question (cos >= {FIT})")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--write", action="store_true", help="store the floor in agent/data/policy.json")
    parser.add_argument("--figure", type=Path, default=None, help="draw fit rate against similarity here")
    args = parser.parse_args(argv)
    rows = candidates(args.data_dir)
    chosen = [r for r in rows if r["half"] == "choose"]
    reported = [r for r in rows if r["half"] == "report"]
    floor = choose_floor(chosen)
    bank_floor = choose_bank_floor(chosen)
    report = {"fit_cosine": FIT, "floor": floor,
              "choosing_half": {str(f): fit_rates(chosen, f) for f in FLOORS},
              "reported_half": fit_rates(reported, floor) if floor is not None else None,
              "bank_floor": bank_floor,
              "bank_choosing_half": {str(f): bank_fit_rates(chosen, f) for f in FLOORS},
              "bank_reported_half": bank_fit_rates(reported, bank_floor) if bank_floor is not None else None}
    print(json.dumps(report, indent=2))
    if args.figure:
        figure(rows, args.figure)
    if args.write:
        if floor is None or bank_floor is None:
            log("no floor meets its rule on both sources: nothing written")
            return 1
        from agent.policy_config import update_policy_file

        update_policy_file({"bank_question_similarity": {
            "value": bank_floor,
            "written_by": "python -m agent.training.tune_task_questions --write",
            "chosen_on": "IN3 vague tasks at even positions and ClariQ train topics with need >= 3 (the topic's gold left out of the bank)",
            "rule": f"lowest of {list(FLOORS)} from which the bank's question (cosine to the request) asks one of the request's "
                    f"gold questions (cosine >= {FIT}) at least half the time, on both sources; below it the generic question",
        }, "task_question_similarity": {
            "value": floor,
            "written_by": "python -m agent.training.tune_task_questions --write",
            "chosen_on": "IN3 vague tasks at even positions (leave one out) and ClariQ train topics with need >= 3",
            "rule": f"lowest of {list(FLOORS)} from which the nearest IN3 task's question asks one of the request's "
                    f"gold questions (cosine >= {FIT}) at least as often as the ClariQ bank's, on both sources",
        }})
        log(f"wrote task_question_similarity = {floor}, bank_question_similarity = {bank_floor}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
