"""Which domain a message is about: nearest domain description in the shared embedding space."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from agent.encoder import Encoder
from agent.vocabulary import DOMAINS

_DESCRIPTIONS = Path(__file__).resolve().parent / "data" / "domains.yaml"


class DomainDetector:
    """Scores each domain by the best cosine similarity to its descriptions."""

    def __init__(self, encoder: Encoder, descriptions_path: Path = _DESCRIPTIONS) -> None:
        descriptions: dict[str, list[str]] = yaml.safe_load(descriptions_path.read_text(encoding="utf-8"))
        unknown = set(descriptions) - set(DOMAINS)
        if unknown:
            raise ValueError(f"{descriptions_path}: unknown domains {sorted(unknown)}")
        self.names = [d for d in DOMAINS if d in descriptions]
        texts = [t for d in self.names for t in descriptions[d]]
        self._owner = np.array([i for i, d in enumerate(self.names) for _ in descriptions[d]])
        self._matrix = encoder.encode(texts)

    def scores(self, embedding: np.ndarray) -> dict[str, float]:
        sims = self._matrix @ np.asarray(embedding, dtype=np.float32)
        best = np.full(len(self.names), -1.0)
        np.maximum.at(best, self._owner, sims)
        return {name: float(best[i]) for i, name in enumerate(self.names)}

    def detect(self, embedding: np.ndarray, margin: float = 0.05) -> list[str]:
        """The top domain, plus any within ``margin`` of it (a message can span two)."""
        scores = self.scores(embedding)
        top = max(scores.values())
        return sorted((d for d, s in scores.items() if s >= top - margin), key=lambda d: -scores[d])
