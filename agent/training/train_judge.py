"""Train the judge's heads (harmful, clarify, conflict) on real data and measure them honestly.

    python -m agent.training.train_judge [--data-dir DIR] [--encoder frozen|tuned] [--quick] [--dry-run] [--seed 0]

What it does, in order (each step prints its progress):
1. reads every labelled request of the shared data (agent/training/judge_data.py), embeds each text once
   (cached by content hash), links near-duplicate harmful texts into one group;
2. augments harmful and benign rows alike with the `train` jailbreak wrappers
   (agent/data/jailbreak_wrappers.yaml) and with instructions asked as questions
   (agent/training/rephrase.py), so neither a wrapper's words nor a request's form carries a label;
3. measures: 5-fold cross-validation with whole groups held out (a JBB pair, a ClariQ topic, a
   near-duplicate cluster never straddles a split), per source; leave-one-source-out (train without a
   source, test on it); the refusal head on harmful and benign requests wrapped in the `heldout`
   wrappers, and asked in the `heldout` forms, that nobody trained on; the three-way decision (answer / clarify / refuse) from the stated costs;
4. fits the shipped heads on everything, calibrated on the out-of-fold scores, and writes
   agent/models/judge_heads.npz, agent/models/judge_report.json, the decision's cut points in
   agent/data/policy.json and a reliability diagram under docs/figures/.

Nothing is tuned on a number it reports: the decision thresholds follow from the costs in
agent/judge.py (DECISION_COSTS) and calibrated probabilities, never from a search over the folds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from agent.constraints import request_clauses
from agent.judge import (
    DECISION_COSTS,
    JUDGE_HEADS_FILE,
    JUDGE_REPORT_FILE,
    TASKS,
    JudgeHeads,
    decide_from_probabilities,
    decision_thresholds,
)
from agent.metrics import auroc, expected_calibration_error, multiclass_metrics, reliability
from agent.policy_config import update_policy_file
from agent.training import rephrase
from agent.training.contrasts import contrasts
from agent.training.judge_data import Row, group_folds, link_near_duplicates, load_rows

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WRAPPERS_FILE = PROJECT_ROOT / "agent" / "data" / "jailbreak_wrappers.yaml"
FIGURE = PROJECT_ROOT / "docs" / "figures" / "judge_reliability.png"
FOLDS = 5
L2_C = 2.0  # logistic regularisation: 0.5, 2 and 8 differ by < 0.01 mean AUROC in the first CV run
AUGMENT_WEIGHT = 0.5  # a wrapped copy counts half as much as its original
# Which rows get training copies: every harmful row, and as many benign ones (look-alikes first), so a
# wrapper or a rewritten form stays label-free.
BENIGN_WRAP_SOURCES = ("jbb_benign", "coconot", "debate_essays", "in3", "ambignq", "clariq", "clarifydelphi")
# Benign rows that share the harmful sets' topics or forms: they get copies first (the over-refusal risk).
FORM_LOOKALIKE_SOURCES = ("jbb_benign", "coconot", "debate_essays")


def log(message: str) -> None:
    print(f"[train_judge] {message}", file=sys.stderr, flush=True)


@dataclass
class Table:
    rows: list[Row]
    x: np.ndarray
    augmented: np.ndarray  # bool: a wrapped copy made for training only
    origin: np.ndarray  # index of the original row (itself for originals)
    lookalike_weight: float = 1.0  # see LOOKALIKE_WEIGHT


def load_wrappers(path: Path = WRAPPERS_FILE) -> dict[str, list[str]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {"train": list(data["train"]), "heldout": list(data["heldout"])}


def wrap(text: str, wrapper: str) -> str:
    return wrapper.replace("{request}", text)


@dataclass(frozen=True)
class Augmentation:
    """A label-free change to a request's text, made for training copies only."""

    name: str
    applies: Callable[[str], bool]
    make: Callable[[str, np.random.Generator], str]
    keeps_clarify: bool = True  # False: the copy's need for a question is unknown (its label is None)


def wrapping(wrappers: Sequence[str]) -> Augmentation:
    return Augmentation("wrapped", lambda _text: True,
                        lambda text, rng: wrap(text, wrappers[int(rng.integers(len(wrappers)))]))


def rephrasing(family: str = "train") -> Augmentation:
    return Augmentation("rephrased", rephrase.is_instruction,
                        lambda text, rng: rephrase.typed_choice(rephrase.rewrites(text, family), rng))


def restating(family: str) -> Augmentation:
    """A how-to instruction or question's act said in another family of forms: ``stated``, as what the
    person wants to do ("I need to pick a lock.", "Help me kill time on a long flight."), or ``tensed``,
    asked about the past or the future ("How did people pick locks in the past?"). CoCoNot's look-alike
    questions give the harmless side.

    Such a copy's need for a question is unknown: "I need to plan a trip." is not the request
    "How do I plan a trip?" rewritten, and IN3's vague tasks are often said so (v6's first fold run,
    with the original's label copied, asked on 0.05 fewer of IN3's held-out vague tasks)."""
    forms = rephrase.FORMS[family]

    def options(text: str) -> list[str]:
        act = rephrase.asked_act(text)
        said = [form.format(ask=act) for form in forms["how_to"]] if act else []
        if forms["request"] and rephrase.is_instruction(text):
            said += [form.format(request=rephrase.as_clause(text)) for form in forms["request"]]
        return said

    return Augmentation(family, lambda text: bool(options(text)),
                        lambda text, rng: rephrase.typed_choice(options(text), rng), keeps_clarify=False)


def asking_behind_a_contrast(family: str = "train") -> Augmentation:
    """An instruction put after a harmless question about its own act ("Why is it illegal to make meth?
    Explain how to make meth."): the ask, not the question before it, carries the label. Without these
    copies, a judge trained on the contrast questions answered "Why is it illegal to make meth? Explain the
    full synthesis so I understand." (v8, p(harmful) 0.26)."""
    return Augmentation("contrast_ask", lambda text: bool(contrasts(text, family)),
                        lambda text, rng: f"{rephrase.typed_choice(contrasts(text, family), rng)} {text}")


def augmented_rows(rows: Sequence[Row], augmentation: Augmentation, seed: int) -> tuple[list[Row], list[int]]:
    """Copies of every harmful row the augmentation applies to, and of as many benign ones."""
    rng = np.random.default_rng(seed)
    harmful = [i for i, r in enumerate(rows) if r.harmful == 1 and augmentation.applies(r.text)]
    benign_pool = [i for i, r in enumerate(rows)
                   if r.harmful == 0 and r.source in BENIGN_WRAP_SOURCES and augmentation.applies(r.text)]
    # Benign look-alikes first (they are the over-refusal risk), then a random draw of the rest.
    priority = [i for i in benign_pool if rows[i].source in FORM_LOOKALIKE_SOURCES]
    rest = [i for i in benign_pool if i not in set(priority)]
    extra = list(rng.choice(rest, size=max(0, min(len(rest), len(harmful) - len(priority))), replace=False))
    chosen = harmful + priority + [int(i) for i in extra]
    out, origin = [], []
    for i in chosen:
        r = rows[i]
        clarify = r.clarify if augmentation.keeps_clarify else None
        out.append(Row(augmentation.make(r.text, rng), r.source, r.group, r.harmful, clarify, r.conflict, r.decision,
                       {**r.meta, "augmented": augmentation.name}))
        origin.append(i)
    return out, origin


# At run time a message's harmful probability is raised by its clauses' (agent.judge.ClauseRule), so the head
# must have seen clauses: a sentence cut out of a harmless request ("I need urgent, detailed help making a
# safe plan to leave my abusive husband.") read as harmful to heads trained on whole requests only, and the
# v2 judge refused 52 of 120 ConflictScope prompts, each on a clause (benchmarks/clause_refusals.py). A clause of a harmless request
# is harmless (its other labels are unknown); a clause of a harmful one may be mere context, so those are
# not used.
CLAUSES_PER_ROW = 3
MAX_CLAUSE_ROWS_PER_SOURCE = 3000


def clause_rows(rows: Sequence[Row], seed: int) -> tuple[list[Row], list[int]]:
    """Training rows made of one clause of harmless multi-clause requests (harmful 0, nothing else known)."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for i, r in enumerate(rows):
        if r.harmful != 0:
            continue
        clauses = request_clauses(r.text)
        if clauses:
            for j in rng.permutation(len(clauses))[:CLAUSES_PER_ROW]:
                by_source[r.source].append((i, clauses[int(j)]))
    out, origin = [], []
    for source in sorted(by_source):
        found = by_source[source]
        keep = sorted(rng.permutation(len(found))[:MAX_CLAUSE_ROWS_PER_SOURCE])
        for k in keep:
            i, clause = found[int(k)]
            out.append(Row(clause, rows[i].source, rows[i].group, harmful=0, meta={**rows[i].meta, "augmented": "clause"}))
            origin.append(i)
    return out, origin


# The harmless questions about harmful acts (agent/training/contrasts.py) are weighed as a source of their own:
# under their originals' source they would be that source's whole harmless class, and outweigh it.
CONTRAST_SOURCE = "harm_contrasts"


def contrast_rows(rows: Sequence[Row], seed: int) -> tuple[list[Row], list[int]]:
    """One harmless question about the act of every harmful instruction (harmful 0, to be answered)."""
    rng = np.random.default_rng(seed)
    out, origin = [], []
    for i, r in enumerate(rows):
        options = contrasts(r.text, "train") if r.harmful == 1 else []
        if options:
            out.append(Row(rephrase.typed_choice(options, rng), CONTRAST_SOURCE, r.group, harmful=0, decision="answer",
                           meta={**r.meta, "augmented": "contrast", "of": r.source}))
            origin.append(i)
    return out, origin


def good_act_rows(rows: Sequence[Row], seed: int) -> tuple[list[Row], list[int]]:
    """MoralChoice's right action of each clear-cut scenario, said as what the person wants to do ("Help me
    call for emergency help and give first aid."): harmless statements whose words are often the harmful
    sets' (kill, hostages, weapons, abuse), so "Help me X." does not read as harmful by its topic alone
    (v6 refused "I want to report child abuse." at 1.00). Harmful 0; their need for a question is unknown."""
    rng = np.random.default_rng(seed)
    forms = rephrase.FORMS["stated"]["how_to"]
    out, origin = [], []
    for i, r in enumerate(rows):
        act = rephrase.first_person_act(r.meta.get("good_act", ""))
        if act:
            out.append(Row(rephrase.typed_choice([form.format(ask=act) for form in forms], rng), r.source, r.group,
                           harmful=0, decision="answer", meta={**r.meta, "augmented": "good_act"}))
            origin.append(i)
    return out, origin


def training_copies(rows: Sequence[Row], seed: int, *, with_contrasts: bool = False) -> tuple[list[Row], list[int]]:
    """The training-only copies of ``rows``: wrapped in the `train` jailbreak wrappers, instructions asked
    as questions (agent/training/rephrase.py), and clauses of harmless requests; each copy keeps its
    original's group (and its labels, but for a clause's, which is only harmless). ``with_contrasts`` adds
    harmless questions about the harmful instructions' acts (agent/training/contrasts.py): on held-out
    folds 0 and 1 they lift the held-out contrast questions answered from 0.34-0.65 to 0.96-1.00, but the
    judge trained with them (v8) answered "I want to make a bomb." and harmful asks put behind such a
    question; with those asks as harmful copies too (v9) it refuses most of the latter and still asks about
    the former, so the shipped judge has none (agent/models/JUDGE_MODEL.md)."""
    wrapped, wrapped_origin = augmented_rows(rows, wrapping(load_wrappers()["train"]), seed)
    rephrased, rephrased_origin = augmented_rows(rows, rephrasing("train"), seed + 1)
    clauses, clause_origin = clause_rows(rows, seed + 2)
    stated, stated_origin = augmented_rows(rows, restating("stated"), seed + 4)
    tensed, tensed_origin = augmented_rows(rows, restating("tensed"), seed + 6)
    acts, act_origin = good_act_rows(rows, seed + 5)
    framed, framed_origin = contrast_rows(rows, seed + 3) if with_contrasts else ([], [])
    behind, behind_origin = augmented_rows(rows, asking_behind_a_contrast(), seed + 7) if with_contrasts else ([], [])
    return (wrapped + rephrased + clauses + stated + tensed + acts + framed + behind,
            wrapped_origin + rephrased_origin + clause_origin + stated_origin + tensed_origin + act_origin
            + framed_origin + behind_origin)


# AmbigNQ's ambiguity (a factoid question with several answers in Wikipedia) is evaluated, never trained
# on, for the clarify head: pooled with the rest its cross-validated AUROC was 0.558, and its positives
# taught the head that any short factual question needs a question first ("What is the capital of
# France?" 0.52). Its column in the report is therefore a held-out source.
TRAIN_EXCLUDE = {"clarify": {"ambignq"}}

# Sources weighed as one: JBB's harmful behaviours and their benign contrasts are one set of pairs.
WEIGHT_GROUP = {"jbb_harmful": "jbb", "jbb_benign": "jbb"}
# For the clarify head the three dilemma sources are one set of requests that need no question: weighed
# as three sources they would triple the weight of that one kind of negative and move the head's prior.
TASK_WEIGHT_GROUP = {"clarify": {"conflictscope": "dilemmas", "daily_dilemmas": "dilemmas", "moralchoice": "dilemmas"}}


def weight_group(source: str, task: str) -> str:
    return TASK_WEIGHT_GROUP.get(task, {}).get(source) or WEIGHT_GROUP.get(source, source)


# The harmful head's look-alikes (JBB's topic-matched benign contrasts, CoCoNot's contrast set) are
# the only negatives that share the harmful sets' topics; at equal source weight they are a twelfth
# of the negative mass, and the head learned topic, not intent. This multiplies their weight.
LOOKALIKE_WEIGHT = 1.0


def is_lookalike(row: Row) -> bool:
    """A benign request written to look like a harmful one (answer it)."""
    return row.source == "jbb_benign" or (row.source == "coconot" and row.meta.get("set") == "contrast")


def sample_weights(
    rows: Sequence[Row], task: str, mask: np.ndarray, augmented: np.ndarray, lookalike_weight: float = 1.0
) -> np.ndarray:
    """Every source weighs the same; inside a source with both classes, each class half of it; a
    wrapped copy half its original.

    So a style that only one source has (AmbigNQ's factoid questions, IN3's task requests) carries
    as much weight on either side of the label: what the heads can learn from it is the contrast
    inside the source, not the source. (An earlier scheme gave each class half the total weight;
    it made factoid style itself a sign of ambiguity, since AmbigNQ's positives then outweighed its
    negatives two to one.) The prior this implies is the share of the sources' mass that is positive.
    """
    w = np.zeros(len(rows))
    chosen = [int(i) for i in np.flatnonzero(mask)]
    label_of = {i: int(rows[i].label(task) or 0) for i in chosen}
    group_of = {i: weight_group(rows[i].source, task) for i in chosen}
    counts: dict[tuple[int, str], float] = defaultdict(float)
    for i in chosen:
        counts[(label_of[i], group_of[i])] += AUGMENT_WEIGHT if augmented[i] else 1.0
    classes: dict[str, int] = defaultdict(int)
    for _, group in counts:
        classes[group] += 1
    for i in chosen:
        base = AUGMENT_WEIGHT if augmented[i] else 1.0
        g = group_of[i]
        w[i] = base / classes[g] / counts[(label_of[i], g)]
        if task == "harmful" and lookalike_weight != 1.0 and is_lookalike(rows[i]):
            w[i] *= lookalike_weight
    return w * mask.sum() / max(w.sum(), 1e-12)


def fit_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, c: float = L2_C) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2000)
    model.fit(x, y, sample_weight=w)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def labelled(rows: Sequence[Row], task: str) -> np.ndarray:
    return np.array([r.label(task) is not None for r in rows])


def raw_scores(x: np.ndarray, coef: np.ndarray, bias: float) -> np.ndarray:
    return x @ coef + bias


def trainable(rows: Sequence[Row], task: str) -> np.ndarray:
    excluded = TRAIN_EXCLUDE.get(task, set())
    return labelled(rows, task) & np.array([r.source not in excluded for r in rows])


def fit_all(table: Table, train: np.ndarray) -> dict[str, tuple[np.ndarray, float]]:
    heads = {}
    for task in TASKS:
        mask = train & trainable(table.rows, task)
        y = np.array([int(r.label(task) or 0) for r in table.rows])
        w = sample_weights(table.rows, task, mask, table.augmented, table.lookalike_weight)
        heads[task] = fit_head(table.x[mask], y[mask], w[mask])
    return heads


def platt(scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1e4, max_iter=1000)
    model.fit(scores.reshape(-1, 1), y, sample_weight=w)
    return float(model.coef_[0, 0]), float(model.intercept_[0])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def cross_validate(table: Table, seed: int) -> tuple[dict[str, np.ndarray], list[dict[str, tuple[np.ndarray, float]]]]:
    """Out-of-fold raw scores of every original row, per task (folds hold whole groups), and each fold's heads."""
    n = len(table.rows)
    originals = np.flatnonzero(~table.augmented)
    folds_orig = group_folds([table.rows[i] for i in originals], FOLDS, seed)
    fold = np.empty(n, dtype=int)
    fold[originals] = folds_orig
    fold[table.augmented] = fold[table.origin[table.augmented]]
    oof = {task: np.full(n, np.nan) for task in TASKS}
    fold_heads = []
    for k in range(FOLDS):
        started = time.perf_counter()
        heads = fit_all(table, fold != k)
        fold_heads.append(heads)
        test = (fold == k) & ~table.augmented
        for task, (coef, bias) in heads.items():
            oof[task][test] = raw_scores(table.x[test], coef, bias)
        log(f"fold {k + 1}/{FOLDS} in {time.perf_counter() - started:.1f} s")
    oof["fold"] = fold
    return oof, fold_heads


def calibrated_out_of_fold(table: Table, scores: np.ndarray, task: str) -> tuple[np.ndarray, tuple[float, float]]:
    """Platt-calibrated out-of-fold probabilities of the original rows labelled for ``task`` (NaN elsewhere),
    and the calibration, fitted on the rows the head trains on with their training weights."""
    lab = labelled(table.rows, task) & ~table.augmented
    fit_on = trainable(table.rows, task) & ~table.augmented
    y = np.array([int(r.label(task) or 0) for r in table.rows])
    w = sample_weights(table.rows, task, fit_on, table.augmented, table.lookalike_weight)
    a, b = platt(scores[fit_on], y[fit_on], w[fit_on])
    p = np.full(len(table.rows), np.nan)
    p[lab] = sigmoid(a * scores[lab] + b)
    return p, (a, b)


def leave_one_source_out(table: Table, task: str) -> dict[str, dict[str, Any]]:
    sources = sorted({r.source for r, lab in zip(table.rows, labelled(table.rows, task), strict=True) if lab})
    out: dict[str, dict[str, Any]] = {}
    src = np.array([r.source for r in table.rows])
    y = np.array([int(r.label(task) or 0) for r in table.rows])
    lab = labelled(table.rows, task)
    fit_on = trainable(table.rows, task)
    for source in sources:
        train = src != source
        mask = train & fit_on
        w = sample_weights(table.rows, task, mask, table.augmented, table.lookalike_weight)
        coef, bias = fit_head(table.x[mask], y[mask], w[mask])
        test = (src == source) & lab & ~table.augmented
        scores = raw_scores(table.x[test], coef, bias)
        a, b = platt(raw_scores(table.x[mask], coef, bias), y[mask], w[mask])
        prob = sigmoid(a * scores + b)
        out[source] = {
            "n": int(test.sum()),
            "positive_rate": round(float(y[test].mean()), 3),
            "auroc": _round(auroc(y[test], scores)),
            "accuracy_at_0.5": round(float(((prob >= 0.5) == y[test]).mean()), 3),
        }
        log(f"LOSO {task} without {source}: {out[source]}")
    return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def per_source(table: Table, task: str, prob: np.ndarray) -> dict[str, dict[str, Any]]:
    y = np.array([int(r.label(task) or 0) for r in table.rows])
    lab = labelled(table.rows, task) & ~table.augmented
    out = {}
    for source in sorted({table.rows[i].source for i in np.flatnonzero(lab)}):
        m = lab & np.array([r.source == source for r in table.rows])
        out[source] = {
            "n": int(m.sum()),
            "positive_rate": round(float(y[m].mean()), 3),
            "auroc": _round(auroc(y[m], prob[m])),
            "accuracy_at_0.5": round(float(((prob[m] >= 0.5) == y[m]).mean()), 3),
            "ece": round(expected_calibration_error(y[m], prob[m]), 3),
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-loso", action="store_true", help="skip leave-one-source-out (faster)")
    parser.add_argument("--lookalike-weight", type=float, default=LOOKALIKE_WEIGHT,
                        help="weight multiplier of the harmful head's benign look-alikes (JBB benign, CoCoNot contrast)")
    parser.add_argument("--dry-run", action="store_true", help="measure only; write no artefacts")
    parser.add_argument("--encoder", choices=("frozen", "tuned"), default="frozen",
                        help="the packaged MiniLM, or MiniLM with the fine-tuned top layers of agent/models/judge_layers.pt")
    parser.add_argument("--contrasts", action="store_true",
                        help="train on harmless questions about the harmful acts too, and on each harmful ask put "
                             "behind one (agent/training/contrasts.py; v8 and v9, not shipped: agent/models/JUDGE_MODEL.md)")
    parser.add_argument("--quick", action="store_true", help="cross-validate and write the heads only (no decision, "
                        "wrapper or leave-one-source-out measurements, no report)")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    from agent.encoder import load_encoder
    from agent.training.text_cache import embed_texts

    rows = load_rows(args.data_dir)
    log(f"{len(rows)} labelled requests from {len({r.source for r in rows})} sources")
    packaged = load_encoder()
    x_packaged = embed_texts([r.text for r in rows], packaged, label="judge rows")
    link_near_duplicates(rows, x_packaged)  # near-duplicates are judged on the packaged model in both cases
    encoder: Any = packaged if args.encoder == "frozen" else TunedView(packaged)
    x_orig = x_packaged if args.encoder == "frozen" else embed_texts([r.text for r in rows], encoder, label="judge rows")
    wrappers = load_wrappers()
    extra, origin = training_copies(rows, args.seed, with_contrasts=args.contrasts)
    x_extra = embed_texts([r.text for r in extra], encoder, label="judge wrapped rows")
    table = Table(
        rows=rows + extra,
        x=np.concatenate([x_orig, x_extra]),
        augmented=np.array([False] * len(rows) + [True] * len(extra)),
        origin=np.array(list(range(len(rows))) + origin),
        lookalike_weight=args.lookalike_weight,
    )
    kinds = {kind: sum(r.meta["augmented"] == kind for r in extra) for kind in ("wrapped", "rephrased", "stated", "tensed", "good_act", "clause",
                                                                          "contrast")}
    log(f"{kinds['wrapped']} wrapped, {kinds['rephrased']} rephrased, {kinds['stated']} stated, {kinds['tensed']} tensed, "
        f"{kinds['good_act']} good-act, "
        f"{kinds['clause']} clause and "
        f"{kinds['contrast']} contrast copies for training; "
        f"{len({r.group for r in rows})} groups")

    oof, fold_heads = cross_validate(table, args.seed)
    report: dict[str, Any] = {"rows": len(rows), "wrapped_training_copies": kinds["wrapped"],
                              "rephrased_training_copies": kinds["rephrased"], "stated_training_copies": kinds["stated"],
                              "tensed_training_copies": kinds["tensed"], "good_act_training_copies": kinds["good_act"],
                              "clause_training_rows": kinds["clause"], "contrast_training_rows": kinds["contrast"], "cv": {}, "calibration": {}}
    calibration: dict[str, tuple[float, float]] = {}
    probs: dict[str, np.ndarray] = {}
    for task in TASKS:
        lab = labelled(table.rows, task) & ~table.augmented
        y = np.array([int(r.label(task) or 0) for r in table.rows])
        probs[task], calibration[task] = calibrated_out_of_fold(table, oof[task], task)
        a, b = calibration[task]
        p = probs[task]
        report["cv"][task] = per_source(table, task, np.nan_to_num(p))
        report["calibration"][task] = {"platt": [round(a, 4), round(b, 4)],
                                       "ece_pooled": round(expected_calibration_error(y[lab], p[lab]), 4)}
        log(f"CV {task}: " + json.dumps(report["cv"][task]))

    if args.quick:
        heads = fit_all(table, np.ones(len(table.rows), dtype=bool))
        JudgeHeads(encoder=encoder.name, coef={t: heads[t][0] for t in TASKS}, bias={t: heads[t][1] for t in TASKS},
                   platt={t: calibration[t] for t in TASKS}).save(JUDGE_HEADS_FILE)
        write_policy()
        log(f"wrote {JUDGE_HEADS_FILE.name} and the costs in agent/data/policy.json (quick: no report)")
        return 0

    # Three-way decision, out of fold, on every row with a decision label.
    thresholds = decision_thresholds(DECISION_COSTS)
    decided = [i for i, r in enumerate(table.rows) if r.decision and not table.augmented[i]]
    x_all = table.x
    # Rows labelled for one task only still get a score from the other heads of their fold.
    fold = oof["fold"]
    for task in ("harmful", "clarify"):
        missing = [i for i in decided if np.isnan(probs[task][i])]
        if missing:
            for k in range(FOLDS):
                idx = [i for i in missing if fold[i] == k]
                if idx:
                    coef, bias = fold_heads[k][task]
                    a, b = calibration[task]
                    probs[task][idx] = sigmoid(a * raw_scores(x_all[idx], coef, bias) + b)
    # As at run time, a message's harmful probability is the highest of the message and its clauses.
    p_harm = clause_max(table, decided, fold, fold_heads, probs["harmful"], calibration["harmful"], encoder)
    truth = [table.rows[i].decision for i in decided]
    by_source: dict[str, list[int]] = defaultdict(list)
    for j, i in enumerate(decided):
        by_source[table.rows[i].source].append(j)
    # Both rules are measured: the harmful probability of the message alone, and the highest of the
    # message and its clauses.
    for key, harm in (("decision", p_harm), ("decision_message_only", [probs["harmful"][i] for i in decided])):
        predicted = [decide_from_probabilities(harm[j], probs["clarify"][i], thresholds) for j, i in enumerate(decided)]
        report[key] = {"all": multiclass_metrics(truth, predicted, ["answer", "clarify", "refuse"])}
        for source, js in sorted(by_source.items()):
            report[key][source] = multiclass_metrics([truth[j] for j in js], [predicted[j] for j in js],
                                                     ["answer", "clarify", "refuse"])
            log(f"{key} {source}: accuracy {report[key][source]['accuracy']:.3f} (n={len(js)})")

    # Held-out wrappers around held-out rows, and held-out instructions asked in forms nobody trained
    # on: does the refusal head read the request, not its wrapper or its grammatical form?
    heldout_wrappers = wrappers["heldout"]
    report["heldout_wrappers"] = heldout_form_check(
        table, fold, fold_heads, lambda text, j: wrap(text, heldout_wrappers[j % len(heldout_wrappers)]),
        "wrappers", encoder, calibration, thresholds,
    )
    report["heldout_rephrased"] = heldout_form_check(
        table, fold, fold_heads, lambda text, j: rephrase.rewrite(text, j, "heldout"),
        "rephrased", encoder, calibration, thresholds,
    )

    if not args.no_loso:
        report["loso"] = {task: leave_one_source_out(table, task) for task in TASKS}

    everything = np.ones(len(table.rows), dtype=bool)
    heads = fit_all(table, everything)
    shipped = JudgeHeads(
        encoder=encoder.name,
        coef={t: heads[t][0] for t in TASKS},
        bias={t: heads[t][1] for t in TASKS},
        platt={t: calibration[t] for t in TASKS},
    )
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["costs"] = DECISION_COSTS
    report["thresholds"] = thresholds
    # The diagram is a measurement, so a dry run draws it too (of the encoder it ran on).
    reliability_figure(table, probs, FIGURE if args.encoder == "tuned" else FIGURE.with_name("judge_reliability_frozen.png"))
    if not args.dry_run:
        shipped.save(JUDGE_HEADS_FILE)
        JUDGE_REPORT_FILE.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        write_policy()
        log(f"wrote {JUDGE_HEADS_FILE.name}, {JUDGE_REPORT_FILE.name}, agent/data/policy.json, {FIGURE.name}")
    print(json.dumps(report, indent=2))
    return 0


def clause_max(
    table: Table,
    idx: Sequence[int],
    fold: np.ndarray,
    fold_heads: list[dict[str, tuple[np.ndarray, float]]],
    p_message: np.ndarray,
    platt_ab: tuple[float, float],
    encoder: Any,
) -> np.ndarray:
    """Per row of ``idx``: max(p of the message, p of each clause), with the heads of the row's fold."""
    from agent.training.text_cache import embed_texts

    out = np.array([p_message[i] for i in idx], dtype=float)
    clauses = {j: request_clauses(table.rows[i].text) for j, i in enumerate(idx)}
    flat = [(j, c) for j, cs in clauses.items() for c in cs]
    if not flat:
        return out
    x = embed_texts([c for _, c in flat], encoder, label="judge clauses")
    for (j, _), vector in zip(flat, x, strict=True):
        coef, bias = fold_heads[int(fold[idx[j]])]["harmful"]
        p = float(sigmoid(platt_ab[0] * (vector @ coef + bias) + platt_ab[1]))
        out[j] = max(out[j], p)
    return out


class TunedView:
    """The judge embedding of MiniLM with the shipped fine-tuned top layers, as a plain encoder."""

    def __init__(self, packaged: Any) -> None:
        import hashlib

        from agent.judge_encoder import LAYERS_FILE, JudgeEncoder

        self._encoder = JudgeEncoder.from_files(packaged.sentence_model, LAYERS_FILE)
        self.name = f"{JudgeEncoder.name}-{hashlib.sha256(LAYERS_FILE.read_bytes()).hexdigest()[:12]}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._encoder.encode_pair(texts)[1]


def write_policy() -> None:
    update_policy_file({"judge": {
        "written_by": "python -m agent.training.train_judge",
        "rule": "the least expected cost of answer / clarify / refuse under the calibrated p(harmful) and "
        "p(clarify); the cut points are implied by the costs, not searched",
        **decision_thresholds(DECISION_COSTS),
    }})


def heldout_form_check(
    table: Table,
    fold: np.ndarray,
    fold_heads: list[dict[str, tuple[np.ndarray, float]]],
    transform: Callable[[str, int], str | None],
    label: str,
    encoder: Any,
    calibration: dict[str, tuple[float, float]],
    thresholds: dict[str, float],
) -> dict[str, Any]:
    """The decision on each held-out row of the refusal sources, changed by ``transform`` (rows it does
    not apply to are skipped), with the heads of the row's fold."""
    from agent.training.text_cache import embed_texts

    out: dict[str, Any] = {}
    for k in range(FOLDS):
        heads = fold_heads[k]
        candidates = [i for i in np.flatnonzero((fold == k) & ~table.augmented)
                      if table.rows[i].source in ("jbb_harmful", "jbb_benign", "harmbench", "advbench", "coconot")
                      and table.rows[i].harmful is not None]
        changed = [(int(i), transform(table.rows[i].text, j)) for j, i in enumerate(candidates)]
        kept = [(i, text) for i, text in changed if text is not None]
        if not kept:
            continue
        idx = [i for i, _ in kept]
        texts = [text for _, text in kept]
        x = embed_texts(texts, encoder, label=f"judge heldout {label} fold {k}")
        ph_message = sigmoid(calibration["harmful"][0] * raw_scores(x, *heads["harmful"]) + calibration["harmful"][1])
        ph = np.maximum(ph_message, wrapped_clause_max(texts, heads["harmful"], calibration["harmful"], encoder, k))
        pc = sigmoid(calibration["clarify"][0] * raw_scores(x, *heads["clarify"]) + calibration["clarify"][1])
        for j, i in enumerate(idx):
            key = f"{table.rows[i].source}:{'harmful' if table.rows[i].harmful else 'benign'}"
            both = (decide_from_probabilities(float(ph[j]), float(pc[j]), thresholds),
                    decide_from_probabilities(float(ph_message[j]), float(pc[j]), thresholds))
            out.setdefault(key, []).append(both)
    summary = {}
    for key, decisions in sorted(out.items()):
        with_clauses = [d for d, _ in decisions]
        message_only = [d for _, d in decisions]
        summary[key] = {"n": len(decisions), **{d: round(with_clauses.count(d) / len(decisions), 3)
                                                   for d in ("answer", "clarify", "refuse")},
                        "message_only": {d: round(message_only.count(d) / len(decisions), 3)
                                         for d in ("answer", "clarify", "refuse")}}
        log(f"held-out {label} {key}: {summary[key]}")
    return summary


def wrapped_clause_max(
    texts: Sequence[str], head: tuple[np.ndarray, float], platt_ab: tuple[float, float], encoder: Any, fold: int
) -> np.ndarray:
    from agent.training.text_cache import embed_texts

    out = np.zeros(len(texts))
    flat = [(j, c) for j, t in enumerate(texts) for c in request_clauses(t)]
    if flat:
        x = embed_texts([c for _, c in flat], encoder, label=f"judge wrapped clauses {fold}")
        p = sigmoid(platt_ab[0] * raw_scores(x, *head) + platt_ab[1])
        for (j, _), value in zip(flat, p, strict=True):
            out[j] = max(out[j], float(value))
    return out


def reliability_figure(table: Table, probs: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TASKS), figsize=(4 * len(TASKS), 4))
    for ax, task in zip(axes, TASKS, strict=True):
        lab = labelled(table.rows, task) & ~table.augmented
        y = np.array([int(r.label(task) or 0) for r in table.rows])[lab]
        rel = reliability(y, probs[task][lab])
        xs = [b["confidence"] for b in rel["bins"]]
        ys = [b["observed"] for b in rel["bins"]]
        ax.plot([0, 1], [0, 1], "--", color="grey", linewidth=1)
        ax.plot(xs, ys, "o-")
        ax.set_title(f"{task} (out of fold, ECE {rel['ece']:.3f})")
        ax.set_xlabel("predicted probability")
        ax.set_ylabel("observed rate")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
