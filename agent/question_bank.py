"""Rank ClariQ's bank of clarifying questions for a request: BM25 and embedding similarity, fused.

The bank is ClariQ data (no licence stated), so it is read from the data directory at run time and
never committed. Without it, :meth:`QuestionBank.load` raises :class:`QuestionBankMissingError` and
callers fall back to asking without the bank.

Fusion: ``score = BM25_WEIGHT * bm25 / max(bm25) + (1 - BM25_WEIGHT) * cosine``; the weight was chosen on
ClariQ *train* topics (Recall@30) and the result is reported on dev (agent/models/CLARIFY_MODEL.md).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from agent.datasets import DatasetMissingError, dataset_dir
from agent.embedding_cache import FixedTextCache
from agent.encoder import EMBEDDING_DIM, Encoder

BANK_FILE = "question_bank.tsv"
NO_QUESTION_ID = "Q00001"  # ClariQ's "ask nothing" entry: the need model, not the ranker, decides that
BM25_WEIGHT = 0.15  # best Recall@30 on ClariQ train topics (train_clarification prints it)

_TOKEN = re.compile(r"[a-z0-9]+")
# Request boilerplate ("tell me about", "i'm looking for") matches every bank question that repeats it.

def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())

_STOP = _words(
    "a an the of in on at for to from by with and or is are was were be do does did what who when where "
    "which why how me i my you your we can could should would will about as it its this that these those "
    "there they them tell find give show information info looking want know like im please more some any "
    "get need"
)


class QuestionBankMissingError(DatasetMissingError):
    """ClariQ's question bank is not in the data directory."""


@dataclass(frozen=True)
class RankedQuestion:
    id: str
    text: str
    score: float  # the fused BM25 + cosine rank score
    cosine: float = 0.0  # the question's cosine to the request alone


def bm25_tokens(text: str) -> list[str]:
    return [t for t in _TOKEN.findall(text.lower()) if t not in _STOP]


class QuestionBank:
    """ClariQ's clarifying questions with a BM25 index and cached embeddings."""

    def __init__(self, ids: Sequence[str], texts: Sequence[str], embeddings: np.ndarray, bm25_weight: float = BM25_WEIGHT):
        from rank_bm25 import BM25Okapi

        if len(ids) != len(texts) or embeddings.shape != (len(texts), EMBEDDING_DIM):
            raise ValueError("ids, texts and embeddings must describe the same questions")
        self.ids = list(ids)
        self.texts = list(texts)
        self.embeddings = np.asarray(embeddings, dtype=np.float32)
        self.bm25_weight = bm25_weight
        self._bm25: Any = BM25Okapi([bm25_tokens(t) or ["_"] for t in self.texts])

    @classmethod
    def load(
        cls,
        data_dir: str | os.PathLike[str] | None = None,
        encoder: Encoder | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> QuestionBank:
        """Read the bank in place; its embeddings are computed once per installation (agent/embedding_cache.py)."""
        try:
            path = dataset_dir("clariq", data_dir) / BANK_FILE
        except DatasetMissingError as exc:
            raise QuestionBankMissingError(f"ClariQ question bank unavailable: {exc}") from exc
        if not path.is_file():
            raise QuestionBankMissingError(f"ClariQ question bank unavailable: {path} does not exist")
        ids: list[str] = []
        texts: list[str] = []
        with path.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
                text = (row.get("question") or "").strip()
                if row["question_id"] == NO_QUESTION_ID or not text:
                    continue
                ids.append(row["question_id"])
                texts.append(text)
        embeddings = FixedTextCache(encoder, cache_dir).encode(texts, label="embedding ClariQ's questions")
        return cls(ids, texts, embeddings)

    def bm25_scores(self, text: str) -> np.ndarray:
        """Okapi BM25 of every question for ``text``, unscaled."""
        return np.asarray(self._bm25.get_scores(bm25_tokens(text)), dtype=np.float64)

    def component_scores(self, text: str, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(BM25 scaled to [0, 1] by its best match, cosine similarity) for every question."""
        bm25 = self.bm25_scores(text)
        top = bm25.max(initial=0.0)
        bm25 = bm25 / top if top > 0 else bm25
        cosine = self.embeddings @ np.asarray(embedding, dtype=np.float32)
        return bm25, cosine.astype(np.float64)

    def scores(self, text: str, embedding: np.ndarray, bm25_weight: float | None = None) -> np.ndarray:
        return self._fused(*self.component_scores(text, embedding), bm25_weight)

    def _fused(self, bm25: np.ndarray, cosine: np.ndarray, bm25_weight: float | None = None) -> np.ndarray:
        weight = self.bm25_weight if bm25_weight is None else bm25_weight
        return np.asarray(weight * bm25 + (1.0 - weight) * cosine)

    def rank(self, text: str, embedding: np.ndarray, k: int = 30) -> list[RankedQuestion]:
        """The ``k`` questions most likely to be the right clarifying question for ``text``."""
        if np.asarray(embedding).shape != (EMBEDDING_DIM,):
            raise ValueError(f"expected an embedding of shape ({EMBEDDING_DIM},)")
        bm25, cosine = self.component_scores(text, embedding)
        fused = self._fused(bm25, cosine)
        order = _top_k(fused, k)
        return [RankedQuestion(self.ids[i], self.texts[i], float(fused[i]), float(cosine[i])) for i in order]

    def question_for(
        self, text: str, embedding: np.ndarray, floor: float | None = None, leave_out: frozenset[str] = frozenset()
    ) -> RankedQuestion | None:
        """The question to ask of ``text``: the best-ranked one that shares a word with it, if at least ``floor`` close.

        Bank questions were written for other topics; one that names none of the request's words
        ("... about bobcats?" for a jaguar request) would ask about the wrong thing, and one that shares
        only a word ("Would you like to make a rub for pork tenderloin?" for "... how to make a bomb")
        is kept out by the cosine floor (agent/training/tune_task_questions.py chooses it).
        ``leave_out``: question ids never to pick (a topic's own gold questions, when measuring).
        """
        words = set(bm25_tokens(text))
        for question in self.rank(text, embedding, k=10 + len(leave_out)):
            asked = set(bm25_tokens(question.text))
            # It must also ask about something the request did not say: "Would you like to book a
            # flight?" only repeats "Book me a flight."
            if question.id not in leave_out and words & asked and asked - words:
                return question if floor is None or question.cosine >= floor else None
        return None


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k] if k else np.array([], dtype=int)
    return part[np.argsort(-scores[part], kind="stable")]


def recall_at_k(bank: QuestionBank, requests: Sequence[str], embeddings: np.ndarray, gold: Sequence[frozenset[str]],
                ks: Sequence[int] = (5, 10, 20, 30), bm25_weight: float | None = None) -> dict[str, float]:
    """ClariQ's question-relevance metric: per topic |top-k ∩ gold| / |gold|, averaged over topics."""
    totals = dict.fromkeys(ks, 0.0)
    for text, emb, relevant in zip(requests, embeddings, gold, strict=True):
        fused = bank.scores(text, emb, bm25_weight)
        order = _top_k(fused, max(ks))
        for k in ks:
            hits = {bank.ids[i] for i in order[:k]} & relevant
            totals[k] += len(hits) / len(relevant) if relevant else 0.0
    return {f"recall@{k}": totals[k] / len(requests) for k in ks}


def tune_bm25_weight(bank: QuestionBank, requests: Sequence[str], embeddings: np.ndarray,
                     gold: Sequence[frozenset[str]], grid: Sequence[float] = tuple(np.linspace(0, 1, 21))) -> float:
    """The fusion weight with the best Recall@30 on the given (training) topics."""
    parts = [bank.component_scores(t, e) for t, e in zip(requests, embeddings, strict=True)]

    def recall30(weight: float) -> float:
        total = 0.0
        for (bm25, cosine), relevant in zip(parts, gold, strict=True):
            top = _top_k(weight * bm25 + (1.0 - weight) * cosine, 30)
            total += len({bank.ids[i] for i in top} & relevant) / len(relevant) if relevant else 0.0
        return total / len(parts)

    return float(max(grid, key=lambda w: (recall30(float(w)), -abs(w - 0.5))))


def evaluate_recall(bank: QuestionBank, split: str = "dev", data_dir: str | os.PathLike[str] | None = None,
                    encoder: Encoder | None = None) -> dict[str, Any]:
    """Recall@{5,10,20,30} on a ClariQ split for the fused ranker, BM25 alone and embeddings alone."""
    from agent.clarification_need import load_clariq_topics

    if encoder is None:
        from agent.encoder import load_encoder

        encoder = load_encoder()
    topics = load_clariq_topics(split, data_dir)
    requests = [t.request for t in topics]
    embeddings = encoder.encode(requests)
    gold = [t.question_ids for t in topics]
    return {
        "split": split,
        "n_topics": len(topics),
        "bm25_weight": bank.bm25_weight,
        "fused": recall_at_k(bank, requests, embeddings, gold),
        "bm25_only": recall_at_k(bank, requests, embeddings, gold, bm25_weight=1.0),
        "embedding_only": recall_at_k(bank, requests, embeddings, gold, bm25_weight=0.0),
    }
