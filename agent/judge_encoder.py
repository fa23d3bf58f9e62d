"""MiniLM with a fine-tuned twin of its top layers for the judge; the bottom layers run once for both.

The judge reads a different embedding from the rest of the agent: the packaged all-MiniLM-L6-v2
with its top ``n`` transformer layers replaced by copies fine-tuned on the judge's tasks
(agent/training/finetune_judge.py). Norm retrieval, values, conflict and constraint exemplars keep
the packaged model's embedding. Both come out of one forward pass: the shared bottom layers run
once, then the packaged top layers and the tuned ones each run on the same hidden states. Only the
tuned layers are shipped (agent/models/judge_layers.pt, a few MB), loaded over the packaged model.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.encoder import EMBEDDING_DIM

MAX_TOKENS = 256  # all-MiniLM-L6-v2's own limit
LAYERS_FILE = Path(__file__).resolve().parent / "models" / "judge_layers.pt"


def mean_pool(hidden: Any, attention_mask: Any) -> Any:
    """Sentence-transformers' mean pooling, then L2 normalisation (what the packaged model does)."""
    import torch

    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


class SplitRunner:
    """Runs a BERT model up to layer ``split`` and hands over what the layers above need."""

    def __init__(self, transformer: Any, split: int) -> None:
        self.model = transformer  # a transformers BertModel
        self.split = split
        self._captured: dict[str, Any] = {}
        self._active = False  # only this runner's own passes are captured, not the packaged encoder's
        layers = self.model.encoder.layer

        def grab(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if not self._active:
                return
            self._captured["hidden"] = args[0]
            self._captured["mask"] = args[1] if len(args) > 1 else kwargs.get("attention_mask")

        layers[split].register_forward_pre_hook(grab, with_kwargs=True)

    def run(self, features: dict[str, Any]) -> tuple[Any, Any, Any]:
        """(last hidden state of the packaged model, hidden state entering layer ``split``, its mask)."""
        self._captured.clear()
        self._active = True
        try:
            out = self.model(input_ids=features["input_ids"], attention_mask=features["attention_mask"])
        finally:
            self._active = False
        return out.last_hidden_state, self._captured["hidden"], self._captured["mask"]


def run_layers(layers: Any, hidden: Any, mask: Any) -> Any:
    for layer in layers:
        result = layer(hidden, mask)
        hidden = result[0] if isinstance(result, tuple) else result
    return hidden


class JudgeEncoder:
    """Encodes texts into (packaged embedding, judge embedding) rows in one pass."""

    name = "all-MiniLM-L6-v2+judge-layers"

    def __init__(self, sentence_model: Any, tuned_layers: Any, batch_size: int = 64, lock: Any = None) -> None:
        import torch

        self._st = sentence_model
        self._tokenizer = sentence_model.tokenizer
        transformer = sentence_model[0].auto_model
        self.tuned = tuned_layers.eval()
        self.split = len(transformer.encoder.layer) - len(tuned_layers)
        self._runner = SplitRunner(transformer, self.split)
        self._batch_size = batch_size
        # The packaged encoder runs the same torch module: both must hold one lock (it is not thread-safe,
        # and this runner's hook must not see the other's passes).
        self._lock = lock or threading.Lock()
        self._torch = torch

    @classmethod
    def from_files(cls, sentence_model: Any, path: Path, lock: Any = None) -> JudgeEncoder:
        import torch

        saved = torch.load(path, map_location="cpu", weights_only=True)
        n = int(saved["n_layers"])
        layers = copy.deepcopy(sentence_model[0].auto_model.encoder.layer[-n:])
        # Shipped in fp16 (half the size); run in fp32 like the packaged layers.
        layers.load_state_dict({k: v.float() for k, v in saved["state"].items()})
        return cls(sentence_model, layers, lock=lock)

    def encode_pair(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        if not texts:
            empty = np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
            return empty, empty.copy()
        torch = self._torch
        frozen, tuned = [], []
        with self._lock, torch.inference_mode():
            for start in range(0, len(texts), self._batch_size):
                batch = list(texts[start : start + self._batch_size])
                features = self._tokenizer(
                    batch, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
                )
                last, hidden, mask = self._runner.run(features)
                frozen.append(mean_pool(last, features["attention_mask"]).numpy())
                top = run_layers(self.tuned, hidden, mask)
                tuned.append(mean_pool(top, features["attention_mask"]).numpy())
        return np.concatenate(frozen).astype(np.float32), np.concatenate(tuned).astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """The packaged model's embedding (so this encoder can stand in for the plain one)."""
        return self.encode_pair(texts)[0]
