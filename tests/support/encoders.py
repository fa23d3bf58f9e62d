"""Fake encoders for unit tests of logic that takes an Encoder (no model loaded)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agent.encoder import EMBEDDING_DIM


class CountingEncoder:
    """Deterministic rows per text (a 1 at the text's length); records every text it was asked to embed."""

    def __init__(self, name: str = "model-a") -> None:
        self.name = name
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.seen.extend(texts)
        rows = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            rows[i, len(text) % EMBEDDING_DIM] = 1.0
        return rows
