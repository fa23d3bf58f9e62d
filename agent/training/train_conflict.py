"""Train the value-conflict heads and measure them where style cannot give the answer away.

    python -m agent.training.train_conflict [--data-dir DIR]

Stakes heads (MoralChoice, per-action rule annotations): "taking this action breaks a moral rule" and
"not taking it does" (the other action of the scenario breaks one), logistic on the embedding of
"context + action". Direction maps (Touché23-ValueEval): conclusion embedding -> share of in-favour /
against premises that cite each value, ridge. Reports AUROC on the hand-written minimal pairs (dev and
test), pairwise accuracy, and MoralChoice high- vs low-ambiguity AUROC with lengths matched, scored with
heads that never saw the held-out rule (leave one rule out).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from agent.conflict import (
    MODELS_DIR,
    RELEVANCE_FLOOR,
    RULES,
    ConflictModel,
    StakesHeads,
    nondominance,
    save_conflict_model,
    schwartz_opposition,
)
from agent.datasets import dataset_dir
from agent.encoder import load_encoder
from agent.value_model import ValueModelMissingError, embed_cached, load_value_scorer, read_valueeval_split
from agent.values import VALUE_NAMES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAIRS_FILE = PROJECT_ROOT / "tests" / "data" / "conflict_pairs.jsonl"
LOGISTIC_C = 1.0
SEED = 0


class PairRow(BaseModel):
    """One line of tests/data/conflict_pairs.jsonl."""

    pair: int | None
    split: str  # dev | test | benign
    domain: str
    text: str
    conflict: bool


def read_pairs(path: Path = PAIRS_FILE) -> list[PairRow]:
    return [PairRow.model_validate_json(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


@dataclass(frozen=True)
class MoralChoice:
    contexts: list[str]
    actions: list[tuple[str, str]]
    breaks: np.ndarray  # (n, 2, 10) 1 where annotators say the action breaks the rule
    high: np.ndarray  # (n,) 1 for high ambiguity
    rules: list[str]

    def action_texts(self) -> list[str]:
        return [f"{c} {a}" for c, pair in zip(self.contexts, self.actions, strict=True) for a in pair]

    def word_counts(self) -> np.ndarray:
        return np.array([len(f"{c} {a} {b}".split()) for c, (a, b) in zip(self.contexts, self.actions, strict=True)])


def read_moralchoice(data_dir: str | None) -> MoralChoice:
    folder = dataset_dir("moralchoice", data_dir)
    rows: list[dict[str, str]] = []
    for level in ("high", "low"):
        with (folder / f"moralchoice_{level}_ambiguity.csv").open(encoding="utf-8", newline="") as handle:
            rows.extend(csv.DictReader(handle))
    breaks = np.array([[[r[f"a{k}_{rule}"] == "Yes" for rule in RULES] for k in (1, 2)] for r in rows], dtype=np.int8)
    return MoralChoice(
        contexts=[r["context"] for r in rows],
        actions=[(r["action1"], r["action2"]) for r in rows],
        breaks=breaks,
        high=np.array([r["ambiguity"] == "high" for r in rows], dtype=np.int8),
        # one row of the published data spells its rule "Do cause pain"
        rules=[r["generation_rule"].replace("Do cause", "Do not cause") for r in rows],
    )


def _fit_heads(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One logistic head per column; a column with too few positives keeps its base rate."""
    weights = np.zeros((labels.shape[1], x.shape[1]))
    bias = np.zeros(labels.shape[1])
    for column in range(labels.shape[1]):
        y = labels[:, column]
        positives = int(y.sum())
        if positives < 5 or positives > len(y) - 5:
            rate = (positives + 0.5) / (len(y) + 1.0)
            bias[column] = np.log(rate / (1.0 - rate))
            continue
        model = LogisticRegression(C=LOGISTIC_C, max_iter=500).fit(x, y)
        weights[column], bias[column] = model.coef_[0], model.intercept_[0]
    return weights, bias


ORDINARY_REQUESTS = 800


def read_ordinary_requests(data_dir: str | None, n: int = ORDINARY_REQUESTS) -> list[str]:
    """Open-domain questions (AmbigNQ, ClariQ): requests whose fulfilment breaks no moral rule."""
    questions = [q["question"] for q in json.loads((dataset_dir("ambignq", data_dir) / "train_light.json").read_text())]
    with (dataset_dir("clariq", data_dir) / "train.tsv").open(encoding="utf-8", newline="") as handle:
        requests = sorted({row["initial_request"] for row in csv.DictReader(handle, delimiter="\t")})
    rng = np.random.default_rng(SEED)
    picked = rng.choice(len(questions), n - min(len(requests), n // 4), replace=False)
    return requests[: n // 4] + [questions[i] for i in sorted(picked)]


def fit_stakes(embeddings: np.ndarray, breaks: np.ndarray, ordinary: np.ndarray) -> StakesHeads:
    """Cost head (any rule broken, classes balanced) and per-rule heads from (n, 2, 384) action
    embeddings and (n, 2, 10) rule labels; ordinary requests are extra actions that break nothing, so
    that a plain question is not read as costly just because it is not a MoralChoice scenario."""
    x = np.concatenate([embeddings.reshape(-1, embeddings.shape[-1]), ordinary])
    labels = np.concatenate([breaks.reshape(-1, len(RULES)), np.zeros((len(ordinary), len(RULES)), np.int8)])
    cost = LogisticRegression(C=LOGISTIC_C, class_weight="balanced", max_iter=1000).fit(x, labels.any(axis=1))
    rule_w, rule_b = _fit_heads(x, labels)
    return StakesHeads(
        cost_w=cost.coef_[0].astype(np.float64), cost_b=float(cost.intercept_[0]), rule_w=rule_w, rule_b=rule_b
    )


@lru_cache(maxsize=1)
def _development_value_heads(data_dir: str | None) -> tuple[np.ndarray, np.ndarray]:
    """One logistic head per value on ValueEval training premises: stands in for the value model's
    artefact while it is not built (only for measuring; the runtime takes value_probs from the caller)."""
    data = read_valueeval_split("training", data_dir)
    x = embed_cached(data.premises, load_encoder(), progress=False, label="valueeval-training")
    return _fit_heads(x, data.labels)


def value_probabilities(embeddings: np.ndarray, data_dir: str | None = None) -> tuple[np.ndarray, str]:
    """The project's value model when its artefact exists, else development logistic heads."""
    for kind in ("trained", "zero-shot"):
        try:
            scorer = load_value_scorer(kind)
        except ValueModelMissingError:
            continue
        return scorer.predict_proba(embeddings), kind
    weights, bias = _development_value_heads(data_dir)
    return 1.0 / (1.0 + np.exp(-(embeddings @ weights.T + bias))), "development logistic (no value artefact)"


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    return float(roc_auc_score(labels, scores)) if len(set(labels.tolist())) == 2 else float("nan")


def pairwise_accuracy(rows: list[PairRow], scores: np.ndarray) -> float:
    by_pair: dict[int, dict[bool, float]] = defaultdict(dict)
    for row, score in zip(rows, scores, strict=True):
        if row.pair is not None:
            by_pair[row.pair][row.conflict] = float(score)
    wins = [1.0 if p[True] > p[False] else 0.5 if p[True] == p[False] else 0.0 for p in by_pair.values()]
    return float(np.mean(wins))


def length_matched(words: np.ndarray, labels: np.ndarray, width: int = 5) -> np.ndarray:
    """Indices keeping, in every word-count bin, as many high as low items (random, fixed seed)."""
    rng = np.random.default_rng(SEED)
    keep: list[int] = []
    bins = words // width
    for b in np.unique(bins):
        pos = np.flatnonzero((bins == b) & (labels == 1))
        neg = np.flatnonzero((bins == b) & (labels == 0))
        n = min(len(pos), len(neg))
        keep.extend(rng.choice(pos, n, replace=False).tolist())
        keep.extend(rng.choice(neg, n, replace=False).tolist())
    return np.array(sorted(keep))


def option_scores(heads: StakesHeads, options: np.ndarray, relevance: np.ndarray) -> tuple[float, float]:
    """Non-dominance of two embedded options, scored as ConflictModel.assess scores named options (each
    spares the other's costs), and the smaller of their total costs (the earlier single-number signal)."""
    costs = heads.costs(options, relevance)
    wins, losses = nondominance(costs[1] - costs[0], costs[0] - costs[1])
    return min(wins, losses), float(costs.sum(axis=1).min())


def moralchoice_transfer(
    mc: MoralChoice, action_emb: np.ndarray, context_emb: np.ndarray, ordinary_emb: np.ndarray, data_dir: str | None
) -> dict:
    """Leave one rule out: heads trained on the other rules score the held-out rule's scenarios."""
    context_probs, _ = value_probabilities(context_emb, data_dir)
    rules = np.array(mc.rules)
    scores = {"nondominance": np.zeros(len(rules)), "nondominance_uniform": np.zeros(len(rules))}
    scores["min_cost"] = np.zeros(len(rules))
    for rule in sorted(set(mc.rules)):
        held = rules == rule
        heads = fit_stakes(action_emb[~held], mc.breaks[~held], ordinary_emb)
        for i in np.flatnonzero(held):
            relevance = np.clip(context_probs[i], 0.0, 1.0) + RELEVANCE_FLOOR
            scores["nondominance"][i], scores["min_cost"][i] = option_scores(heads, action_emb[i], relevance)
            scores["nondominance_uniform"][i], _ = option_scores(heads, action_emb[i], np.ones(len(VALUE_NAMES)))
    words = mc.word_counts()
    keep = length_matched(words, mc.high)
    result: dict = {
        "n_all": len(rules),
        "n_length_matched": len(keep),
        "auroc_word_count_all": auroc(mc.high, words),
        "auroc_word_count_matched": auroc(mc.high[keep], words[keep]),
    }
    for name, values in scores.items():
        result[f"auroc_{name}_matched"] = auroc(mc.high[keep], values[keep])
        result[f"auroc_{name}_all"] = auroc(mc.high, values)
    result["auroc_nondominance_matched_per_rule"] = {
        rule: auroc(mc.high[keep][rules[keep] == rule], scores["nondominance"][keep][rules[keep] == rule])
        for rule in sorted(set(mc.rules))
    }
    return result


def fit_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The score cut that maximises balanced accuracy (Youden's J) on the dev pairs."""
    best_j, best_t = -1.0, float(np.median(scores))
    for t in np.unique(scores):
        predicted = scores >= t
        tpr = predicted[labels == 1].mean()
        fpr = predicted[labels == 0].mean()
        if tpr - fpr > best_j:
            best_j, best_t = float(tpr - fpr), float(t)
    return best_t


def train(data_dir: str | None, out_dir: Path = MODELS_DIR) -> dict:
    import torch

    torch.set_num_threads(1)
    started = time.time()

    def log(message: str) -> None:
        print(f"[{time.time() - started:6.1f}s] {message}", flush=True)

    encoder = load_encoder()
    mc = read_moralchoice(data_dir)
    action_emb = embed_cached(mc.action_texts(), encoder, progress=False, label="moralchoice-actions")
    action_emb = action_emb.reshape(len(mc.contexts), 2, -1).astype(np.float64)
    context_emb = embed_cached(mc.contexts, encoder, progress=False, label="moralchoice-contexts")
    log(f"MoralChoice: {len(mc.contexts)} scenarios, {int(mc.high.sum())} high ambiguity")
    ordinary = read_ordinary_requests(data_dir)
    ordinary_emb = embed_cached(ordinary, encoder, progress=False, label="ordinary-requests").astype(np.float64)
    log(f"ordinary requests (AmbigNQ, ClariQ) as cost-free actions: {len(ordinary)}")
    transfer = moralchoice_transfer(mc, action_emb, context_emb, ordinary_emb, data_dir)
    log(
        "MoralChoice high vs low ambiguity, lengths matched "
        f"(n={transfer['n_length_matched']} of {transfer['n_all']}), heads trained without the held-out rule:"
    )
    log(f"  non-dominance of the two options AUROC = {transfer['auroc_nondominance_matched']:.3f}")
    log(f"  same, values weighted uniformly AUROC = {transfer['auroc_nondominance_uniform_matched']:.3f}")
    log(f"  min option cost AUROC = {transfer['auroc_min_cost_matched']:.3f}")
    log(
        f"  word count alone AUROC = {transfer['auroc_word_count_matched']:.3f} "
        f"(on all scenarios: {transfer['auroc_word_count_all']:.3f})"
    )
    log(f"  per held-out rule: {json.dumps(transfer['auroc_nondominance_matched_per_rule'])}")

    heads = fit_stakes(action_emb, mc.breaks, ordinary_emb)

    rows = read_pairs()
    pair_emb = embed_cached([r.text for r in rows], encoder, progress=False, label="conflict-pairs")
    probs, value_model = value_probabilities(pair_emb, data_dir)
    provisional = ConflictModel(heads=heads, threshold=0.0, meta={})
    assessments = [
        provisional.assess(r.text, e, p, encoder=encoder) for r, e, p in zip(rows, pair_emb, probs, strict=True)
    ]
    scores = np.array([a.score for a in assessments])
    baseline = np.array([schwartz_opposition(p)[0] for p in probs])
    labels = np.array([r.conflict for r in rows], dtype=np.int8)
    splits = np.array([r.split for r in rows])
    dev = splits == "dev"
    threshold = fit_threshold(labels[dev], scores[dev])

    report: dict = {"value_model": value_model, "moralchoice": transfer, "threshold": threshold}
    log(f"Minimal pairs (value probabilities from the '{value_model}' value model):")
    for split in ("dev", "test"):
        sel = splits == split
        sel_rows = [r for r, s in zip(rows, sel, strict=True) if s]
        lengths: dict[int | None, dict[bool, int]] = defaultdict(dict)
        for r in sel_rows:
            lengths[r.pair][r.conflict] = len(r.text.split())
        length_gap = float(np.mean([p[True] - p[False] for p in lengths.values()]))
        length_abs = float(np.mean([abs(p[True] - p[False]) for p in lengths.values()]))
        entry = {
            "n_pairs": len(lengths),
            "auroc": auroc(labels[sel], scores[sel]),
            "pairwise_accuracy": pairwise_accuracy(sel_rows, scores[sel]),
            "baseline_schwartz_auroc": auroc(labels[sel], baseline[sel]),
            "baseline_schwartz_pairwise_accuracy": pairwise_accuracy(sel_rows, baseline[sel]),
            "word_count_auroc": auroc(labels[sel], np.array([len(r.text.split()) for r in sel_rows])),
            "mean_word_gap_conflict_minus_plain": length_gap,
            "mean_abs_word_gap": length_abs,
            "detected_rate_conflict": float((scores[sel & (labels == 1)] >= threshold).mean()),
            "detected_rate_plain": float((scores[sel & (labels == 0)] >= threshold).mean()),
        }
        report[split] = entry
        log(
            f"  {split}: {entry['n_pairs']} pairs  AUROC={entry['auroc']:.3f}  "
            f"pairwise={entry['pairwise_accuracy']:.3f}  | Schwartz baseline AUROC="
            f"{entry['baseline_schwartz_auroc']:.3f} pairwise={entry['baseline_schwartz_pairwise_accuracy']:.3f}"
            f"  | word count AUROC={entry['word_count_auroc']:.3f}, mean |word gap|={length_abs:.2f}"
            f" (conflict minus plain {length_gap:+.2f})"
        )
        log(
            f"    detected at threshold {threshold:.4f}: {entry['detected_rate_conflict']:.2f} of conflict "
            f"members, {entry['detected_rate_plain']:.2f} of plain members"
        )
    benign = splits == "benign"
    report["benign_detected_rate"] = float((scores[benign] >= threshold).mean())
    report["benign_max_score"] = float(scores[benign].max())
    log(
        f"  benign requests: {int(benign.sum())}, detected {report['benign_detected_rate']:.2f}, "
        f"max score {report['benign_max_score']:.4f}"
    )

    log("Value vectors (top gains / costs of 'do it') for a few pairs:")
    shown = 0
    for r, a in zip(rows, assessments, strict=True):
        if r.pair in (1, 9, 23, 36) and shown < 8:
            do = a.actions[0]
            top_g = ", ".join(f"{k} {v:.3f}" for k, v in do.to_dict(top=2)["gains"].items())
            top_c = ", ".join(f"{k} {v:.3f}" for k, v in do.to_dict(top=2)["costs"].items())
            pair = a.pairs[0] if a.pairs else None
            log(f"  [{r.pair} {'conflict' if r.conflict else 'plain'}] score={a.score:.4f} {r.text}")
            log(f"      gains: {top_g} | costs: {top_c} | top pair: {pair.values if pair else '-'}")
            shown += 1

    meta = {
        "value_names": list(VALUE_NAMES),
        "trained_on": {
            "stakes": "moralchoice (all rules in this copy): per-rule logistic heads on 'context + action'",
        },
        "threshold_from": "dev minimal pairs, Youden's J",
        "value_model_at_training": value_model,
        "report": report,
    }
    save_conflict_model(ConflictModel(heads=heads, threshold=threshold, meta=meta), out_dir)
    size = sum(p.stat().st_size for p in out_dir.glob("conflict_*"))
    log(f"wrote {out_dir}/conflict_heads.npz + conflict_meta.json ({size / 1024:.0f} KiB)")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="folder holding moralchoice/ and touche23_valueeval/")
    args = parser.parse_args()
    train(args.data_dir)


if __name__ == "__main__":
    main()
