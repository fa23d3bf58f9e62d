"""Train the two value scorers from Touché23-ValueEval and write agent/models/values_*.npz.

    python -m agent.training.train_values [--data DIR]

Which data touches what (the held-out number below relies on it):
- TRAINING split: every weight, the zero-shot sigmoids, the Platt calibration (fitted on out-of-fold
  predictions of a 5-fold cross-validation) and the choice of hyperparameters (out-of-fold macro-F1).
- VALIDATION split: only the 20 per-value decision thresholds. To estimate generalisation the script also
  tunes thresholds on one half of validation and scores the other half, which nothing else has seen.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.encoder import load_encoder
from agent.metrics import best_f1_thresholds, column_f1, expected_calibration_error, macro_f1_at, split_half_macro_f1
from agent.value_model import (
    MODELS_DIR,
    TRAINED_ARTEFACT,
    ZERO_SHOT_ARTEFACT,
    TrainedValueScorer,
    ZeroShotValueScorer,
    embed_cached,
    load_value_categories,
    pool_similarities,
    read_valueeval_split,
    trained_features,
)
from agent.values import VALUE_NAMES

REPORT_FILE = MODELS_DIR / "values_report.json"
FIGURE_FILE = MODELS_DIR.parent.parent / "docs" / "figures" / "value_f1.png"
N_VALUES = len(VALUE_NAMES)
THRESHOLD_GRID = np.round(np.arange(0.02, 0.91, 0.01), 2)
ECE_BINS = 15


@dataclass(frozen=True)
class TrainingConfig:
    """Hyperparameters; the defaults are the ones chosen by out-of-fold macro-F1 on TRAINING."""

    folds: int = 5
    logistic_epochs: int = 20
    logistic_learning_rate: float = 3e-4
    mlp_hidden: int = 256
    mlp_epochs: int = 30
    mlp_dropout: float = 0.5
    mlp_seeds: int = 3
    weight_decay: float = 1e-2
    mlp_learning_rate: float = 1e-3
    mlp_shares: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # the one with the best OOF F1 is used
    # The sub-value descriptions as extra positive training rows: measured 0.458 vs 0.463 without (one
    # exploratory run read on validation), so off.
    description_examples: bool = False
    seed: int = 13


# --- descriptions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Descriptions:
    """The phrases of value-categories.json with the category and sub-value each belongs to."""

    texts: list[str]
    value_index: np.ndarray  # (m,)
    subvalue_index: np.ndarray  # (m,)
    subvalue_names: list[str]


def description_phrases(categories: dict[str, dict[str, list[str]]]) -> Descriptions:
    """Category name, each sub-value name, and each example phrase ("it is good because it is ...")."""
    texts: list[str] = []
    value_index: list[int] = []
    subvalue_index: list[int] = []
    subvalue_names: list[str] = []
    for value, (category, subvalues) in enumerate(categories.items()):
        for subvalue, examples in subvalues.items():
            sub = len(subvalue_names)
            subvalue_names.append(f"{category} / {subvalue}")
            for text in [category, subvalue, *examples]:
                texts.append(text)
                value_index.append(value)
                subvalue_index.append(sub)
    return Descriptions(texts, np.array(value_index), np.array(subvalue_index), subvalue_names)


def subvalue_prototypes(description_embeddings: np.ndarray, descriptions: Descriptions) -> np.ndarray:
    """One unit vector per sub-value: the normalised mean of its name and example phrases."""
    rows = []
    for sub in range(len(descriptions.subvalue_names)):
        mean = description_embeddings[descriptions.subvalue_index == sub].mean(axis=0)
        rows.append(mean / np.linalg.norm(mean))
    return np.stack(rows).astype(np.float32)


# --- thresholds -------------------------------------------------------------------------------------------


def tune_thresholds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per value, the grid threshold with the highest F1 on (probs, labels)."""
    return best_f1_thresholds(probs, labels, THRESHOLD_GRID)


# --- zero-shot -------------------------------------------------------------------------------------------


def fit_zero_shot(
    description_embeddings: np.ndarray, descriptions: Descriptions, train_x: np.ndarray, train_y: np.ndarray
) -> ZeroShotValueScorer:
    """Per value, a sigmoid over (max, mean) similarity to its phrases, fitted on TRAINING."""
    from sklearn.linear_model import LogisticRegression

    maxima, means = pool_similarities(train_x, description_embeddings, descriptions.value_index, N_VALUES)
    weights = np.zeros((N_VALUES, 2), dtype=np.float32)
    bias = np.zeros(N_VALUES, dtype=np.float32)
    for value in range(N_VALUES):
        features = np.stack([maxima[:, value], means[:, value]], axis=1)
        model = LogisticRegression(C=100.0, max_iter=1000).fit(features, train_y[:, value])
        weights[value], bias[value] = model.coef_[0], model.intercept_[0]
    return ZeroShotValueScorer(
        prototypes=description_embeddings.astype(np.float32),
        prototype_value=descriptions.value_index,
        weights=weights,
        bias=bias,
        thresholds=np.full(N_VALUES, 0.5, dtype=np.float32),
    )


# --- trained heads ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Heads:
    """Weights of one fit on raw features: a linear (logistic) layer and a few MLP seeds."""

    logistic_weights: np.ndarray
    logistic_bias: np.ndarray
    hidden_weights: np.ndarray
    hidden_bias: np.ndarray
    out_weights: np.ndarray
    out_bias: np.ndarray

    def logits(self, features: np.ndarray, mlp_share: float) -> np.ndarray:
        logistic = features @ self.logistic_weights + self.logistic_bias
        mlp = np.mean(
            [
                np.maximum(features @ w1 + b1, 0.0) @ w2 + b2
                for w1, b1, w2, b2 in zip(
                    self.hidden_weights, self.hidden_bias, self.out_weights, self.out_bias, strict=True
                )
            ],
            axis=0,
        )
        return np.asarray((1 - mlp_share) * logistic + mlp_share * mlp, dtype=np.float32)


def _fit_network(
    features: np.ndarray,
    labels: np.ndarray,
    hidden: int,
    epochs: int,
    learning_rate: float,
    weight_decay: float,
    dropout: float,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Multi-label BCE (positive weights sqrt(neg/pos) against the imbalance), AdamW, batches of 64.

    ``hidden == 0`` is one linear layer (a logistic head per value); otherwise one ReLU hidden layer.
    Returns the (weight, bias) of each linear layer, weights as (inputs, outputs).
    """
    import torch

    torch.manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    y = torch.from_numpy(labels.astype(np.float32))
    positives = y.sum(dim=0).clamp(min=1.0)
    pos_weight = ((len(y) - positives) / positives).sqrt()
    layers: list[torch.nn.Module]
    if hidden:
        layers = [
            torch.nn.Dropout(0.1),
            torch.nn.Linear(features.shape[1], hidden),
            torch.nn.ReLU(),
            torch.nn.Dropout(dropout),
            torch.nn.Linear(hidden, N_VALUES),
        ]
    else:
        layers = [torch.nn.Linear(features.shape[1], N_VALUES)]
    model = torch.nn.Sequential(*layers)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimiser.zero_grad()
            loss_fn(model(x[batch]), y[batch]).backward()
            optimiser.step()
    return [
        (layer.weight.detach().numpy().T.copy(), layer.bias.detach().numpy().copy())
        for layer in model
        if isinstance(layer, torch.nn.Linear)
    ]


def fit_logistic(
    features: np.ndarray, labels: np.ndarray, config: TrainingConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Linear heads trained on standardised features; the standardisation is folded into the weights."""
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    [(weights, bias)] = _fit_network(
        (features - mean) / scale,
        labels,
        hidden=0,
        epochs=config.logistic_epochs,
        learning_rate=config.logistic_learning_rate,
        weight_decay=config.weight_decay,
        dropout=0.0,
        seed=config.seed,
    )
    folded = weights / scale[:, None]
    return folded.astype(np.float32), (bias - mean @ folded).astype(np.float32)


def fit_heads(features: np.ndarray, labels: np.ndarray, config: TrainingConfig) -> Heads:
    logistic_weights, logistic_bias = fit_logistic(features, labels, config)
    # The MLP sees the raw features: measured worse on standardised ones (it overfits faster).
    mlps = [
        _fit_network(
            features,
            labels,
            hidden=config.mlp_hidden,
            epochs=config.mlp_epochs,
            learning_rate=config.mlp_learning_rate,
            weight_decay=config.weight_decay,
            dropout=config.mlp_dropout,
            seed=config.seed + s,
        )
        for s in range(config.mlp_seeds)
    ]
    return Heads(
        logistic_weights,
        logistic_bias,
        np.stack([m[0][0] for m in mlps]),
        np.stack([m[0][1] for m in mlps]),
        np.stack([m[1][0] for m in mlps]),
        np.stack([m[1][1] for m in mlps]),
    )


@dataclass(frozen=True)
class TrainingSet:
    """Features of the training arguments, their topic groups, and the description rows as extra examples."""

    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray  # conclusion of each argument: validation shares no conclusion with training
    extra_features: np.ndarray
    extra_labels: np.ndarray

    def fit_rows(self, rows: np.ndarray, config: TrainingConfig) -> tuple[np.ndarray, np.ndarray]:
        if not config.description_examples:
            return self.features[rows], self.labels[rows]
        return (
            np.concatenate([self.features[rows], self.extra_features]),
            np.concatenate([self.labels[rows], self.extra_labels]),
        )


def out_of_fold_logits(
    data: TrainingSet, config: TrainingConfig, log: Callable[[str], None]
) -> dict[float, np.ndarray]:
    """Cross-validated logits on TRAINING for every MLP share (heads fitted once per fold).

    Folds are grouped by conclusion, as the validation split is: random folds leak near-duplicate
    premises of one topic and overstate F1 (0.51 out-of-fold vs 0.44 on validation, measured).
    """
    from sklearn.model_selection import GroupKFold

    oof = {share: np.zeros(data.labels.shape, dtype=np.float32) for share in config.mlp_shares}
    folds = GroupKFold(config.folds).split(data.features, groups=data.groups)
    for fold, (fit_rows, held_rows) in enumerate(folds, start=1):
        started = time.perf_counter()
        heads = fit_heads(*data.fit_rows(fit_rows, config), config)
        for share in config.mlp_shares:
            oof[share][held_rows] = heads.logits(data.features[held_rows], share)
        log(f"  fold {fold}/{config.folds} fitted in {time.perf_counter() - started:.0f} s")
    return oof

def fit_platt(logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per value, p = sigmoid(a * logit + b), fitted on out-of-fold logits (nearly unregularised)."""
    from sklearn.linear_model import LogisticRegression

    slope = np.zeros(N_VALUES, dtype=np.float32)
    intercept = np.zeros(N_VALUES, dtype=np.float32)
    for value in range(N_VALUES):
        model = LogisticRegression(C=1e4, max_iter=1000).fit(logits[:, [value]], labels[:, value])
        slope[value], intercept[value] = model.coef_[0, 0], model.intercept_[0]
    return slope, intercept


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))), dtype=np.float32)


# --- the whole run ---------------------------------------------------------------------------------------


def _value_names_array() -> np.ndarray:
    return np.array(VALUE_NAMES)


def _scorer_metrics(probs: np.ndarray, labels: np.ndarray, thresholds: np.ndarray, seed: int) -> dict:
    return {
        "validation_macro_f1": macro_f1_at(probs, labels, thresholds),
        "validation_f1": dict(
            zip(VALUE_NAMES, column_f1(labels, (probs >= thresholds).astype(np.int8)).tolist(), strict=True)
        ),
        "validation_macro_f1_at_0.5": macro_f1_at(probs, labels, np.full(N_VALUES, 0.5)),
        "held_out_half": split_half_macro_f1(probs, labels, THRESHOLD_GRID, seed),
        "validation_ece": expected_calibration_error(labels, probs, bins=ECE_BINS),
        "validation_mean_prob": float(probs.mean()),
        "validation_label_rate": float(labels.mean()),
        "thresholds": thresholds.tolist(),
    }


def train(data_dir: str | None, config: TrainingConfig, out_dir: Path = MODELS_DIR) -> dict:
    import torch

    torch.set_num_threads(1)  # the machine is shared: one core for this job
    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", flush=True)

    log("reading Touché23-ValueEval")
    categories = load_value_categories(data_dir)
    train_split = read_valueeval_split("training", data_dir)
    val_split = read_valueeval_split("validation", data_dir)
    train_y, val_y = train_split.labels.astype(np.int8), val_split.labels.astype(np.int8)
    log(f"{len(train_y)} training and {len(val_y)} validation arguments")

    encoder = load_encoder()
    descriptions = description_phrases(categories)
    description_x = embed_cached(descriptions.texts, encoder, label="valueeval-descriptions")
    train_x = embed_cached(train_split.premises, encoder, label="valueeval-training")
    val_x = embed_cached(val_split.premises, encoder, label="valueeval-validation")
    log(f"embedded premises and {len(descriptions.texts)} description phrases")

    log("zero-shot: fitting per-value sigmoids on TRAINING, thresholds on VALIDATION")
    zero_shot = fit_zero_shot(description_x, descriptions, train_x, train_y)
    zero_val = zero_shot.predict_proba(val_x)
    zero_shot = ZeroShotValueScorer(
        prototypes=zero_shot.prototypes,
        prototype_value=zero_shot.prototype_value,
        weights=zero_shot.weights,
        bias=zero_shot.bias,
        thresholds=tune_thresholds(zero_val, val_y),
    )
    zero_metrics = _scorer_metrics(zero_val, val_y, zero_shot.thresholds, config.seed)
    log(f"zero-shot validation macro-F1 {zero_metrics['validation_macro_f1']:.3f}")

    prototypes = subvalue_prototypes(description_x, descriptions)
    train_features = trained_features(train_x, prototypes)
    extra_y = np.zeros((len(descriptions.texts), N_VALUES), dtype=np.int8)
    extra_y[np.arange(len(extra_y)), descriptions.value_index] = 1
    data = TrainingSet(
        features=train_features,
        labels=train_y,
        groups=np.array(train_split.conclusions),
        extra_features=trained_features(description_x, prototypes),
        extra_labels=extra_y,
    )
    log(f"trained: {config.folds}-fold cross-validation on TRAINING (features {train_features.shape[1]})")
    oof = out_of_fold_logits(data, config, log)
    oof_f1 = {
        share: macro_f1_at(_sigmoid(logits), train_y, tune_thresholds(_sigmoid(logits), train_y))
        for share, logits in oof.items()
    }
    for share, f1 in oof_f1.items():
        log(f"  out-of-fold macro-F1 with MLP share {share:.2f}: {f1:.3f}")
    mlp_share = max(oof_f1, key=lambda share: oof_f1[share])
    slope, intercept = fit_platt(oof[mlp_share], train_y)
    log(f"Platt calibration fitted on out-of-fold logits; fitting the final heads (MLP share {mlp_share})")
    heads = fit_heads(*data.fit_rows(np.arange(len(train_y)), config), config)
    trained = TrainedValueScorer(
        subvalue_prototypes=prototypes,
        logistic_weights=heads.logistic_weights,
        logistic_bias=heads.logistic_bias,
        mlp_hidden_weights=heads.hidden_weights,
        mlp_hidden_bias=heads.hidden_bias,
        mlp_out_weights=heads.out_weights,
        mlp_out_bias=heads.out_bias,
        mlp_share=mlp_share,
        calibration_slope=slope,
        calibration_intercept=intercept,
        thresholds=np.full(N_VALUES, 0.5, dtype=np.float32),
    )
    trained_val = trained.predict_proba(val_x)
    thresholds = tune_thresholds(trained_val, val_y)
    trained_metrics = _scorer_metrics(trained_val, val_y, thresholds, config.seed)
    trained_metrics["train_out_of_fold_macro_f1_by_mlp_share"] = {str(k): v for k, v in oof_f1.items()}
    trained_metrics["mlp_share"] = mlp_share
    log(f"trained validation macro-F1 {trained_metrics['validation_macro_f1']:.3f}")

    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out_dir / ZERO_SHOT_ARTEFACT.name,
        value_names=_value_names_array(),
        prototypes=zero_shot.prototypes,
        prototype_value=zero_shot.prototype_value.astype(np.int16),
        weights=zero_shot.weights,
        bias=zero_shot.bias,
        thresholds=zero_shot.thresholds,
    )
    np.savez_compressed(
        out_dir / TRAINED_ARTEFACT.name,
        value_names=_value_names_array(),
        subvalue_prototypes=prototypes,
        logistic_weights=trained.logistic_weights,
        logistic_bias=trained.logistic_bias,
        mlp_hidden_weights=trained.mlp_hidden_weights,
        mlp_hidden_bias=trained.mlp_hidden_bias,
        mlp_out_weights=trained.mlp_out_weights,
        mlp_out_bias=trained.mlp_out_bias,
        mlp_share=np.float32(trained.mlp_share),
        calibration_slope=slope,
        calibration_intercept=intercept,
        thresholds=thresholds,
    )
    seconds = time.perf_counter() - started
    report = {
        "command": "python -m agent.training.train_values",
        "config": config.__dict__,
        "zero_shot": zero_metrics,
        "trained": trained_metrics,
        "training_seconds": round(seconds, 1),
        "n_training": len(train_y),
        "n_validation": len(val_y),
        "n_description_phrases": len(descriptions.texts),
        "n_subvalues": len(descriptions.subvalue_names),
    }
    (out_dir / REPORT_FILE.name).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log("wrote " + ", ".join(p.name for p in (ZERO_SHOT_ARTEFACT, TRAINED_ARTEFACT, REPORT_FILE)))
    return report


def plot_per_value_f1(report: dict, path: Path) -> None:
    """Bar chart of the validation F1 of each value for both scorers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = np.arange(N_VALUES)
    figure, axes = plt.subplots(figsize=(11, 4.5))
    for offset, kind in ((-0.2, "zero_shot"), (0.2, "trained")):
        metrics = report[kind]
        scores = [metrics["validation_f1"][name] for name in VALUE_NAMES]
        label = f"{kind.replace('_', '-')} (macro {metrics['validation_macro_f1']:.3f})"
        axes.bar(positions + offset, scores, width=0.4, label=label)
    axes.set_xticks(positions, VALUE_NAMES, rotation=60, ha="right", fontsize=8)
    axes.set_ylabel("F1 on ValueEval validation")
    axes.set_title("Value categories: F1 per value (thresholds tuned on validation)")
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _print_summary(report: dict) -> None:
    for kind in ("zero_shot", "trained"):
        metrics = report[kind]
        print(
            f"{kind:>9}: validation macro-F1 {metrics['validation_macro_f1']:.3f} "
            f"(thresholds tuned on validation) | held-out half {metrics['held_out_half']['mean']:.3f} "
            f"(thresholds from the other half) | at 0.5 {metrics['validation_macro_f1_at_0.5']:.3f} "
            f"| ECE {metrics['validation_ece']:.3f}"
        )
    print(f"training took {report['training_seconds']:.0f} s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=None, help="data directory holding touche23_valueeval/")
    parser.add_argument("--out", default=str(MODELS_DIR), help="where to write the artefacts")
    parser.add_argument("--figure", default=str(FIGURE_FILE), help="per-value F1 chart ('' for none)")
    args = parser.parse_args(argv)
    report = train(args.data, TrainingConfig(), Path(args.out))
    if args.figure:
        plot_per_value_f1(report, Path(args.figure))
    _print_summary(report)


if __name__ == "__main__":
    main()
