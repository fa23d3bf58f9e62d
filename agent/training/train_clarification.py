"""Train the clarification-need model and measure it, the question-bank ranker included.

    python -m agent.training.train_clarification [--data DIR] [--out DIR] [--figure PNG]

Writes agent/models/clarify_need.{npz,json} and docs/figures/clarify_reliability.png, and prints:
ClariQ dev weighted F1 (1-4), AmbigNQ held-out accuracy / majority rate / AUROC, Qulac recall, the
leave-one-source-out table, the expected calibration error and the question-bank Recall@30.
Method and data: agent/models/CLARIFY_MODEL.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agent.clarification_need import (
    ARRAYS_FILE,
    META_FILE,
    MODELS_DIR,
    NEED_LEVEL_POSITIVE,
    SIGNAL_NAMES,
    ClarificationNeedModel,
    _Weights,
    ambignq_split,
    lexical_signals,
    load_ambignq,
    load_clariq_topics,
    load_qulac_topics,
    platt,
    signal_matrix,
)
from agent.encoder import Encoder
from agent.metrics import auroc_or_nan, expected_calibration_error

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FIGURE_PATH = PROJECT_ROOT / "docs" / "figures" / "clarify_reliability.png"
CACHE_DIR = Path("/tmp/edge-align-cache")
SOURCES = ("clariq", "ambignq", "qulac")

# Chosen by a small sweep (PCA dims 0-64, C, Qulac weight) on held-out AUROC of ClariQ dev and
# AmbigNQ held-out and the leave-one-source-out AUROC (CLARIFY_MODEL.md): more embedding dimensions
# fit each source better and transfer worse.
PCA_DIMS = 8
L2_C = 0.3
QULAC_WEIGHT = 0.25  # Qulac has positives only: a quarter of a source's weight keeps it from setting the base rate
LEVEL_RIDGE_ALPHA = 10.0
LEVEL_CV_REPEATS = 5  # cut points from out-of-fold scores pooled over repeats: 50 dev topics are too few to trust one draw
CV_FOLDS = 5
SEED = 7


def log(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------------
# Data assembly.
# --------------------------------------------------------------------------------------------------


@dataclass
class Pool:
    """Texts with a binary need label, a source name and their embeddings."""

    texts: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 384), np.float32))

    def add(self, texts: Sequence[str], labels: Sequence[int], source: str) -> None:
        self.texts.extend(texts)
        self.labels.extend(int(v) for v in labels)
        self.sources.extend([source] * len(texts))

    def subset(self, mask: np.ndarray) -> Pool:
        idx = np.flatnonzero(mask)
        return Pool(
            [self.texts[i] for i in idx],
            [self.labels[i] for i in idx],
            [self.sources[i] for i in idx],
            self.embeddings[idx],
        )

    @property
    def y(self) -> np.ndarray:
        return np.array(self.labels, dtype=int)

    @property
    def src(self) -> np.ndarray:
        return np.array(self.sources)


def encode_cached(texts: Sequence[str], encoder: Encoder, cache_dir: Path = CACHE_DIR) -> np.ndarray:
    """Embeddings of ``texts``, cached on disk under a hash of the exact text list."""
    digest = hashlib.sha256("\x1f".join(texts).encode("utf-8")).hexdigest()[:24]
    path = cache_dir / f"clarify_texts_{digest}.npy"
    if path.is_file():
        return np.load(path)
    from tqdm import tqdm

    chunks = []
    step = 256
    for start in tqdm(range(0, len(texts), step), desc="embedding", unit="batch", file=sys.stdout):
        chunks.append(encoder.encode(list(texts[start : start + step])))
    vectors = np.vstack(chunks) if chunks else np.zeros((0, 384), np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


@dataclass
class Corpora:
    clariq_train: Pool
    clariq_dev: Pool
    clariq_train_levels: np.ndarray
    clariq_dev_levels: np.ndarray
    ambignq_train: Pool
    ambignq_held: Pool
    qulac_train: Pool  # topics that are not ClariQ dev topics
    qulac_held: Pool  # Qulac's version of the ClariQ dev topics: never trained on


def load_corpora(data_dir: str | None, encoder: Encoder) -> Corpora:
    log("loading ClariQ, AmbigNQ and Qulac ...")
    cq_train = load_clariq_topics("train", data_dir)
    cq_dev = load_clariq_topics("dev", data_dir)
    ambig = load_ambignq(data_dir)
    train_idx, held_idx = ambignq_split(ambig)
    qulac = load_qulac_topics(data_dir)
    dev_ids = {t.topic_id for t in cq_dev}

    pools = {
        "clariq_train": Pool(),
        "clariq_dev": Pool(),
        "ambignq_train": Pool(),
        "ambignq_held": Pool(),
        "qulac_train": Pool(),
        "qulac_held": Pool(),
    }
    pools["clariq_train"].add([t.request for t in cq_train], [t.need >= NEED_LEVEL_POSITIVE for t in cq_train], "clariq")
    pools["clariq_dev"].add([t.request for t in cq_dev], [t.need >= NEED_LEVEL_POSITIVE for t in cq_dev], "clariq")
    pools["ambignq_train"].add([ambig[i].question for i in train_idx], [ambig[i].ambiguous for i in train_idx], "ambignq")
    pools["ambignq_held"].add([ambig[i].question for i in held_idx], [ambig[i].ambiguous for i in held_idx], "ambignq")
    q_train = [text for tid, text, _ in qulac if tid not in dev_ids]
    q_held = [text for tid, text, _ in qulac if tid in dev_ids]
    pools["qulac_train"].add(q_train, [1] * len(q_train), "qulac")
    pools["qulac_held"].add(q_held, [1] * len(q_held), "qulac")

    all_texts = [t for p in pools.values() for t in p.texts]
    log(f"embedding {len(all_texts)} texts (cached under {CACHE_DIR}) ...")
    vectors = encode_cached(all_texts, encoder)
    start = 0
    for pool in pools.values():
        pool.embeddings = vectors[start : start + len(pool.texts)]
        start += len(pool.texts)
    return Corpora(
        clariq_train_levels=np.array([t.need for t in cq_train]),
        clariq_dev_levels=np.array([t.need for t in cq_dev]),
        **pools,
    )


def concat(pools: Sequence[Pool]) -> Pool:
    out = Pool()
    for p in pools:
        out.texts += p.texts
        out.labels += p.labels
        out.sources += p.sources
    out.embeddings = np.vstack([p.embeddings for p in pools])
    return out


# --------------------------------------------------------------------------------------------------
# The learner: weighted PCA projection + standardised logistic regression + Platt scaling.
# --------------------------------------------------------------------------------------------------


def source_weights(sources: np.ndarray, qulac_weight: float = QULAC_WEIGHT) -> np.ndarray:
    """Each source carries the same total weight (Qulac a fraction of it), whatever its size."""
    weights = np.zeros(len(sources))
    names = sorted(set(sources.tolist()))
    for name in names:
        mask = sources == name
        share = qulac_weight if name == "qulac" else 1.0
        weights[mask] = share / mask.sum()
    return weights * len(sources) / weights.sum()


def weighted_pca(x: np.ndarray, w: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    mean = (w[:, None] * x).sum(0) / w.sum()
    centred = (x - mean) * np.sqrt(w / w.sum())[:, None]
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return mean.astype(np.float32), vt[:dims].astype(np.float32)


@dataclass
class Fitted:
    pca_mean: np.ndarray
    pca_components: np.ndarray
    feature_mean: np.ndarray
    feature_scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def raw(self, signals: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        rows = np.hstack([signals, (embeddings - self.pca_mean) @ self.pca_components.T])
        return np.asarray(((rows - self.feature_mean) / self.feature_scale) @ self.coef + self.intercept)


def fit_scorer(
    signals: np.ndarray, embeddings: np.ndarray, y: np.ndarray, w: np.ndarray, dims: int = PCA_DIMS, c: float = L2_C
) -> Fitted:
    from sklearn.linear_model import LogisticRegression

    pca_mean, components = weighted_pca(embeddings, w, dims)
    rows = np.hstack([signals, (embeddings - pca_mean) @ components.T])
    mean = (w[:, None] * rows).sum(0) / w.sum()
    scale = np.sqrt((w[:, None] * (rows - mean) ** 2).sum(0) / w.sum())
    scale[scale < 1e-6] = 1.0
    clf = LogisticRegression(C=c, max_iter=2000)
    clf.fit((rows - mean) / scale, y, sample_weight=w)
    return Fitted(pca_mean, components, mean, scale, clf.coef_[0].copy(), float(clf.intercept_[0]))


def fit_platt(scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1e4, max_iter=1000)
    clf.fit(scores[:, None], y, sample_weight=w)
    return -float(clf.coef_[0, 0]), -float(clf.intercept_[0])


def fold_ids(y: np.ndarray, sources: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Folds stratified by source and label."""
    rng = np.random.default_rng(seed)
    out = np.zeros(len(y), dtype=int)
    for s in set(sources.tolist()):
        for label in (0, 1):
            idx = np.flatnonzero((sources == s) & (y == label))
            rng.shuffle(idx)
            out[idx] = np.arange(len(idx)) % folds
    return out


@dataclass
class Trained:
    scorer: Fitted
    platt_a: float
    platt_b: float
    oof_raw: np.ndarray  # out-of-fold raw scores on the training pool

    def probability(self, signals: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
        return platt(self.scorer.raw(signals, embeddings), self.platt_a, self.platt_b)


def train_pool(pool: Pool, dims: int = PCA_DIMS, c: float = L2_C, qulac_weight: float = QULAC_WEIGHT) -> Trained:
    """Fit on the whole pool; calibrate on out-of-fold scores of the sources that have both classes."""
    signals = signal_matrix([lexical_signals(t) for t in pool.texts])
    y, src = pool.y, pool.src
    w = source_weights(src, qulac_weight)
    folds = fold_ids(y, src, CV_FOLDS, SEED)
    oof = np.zeros(len(y))
    for k in range(CV_FOLDS):
        tr, te = folds != k, folds == k
        oof[te] = fit_scorer(signals[tr], pool.embeddings[tr], y[tr], w[tr], dims, c).raw(
            signals[te], pool.embeddings[te]
        )
    # A source with one class (Qulac) says nothing about false alarms, so calibration ignores it.
    two_class = np.array([len(set(y[src == s].tolist())) == 2 for s in src])
    a, b = fit_platt(oof[two_class], y[two_class], source_weights(src[two_class]))
    return Trained(fit_scorer(signals, pool.embeddings, y, w, dims, c), a, b, oof)


def pool_probability(trained: Trained, pool: Pool) -> np.ndarray:
    return trained.probability(signal_matrix([lexical_signals(t) for t in pool.texts]), pool.embeddings)


# --------------------------------------------------------------------------------------------------
# Need levels, metrics.
# --------------------------------------------------------------------------------------------------


def weighted_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """sklearn's f1_score(average='weighted') over the labels present in ``truth`` (ClariQ's metric),
    in numpy: the cut-point search calls it tens of thousands of times."""
    total = 0.0
    for label in np.unique(truth):
        tp = np.sum((pred == label) & (truth == label))
        wrong = np.sum((pred == label) != (truth == label))
        total += np.sum(truth == label) * (2 * tp / (2 * tp + wrong) if tp else 0.0)
    return float(total / len(truth))


def tune_level_cuts(scores: np.ndarray, levels: np.ndarray, grid_points: int = 49) -> tuple[np.ndarray, float]:
    """Three increasing cut points on a score that maximise weighted F1 on these (out-of-fold) scores,
    searched over ``grid_points`` quantiles of the scores."""
    grid = np.unique(np.quantile(scores, np.linspace(0.02, 0.98, grid_points)))
    best = (-1.0, np.array([1.5, 2.5, 3.5]))
    for i, c1 in enumerate(grid):
        for j in range(i, len(grid)):
            for c3 in grid[j:]:
                cuts = np.array([c1, grid[j], c3])
                score = weighted_f1(levels, 1 + np.searchsorted(cuts, scores, side="right"))
                if score > best[0] + 1e-12:
                    best = (score, cuts)
    return best[1], best[0]


@dataclass
class LevelHead:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    cuts: np.ndarray
    train_oof_f1: float

    def score(self, signals: np.ndarray) -> np.ndarray:
        return np.asarray(((signals - self.mean) / self.scale) @ self.coef + self.intercept)


def fit_level_head(signals: np.ndarray, levels: np.ndarray, alpha: float = LEVEL_RIDGE_ALPHA) -> LevelHead:
    """Ridge regression of ClariQ's 1-4 level on the named signals; cut points from repeated
    5-fold out-of-fold scores on ClariQ train (dev is never seen)."""
    from sklearn.linear_model import Ridge

    mean = signals.mean(0)
    scale = signals.std(0)
    scale[scale < 1e-6] = 1.0
    z = (signals - mean) / scale
    oof_scores, oof_levels = [], []
    for repeat in range(LEVEL_CV_REPEATS):
        folds = np.random.default_rng(SEED + repeat).permutation(len(levels)) % CV_FOLDS
        oof = np.zeros(len(levels))
        for k in range(CV_FOLDS):
            ridge = Ridge(alpha=alpha).fit(z[folds != k], levels[folds != k])
            oof[folds == k] = ridge.predict(z[folds == k])
        oof_scores.append(oof)
        oof_levels.append(levels)
    cuts, f1 = tune_level_cuts(np.concatenate(oof_scores), np.concatenate(oof_levels))
    ridge = Ridge(alpha=alpha).fit(z, levels)
    return LevelHead(mean, scale, ridge.coef_.copy(), float(ridge.intercept_), cuts, f1)


def reliability_figure(groups: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, bins: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 5.0), dpi=110)
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=1, label="perfect calibration")
    edges = np.linspace(0, 1, bins + 1)
    for name, (probs, y) in groups.items():
        which = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
        xs, ys, ns = [], [], []
        for b in range(bins):
            mask = which == b
            if mask.sum() >= 5:
                xs.append(probs[mask].mean())
                ys.append(y[mask].mean())
                ns.append(mask.sum())
        ece = expected_calibration_error(y, probs, bins)
        ax.plot(xs, ys, "o-", label=f"{name} (n={len(y)}, ECE={ece:.3f})")
    ax.set_xlabel("predicted P(clarification needed)")
    ax.set_ylabel("observed fraction needing clarification")
    ax.set_title("Clarification-need calibration (held-out, 10 bins)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


# --------------------------------------------------------------------------------------------------
# Cross-source: train without S, test on S.
# --------------------------------------------------------------------------------------------------


def cross_source_table(c: Corpora, dims: int = PCA_DIMS, cval: float = L2_C, qw: float = QULAC_WEIGHT) -> list[dict[str, Any]]:
    """Leave one source out. Qulac has no negatives: it is scored against AmbigNQ's held-out
    single-answer questions (never trained on by either model)."""
    clariq_all = concat([c.clariq_train, c.clariq_dev])
    qulac_all = concat([c.qulac_train, c.qulac_held])
    negatives = c.ambignq_held.subset(c.ambignq_held.y == 0)
    rows = []
    tests = {
        "clariq": (concat([c.ambignq_train, c.qulac_train]), clariq_all, concat([c.clariq_dev])),
        "ambignq": (concat([c.clariq_train, c.qulac_train]), concat([c.ambignq_train, c.ambignq_held]), c.ambignq_held),
        "qulac": (concat([c.clariq_train, c.ambignq_train]), concat([qulac_all, negatives]), concat([c.qulac_held, negatives])),
    }
    pooled = train_pool(concat([c.clariq_train, c.ambignq_train, c.qulac_train]), dims, cval, qw)
    for source, (train, test, in_source_test) in tests.items():
        model = train_pool(train, dims, cval, qw)
        p = pool_probability(model, test)
        p_in = pool_probability(pooled, in_source_test)
        y, y_in = test.y, in_source_test.y
        rows.append(
            {
                "source": source,
                "trained_on": "+".join(s for s in SOURCES if s != source),
                "n_test": len(y),
                "auroc_without_source": auroc_or_nan(y, p),
                "accuracy_without_source": float(((p >= 0.5) == y).mean()),
                "majority_rate": float(max(y.mean(), 1 - y.mean())),
                "n_in_source_test": len(y_in),
                "auroc_pooled_model": auroc_or_nan(y_in, p_in),
            }
        )
    return rows


# --------------------------------------------------------------------------------------------------
# Main.
# --------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data directory (default: $EDGE_ALIGN_DATA or ../shared/data)")
    parser.add_argument("--out", default=str(MODELS_DIR), help="where to write clarify_need.{npz,json}")
    parser.add_argument("--figure", default=str(FIGURE_PATH), help="reliability diagram PNG")
    parser.add_argument("--skip-bank", action="store_true", help="do not measure the question-bank ranker")
    args = parser.parse_args(argv)

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    # One BLAS thread: on a shared 2-core machine, oversubscribed BLAS made each fit 10-30x slower.
    threadpool_limits(1)
    started = time.time()
    from agent.encoder import load_encoder

    encoder = load_encoder()
    corpora = load_corpora(args.data, encoder)
    train = concat([corpora.clariq_train, corpora.ambignq_train, corpora.qulac_train])
    log(
        f"training pool: {len(train.texts)} texts "
        + ", ".join(f"{s}={int((train.src == s).sum())}" for s in SOURCES)
    )

    log("fitting the pooled model (5-fold out-of-fold scores for Platt scaling) ...")
    trained = train_pool(train)
    log("fitting the ClariQ level head (ridge on the named signals; cut points on train out-of-fold scores) ...")
    head = fit_level_head(
        signal_matrix([lexical_signals(t) for t in corpora.clariq_train.texts]), corpora.clariq_train_levels
    )
    cuts, train_oof_f1 = head.cuts, head.train_oof_f1
    log(f"level cut points (tuned on ClariQ TRAIN out-of-fold scores, {LEVEL_CV_REPEATS}x5 folds): "
        f"{np.round(cuts, 3).tolist()} -> train OOF weighted F1 {train_oof_f1:.3f}")

    # The policy threshold is where the calibrated probability says 'more likely than not'.
    policy_threshold = 0.5
    weights = _Weights(
        pca_mean=trained.scorer.pca_mean,
        pca_components=trained.scorer.pca_components,
        feature_mean=trained.scorer.feature_mean,
        feature_scale=trained.scorer.feature_scale,
        coef=trained.scorer.coef,
        intercept=trained.scorer.intercept,
        platt_a=trained.platt_a,
        platt_b=trained.platt_b,
        level_mean=head.mean,
        level_scale=head.scale,
        level_coef=head.coef,
        level_intercept=head.intercept,
        level_cuts=cuts,
    )
    meta: dict[str, Any] = {
        "model": "clarification-need logistic regression (signals + weighted-PCA embedding projection), Platt-calibrated",
        "encoder": "all-MiniLM-L6-v2 (384-d, L2-normalised)",
        "signal_names": list(SIGNAL_NAMES),
        "pca_dims": PCA_DIMS,
        "l2_c": L2_C,
        "qulac_weight": QULAC_WEIGHT,
        "policy_threshold": policy_threshold,
        "level_cuts": cuts.tolist(),
        "level_head": "ridge (alpha=10) of ClariQ level on the standardised named signals",
        "level_cuts_tuned_on": "ClariQ train, out-of-fold level scores (5 repeats of 5 folds)",
        "positive_label": "ClariQ need >= 3; AmbigNQ multipleQAs; every Qulac topic",
        "training_counts": {s: int((train.src == s).sum()) for s in SOURCES},
        "coefficients": {n: round(float(v), 4) for n, v in zip(SIGNAL_NAMES, trained.scorer.coef, strict=False)},
    }
    model = ClarificationNeedModel(weights, meta)

    log("\n== ClariQ dev (50 topics, official weighted F1 over levels 1-4)")
    dev_p = model.probabilities(corpora.clariq_dev.texts, corpora.clariq_dev.embeddings)
    dev_levels = model.need_levels(corpora.clariq_dev.texts)
    from sklearn.metrics import confusion_matrix

    clariq_dev = {
        "n": len(dev_p),
        "weighted_f1": weighted_f1(corpora.clariq_dev_levels, dev_levels),
        "constant_level2_f1": weighted_f1(corpora.clariq_dev_levels, np.full(len(dev_p), 2)),
        "auroc_need_ge_3": auroc_or_nan(corpora.clariq_dev.y, dev_p),
        "auroc_need_ge_3_level_score": auroc_or_nan(corpora.clariq_dev.y, model.level_scores(corpora.clariq_dev.texts)),
        "confusion": confusion_matrix(corpora.clariq_dev_levels, dev_levels, labels=[1, 2, 3, 4]).tolist(),
    }
    log(json.dumps(clariq_dev))

    log("\n== AmbigNQ held-out (fixed stratified 20%, seed 13)")
    amb_p = model.probabilities(corpora.ambignq_held.texts, corpora.ambignq_held.embeddings)
    amb_y = corpora.ambignq_held.y
    ambignq = {
        "n": len(amb_y),
        "accuracy": float(((amb_p >= policy_threshold) == amb_y).mean()),
        "majority_rate": float(max(amb_y.mean(), 1 - amb_y.mean())),
        "auroc": auroc_or_nan(amb_y, amb_p),
    }
    log(json.dumps(ambignq))

    log("\n== Qulac topics of the ClariQ dev set (never trained on; all ambiguous/faceted)")
    q_p = model.probabilities(corpora.qulac_held.texts, corpora.qulac_held.embeddings)
    qulac = {
        "n": len(q_p),
        "mean_probability": float(q_p.mean()),
        "recall_at_policy_threshold": float((q_p >= policy_threshold).mean()),
    }
    log(json.dumps(qulac))

    log("\n== Calibration on held-out data (ECE, 10 equal-width bins)")
    held_p = np.concatenate([amb_p, dev_p])
    held_y = np.concatenate([amb_y, corpora.clariq_dev.y])
    calibration = {
        "ece_pooled_heldout": expected_calibration_error(held_y, held_p),
        "ece_ambignq_heldout": expected_calibration_error(amb_y, amb_p),
        "ece_clariq_dev": expected_calibration_error(corpora.clariq_dev.y, dev_p),
        "n_pooled": len(held_y),
    }
    log(json.dumps(calibration))
    reliability_figure(
        {"AmbigNQ held-out": (amb_p, amb_y), "ClariQ dev (need>=3)": (dev_p, corpora.clariq_dev.y),
         "pooled held-out": (held_p, held_y)},
        Path(args.figure),
    )
    log(f"reliability diagram -> {args.figure}")

    log("\n== Leave-one-source-out (train without S, test on S)")
    table = cross_source_table(corpora)
    log(f"{'source':8} {'trained on':16} {'n':>6} {'AUROC w/o S':>11} {'acc w/o S':>9} {'majority':>8} "
        f"{'n in':>6} {'AUROC pooled':>12}")
    for row in table:
        log(f"{row['source']:8} {row['trained_on']:16} {row['n_test']:6d} {row['auroc_without_source']:11.3f} "
            f"{row['accuracy_without_source']:9.3f} {row['majority_rate']:8.3f} {row['n_in_source_test']:6d} "
            f"{row['auroc_pooled_model']:12.3f}")

    bank_metrics: dict[str, Any] = {}
    if not args.skip_bank:
        from agent.question_bank import BM25_WEIGHT, QuestionBank, evaluate_recall, tune_bm25_weight

        log("\n== Question bank ranking (Recall@k, ClariQ's definition)")
        bank = QuestionBank.load(args.data, encoder=encoder)
        tuned = tune_bm25_weight(
            bank, corpora.clariq_train.texts, corpora.clariq_train.embeddings,
            [t.question_ids for t in load_clariq_topics("train", args.data)],
        )
        log(f"BM25 fusion weight with the best Recall@30 on ClariQ TRAIN topics: {tuned:.2f} "
            f"(shipped constant: {BM25_WEIGHT:.2f})")
        bank_metrics = evaluate_recall(bank, "dev", args.data, encoder=encoder)
        bank_metrics["bm25_weight_tuned_on_train"] = tuned
        log(json.dumps(bank_metrics))

    meta["metrics"] = {
        "clariq_dev": clariq_dev,
        "clariq_train_oof_weighted_f1": train_oof_f1,
        "ambignq_heldout": ambignq,
        "qulac_heldout_topics": qulac,
        "calibration": calibration,
        "cross_source": table,
        "question_bank": bank_metrics,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out / ARRAYS_FILE,
        pca_mean=weights.pca_mean.astype(np.float32),
        pca_components=weights.pca_components.astype(np.float32),
        feature_mean=weights.feature_mean,
        feature_scale=weights.feature_scale,
        coef=weights.coef,
        intercept=np.array(weights.intercept),
        platt_a=np.array(weights.platt_a),
        platt_b=np.array(weights.platt_b),
        level_mean=weights.level_mean,
        level_scale=weights.level_scale,
        level_coef=weights.level_coef,
        level_intercept=np.array(weights.level_intercept),
        level_cuts=weights.level_cuts,
    )
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    sizes = {p.name: p.stat().st_size for p in (out / ARRAYS_FILE, out / META_FILE)}
    log(f"\nartefacts: {sizes} (bytes) in {out}")
    log(f"done in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
