"""Train the value-conflict heads and measure them where style cannot give the answer away.

    python -m agent.training.train_conflict [--data-dir DIR]

Two stakes heads, logistic on MiniLM embeddings (MoralChoice + ordinary AmbigNQ/ClariQ requests):
- cost: "taking this action breaks a moral rule" on "context + action" (plus per-rule heads that only
  name the values a cost falls on);
- dilemma (the other side): MoralChoice contexts, high ambiguity (both actions break a rule) vs low,
  word counts balanced within 5-word bins so that length cannot carry the label.
The raw score is their geometric mean; a Platt step and the detection threshold are fitted on the dev
minimal pairs only. Reports AUROC and pairwise accuracy on the hand-written minimal pairs (dev, test; the
first 44 pairs and the later ones separately), false alarms on benign requests, and MoralChoice high vs
low ambiguity as chat requests with lengths matched, scored with heads that never saw the held-out rule.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel
from sklearn.linear_model import LogisticRegression

from agent.conflict import (
    MODELS_DIR,
    RULES,
    Calibration,
    ConflictModel,
    StakesHeads,
    extract_options,
    option_text,
    save_conflict_model,
    schwartz_opposition,
)
from agent.datasets import dataset_dir
from agent.encoder import Encoder, load_encoder
from agent.metrics import auroc_or_nan, pairwise_accuracy, youden_threshold
from agent.value_model import ValueModelMissingError, embed_cached, load_value_scorer, read_valueeval_split
from agent.values import VALUE_NAMES

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PAIRS_FILE = PROJECT_ROOT / "tests" / "data" / "conflict_pairs.jsonl"
LOGISTIC_C = 1.0
# The dilemma head's regularisation: 0.3 and 1.0 measured within 0.005 AUROC of each other on the dev pairs.
DILEMMA_C = 0.3
# Ordinary requests count half as much as a MoralChoice scenario in the dilemma head: they only anchor
# "nothing at stake", the contrast that matters is high vs low ambiguity.
ORDINARY_WEIGHT = 0.5
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


def length_balance_weights(words: np.ndarray, labels: np.ndarray, width: int = 5) -> np.ndarray:
    """Per-item weights that give both classes the same mass in every word-count bin (bins holding one
    class only get weight 0), so that a head cannot learn the dilemma label from length."""
    weights = np.zeros(len(labels))
    bins = words // width
    for b in np.unique(bins):
        members = [(bins == b) & (labels == c) for c in (0, 1)]
        smaller = min(int(m.sum()) for m in members)
        for m in members:
            if m.any():
                weights[m] = smaller / m.sum()
    return weights


def fit_dilemma(
    context_emb: np.ndarray, high: np.ndarray, words: np.ndarray, ordinary: np.ndarray
) -> LogisticRegression:
    """The other-side stake: MoralChoice scenario contexts, high ambiguity (both actions break a rule) vs
    low (one action is clearly right), lengths balanced; ordinary requests as situations with nothing at
    stake on either side. Classes balanced by weight."""
    weights = length_balance_weights(words, high)
    weights *= len(high) / weights.sum()
    x = np.concatenate([context_emb, ordinary])
    y = np.concatenate([high, np.zeros(len(ordinary), np.int8)])
    w = np.concatenate([weights, np.full(len(ordinary), ORDINARY_WEIGHT)])
    w = w * np.where(y == 1, w[y == 0].sum() / w[y == 1].sum(), 1.0)
    return LogisticRegression(C=DILEMMA_C, max_iter=2000).fit(x, y, sample_weight=w)


def fit_stakes(
    embeddings: np.ndarray,
    breaks: np.ndarray,
    ordinary: np.ndarray,
    context_emb: np.ndarray,
    high: np.ndarray,
    words: np.ndarray,
    with_rules: bool = True,
) -> StakesHeads:
    """Cost head (any rule broken, classes balanced) and per-rule heads from (n, 2, 384) action
    embeddings and (n, 2, 10) rule labels; ordinary requests are extra actions that break nothing, so
    that a plain question is not read as costly just because it is not a MoralChoice scenario. The
    dilemma head comes from the scenarios' contexts (fit_dilemma). ``with_rules=False`` skips the
    per-rule heads (they only name values; the score does not use them)."""
    x = np.concatenate([embeddings.reshape(-1, embeddings.shape[-1]), ordinary])
    labels = np.concatenate([breaks.reshape(-1, len(RULES)), np.zeros((len(ordinary), len(RULES)), np.int8)])
    cost = LogisticRegression(C=LOGISTIC_C, class_weight="balanced", max_iter=1000).fit(x, labels.any(axis=1))
    rule_w, rule_b = _fit_heads(x, labels) if with_rules else (np.zeros((len(RULES), x.shape[1])), np.zeros(len(RULES)))
    dilemma = fit_dilemma(context_emb, high, words, ordinary)
    return StakesHeads(
        cost_w=cost.coef_[0].astype(np.float64),
        cost_b=float(cost.intercept_[0]),
        rule_w=rule_w,
        rule_b=rule_b,
        dilemma_w=dilemma.coef_[0].astype(np.float64),
        dilemma_b=float(dilemma.intercept_[0]),
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


def chat_form(context: str, first: str, second: str) -> str:
    """A MoralChoice scenario as a user would bring it: the context, then "Should I A or B?"."""

    def bare(action: str) -> str:
        action = action.strip().rstrip(".")
        return action[2:] if action.startswith("I ") else action

    return f"{context.strip()} Should I {bare(first)} or {bare(second)}?"


class LookupEncoder:
    """Serves embeddings computed beforehand (one batched, cached pass) to ConflictModel.assess."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.rows = {t: v for t, v in zip(texts, vectors, strict=True)}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.rows[t] for t in texts])


def moralchoice_transfer(
    mc: MoralChoice,
    action_emb: np.ndarray,
    context_emb: np.ndarray,
    ordinary_emb: np.ndarray,
    encoder: Encoder,
    data_dir: str | None,
) -> dict:
    """Leave one rule out: heads trained on the other rules score the held-out rule's scenarios, each put
    as a chat request ("<context> Should I A or B?") and scored by ConflictModel.assess itself."""
    chats = [chat_form(c, a, b) for c, (a, b) in zip(mc.contexts, mc.actions, strict=True)]
    chat_emb = embed_cached(chats, encoder, progress=False, label="moralchoice-chats").astype(np.float64)
    chat_probs, _ = value_probabilities(chat_emb, data_dir)
    named = [extract_options(t) for t in chats]
    option_texts = [option_text(t, o) for t, opts in zip(chats, named, strict=True) for o in opts]
    option_emb = embed_cached(option_texts, encoder, progress=False, label="moralchoice-chat-options")
    lookup = LookupEncoder(option_texts, option_emb.astype(np.float64))
    rules, words = np.array(mc.rules), mc.word_counts()
    scores = {name: np.zeros(len(rules)) for name in ("assess", "assess_message_only", "dilemma", "min_cost")}
    for rule in sorted(set(mc.rules)):
        held = rules == rule
        heads = fit_stakes(
            action_emb[~held], mc.breaks[~held], ordinary_emb, context_emb[~held], mc.high[~held], words[~held]
        )
        model = ConflictModel(heads=heads, threshold=0.0, meta={})
        for i in np.flatnonzero(held):
            scores["assess"][i] = model.stakes(chats[i], chat_emb[i], chat_probs[i], encoder=lookup).raw
            scores["assess_message_only"][i] = model.stakes(chats[i], chat_emb[i], chat_probs[i], options=[]).raw
            scores["dilemma"][i] = heads.dilemma_probability(chat_emb[i])[0]
            scores["min_cost"][i] = heads.cost_probability(action_emb[i]).min()
    keep = length_matched(words, mc.high)
    result: dict = {
        "n_all": len(rules),
        "n_length_matched": len(keep),
        "options_extracted": float(np.mean([len(o) >= 2 for o in named])),
        "auroc_word_count_all": auroc_or_nan(mc.high, words),
        "auroc_word_count_matched": auroc_or_nan(mc.high[keep], words[keep]),
    }
    for name, values in scores.items():
        result[f"auroc_{name}_matched"] = auroc_or_nan(mc.high[keep], values[keep])
        result[f"auroc_{name}_all"] = auroc_or_nan(mc.high, values)
    result["auroc_assess_matched_per_rule"] = {
        rule: auroc_or_nan(mc.high[keep][rules[keep] == rule], scores["assess"][keep][rules[keep] == rule])
        for rule in sorted(set(mc.rules))
    }
    return result


def fit_calibration(labels: np.ndarray, raw: np.ndarray) -> Calibration:
    """Platt step on logit(raw score), fitted on the dev pairs (nearly unregularised: two parameters)."""
    logits = np.log(np.clip(raw, 1e-6, 1 - 1e-6) / (1 - np.clip(raw, 1e-6, 1 - 1e-6)))
    platt = LogisticRegression(C=100.0, max_iter=1000).fit(logits[:, None], labels)
    return Calibration(slope=float(platt.coef_[0, 0]), intercept=float(platt.intercept_[0]))


# Pairs shown by eye in the log: (pair id, why)
SHOWN_PAIRS = (9, 23, 36, 42, 62, 68)
OLD_PAIRS_UP_TO = 44  # pairs 1-44 were written with the first version; 45-68 were added later


def pair_groups(rows: list[PairRow]) -> dict[str, np.ndarray]:
    splits = np.array([r.split for r in rows])
    ids = np.array([r.pair if r.pair is not None else -1 for r in rows])
    old = ids <= OLD_PAIRS_UP_TO
    return {
        "dev": splits == "dev",
        "dev_old": (splits == "dev") & old,
        "dev_new": (splits == "dev") & ~old,
        "test": splits == "test",
        "test_old": (splits == "test") & old,
        "test_new": (splits == "test") & ~old,
    }


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
    context_emb = embed_cached(mc.contexts, encoder, progress=False, label="moralchoice-contexts").astype(np.float64)
    log(f"MoralChoice: {len(mc.contexts)} scenarios, {int(mc.high.sum())} high ambiguity")
    ordinary = read_ordinary_requests(data_dir)
    ordinary_emb = embed_cached(ordinary, encoder, progress=False, label="ordinary-requests").astype(np.float64)
    log(f"ordinary requests (AmbigNQ, ClariQ) as cost-free actions: {len(ordinary)}")
    transfer = moralchoice_transfer(mc, action_emb, context_emb, ordinary_emb, encoder, data_dir)
    log(
        "MoralChoice high vs low ambiguity as chat requests ('<context> Should I A or B?'), lengths matched "
        f"(n={transfer['n_length_matched']} of {transfer['n_all']}), heads trained without the held-out rule:"
    )
    log(
        f"  assess (options extracted in {transfer['options_extracted']:.2f}) AUROC = "
        f"{transfer['auroc_assess_matched']:.3f}; message only AUROC = {transfer['auroc_assess_message_only_matched']:.3f}"
    )
    log(
        f"  dilemma head alone AUROC = {transfer['auroc_dilemma_matched']:.3f}; smaller of the two "
        f"options' costs AUROC = {transfer['auroc_min_cost_matched']:.3f}"
    )
    log(
        f"  word count alone AUROC = {transfer['auroc_word_count_matched']:.3f} "
        f"(on all scenarios: {transfer['auroc_word_count_all']:.3f})"
    )
    log(
        f"  per held-out rule: {json.dumps({k: round(v, 3) for k, v in transfer['auroc_assess_matched_per_rule'].items()})}"
    )

    heads = fit_stakes(action_emb, mc.breaks, ordinary_emb, context_emb, mc.high, mc.word_counts())

    rows = read_pairs()
    pair_emb = embed_cached([r.text for r in rows], encoder, progress=False, label="conflict-pairs")
    probs, value_model = value_probabilities(pair_emb, data_dir)
    provisional = ConflictModel(heads=heads, threshold=0.0, meta={})
    raw = np.array(
        [provisional.stakes(r.text, e, p, encoder=encoder).raw for r, e, p in zip(rows, pair_emb, probs, strict=True)]
    )
    labels = np.array([r.conflict for r in rows], dtype=np.int8)
    groups = pair_groups(rows)
    dev = groups["dev"]
    calibration = fit_calibration(labels[dev], raw[dev])
    scores = np.array([calibration(r) for r in raw])
    threshold = youden_threshold(labels[dev], scores[dev])
    model = ConflictModel(heads=heads, threshold=threshold, meta={}, calibration=calibration)
    baseline = np.array([schwartz_opposition(p)[0] for p in probs])

    report: dict = {"value_model": value_model, "moralchoice": transfer, "threshold": threshold}
    report["calibration"] = {"slope": calibration.slope, "intercept": calibration.intercept}
    log(f"Minimal pairs (value probabilities from the '{value_model}' value model):")
    log(f"  Platt step on the dev pairs: slope {calibration.slope:.3f}, intercept {calibration.intercept:.3f}")
    for split, sel in groups.items():
        sel_rows = [r for r, s in zip(rows, sel, strict=True) if s]
        lengths: dict[int | None, dict[bool, int]] = defaultdict(dict)
        for r in sel_rows:
            lengths[r.pair][r.conflict] = len(r.text.split())
        entry = {
            "n_pairs": len(lengths),
            "auroc": auroc_or_nan(labels[sel], scores[sel]),
            "pairwise_accuracy": pairwise_accuracy(
                [r.pair for r in sel_rows], [r.conflict for r in sel_rows], scores[sel]
            ),
            "brier": float(np.mean((scores[sel] - labels[sel]) ** 2)),
            "baseline_schwartz_auroc": auroc_or_nan(labels[sel], baseline[sel]),
            "word_count_auroc": auroc_or_nan(labels[sel], np.array([len(r.text.split()) for r in sel_rows])),
            "mean_abs_word_gap": float(np.mean([abs(p[True] - p[False]) for p in lengths.values()])),
            "detected_rate_conflict": float((scores[sel & (labels == 1)] >= threshold).mean()),
            "detected_rate_plain": float((scores[sel & (labels == 0)] >= threshold).mean()),
        }
        report[split] = entry
        log(
            f"  {split:8s}: {entry['n_pairs']} pairs  AUROC={entry['auroc']:.3f}  "
            f"pairwise={entry['pairwise_accuracy']:.3f}  Brier={entry['brier']:.3f}  | Schwartz baseline AUROC="
            f"{entry['baseline_schwartz_auroc']:.3f}  | word count AUROC={entry['word_count_auroc']:.3f}, "
            f"mean |word gap|={entry['mean_abs_word_gap']:.2f}  | detected: {entry['detected_rate_conflict']:.2f} "
            f"of conflict members, {entry['detected_rate_plain']:.2f} of plain members"
        )
    benign = np.array([r.split == "benign" for r in rows])
    report["benign_detected"] = int((scores[benign] >= threshold).sum())
    report["benign_n"] = int(benign.sum())
    report["benign_max_score"] = float(scores[benign].max())
    log(
        f"  threshold {threshold:.3f} (dev, Youden's J); benign requests: {report['benign_detected']} of "
        f"{report['benign_n']} detected, max score {report['benign_max_score']:.3f}"
    )

    log("Stakes, value vectors and named pairs for a few pairs:")
    for r, e, p in zip(rows, pair_emb, probs, strict=True):
        if r.pair not in SHOWN_PAIRS:
            continue
        result = model.assess(r.text, e, p, encoder=encoder)
        stakes = model.stakes(r.text, e, p, encoder=encoder)
        first = result.actions[0].to_dict(top=2)
        top_g = ", ".join(f"{k} {v:.3f}" for k, v in first["gains"].items())
        top_c = ", ".join(f"{k} {v:.3f}" for k, v in first["costs"].items())
        named = "; ".join(f"{a} vs {b}" for a, b in (pair.values for pair in result.pairs[:2]))
        log(f"  [{r.pair} {'conflict' if r.conflict else 'plain'}] score={result.score:.3f} {r.text}")
        log(f"      cost {stakes.cost:.2f}, other side {stakes.other_side:.2f} | gains: {top_g} | costs: {top_c}")
        log(f"      pairs: {named}")

    meta = {
        "value_names": list(VALUE_NAMES),
        "trained_on": {
            "cost": "moralchoice per-action rule annotations ('context + action') + ordinary AmbigNQ/ClariQ requests",
            "dilemma": "moralchoice contexts, high vs low ambiguity, lengths balanced + ordinary requests",
            "calibration": "Platt step on logit(raw) fitted on the dev minimal pairs",
        },
        "threshold_from": "dev minimal pairs, Youden's J on the calibrated score",
        "value_model_at_training": value_model,
        "report": report,
    }
    save_conflict_model(ConflictModel(heads=heads, threshold=threshold, meta=meta, calibration=calibration), out_dir)
    size = sum(p.stat().st_size for p in out_dir.glob("conflict_*"))
    log(f"wrote {out_dir}/conflict_heads.npz + conflict_meta.json ({size / 1024:.0f} KiB)")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data-dir", default=None, help="folder holding moralchoice/, ambignq/, clariq/, touche23_valueeval/"
    )
    args = parser.parse_args()
    train(args.data_dir)


if __name__ == "__main__":
    main()
