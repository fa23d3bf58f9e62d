"""Evaluation reports people would rather look at than read: PNG charts and a report.md."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def per_value_f1_png(f1: dict[str, float], path: Path, title: str = "F1 per value") -> Path:
    names = list(f1)
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.barh(names[::-1], [f1[n] for n in names][::-1], color="#4C72B0")
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title)
    macro = sum(f1.values()) / len(f1)
    ax.axvline(macro, color="#C44E52", linestyle="--", label=f"macro-F1 {macro:.3f}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_png(matrix: Sequence[Sequence[int]], labels: Sequence[str], path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("labelled")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > peak / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reliability_png(bins: Sequence[dict[str, Any]], ece: float, path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    ax.plot([b["confidence"] for b in bins], [b["observed"] for b in bins], marker="o", label=f"model (ECE {ece:.3f})")
    for b in bins:
        ax.annotate(
            str(b["count"]), (b["confidence"], b["observed"]), fontsize=7, xytext=(3, 3), textcoords="offset points"
        )
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return "n/a" if value is None else str(value)


def write_report(
    directory: Path,
    title: str,
    metrics: dict[str, Any],
    figures: dict[str, Path],
    worst: Sequence[dict[str, Any]],
) -> Path:
    """report.md: the metrics table, the figures, and the worst cases with their traces."""
    lines = [f"# {title}", "", "| task | metric | value |", "|---|---|---|"]
    for task, values in metrics.items():
        for name, value in values.items():
            if isinstance(value, int | float | type(None)) and not isinstance(value, bool):
                lines.append(f"| {task} | {name} | {_fmt(value)} |")
    lines.append("")
    for caption, figure in figures.items():
        lines += [f"## {caption}", "", f"![{caption}]({figure.name})", ""]
    if worst:
        lines += ["## Worst cases", ""]
        for case in worst:
            lines += [
                f"### {case.get('id')}",
                "",
                "```json",
                json.dumps(case, indent=2, ensure_ascii=False)[:4000],
                "```",
                "",
            ]
    path = directory / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
