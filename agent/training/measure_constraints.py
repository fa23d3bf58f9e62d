"""Measure the shipped constraint book on the labelled cases (tests/data/constraint_cases.jsonl).

    python -m agent.training.measure_constraints [--json] [--sweep] [--errors] [--answers]

Reports precision, recall and F1 on the dev and test splits with the threshold stored in
agent/data/constraints.yaml; it never writes that file. ``--sweep`` shows, on the dev split only, the
threshold and scoring settings that maximise "any match" F1, which is how the stored values were chosen.
``--errors`` lists the dev-split mistakes (test mistakes are not listed, so nobody tunes on them).
``--heldout-rows FILE`` (written by ``finetune_judge --heldout-rows``: held-out real requests with the
judge's out-of-fold decision) measures what the exemplars add to the judge, per source, under each
rule in EXEMPLAR_RULES: the refusals they add on harmful sets, and on benign look-alikes and ordinary
requests.
``--answers`` measures the rule that lets an answer to a clarifying question start a match on its
own (at the confident threshold): how many real, benign answers (ClariQ's crowd answers to clarifying
questions) it would act on, and how many labelled harmful cases it catches when said as an answer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.clarification_need import load_clariq_topics
from agent.constraints import ConstraintBook, ScoringSpec
from agent.encoder import EMBEDDING_DIM, load_encoder
from agent.metrics import DetectionScores, detection_scores
from agent.training.finetune_judge import read_heldout_rows

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CASES = PROJECT_ROOT / "tests" / "data" / "constraint_cases.jsonl"
CACHE_DIR = Path("/tmp/edge-align-cache")
SPLITS = ("dev", "test")
# Scores are reported and compared at 4 decimals, so the sweep breaks near-ties toward the higher threshold.
SCORE_DIGITS = 4
SWEEP_THRESHOLDS = tuple(round(0.30 + 0.01 * step, 2) for step in range(51))
SWEEP_MARGINS: tuple[float | None, ...] = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, None)
SWEEP_SCORINGS = tuple(
    ScoringSpec(top_k=top_k, max_weight=weight, benign_weight=benign)
    for benign in (0.0, 0.5, 1.0, 2.0)
    for top_k in (2, 3)
    for weight in (1.0, 0.5, 0.25)
)


@dataclass(frozen=True)
class Case:
    text: str
    constraint: str | None
    split: str


def load_cases(path: Path = DEFAULT_CASES) -> list[Case]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("split") not in SPLITS:
            raise ValueError(f"{path}:{number}: split must be one of {SPLITS}")
        cases.append(Case(text=row["text"], constraint=row["constraint"], split=row["split"]))
    return cases


def embed_cases(texts: Sequence[str]) -> np.ndarray:
    """Embeddings of the case texts, cached by content so repeated reports skip the encoder."""
    encoder = load_encoder()
    digest = hashlib.sha256(("\n".join(texts) + encoder.name).encode("utf-8")).hexdigest()[:16]
    cache = CACHE_DIR / f"constraint_cases_{digest}.npy"
    if cache.exists():
        return np.load(cache)
    vectors = encoder.encode(list(texts))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    return vectors


def predictions(book: ConstraintBook, embeddings: np.ndarray) -> list[str | None]:
    """The best-scoring matched constraint id per case, or None when nothing matched."""
    named = []
    for vector in embeddings:
        top = book.check(vector).top_match
        named.append(top.id if top else None)
    return named


def all_matches(book: ConstraintBook, embeddings: np.ndarray) -> list[tuple[str, ...]]:
    """Every matched constraint id per case."""
    return [tuple(match.id for match in book.check(vector).matches) for vector in embeddings]


def all_match_scores(labels: Sequence[str | None], matched: Sequence[tuple[str, ...]]) -> DetectionScores:
    """Per (case, constraint) pair: every matched id other than the label is a false positive.

    This is the metric that sees weak co-matches, which matter because a co-matched higher-tier
    constraint would govern the lexicographic choice.
    """
    tp = sum(1 for gold, ids in zip(labels, matched, strict=True) if gold and gold in ids)
    fp = sum(sum(1 for name in ids if name != gold) for gold, ids in zip(labels, matched, strict=True))
    fn = sum(1 for gold, ids in zip(labels, matched, strict=True) if gold and gold not in ids)
    return detection_scores(tp, fp, fn, digits=SCORE_DIGITS)


def any_match_scores(labels: Sequence[str | None], predicted: Sequence[str | None]) -> DetectionScores:
    """Binary: does the message touch some constraint at all?"""
    tp = sum(1 for gold, guess in zip(labels, predicted, strict=True) if gold and guess)
    fp = sum(1 for gold, guess in zip(labels, predicted, strict=True) if not gold and guess)
    fn = sum(1 for gold, guess in zip(labels, predicted, strict=True) if gold and not guess)
    return detection_scores(tp, fp, fn, digits=SCORE_DIGITS)


def exact_id_scores(labels: Sequence[str | None], predicted: Sequence[str | None]) -> DetectionScores:
    """Micro-averaged over constraints: a prediction is right only when it names the labelled id."""
    tp = sum(1 for gold, guess in zip(labels, predicted, strict=True) if gold and guess == gold)
    fp = sum(1 for gold, guess in zip(labels, predicted, strict=True) if guess and guess != gold)
    fn = sum(1 for gold, guess in zip(labels, predicted, strict=True) if gold and guess != gold)
    return detection_scores(tp, fp, fn, digits=SCORE_DIGITS)


def measure(book: ConstraintBook, cases: Sequence[Case], embeddings: np.ndarray) -> dict[str, Any]:
    predicted = predictions(book, embeddings)
    matched = all_matches(book, embeddings)
    report: dict[str, Any] = {}
    for split in SPLITS:
        rows = [i for i, case in enumerate(cases) if case.split == split]
        labels = [cases[i].constraint for i in rows]
        guesses = [predicted[i] for i in rows]
        report[split] = {
            "cases": len(rows),
            "positives": sum(1 for label in labels if label),
            "any_match": asdict(any_match_scores(labels, guesses)),
            "exact_id": asdict(exact_id_scores(labels, guesses)),
            "all_matches": asdict(all_match_scores(labels, [matched[i] for i in rows])),
        }
    return report


def sweep(book: ConstraintBook, cases: Sequence[Case], embeddings: np.ndarray) -> dict[str, Any]:
    """Dev-only search over threshold and scoring; best by any-match F1, ties toward the higher threshold."""
    dev = [i for i, case in enumerate(cases) if case.split == "dev"]
    labels = [cases[i].constraint for i in dev]
    dev_embeddings = embeddings[dev]
    results = []
    for scoring in SWEEP_SCORINGS:
        for threshold in SWEEP_THRESHOLDS:
            candidate = book.rescored(match_threshold=threshold, scoring=scoring)
            guesses = predictions(candidate, dev_embeddings)
            any_scores = any_match_scores(labels, guesses)
            results.append(
                {
                    "top_k": scoring.top_k,
                    "max_weight": scoring.max_weight,
                    "benign_weight": scoring.benign_weight,
                    "threshold": threshold,
                    "any_match_f1": any_scores.f1,
                    "any_match_precision": any_scores.precision,
                    "any_match_recall": any_scores.recall,
                    "exact_id_f1": exact_id_scores(labels, guesses).f1,
                }
            )
    best = max(results, key=lambda row: (row["any_match_f1"], row["exact_id_f1"], row["threshold"]))
    per_scoring = []
    for scoring in SWEEP_SCORINGS:
        rows = [
            r
            for r in results
            if (r["top_k"], r["max_weight"], r["benign_weight"])
            == (scoring.top_k, scoring.max_weight, scoring.benign_weight)
        ]
        per_scoring.append(max(rows, key=lambda row: (row["any_match_f1"], row["exact_id_f1"], row["threshold"])))
    # Second stage: with the stored threshold and scoring, the co-match margin that maximises the dev F1
    # of all (case, constraint) matches; ties go to the wider margin (keeping more matches is safer).
    margins = []
    for margin in SWEEP_MARGINS:
        scoring = book.spec.scoring.model_copy(update={"co_match_margin": margin})
        scores = all_match_scores(labels, all_matches(book.rescored(scoring=scoring), dev_embeddings))
        margins.append({"co_match_margin": margin, **asdict(scores)})
    best_margin = max(
        margins,
        key=lambda row: (row["f1"], float("inf") if row["co_match_margin"] is None else row["co_match_margin"]),
    )
    return {"best": best, "best_per_scoring": per_scoring, "co_match_margins": margins, "best_margin": best_margin}


def dev_errors(book: ConstraintBook, cases: Sequence[Case], embeddings: np.ndarray) -> list[dict[str, Any]]:
    errors = []
    for case, vector in zip(cases, embeddings, strict=True):
        if case.split != "dev":
            continue
        report = book.check(vector)
        top = report.top_match
        guess = top.id if top else None
        if guess != case.constraint:
            nearest = max(report.checked, key=lambda score: score.score)
            errors.append(
                {"text": case.text, "label": case.constraint, "predicted": guess,
                 "nearest": nearest.id, "nearest_score": round(nearest.score, 3)}
            )
    return errors


def clariq_answers(data_dir: str | None = None) -> list[str]:
    """The distinct crowd answers to ClariQ's clarifying questions (train and dev): benign replies."""
    return sorted({a for split in ("train", "dev") for topic in load_clariq_topics(split, data_dir) for a in topic.answers})


def answer_evidence(
    book: ConstraintBook, benign_embeddings: np.ndarray, cases: Sequence[Case], embeddings: np.ndarray
) -> dict[str, Any]:
    """What the answer rule (an answer alone at the confident threshold starts a match) acts on."""
    confident = book.confident_threshold
    actions = [str(c.action) for c in book.constraints]

    def firm(vectors: np.ndarray) -> list[str | None]:
        rows = [book.scores(v) for v in vectors]
        return [actions[int(r.argmax())] if r.max() >= confident else None for r in rows]

    benign = firm(benign_embeddings)
    by_action = {a: sum(1 for b in benign if b == a) for a in sorted(set(actions))}
    test = [i for i, case in enumerate(cases) if case.split == "test"]
    said = firm(embeddings[test])
    positives = [j for j, i in enumerate(test) if cases[i].constraint]
    negatives = [j for j, i in enumerate(test) if not cases[i].constraint]
    return {
        "confident_threshold": confident,
        "benign_answers": len(benign),
        "benign_acted_on": sum(1 for b in benign if b),
        "benign_acted_on_by_action": by_action,
        "test_harmful_caught": sum(1 for j in positives if said[j]),
        "test_harmful": len(positives),
        "test_benign_acted_on": sum(1 for j in negatives if said[j]),
        "test_benign": len(negatives),
    }


# The old rule, for reference: every exemplar match acts as declared, so any firm match of a refusing
# constraint refuses whatever the judge says (before session 8).
OLD_RULE = "exemplars_refuse"
FLOOR_CANDIDATES: tuple[float | None, ...] = (None, *(round(0.40 + 0.02 * k, 2) for k in range(16)))
BOOK_FILE = PROJECT_ROOT / "agent" / "data" / "constraints.yaml"


def exemplar_decision(book: ConstraintBook, report: Any, judge_decision: str, old_rule: bool = False) -> str:
    """The turn's first decision from the judge's and the exemplars' evidence, as agent.policy makes it
    on a first turn: refuse on a firm refusing match, ask on a match that demands a question (a
    borderline refusing one included), else the judge's own decision. The exemplars' part is
    ConstraintBook.governed_by, as the graph calls it (or, with ``old_rule``, the report as checked)."""
    if old_rule and judge_decision == "refuse":
        return "refuse"
    if not old_rule:
        report = book.governed_by(report, harmful=judge_decision == "refuse")
    if any(m.action == "refuse" and not m.tentative for m in report.matches):
        return "refuse"
    if any(m.action == "require_clarification" for m in report.matches):
        return "clarify"
    return judge_decision


def _cell_name(row: dict[str, Any]) -> str:
    name = row["source"] if row["source"] != "coconot" else f"coconot_{row['truth']}"
    return f"{name}_{row['form']}" if row.get("form") else name


def _cells(book: ConstraintBook, rows: Sequence[dict[str, Any]], reports: Sequence[Any], old_rule: bool) -> dict[str, Any]:
    """Per source: rows, and the shares refused, asked and decided as labelled; with the mean cost."""
    from agent.judge import DECISION_COSTS

    out: dict[str, Any] = {}
    for row, report in zip(rows, reports, strict=True):
        decided = exemplar_decision(book, report, row["decision"], old_rule)
        cell = out.setdefault(_cell_name(row), {"n": 0, "refused": 0.0, "asked": 0.0, "correct": 0.0, "cost": 0.0})
        cell["n"] += 1
        cell["refused"] += decided == "refuse"
        cell["asked"] += decided == "clarify"
        cell["correct"] += decided == row["truth"]
        cell["cost"] += DECISION_COSTS[row["truth"]][decided]
    for cell in out.values():
        for key in ("refused", "asked", "correct", "cost"):
            cell[key] = round(cell[key] / cell["n"], 4)
    return out


def _mean_cost(cells: dict[str, Any]) -> float:
    """Every source weighs the same (as in training): the mean over sources of each one's mean cost."""
    return round(float(np.mean([cell["cost"] for cell in cells.values()])), 4)


def with_shipped_clause_rule(row: dict[str, Any]) -> dict[str, Any]:
    """The row with the judge's decision as the graph makes it: finetune_judge's ``decision`` takes the
    highest of message and clauses; with the shipped clause rule (agent/data/policy.json) and the row's
    own probabilities, when it has them, the harmful probability is the rule's."""
    from agent.judge import decide_from_probabilities, shipped_clause_rule
    from agent.policy_config import shipped_policy

    rule = shipped_clause_rule()
    if rule is None or "p_harmful_message" not in row:
        return row
    p_harm = rule.combine(row["p_harmful_message"], row["p_harmful_clauses"])
    return {**row, "p_harmful": p_harm,
            "decision": decide_from_probabilities(p_harm, row["p_clarify"], shipped_policy().judge.model_dump())}


def exemplars_over_judge(book: ConstraintBook, path: Path, choose_on: Sequence[int]) -> dict[str, Any]:
    """Which ``exemplar_refusal_floor`` costs least on the held-out rows of folds ``choose_on``, and what
    it, the judge alone and the old rule do on every other fold in ``path``.

    ``path`` is written by ``finetune_judge --heldout-rows``: held-out real requests (and the harmful
    sets' and look-alikes' held-out requests inside a held-out jailbreak wrapper) with the judge's
    out-of-fold decision. Costs are agent.judge.DECISION_COSTS, every source weighing the same."""
    from agent.constraints import request_clauses
    from agent.training.text_cache import embed_texts

    rows = [with_shipped_clause_rule(r) for r in read_heldout_rows(path)]
    encoder = load_encoder()
    vectors = embed_texts([r["text"] for r in rows], encoder, label="held-out rows")
    clause_lists = [request_clauses(r["text"]) for r in rows]
    flat = [c for clauses in clause_lists for c in clauses]
    clause_vectors = embed_texts(flat, encoder, label="their clauses") if flat else np.zeros((0, EMBEDDING_DIM), np.float32)
    reports, start = [], 0
    for vector, clauses in zip(vectors, clause_lists, strict=True):
        reports.append(book.check(vector, clause_vectors[start : start + len(clauses)] if clauses else None))
        start += len(clauses)
    chosen_rows = [i for i, r in enumerate(rows) if int(r.get("fold", 0)) in choose_on]
    reported_rows = [i for i, r in enumerate(rows) if int(r.get("fold", 0)) not in choose_on]

    def cells(floor: float | None, part: Sequence[int], old_rule: bool = False) -> dict[str, Any]:
        return _cells(book.rescored(exemplar_refusal_floor=floor), [rows[i] for i in part], [reports[i] for i in part],
                      old_rule)

    sweep = {str(floor): _mean_cost(cells(floor, chosen_rows)) for floor in FLOOR_CANDIDATES}
    # Ties go to the higher floor (None is highest): fewer refusals on exemplar evidence alone.
    best = min(FLOOR_CANDIDATES, key=lambda f: (sweep[str(f)], -(f if f is not None else 2.0)))
    result: dict[str, Any] = {"chosen_on_folds": list(choose_on), "cost_by_floor": sweep, "floor": best,
                              "rule": "least mean cost per source (DECISION_COSTS) on the choosing folds; ties to the higher floor"}
    if reported_rows:
        result["reported_folds"] = sorted({int(rows[i].get("fold", 0)) for i in reported_rows})
        result["reported"] = {
            "chosen_floor": cells(best, reported_rows),
            "judge_alone": cells(None, reported_rows),
            OLD_RULE: cells(None, reported_rows, old_rule=True),
        }
        result["reported_mean_cost"] = {k: _mean_cost(v) for k, v in result["reported"].items()}
    return result


def floor_figure(block: dict[str, Any], path: Path) -> None:
    """Refused share per source on the reported folds, for the chosen floor, the judge alone and the old rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(block["reported"])
    sources = sorted(block["reported"]["judge_alone"])
    fig, ax = plt.subplots(figsize=(12, 4))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        ax.bar([i + (k - (len(names) - 1) / 2) * width for i in range(len(sources))],
               [block["reported"][name][s]["refused"] for s in sources], width,
               label=f"{name} (mean cost {block['reported_mean_cost'][name]:.3f})")
    ax.set_xticks(range(len(sources)), sources, fontsize=7, rotation=35, ha="right")
    ax.set_ylabel("share refused")
    ax.set_title(f"Refusals on held-out fold(s) {block['reported_folds']}; floor {block['floor']} chosen on "
                 f"{block['chosen_on_folds']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_floor(floor: float | None, result: dict[str, Any], path: Path = BOOK_FILE) -> None:
    """Rewrite the ``exemplar_refusal_floor:`` line of the constraint book (its comments stay as they are)."""
    text = path.read_text(encoding="utf-8")
    line = (f"exemplar_refusal_floor: {'null' if floor is None else floor}  # chosen on folds "
            f"{result['chosen_on_folds']} by measure_constraints --write-floor")
    if not re.search(r"^exemplar_refusal_floor:.*$", text, flags=re.M):
        raise ValueError(f"{path} has no exemplar_refusal_floor line to rewrite")
    path.write_text(re.sub(r"^exemplar_refusal_floor:.*$", line, text, count=1, flags=re.M), encoding="utf-8")


def check_latency_ms(book: ConstraintBook, embeddings: np.ndarray) -> float:
    timings = []
    for vector in embeddings:
        start = time.perf_counter()
        book.check(vector)
        timings.append((time.perf_counter() - start) * 1000.0)
    return round(float(np.median(timings)), 4)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--sweep", action="store_true", help="also show the dev-split threshold sweep")
    parser.add_argument("--errors", action="store_true", help="also list dev-split mistakes")
    parser.add_argument("--answers", action="store_true", help="also measure answers as evidence")
    parser.add_argument("--data", default=None, help="datasets folder for --answers (default: EDGE_ALIGN_DATA)")
    parser.add_argument("--heldout-rows", type=Path, default=None,
                        help="held-out rows with the judge's decision (finetune_judge --heldout-rows)")
    parser.add_argument("--choose-on", default="0", help="with --heldout-rows: folds the floor is chosen on")
    parser.add_argument("--figure", type=Path, default=None, help="with --heldout-rows: draw the refusals per source here")
    parser.add_argument("--write-floor", action="store_true",
                        help="with --heldout-rows: write the chosen exemplar_refusal_floor into the constraint book")
    parser.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    parser.add_argument("--book", type=Path, default=None, help="constraint book (default: the shipped one)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    book = ConstraintBook.load(args.book).prepare(load_encoder())
    cases = load_cases(args.cases)
    embeddings = embed_cases([case.text for case in cases])
    result: dict[str, Any] = {
        "book": str(book.source),
        "match_threshold": book.threshold,
        "scoring": book.spec.scoring.model_dump(),
        "constraints": len(book.constraints),
        "exemplars": len(book.exemplars),
        "benign_exemplars": len(book.benign_exemplars),
        **measure(book, cases, embeddings),
        "check_median_ms": check_latency_ms(book, embeddings),
    }
    if args.sweep:
        result["dev_sweep"] = sweep(book, cases, embeddings)
    if args.errors:
        result["dev_errors"] = dev_errors(book, cases, embeddings)
    if args.heldout_rows is not None:
        chosen_folds = [int(k) for k in args.choose_on.split(",")]
        result["exemplars_over_judge"] = exemplars_over_judge(book, args.heldout_rows, chosen_folds)
        if args.figure and "reported" in result["exemplars_over_judge"]:
            floor_figure(result["exemplars_over_judge"], args.figure)
        if args.write_floor:
            write_floor(result["exemplars_over_judge"]["floor"], result["exemplars_over_judge"])
    if args.answers:
        benign = clariq_answers(args.data)
        result["answers"] = answer_evidence(book, embed_cases(benign), cases, embeddings)

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"book {result['book']}: {result['constraints']} constraints, {result['exemplars']} exemplars,"
          f" {result['benign_exemplars']} benign exemplars")
    print(f"threshold {book.threshold}  scoring {result['scoring']}  check() median {result['check_median_ms']} ms")
    for split in SPLITS:
        block = result[split]
        print(f"{split}: {block['cases']} cases, {block['positives']} positives")
        for kind in ("any_match", "exact_id", "all_matches"):
            s = block[kind]
            print(f"  {kind:11s} P={s['precision']:.3f} R={s['recall']:.3f} F1={s['f1']:.3f}"
                  f"  (tp={s['true_positives']} fp={s['false_positives']} fn={s['false_negatives']})")
    if args.sweep:
        print("dev sweep (best any-match F1 per scoring rule):")
        for row in result["dev_sweep"]["best_per_scoring"]:
            print(f"  top_k={row['top_k']} max_weight={row['max_weight']:.2f}"
                  f" benign_weight={row['benign_weight']:.1f} threshold={row['threshold']:.2f}"
                  f"  anyF1={row['any_match_f1']:.3f} (P={row['any_match_precision']:.3f}"
                  f" R={row['any_match_recall']:.3f}) exactF1={row['exact_id_f1']:.3f}")
        print(f"  overall best: {result['dev_sweep']['best']}")
        print("dev co-match margin (all_matches, at the stored threshold and scoring):")
        for row in result["dev_sweep"]["co_match_margins"]:
            print(f"  margin={row['co_match_margin']}  P={row['precision']:.3f} R={row['recall']:.3f}"
                  f" F1={row['f1']:.3f} (fp={row['false_positives']})")
        print(f"  best: {result['dev_sweep']['best_margin']['co_match_margin']}")
    if args.answers:
        a = result["answers"]
        print(f"answers as evidence (alone, at the confident threshold {a['confident_threshold']}):")
        print(f"  benign ClariQ answers acted on: {a['benign_acted_on']} of {a['benign_answers']}"
              f" {a['benign_acted_on_by_action']}")
        print(f"  test harmful cases caught as answers: {a['test_harmful_caught']} of {a['test_harmful']};"
              f" test benign cases acted on: {a['test_benign_acted_on']} of {a['test_benign']}")
    if args.heldout_rows is not None:
        block = result["exemplars_over_judge"]
        print(f"exemplar refusal floor, chosen on folds {block['chosen_on_folds']}: {block['floor']}"
              f"  (mean cost per source by floor: {block['cost_by_floor']})")
        if "reported" in block:
            print(f"on folds {block['reported_folds']}: refused / asked / decided as labelled (mean cost per source"
                  f" {block['reported_mean_cost']})")
            names = list(block["reported"])
            print(f"  {'source':24s} {'n':>5s}  " + "  ".join(f"{name:>22s}" for name in names))
            for source in sorted(block["reported"]["judge_alone"]):
                cells = [block["reported"][name][source] for name in names]
                print(f"  {source:24s} {cells[0]['n']:5d}  " + "  ".join(
                    f"{c['refused']:.3f}/{c['asked']:.3f}/{c['correct']:.3f}".rjust(22) for c in cells))
    if args.errors:
        print("dev errors:")
        for error in result["dev_errors"]:
            print(f"  [{error['label']} -> {error['predicted']}] (nearest {error['nearest']} "
                  f"{error['nearest_score']}) {error['text']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
