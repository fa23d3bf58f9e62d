"""Multi-label scores for the 20 ValueEval'23 value categories, computed from one message embedding.

Two scorers share one interface: a zero-shot scorer (similarity to the categories' own descriptions)
and a trained scorer (logistic + MLP heads on the frozen MiniLM embedding). Both return calibrated
probabilities in [0, 1] and carry per-value decision thresholds. Their weights live in
``agent/models/values_*.npz`` (plain arrays, no pickle) and are written by
``python -m agent.training.train_values``; at run time the data directory is never needed.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol, TypedDict

import numpy as np

from agent.datasets import dataset_dir
from agent.encoder import EMBEDDING_DIM, Encoder
from agent.values import VALUE_NAMES

MODELS_DIR = Path(__file__).resolve().parent / "models"
ZERO_SHOT_ARTEFACT = MODELS_DIR / "values_zero_shot.npz"
TRAINED_ARTEFACT = MODELS_DIR / "values_trained.npz"
DATASET_NAME = "touche23_valueeval"
CACHE_DIR = Path("/tmp/edge-align-cache")

ScorerKind = Literal["trained", "zero-shot"]
Split = Literal["training", "validation"]


class ValueScorer(Protocol):
    """Embeddings (n, 384) in, calibrated probabilities (n, 20) out, in the order of VALUE_NAMES."""

    @property
    def name(self) -> str: ...

    @property
    def thresholds(self) -> np.ndarray:
        """(20,) decision thresholds on the calibrated probabilities, tuned for F1 on ValueEval validation."""
        ...

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray: ...


class ValueEvalResult(TypedDict):
    """Macro-F1 (mean of the per-value F1), F1 of each value, and the number of arguments scored."""

    macro_f1: float
    f1: dict[str, float]
    n: int


class ValueModelMissingError(FileNotFoundError):
    """The trained artefact has not been built yet."""


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))), dtype=np.float32)


def _as_batch(embeddings: np.ndarray) -> np.ndarray:
    batch = np.asarray(embeddings, dtype=np.float32)
    if batch.ndim == 1:
        batch = batch[None, :]
    if batch.ndim != 2 or batch.shape[1] != EMBEDDING_DIM:
        raise ValueError(f"expected embeddings of shape (n, {EMBEDDING_DIM}), got {batch.shape}")
    return batch


def pool_similarities(
    embeddings: np.ndarray, prototypes: np.ndarray, owner: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Max and mean cosine similarity of each row to the prototypes of each group (owner[j] = group of j)."""
    sims = embeddings @ prototypes.T
    maxima = np.full((len(embeddings), n_groups), -1.0, dtype=np.float32)
    means = np.zeros((len(embeddings), n_groups), dtype=np.float32)
    for group in range(n_groups):
        columns = sims[:, owner == group]
        maxima[:, group] = columns.max(axis=1)
        means[:, group] = columns.mean(axis=1)
    return maxima, means


@dataclass(frozen=True)
class ZeroShotValueScorer:
    """Similarity to each category's description phrases, mapped to 0..1 by a per-value sigmoid.

    The only fitted parameters are three numbers per value (weights of the max and mean similarity and a
    bias, fitted on the training split); the ranking comes from the descriptions alone.
    """

    prototypes: np.ndarray  # (m, 384) embeddings of category / sub-value / example phrases
    prototype_value: np.ndarray  # (m,) index into VALUE_NAMES
    weights: np.ndarray  # (20, 2) weight of (max, mean) similarity
    bias: np.ndarray  # (20,)
    thresholds: np.ndarray  # (20,)
    name: str = "zero-shot"

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        maxima, means = pool_similarities(
            _as_batch(embeddings), self.prototypes, self.prototype_value, len(VALUE_NAMES)
        )
        return _sigmoid(maxima * self.weights[:, 0] + means * self.weights[:, 1] + self.bias)


def trained_features(embeddings: np.ndarray, subvalue_prototypes: np.ndarray) -> np.ndarray:
    """The trained heads' input: the embedding followed by its similarity to each sub-value prototype."""
    return np.concatenate([embeddings, embeddings @ subvalue_prototypes.T], axis=1).astype(np.float32)


@dataclass(frozen=True)
class TrainedValueScorer:
    """Logistic heads and small MLPs on frozen MiniLM features, averaged in logit space, Platt-calibrated."""

    subvalue_prototypes: np.ndarray  # (k, 384)
    logistic_weights: np.ndarray  # (384 + k, 20)
    logistic_bias: np.ndarray  # (20,)
    mlp_hidden_weights: np.ndarray  # (s, 384 + k, h) one slice per MLP seed
    mlp_hidden_bias: np.ndarray  # (s, h)
    mlp_out_weights: np.ndarray  # (s, h, 20)
    mlp_out_bias: np.ndarray  # (s, 20)
    mlp_share: float  # weight of the MLP mean in the logit average
    calibration_slope: np.ndarray  # (20,)
    calibration_intercept: np.ndarray  # (20,)
    thresholds: np.ndarray  # (20,)
    name: str = "trained"

    def raw_logits(self, embeddings: np.ndarray) -> np.ndarray:
        features = trained_features(_as_batch(embeddings), self.subvalue_prototypes)
        logistic = features @ self.logistic_weights + self.logistic_bias
        mlp = np.zeros_like(logistic)
        for seed in range(len(self.mlp_hidden_weights)):
            hidden = np.maximum(features @ self.mlp_hidden_weights[seed] + self.mlp_hidden_bias[seed], 0.0)
            mlp += hidden @ self.mlp_out_weights[seed] + self.mlp_out_bias[seed]
        mlp /= max(len(self.mlp_hidden_weights), 1)
        return np.asarray((1.0 - self.mlp_share) * logistic + self.mlp_share * mlp, dtype=np.float32)

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        return _sigmoid(self.calibration_slope * self.raw_logits(embeddings) + self.calibration_intercept)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def _check_names(arrays: dict[str, np.ndarray], path: Path) -> None:
    names = tuple(str(name) for name in arrays["value_names"])
    if names != VALUE_NAMES:
        raise ValueError(f"{path.name} was trained for other value names: {names}")


@lru_cache(maxsize=2)
def load_value_scorer(kind: ScorerKind = "trained") -> ValueScorer:
    """The shipped scorer of the given kind (loaded once per process)."""
    path = TRAINED_ARTEFACT if kind == "trained" else ZERO_SHOT_ARTEFACT
    if kind not in ("trained", "zero-shot"):
        raise ValueError(f"unknown value scorer kind {kind!r}: use 'trained' or 'zero-shot'")
    if not path.is_file():
        raise ValueModelMissingError(
            f"value model artefact {path} is missing: run `make train` "
            "(or `python -m agent.training.train_values`) to build it from the ValueEval data."
        )
    arrays = _load_npz(path)
    _check_names(arrays, path)
    f32 = {key: value.astype(np.float32) for key, value in arrays.items() if value.dtype.kind == "f"}
    if kind == "zero-shot":
        return ZeroShotValueScorer(
            prototypes=f32["prototypes"],
            prototype_value=arrays["prototype_value"].astype(np.int64),
            weights=f32["weights"],
            bias=f32["bias"],
            thresholds=f32["thresholds"],
        )
    return TrainedValueScorer(
        subvalue_prototypes=f32["subvalue_prototypes"],
        logistic_weights=f32["logistic_weights"],
        logistic_bias=f32["logistic_bias"],
        mlp_hidden_weights=f32["mlp_hidden_weights"],
        mlp_hidden_bias=f32["mlp_hidden_bias"],
        mlp_out_weights=f32["mlp_out_weights"],
        mlp_out_bias=f32["mlp_out_bias"],
        mlp_share=float(arrays["mlp_share"]),
        calibration_slope=f32["calibration_slope"],
        calibration_intercept=f32["calibration_intercept"],
        thresholds=f32["thresholds"],
    )


def active_values(probs: np.ndarray, scorer: ValueScorer) -> list[str]:
    """Names of the values whose probability reaches the scorer's threshold, most probable first."""
    row = np.asarray(probs, dtype=np.float32).reshape(-1)
    if row.shape[0] != len(VALUE_NAMES):
        raise ValueError(f"expected one row of {len(VALUE_NAMES)} probabilities, got shape {probs.shape}")
    order = np.argsort(-row, kind="stable")
    return [VALUE_NAMES[i] for i in order if row[i] >= scorer.thresholds[i]]


# --- the ValueEval data, shared by the evaluation below and the training script ---------------------


@dataclass(frozen=True)
class ValueEvalSplit:
    """One split: argument ids, texts and the (n, 20) 0/1 label matrix in the order of VALUE_NAMES."""

    ids: list[str]
    conclusions: list[str]
    stances: list[str]
    premises: list[str]
    labels: np.ndarray


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def read_valueeval_split(split: Split, data_dir: str | Path | None = None) -> ValueEvalSplit:
    """Arguments and labels of one split, joined on the argument id."""
    folder = dataset_dir(DATASET_NAME, data_dir)
    arguments = _read_tsv(folder / f"arguments-{split}.tsv")
    labels_by_id = {row["Argument ID"]: row for row in _read_tsv(folder / f"labels-{split}.tsv")}
    labels = np.array(
        [[int(labels_by_id[row["Argument ID"]][name]) for name in VALUE_NAMES] for row in arguments],
        dtype=np.int8,
    )
    return ValueEvalSplit(
        ids=[row["Argument ID"] for row in arguments],
        conclusions=[row["Conclusion"] for row in arguments],
        stances=[row["Stance"] for row in arguments],
        premises=[row["Premise"] for row in arguments],
        labels=labels,
    )


def embed_cached(
    texts: Sequence[str], encoder: Encoder, progress: bool = True, label: str = "embedding"
) -> np.ndarray:
    """Embeddings of ``texts``, cached under /tmp/edge-align-cache by encoder and content hash."""
    digest = hashlib.sha256(type(encoder).__name__.encode())
    digest.update(str(getattr(encoder, "name", "")).encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    cache_file = CACHE_DIR / f"{label.replace(' ', '_')}-{len(texts)}-{digest.hexdigest()[:16]}.npy"
    if cache_file.is_file():
        return np.load(cache_file)
    from tqdm import tqdm

    batch_size = 64
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc=label, unit="batch", disable=not progress):
        chunks.append(encoder.encode(list(texts[start : start + batch_size])))
    vectors = np.concatenate(chunks) if chunks else np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    np.save(cache_file, vectors)
    return vectors


def per_value_f1(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """F1 of each column (0 where a value has neither gold nor predicted positives)."""
    true_pos = (labels & predictions).sum(axis=0).astype(np.float64)
    denominator = labels.sum(axis=0) + predictions.sum(axis=0)
    return np.divide(2 * true_pos, denominator, out=np.zeros(labels.shape[1]), where=denominator > 0)


def evaluate_on_valueeval(
    scorer: ValueScorer,
    split: Split,
    data_dir: str | Path | None = None,
    encoder: Encoder | None = None,
    progress: bool = True,
    limit: int | None = None,
) -> ValueEvalResult:
    """Macro-F1 (mean of the 20 per-value F1) of ``scorer`` on the premises of one ValueEval split.

    ``limit`` keeps only the first rows (for quick checks).
    """
    data = read_valueeval_split(split, data_dir)
    premises, labels = data.premises[:limit], data.labels[:limit]
    if encoder is None:
        from agent.encoder import load_encoder

        encoder = load_encoder()
    embeddings = embed_cached(premises, encoder, progress=progress, label=f"valueeval-{split}")
    predictions = (scorer.predict_proba(embeddings) >= scorer.thresholds).astype(np.int8)
    scores = per_value_f1(labels.astype(np.int8), predictions)
    return {
        "macro_f1": float(scores.mean()),
        "f1": {name: float(score) for name, score in zip(VALUE_NAMES, scores, strict=True)},
        "n": len(premises),
    }


def load_value_categories(data_dir: str | Path | None = None) -> dict[str, dict[str, list[str]]]:
    """value-categories.json: category -> sub-value -> example phrases (training time only)."""
    path = dataset_dir(DATASET_NAME, data_dir) / "value-categories.json"
    categories: dict[str, dict[str, list[str]]] = json.loads(path.read_text(encoding="utf-8"))
    if tuple(categories) != VALUE_NAMES:
        raise ValueError(f"{path} lists other categories than VALUE_NAMES")
    return categories
