"""The encoder helpers' logic: the phrasing memo and the serving thread setting (no model loaded)."""

from __future__ import annotations

import pytest

from agent.encoder import EMBEDDING_DIM, MemoEncoder
from agent.onnx_encoder import encoder_threads
from tests.support.encoders import CountingEncoder


def test_each_phrasing_is_embedded_once_and_rows_keep_their_order() -> None:
    inner = CountingEncoder()
    memo = MemoEncoder(inner)
    first = memo.encode(["ab", "abc", "ab"])
    again = memo.encode(["abc", "ab", "abcd"])
    assert inner.seen == ["ab", "abc", "abcd"]
    assert first[0, 2] == 1.0 and first[1, 3] == 1.0 and first[2, 2] == 1.0
    assert again[0, 3] == 1.0 and again[1, 2] == 1.0 and again[2, 4] == 1.0
    assert memo.encode([]).shape == (0, EMBEDDING_DIM)


def test_the_memo_starts_over_instead_of_growing_past_its_bound() -> None:
    inner = CountingEncoder()
    memo = MemoEncoder(inner, max_texts=2)
    memo.encode(["a", "bb"])
    memo.encode(["ccc"])  # over the bound: the old rows go
    memo.encode(["a"])
    assert inner.seen == ["a", "bb", "ccc", "a"]


def test_encoder_threads_default_to_one_and_reject_nonsense() -> None:
    assert encoder_threads({}) == 1
    assert encoder_threads({"EDGE_ALIGN_ENCODER_THREADS": "2"}) == 2
    with pytest.raises(ValueError, match="whole number"):
        encoder_threads({"EDGE_ALIGN_ENCODER_THREADS": "two"})
    with pytest.raises(ValueError, match="at least 1"):
        encoder_threads({"EDGE_ALIGN_ENCODER_THREADS": "0"})
