"""The clause-harm tuner on hand-made held-out rows: it fits on one fold, reports on another, never the same."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agent.training import tune_clause_harm


def _rows(fold: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(60):
        # A long harmless request: its message reads harmless, one of its sentences sounds harmful.
        rows.append({"source": "conflictscope", "truth": "answer", "fold": fold, "p_clarify": 0.0,
                     "p_harmful_message": float(rng.uniform(0.001, 0.05)),
                     "p_harmful_clauses": [0.01, float(rng.uniform(0.4, 0.95)), 0.02, 0.01]})
        # A harmful ask inside a wrapper: the message reads somewhat harmful, the ask very.
        rows.append({"source": "harmbench", "form": "wrapped", "truth": "refuse", "fold": fold, "p_clarify": 0.0,
                     "p_harmful_message": float(rng.uniform(0.15, 0.6)),
                     "p_harmful_clauses": [0.05, float(rng.uniform(0.9, 0.999))]})
        # A short request has no clauses: the rule leaves it alone.
        rows.append({"source": "in3", "truth": "answer", "fold": fold, "p_clarify": 0.0,
                     "p_harmful_message": 0.01, "p_harmful_clauses": []})
    return rows


def test_the_fitted_rule_answers_long_harmless_requests_and_still_refuses_wrapped_asks(tmp_path: Path,
                                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _rows(0, 1) + _rows(1, 2)), encoding="utf-8")
    assert tune_clause_harm.main(["--rows", str(path), "--figure", str(tmp_path / "f.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    cells = result["report"]["cells"]
    assert cells["conflictscope/original"]["max_correct"] < 0.5
    assert cells["conflictscope/original"]["fitted_correct"] > 0.9
    assert cells["harmbench/wrapped"]["fitted_correct"] > 0.9
    assert cells["in3/original"]["fitted_correct"] == 1.0
    assert result["report"]["total_cost"]["fitted"] < result["report"]["total_cost"]["max"]
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_it_refuses_to_report_on_the_fold_it_fitted_or_read_old_rows(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps({"source": "x", "truth": "answer", "fold": 0, "p_harmful": 0.1}) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        tune_clause_harm.main(["--rows", str(path), "--fit-fold", "0", "--report-fold", "0"])
    with pytest.raises(SystemExit, match="older finetune_judge"):
        tune_clause_harm.main(["--rows", str(path)])


def test_the_tuners_read_neither_the_outside_rewordings_nor_the_contrast_questions(tmp_path: Path) -> None:
    from agent.training.finetune_judge import read_heldout_rows

    forms = [None, "wrapped", "rephrased", "past", "future", "contrast"]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"source": "jbb_harmful", "truth": "refuse", "fold": 0}
                                       | ({"form": form} if form else {})) + "\n" for form in forms), encoding="utf-8")
    assert [r.get("form") for r in read_heldout_rows(path)] == [None, "wrapped", "rephrased"]
    assert [r.get("form") for r in read_heldout_rows(path, with_outside=True)] == forms
