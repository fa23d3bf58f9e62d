"""Embeddings of fixed texts (exemplars, domain descriptions, question banks), computed once per installation.

Every process used to embed the same few thousand texts again before its first answer. The rows
are kept as one ``.npy`` file per text set, named by a key of the model and the texts themselves,
so an edited exemplar or a new dataset version is embedded afresh and nothing stale is ever read.
The key names the model, not the runtime: the ONNX and torch encoders give the same rows within
1e-4 (agent/encoder_export.py checks it), so either may fill the cache for the other.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from agent.encoder import EMBEDDING_DIM, Encoder
from agent.install_cache import content_key, install_cache_dir

# Below this many texts to compute, no progress bar: it would flash by.
_PROGRESS_FROM = 256
_BATCH = 128


def model_identity(encoder: Encoder | None) -> str:
    """The model an encoder runs (its ``name``); None stands for the packaged MiniLM, loaded only if needed."""
    if encoder is None:
        from agent.encoder import MiniLMEncoder

        return MiniLMEncoder.name
    return str(getattr(encoder, "name", "") or type(encoder).__qualname__)


class FixedTextCache:
    """An Encoder for texts that do not change between processes; rows are read from disk when known.

    Only for fixed sets: a turn's own text is new every time and belongs to the analysis pass.
    """

    def __init__(
        self,
        encoder: Encoder | None = None,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        self._encoder = encoder
        self.directory = Path(directory) if directory else install_cache_dir() / "embeddings"
        self.name = model_identity(encoder)

    def path_for(self, texts: Sequence[str]) -> Path:
        return self.directory / f"{content_key([self.name, *texts], length=24)}.npy"

    def encode(self, texts: Sequence[str], label: str = "embedding") -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        path = self.path_for(texts)
        if path.is_file():
            try:
                rows = np.load(path)
            except (OSError, ValueError):
                rows = None  # a damaged file is recomputed, not trusted
            if rows is not None and rows.shape == (len(texts), EMBEDDING_DIM):
                return rows.astype(np.float32, copy=False)
        rows = self._compute(texts, label)
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.stem}.{os.getpid()}.partial.npy")
        np.save(partial, rows)
        partial.replace(path)  # atomic: a concurrent reader never sees half a file
        return rows

    def _compute(self, texts: Sequence[str], label: str) -> np.ndarray:
        if self._encoder is None:
            from agent.encoder import load_encoder

            self._encoder = load_encoder()
        starts: Iterable[int] = range(0, len(texts), _BATCH)
        if len(texts) >= _PROGRESS_FROM:
            from tqdm import tqdm

            starts = tqdm(starts, desc=label, unit="batch", file=sys.stderr)
        rows = [self._encoder.encode(list(texts[i : i + _BATCH])) for i in starts]
        return np.vstack(rows).astype(np.float32)
