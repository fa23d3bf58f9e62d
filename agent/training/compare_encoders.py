"""Frozen all-MiniLM-L6-v2 against frozen all-mpnet-base-v2 as the judge's encoder, on the same splits.

    python -m agent.training.compare_encoders [--data-dir DIR] [--seed 0] [--out docs/figures/encoder_compare.json]
        [--figure docs/figures/encoder_compare.png]

The question it answers: is the packaged encoder what holds the judge back on AmbigNQ and on JBB's
benign look-alikes, so that a larger one is worth its latency? For each encoder, on the original
requests only (no training copies, so both see the same rows), with train_judge's group folds (a JBB
pair, a ClariQ topic, a near-duplicate cluster never straddles a split):
1. **pooled heads**: the judge's three heads trained on every source as train_judge trains them
   (same source weights, AmbigNQ left out of the clarify head), out-of-fold AUROC per source;
2. **inside one source**: a head trained and tested inside one source (5-fold), AUROC and accuracy of
   its own 0.5 cut: the most the encoder's features can carry for that contrast;
3. **leave one source out** for harmful and clarify: trained without a source, tested on it;
4. **latency**: one sentence, one torch thread (as turns run), median and p95 of 30 after warm-up.
Writes the JSON and a bar chart. Measures only: nothing here ships or is tuned.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.metrics import auroc
from agent.training.judge_data import Row, group_folds, link_near_duplicates, load_rows
from agent.training.train_judge import (
    FOLDS,
    L2_C,
    TASKS,
    Table,
    calibrated_out_of_fold,
    cross_validate,
    leave_one_source_out,
    per_source,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
OUT = PROJECT_ROOT / "docs" / "figures" / "encoder_compare.json"
FIGURE = PROJECT_ROOT / "docs" / "figures" / "encoder_compare.png"
# Contrasts measured inside one source: (task, name, sources whose rows form it).
INSIDE_SOURCE = (
    ("clarify", "ambignq", ("ambignq",)),
    ("clarify", "in3", ("in3",)),
    ("clarify", "clariq", ("clariq",)),
    ("clarify", "coconot", ("coconot",)),
    ("harmful", "jbb", ("jbb_harmful", "jbb_benign")),
    ("harmful", "coconot", ("coconot",)),
    ("conflict", "moralchoice", ("moralchoice",)),
)
LATENCY_SENTENCE = "Should I read my 15-year-old daughter's diary to check she's safe?"


def log(message: str) -> None:
    print(f"[compare_encoders] {message}", file=sys.stderr, flush=True)


def inside_source(rows: Sequence[Row], x: np.ndarray, task: str, sources: Sequence[str], seed: int) -> dict[str, Any]:
    """Out-of-fold AUROC and accuracy of a head trained inside these sources only (groups kept whole)."""
    from sklearn.linear_model import LogisticRegression

    index = [i for i, r in enumerate(rows) if r.source in sources and r.label(task) is not None]
    y = np.array([int(rows[i].label(task) or 0) for i in index])
    fold = group_folds([rows[i] for i in index], FOLDS, seed)
    scores = np.zeros(len(index))
    for k in range(FOLDS):
        train, test = fold != k, fold == k
        if len(set(y[train])) < 2 or not test.any():
            continue
        model = LogisticRegression(C=L2_C, max_iter=2000).fit(x[index][train], y[train])
        scores[test] = model.predict_proba(x[index][test])[:, 1]
    value = auroc(y, scores)
    return {
        "n": len(index),
        "positive_rate": round(float(y.mean()), 3),
        "auroc": None if value is None else round(value, 3),
        "accuracy_at_0.5": round(float(((scores >= 0.5) == y).mean()), 3),
    }


def pooled(table: Table, seed: int) -> dict[str, Any]:
    """The judge's three heads as train_judge fits them, out of fold, calibrated, per source."""
    oof, _ = cross_validate(table, seed)
    return {task: per_source(table, task, np.nan_to_num(calibrated_out_of_fold(table, oof[task], task)[0]))
            for task in TASKS}


def latency_ms(encoder: Any, repeats: int = 30) -> dict[str, float]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(3):
            encoder.encode([LATENCY_SENTENCE])
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            encoder.encode([LATENCY_SENTENCE])
            times.append((time.perf_counter() - started) * 1000)
    finally:
        torch.set_num_threads(threads)
    return {"median": round(float(np.median(times)), 1), "p95": round(float(np.percentile(times, 95)), 1)}


def figure(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["encoders"])
    labels = list(report["encoders"][names[0]]["inside_source"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        values = [report["encoders"][name]["inside_source"][k]["auroc"] or 0 for k in labels]
        axes[0].bar(np.arange(len(labels)) + j * width, values, width, label=name)
    axes[0].set_xticks(np.arange(len(labels)) + width * (len(names) - 1) / 2, labels, rotation=30, ha="right")
    axes[0].set_ylim(0.4, 1.0)
    axes[0].axhline(0.5, color="grey", lw=0.8)
    axes[0].set_title("Head trained inside one source: out-of-fold AUROC")
    axes[0].legend()
    # Most sources hold one class of a task, so the share judged right is what every source has.
    loso_keys = [(t, s) for t in ("clarify", "harmful") for s in report["encoders"][names[0]]["loso"][t]]
    for j, name in enumerate(names):
        values = [report["encoders"][name]["loso"][t][s]["accuracy_at_0.5"] for t, s in loso_keys]
        axes[1].bar(np.arange(len(loso_keys)) + j * width, values, width, label=name)
    axes[1].set_xticks(np.arange(len(loso_keys)) + width * (len(names) - 1) / 2,
                       [f"{t[:4]}:{s}" for t, s in loso_keys], rotation=60, ha="right", fontsize=7)
    axes[1].set_ylim(0.0, 1.0)
    axes[1].set_title("Leave one source out: share of the left-out source judged right (p >= 0.5)")
    fig.suptitle(" vs ".join(f"{n} ({report['encoders'][n]['latency_ms']['median']} ms / sentence)" for n in names))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--max-chars", type=int, default=None,
                        help="leave out longer requests for both encoders (ConflictScope's median is 1,005 characters, "
                             "and mpnet took 20-35 s per batch of 64 of them on 2 cores)")
    args = parser.parse_args(argv)

    from agent.encoder import load_encoder
    from agent.training.packaged_mpnet import MpnetEncoder
    from agent.training.text_cache import embed_texts

    started = time.perf_counter()
    rows = load_rows(args.data_dir)
    left_out: dict[str, int] = {}
    if args.max_chars is not None:
        for row in rows:
            if len(row.text) > args.max_chars:
                left_out[row.source] = left_out.get(row.source, 0) + 1
        rows = [r for r in rows if len(r.text) <= args.max_chars]
    texts = [r.text for r in rows]
    log(f"{len(rows)} labelled requests from {len({r.source for r in rows})} sources; left out as too long: {left_out}")
    encoders: dict[str, Any] = {"all-MiniLM-L6-v2": load_encoder(), "all-mpnet-base-v2": MpnetEncoder()}
    vectors = {name: embed_texts(texts, encoder, label=name) for name, encoder in encoders.items()}
    link_near_duplicates(rows, vectors["all-MiniLM-L6-v2"])  # the groups train_judge uses, for both
    report: dict[str, Any] = {"rows": len(rows), "seed": args.seed, "max_chars": args.max_chars,
                              "left_out_as_too_long": left_out, "encoders": {}}
    for name, encoder in encoders.items():
        x = vectors[name]
        table = Table(rows=list(rows), x=x, augmented=np.zeros(len(rows), dtype=bool), origin=np.arange(len(rows)))
        log(f"{name}: pooled heads, {FOLDS} folds")
        entry: dict[str, Any] = {"dimensions": int(x.shape[1]), "pooled": pooled(table, args.seed)}
        entry["inside_source"] = {f"{task}:{key}": inside_source(rows, x, task, sources, args.seed)
                                  for task, key, sources in INSIDE_SOURCE}
        log(f"{name}: inside one source {json.dumps(entry['inside_source'])}")
        entry["loso"] = {task: leave_one_source_out(table, task) for task in ("harmful", "clarify")}
        entry["latency_ms"] = latency_ms(encoder)
        log(f"{name}: one sentence {entry['latency_ms']}")
        report["encoders"][name] = entry
    report["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    figure(report, args.figure)
    log(f"wrote {args.out} and {args.figure} in {report['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
