"""Embeddings cached per text, so adding rows to a training set embeds only the new ones.

One file per encoder under /tmp/edge-align-cache: text sha256 -> float32 row. Training scripts call
:func:`embed_texts`; nothing at turn time reads this cache.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CACHE_DIR = Path("/tmp/edge-align-cache")


def _key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class TextCache:
    def __init__(self, encoder_name: str, cache_dir: Path = CACHE_DIR) -> None:
        self.path = cache_dir / f"texts-{encoder_name.replace('/', '_')}.npz"
        self.rows: dict[str, np.ndarray] = {}
        if self.path.is_file():
            with np.load(self.path) as data:
                keys, vectors = data["keys"], data["vectors"]
            self.rows = {str(k): v for k, v in zip(keys, vectors, strict=True)}

    def add(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        for text, vector in zip(texts, vectors, strict=True):
            self.rows[_key(text)] = np.asarray(vector, dtype=np.float32)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(list(self.rows))
        vectors = np.stack(list(self.rows.values())) if self.rows else np.zeros((0, 0), np.float32)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, vectors=vectors)
        tmp.replace(self.path)


def embed_texts(texts: Sequence[str], encoder: Any, label: str = "embedding", batch: int = 64) -> np.ndarray:
    """Embeddings of ``texts`` (rows in order), computing only those the cache lacks, with a progress bar."""
    from tqdm import tqdm

    cache = TextCache(str(getattr(encoder, "name", type(encoder).__name__)))
    missing = sorted({t for t in texts if _key(t) not in cache.rows}, key=len)
    if missing:
        for start in tqdm(range(0, len(missing), batch), desc=label, unit="batch", file=sys.stderr):
            chunk = missing[start : start + batch]
            cache.add(chunk, encoder.encode(chunk))
            if (start // batch) % 50 == 49:
                cache.save()  # a long run that is stopped keeps what it embedded
        cache.save()
    return np.stack([cache.rows[_key(t)] for t in texts]).astype(np.float32)


def seed_from(texts: Sequence[str], vectors: np.ndarray, encoder_name: str) -> int:
    """Put already computed rows into the cache (for example from an older whole-list cache file)."""
    cache = TextCache(encoder_name)
    before = len(cache.rows)
    cache.add(texts, vectors)
    cache.save()
    return len(cache.rows) - before
