"""Does this request need a clarifying question? A calibrated probability and a ClariQ-style 1-4 level.

The model is a logistic regression over two kinds of input, trained on three pooled sources
(ClariQ, AmbigNQ, Qulac) with source-balanced weights and Platt-calibrated on out-of-fold scores
(agent/training/train_clarification.py, documented in agent/models/CLARIFY_MODEL.md):

* named lexical signals that carry across sources (an unresolved referent, a superlative with no
  criterion, a bare name or noun phrase, an answer that depends on the asker's circumstances...);
* a low-dimensional PCA projection of the message embedding computed once per turn.

A ClariQ trained on its own scores at chance on other ambiguity benchmarks, so the hand signals carry
the part that generalises and the projection stays small.
"""

from __future__ import annotations

import ast
import csv
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from agent.datasets import dataset_dir
from agent.encoder import EMBEDDING_DIM, Encoder

MODELS_DIR = Path(__file__).resolve().parent / "models"
ARRAYS_FILE = "clarify_need.npz"
META_FILE = "clarify_need.json"

# ClariQ's levels: 1 no clarification needed, 2 maybe, 3 needed, 4 necessary. P(need) is P(level >= 3).
NEED_LEVEL_POSITIVE = 3
AMBIGNQ_HOLDOUT_FRACTION = 0.2
AMBIGNQ_SPLIT_SEED = 13


class ClarifyModelMissingError(FileNotFoundError):
    """The trained artefact is not on disk."""


# --------------------------------------------------------------------------------------------------
# Lexical signals. Word lists are short on purpose: each names one reason a request can be open.
# --------------------------------------------------------------------------------------------------


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())

_TOKEN = re.compile(r"[a-z0-9]+")
_REQUEST_PREFIX = re.compile(
    r"^(?:please\s+)?(?:"
    r"tell me (?:more |some(?:thing)? |a bit )?(?:information )?(?:about|of|on)"
    r"|(?:can you |could you |please )?(?:find|give|show|get) (?:me )?(?:some |more )?"
    r"(?:information|info|details|facts|data)? ?(?:on|about|for|from|regarding)?"
    r"|i(?:'m| am) (?:looking|searching) for(?: information (?:on|about))?"
    r"|i(?:'m| am) interested in"
    r"|i (?:want|would like|need) (?:to (?:know|learn|find|read) )?(?:more )?(?:about|information on|info on)?"
    r"|(?:some |more )?(?:information|info|details) (?:on|about|regarding)"
    r"|what (?:can you tell me|do you know) about"
    r"|search for|look up|learn about"
    r")\b\s*",
)
_STOP = _words(
    "a an the of in on at for to from by with and or is are was were be been do does did what who whom "
    "whose when where which why how me i my you your we our can could should would will shall may might "
    "must about as into than then so if it its this that these those there here they them their he she "
    "his her him one ones any some all s m re ve ll d t not no yes tell find give show information info "
    "please"
)
_DEICTIC = _words(
    "it this that these those there here they them their he she his her him one ones such"
)
_SUPERLATIVE = _words(
    "best worst most least top greatest largest biggest smallest cheapest fastest highest lowest "
    "better worse ideal optimal favourite favorite perfect right good recommended"
)
# A superlative is closed when the request says what it is best at, for whom, or where.
_CRITERION = re.compile(
    r"\b(?:for|in terms of|according to|by|under|below|above|within|near|among|at|per|than|since|"
    r"in (?:the )?(?:world|us|uk|history|\d{4}))\b"
)
_PERSONAL = re.compile(
    r"\b(?:should i|shall i|can i|could i|do i|am i|would i|will i|must i|is it (?:safe|ok|okay|"
    r"good|bad|wise|worth|legal|possible|normal|fine|healthy|better)|for me|my|mine|"
    r"i need|worth it|what should|which should|right for|suitable|recommend|advice|advise)\b"
)
_TEMPORAL = re.compile(
    r"\b(?:first|last|latest|current|currently|new|newest|next|recent|recently|now|today|this year|"
    r"still|anymore|most recent|upcoming)\b"
)
_WH = ("what", "who", "when", "where", "which", "how", "why")
_AUX_START = re.compile(
    r"^(?:is|are|was|were|do|does|did|can|could|should|would|will|has|have|had|may|might|must|am)\b"
)
_VERBISH = re.compile(
    r"\b(?:is|are|was|were|be|do|does|did|has|have|had|can|could|should|would|will|get|make|go|buy|"
    r"play(?:s|ed)?|won|win|sing(?:s)?|sang|wrote|write|died|born|made|came|come|become|became|start(?:ed)?|"
    r"use|used|need|want|cost|take|took|live(?:d)?|work(?:s|ed)?|mean(?:s)?|happen(?:ed)?)\b"
)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower().replace("\u2019", "'"))


def request_topic(text: str) -> str:
    """The lowercased request without its boilerplate ("tell me about", "i'm looking for"): what the
    user named."""
    lowered = text.strip().lower().replace("\u2019", "'")
    prefix = _REQUEST_PREFIX.match(lowered)
    return lowered[prefix.end() :] if prefix else lowered


def content_words(topic: str) -> list[str]:
    """The words of a topic that carry meaning: no stop words, no bare numbers."""
    return [t for t in _tokens(topic) if t not in _STOP and not t.isdigit()]


def lexical_signals(text: str) -> dict[str, float]:
    """The named, human-readable signals the model uses (also shown in the decision trace)."""
    raw = text.strip()
    lowered = raw.lower().replace("\u2019", "'")
    tokens = _tokens(lowered)
    n = len(tokens)
    topic = request_topic(raw)
    topic_tokens = _tokens(topic)
    content = content_words(topic)
    first = tokens[0] if tokens else ""
    has_wh = any(t in _WH for t in tokens[:3])
    yes_no = bool(_AUX_START.match(lowered))
    has_verb = bool(_VERBISH.search(topic))

    # A referent is unresolved when a deictic word appears before any content word could anchor it,
    # or when almost nothing else in the request could be what it points at.
    deictic_unanchored = 0.0
    seen_content = 0
    for tok in tokens:
        if tok in _DEICTIC and seen_content == 0 and tok not in ("one",):
            deictic_unanchored = 1.0
            break
        if tok not in _STOP:
            seen_content += 1
    if any(t in _DEICTIC for t in tokens) and len(content) <= 1:
        deictic_unanchored = 1.0
    if re.search(r"\bthe (?:best|right|good|cheapest|top) ones?\b|\bwhich one\b", lowered) and len(content) <= 2:
        deictic_unanchored = 1.0

    superlatives = [i for i, t in enumerate(tokens) if t in _SUPERLATIVE or re.fullmatch(r"\w{3,}est", t)]
    superlative = 1.0 if superlatives else 0.0
    superlative_open = 0.0
    if superlatives:
        tail = " ".join(tokens[superlatives[0] + 1 :])
        superlative_open = 0.0 if _CRITERION.search(" " + tail + " ") else 1.0

    bare_topic = 1.0 if (not has_wh and not yes_no and not has_verb and len(content) >= 1) else 0.0
    has_number = 1.0 if re.search(r"\d", raw) else 0.0
    has_year = 1.0 if re.search(r"\b(1[5-9]|20)\d\d\b", raw) else 0.0
    capitalised = [w for w in re.findall(r"\b[A-Z][a-zA-Z]+", raw[1:])] if raw else []
    return {
        "log_tokens": math.log1p(n),
        "log_topic_tokens": math.log1p(len(topic_tokens)),
        "content_words": float(min(len(content), 12)) / 12.0,
        "short_request": 1.0 if len(content) <= 2 else 0.0,
        "request_prefix": 1.0 if topic != lowered else 0.0,
        "bare_topic": bare_topic,
        "bare_short_topic": bare_topic * (1.0 if len(content) <= 3 else 0.0),
        "unresolved_referent": deictic_unanchored,
        "superlative": superlative,
        "superlative_without_criterion": superlative_open,
        "personal_circumstances": 1.0 if _PERSONAL.search(lowered) else 0.0,
        "unanchored_time": 1.0 if (_TEMPORAL.search(lowered) and not has_year) else 0.0,
        "has_number": has_number,
        "has_year": has_year,
        "question_mark": 1.0 if raw.endswith("?") else 0.0,
        "yes_no_question": 1.0 if yes_no else 0.0,
        "wh_what": 1.0 if first == "what" or "what" in tokens[:2] else 0.0,
        "wh_who": 1.0 if "who" in tokens[:3] else 0.0,
        "wh_when": 1.0 if "when" in tokens[:3] else 0.0,
        "wh_where": 1.0 if "where" in tokens[:3] else 0.0,
        "wh_which": 1.0 if "which" in tokens[:3] else 0.0,
        "wh_how": 1.0 if "how" in tokens[:3] else 0.0,
        "wh_why": 1.0 if "why" in tokens[:3] else 0.0,
        "proper_noun_share": min(len(capitalised) / max(n, 1), 1.0),
        "constraint_words": min(len(_CRITERION.findall(" " + " ".join(topic_tokens) + " ")), 3) / 3.0,
    }


SIGNAL_NAMES: tuple[str, ...] = tuple(lexical_signals("x").keys())


# --------------------------------------------------------------------------------------------------
# The runtime model.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Weights:
    pca_mean: np.ndarray  # (384,)
    pca_components: np.ndarray  # (k, 384)
    feature_mean: np.ndarray  # (d,)
    feature_scale: np.ndarray  # (d,)
    coef: np.ndarray  # (d,)
    intercept: float
    platt_a: float
    platt_b: float
    # The ClariQ level head: a ridge score over the standardised named signals, cut at three points.
    level_mean: np.ndarray  # (s,)
    level_scale: np.ndarray  # (s,)
    level_coef: np.ndarray  # (s,)
    level_intercept: float
    level_cuts: np.ndarray  # (3,) increasing thresholds on the level score


class ClarificationNeedModel:
    """Calibrated P(the request needs clarification) from named signals plus the turn's embedding."""

    def __init__(self, weights: _Weights, meta: dict[str, Any]) -> None:
        self._w = weights
        self.meta = meta
        self.policy_threshold: float = float(meta.get("policy_threshold", 0.5))

    # Construction ---------------------------------------------------------------------------------
    @classmethod
    def from_files(cls, arrays_path: Path, meta_path: Path) -> ClarificationNeedModel:
        if not arrays_path.is_file() or not meta_path.is_file():
            raise ClarifyModelMissingError(
                f"clarification-need model not found ({arrays_path.name}, {meta_path.name} in "
                f"{arrays_path.parent}); run `make train` "
                "(or `python -m agent.training.train_clarification`)."
            )
        with np.load(arrays_path) as z:
            weights = _Weights(
                pca_mean=z["pca_mean"].astype(np.float32),
                pca_components=z["pca_components"].astype(np.float32),
                feature_mean=z["feature_mean"].astype(np.float64),
                feature_scale=z["feature_scale"].astype(np.float64),
                coef=z["coef"].astype(np.float64),
                intercept=float(z["intercept"]),
                platt_a=float(z["platt_a"]),
                platt_b=float(z["platt_b"]),
                level_mean=z["level_mean"].astype(np.float64),
                level_scale=z["level_scale"].astype(np.float64),
                level_coef=z["level_coef"].astype(np.float64),
                level_intercept=float(z["level_intercept"]),
                level_cuts=z["level_cuts"].astype(np.float64),
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if tuple(meta.get("signal_names", ())) != SIGNAL_NAMES:
            raise ClarifyModelMissingError(
                "the clarification-need artefact was trained with other signals; run `make train`."
            )
        return cls(weights, meta)

    # Features -------------------------------------------------------------------------------------
    def features(self, text: str, embedding: np.ndarray) -> np.ndarray:
        """The model's input row: named signals then the embedding's projection."""
        return build_features([lexical_signals(text)], np.asarray(embedding, np.float32)[None, :], self._w)[0]

    def _raw_scores(self, rows: np.ndarray) -> np.ndarray:
        z = (rows - self._w.feature_mean) / self._w.feature_scale
        return np.asarray(z @ self._w.coef + self._w.intercept, dtype=np.float64)

    def probabilities(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """Batch form of :meth:`probability` (for evaluation)."""
        rows = build_features([lexical_signals(t) for t in texts], np.asarray(embeddings, np.float32), self._w)
        return platt(self._raw_scores(rows), self._w.platt_a, self._w.platt_b)

    def level_scores(self, texts: Sequence[str]) -> np.ndarray:
        """The level head's continuous score (an estimate of ClariQ's 1-4 need) for each text."""
        rows = signal_matrix([lexical_signals(t) for t in texts])
        z = (rows - self._w.level_mean) / self._w.level_scale
        return np.asarray(z @ self._w.level_coef + self._w.level_intercept, dtype=np.float64)

    def need_levels(self, texts: Sequence[str]) -> np.ndarray:
        """ClariQ levels 1..4: the level score cut at points tuned on ClariQ train out-of-fold scores."""
        return 1 + np.searchsorted(self._w.level_cuts, self.level_scores(texts), side="right")

    # Runtime API ----------------------------------------------------------------------------------
    def probability(self, text: str, embedding: np.ndarray) -> float:
        """Calibrated P(clarification needed) for one message."""
        _check_embedding(embedding)
        return float(self.probabilities([text], np.asarray(embedding)[None, :])[0])

    def need_level(self, text: str, embedding: np.ndarray) -> int:
        """ClariQ-style need level: 1 none, 2 maybe, 3 needed, 4 necessary.

        The level head reads the named signals only: on ClariQ's graded labels they rank topics
        better than the pooled probability (dev AUROC 0.75 vs 0.66, CLARIFY_MODEL.md). The
        embedding is accepted so that callers use one signature for both judgements.
        """
        _check_embedding(embedding)
        return int(self.need_levels([text])[0])

    def signals(self, text: str) -> dict[str, float]:
        """The named lexical signals for the decision trace (not the embedding part)."""
        return lexical_signals(text)

    def contributions(self, text: str, embedding: np.ndarray) -> dict[str, float]:
        """Each input's share of the logit (signals by name, the projection summed as 'embedding')."""
        row = self.features(text, embedding)
        z = (row - self._w.feature_mean) / self._w.feature_scale * self._w.coef
        named = {name: float(z[i]) for i, name in enumerate(SIGNAL_NAMES)}
        named["embedding"] = float(z[len(SIGNAL_NAMES) :].sum())
        return named


def _check_embedding(embedding: np.ndarray) -> None:
    if np.asarray(embedding).shape != (EMBEDDING_DIM,):
        raise ValueError(f"expected an embedding of shape ({EMBEDDING_DIM},), got {np.asarray(embedding).shape}")


def platt(scores: np.ndarray, a: float, b: float) -> np.ndarray:
    """Platt's sigmoid 1 / (1 + exp(a*s + b)), written to avoid overflow."""
    return np.asarray(1.0 / (1.0 + np.exp(np.clip(a * scores + b, -50.0, 50.0))), dtype=np.float64)


def signal_matrix(signals: Sequence[dict[str, float]]) -> np.ndarray:
    return np.array([[s[name] for name in SIGNAL_NAMES] for s in signals], dtype=np.float64)


def project_embeddings(embeddings: np.ndarray, pca_mean: np.ndarray, pca_components: np.ndarray) -> np.ndarray:
    return np.asarray((embeddings - pca_mean) @ pca_components.T, dtype=np.float64)


def build_features(signals: Sequence[dict[str, float]], embeddings: np.ndarray, weights: _Weights) -> np.ndarray:
    return np.hstack(
        [signal_matrix(signals), project_embeddings(embeddings, weights.pca_mean, weights.pca_components)]
    )


@lru_cache(maxsize=1)
def load_clarification_model() -> ClarificationNeedModel:
    """The packaged model (cached); a clear error says to run `make train` when it is missing."""
    models_dir = Path(os.environ.get("EDGE_ALIGN_MODELS", MODELS_DIR))
    return ClarificationNeedModel.from_files(models_dir / ARRAYS_FILE, models_dir / META_FILE)


# --------------------------------------------------------------------------------------------------
# Data: read in place from the shared data directory, never copied.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClariqTopic:
    topic_id: int
    request: str
    need: int  # 1..4
    question_ids: frozenset[str]
    facets: tuple[str, ...]
    answers: frozenset[str] = frozenset()  # the crowd's answers to the topic's clarifying questions


def load_clariq_topics(split: str, data_dir: str | os.PathLike[str] | None = None) -> list[ClariqTopic]:
    """ClariQ topics of ``split`` (train | dev), one per topic, with their gold questions and facets."""
    path = dataset_dir("clariq", data_dir) / f"{split}.tsv"
    topics: dict[int, dict[str, Any]] = {}
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            tid = int(row["topic_id"])
            entry = topics.setdefault(
                tid,
                {"request": row["initial_request"], "need": int(row["clarification_need"]), "q": set(), "f": {}, "a": set()},
            )
            if row.get("question_id"):
                entry["q"].add(row["question_id"])
            if (row.get("answer") or "").strip():
                entry["a"].add(row["answer"].strip())
            if row.get("facet_id"):
                entry["f"][row["facet_id"]] = row.get("facet_desc", "")
    return [
        ClariqTopic(tid, e["request"], e["need"], frozenset(e["q"]), tuple(e["f"].values()), frozenset(e["a"]))
        for tid, e in sorted(topics.items())
    ]


@dataclass(frozen=True)
class AmbignqQuestion:
    question: str
    ambiguous: bool


def load_ambignq(data_dir: str | os.PathLike[str] | None = None) -> list[AmbignqQuestion]:
    """AmbigNQ-light training questions; ambiguous = some annotation has several readings."""
    path = dataset_dir("ambignq", data_dir) / "train_light.json"
    items = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for item in items:
        annotations = item["annotations"]
        if isinstance(annotations, str):
            annotations = ast.literal_eval(annotations)
        out.append(AmbignqQuestion(item["question"], any(a.get("type") == "multipleQAs" for a in annotations)))
    return out


def ambignq_split(questions: Sequence[AmbignqQuestion]) -> tuple[list[int], list[int]]:
    """Fixed stratified 80/20 split of AmbigNQ-light (train indices, held-out indices)."""
    rng = np.random.default_rng(AMBIGNQ_SPLIT_SEED)
    train: list[int] = []
    held: list[int] = []
    for label in (False, True):
        idx = np.array([i for i, q in enumerate(questions) if q.ambiguous == label])
        rng.shuffle(idx)
        cut = round(len(idx) * AMBIGNQ_HOLDOUT_FRACTION)
        held.extend(int(i) for i in idx[:cut])
        train.extend(int(i) for i in idx[cut:])
    return sorted(train), sorted(held)


def load_qulac_topics(data_dir: str | os.PathLike[str] | None = None) -> list[tuple[int, str, str]]:
    """Qulac topics as (topic_id, keyword query, topic_type); every one is ambiguous or faceted."""
    path = dataset_dir("qulac", data_dir) / "qulac.json"
    table = json.loads(path.read_text(encoding="utf-8"))
    topics: dict[int, tuple[str, str]] = {}
    for row, tid in table["topic_id"].items():
        topics.setdefault(int(tid), (table["topic"][row], table["topic_type"][row]))
    return [(tid, text, kind) for tid, (text, kind) in sorted(topics.items())]


# --------------------------------------------------------------------------------------------------
# Evaluation.
# --------------------------------------------------------------------------------------------------


def _encode(texts: Sequence[str], encoder: Encoder | None) -> np.ndarray:
    if encoder is None:
        from agent.encoder import load_encoder

        encoder = load_encoder()
    return encoder.encode(list(texts))


def evaluate_clariq(
    model: ClarificationNeedModel,
    split: str = "dev",
    data_dir: str | os.PathLike[str] | None = None,
    encoder: Encoder | None = None,
) -> dict[str, Any]:
    """ClariQ's official topic-level weighted F1 over levels 1-4, plus AUROC of P(need) for level >= 3."""
    from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

    topics = load_clariq_topics(split, data_dir)
    requests = [t.request for t in topics]
    probs = model.probabilities(requests, _encode(requests, encoder))
    levels = model.need_levels(requests)
    truth = np.array([t.need for t in topics])
    binary = (truth >= NEED_LEVEL_POSITIVE).astype(int)
    return {
        "split": split,
        "n": len(topics),
        "weighted_f1": float(f1_score(truth, levels, average="weighted")),
        "constant_level2_f1": float(f1_score(truth, np.full_like(truth, 2), average="weighted")),
        "auroc_need_ge_3": float(roc_auc_score(binary, probs)) if 0 < binary.sum() < len(binary) else float("nan"),
        "confusion": confusion_matrix(truth, levels, labels=[1, 2, 3, 4]).tolist(),
        "predicted_levels": {int(k): int(v) for k, v in zip(*np.unique(levels, return_counts=True), strict=True)},
    }


def evaluate_ambignq_heldout(
    model: ClarificationNeedModel,
    data_dir: str | os.PathLike[str] | None = None,
    encoder: Encoder | None = None,
) -> dict[str, Any]:
    """Accuracy at the policy threshold, the majority-class rate and AUROC on the fixed 20% held-out."""
    from sklearn.metrics import roc_auc_score

    questions = load_ambignq(data_dir)
    _, held = ambignq_split(questions)
    texts = [questions[i].question for i in held]
    labels = np.array([questions[i].ambiguous for i in held], dtype=int)
    probs = model.probabilities(texts, _encode(texts, encoder))
    predicted = (probs >= model.policy_threshold).astype(int)
    majority = max(labels.mean(), 1 - labels.mean())
    return {
        "n": len(held),
        "accuracy": float((predicted == labels).mean()),
        "majority_rate": float(majority),
        "auroc": float(roc_auc_score(labels, probs)),
        "mean_probability": float(probs.mean()),
        "positive_rate": float(labels.mean()),
    }
