"""FixedTextCache: fixed texts are embedded once per installation, keyed by model and texts (no model loaded)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from agent.embedding_cache import FixedTextCache
from agent.encoder import EMBEDDING_DIM
from agent.install_cache import content_key, install_cache_dir
from tests.support.encoders import CountingEncoder


class RefusingEncoder:
    name = "model-a"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise AssertionError(f"asked to embed {list(texts)}: these rows should have come from disk")


def test_rows_are_computed_once_and_read_back_by_a_new_cache(tmp_path: Path) -> None:
    counting = CountingEncoder()
    first = FixedTextCache(counting, tmp_path).encode(["ab", "abc"])
    again = FixedTextCache(RefusingEncoder(), tmp_path).encode(["ab", "abc"])  # a later process
    assert counting.seen == ["ab", "abc"]
    assert np.array_equal(first, again) and again.dtype == np.float32
    assert FixedTextCache(counting, tmp_path).encode([]).shape == (0, EMBEDDING_DIM)


def test_other_texts_or_another_model_are_embedded_afresh(tmp_path: Path) -> None:
    FixedTextCache(CountingEncoder(), tmp_path).encode(["ab", "abc"])
    edited, other_model = CountingEncoder(), CountingEncoder(name="model-b")
    FixedTextCache(edited, tmp_path).encode(["ab", "abcd"])
    FixedTextCache(other_model, tmp_path).encode(["ab", "abc"])
    assert edited.seen == ["ab", "abcd"] and other_model.seen == ["ab", "abc"]


def test_a_damaged_or_misshapen_file_is_recomputed_not_trusted(tmp_path: Path) -> None:
    cache = FixedTextCache(CountingEncoder(), tmp_path)
    path = cache.path_for(["ab"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an npy file")
    counting = CountingEncoder()
    rows = FixedTextCache(counting, tmp_path).encode(["ab"])
    assert counting.seen == ["ab"] and rows[0, 2] == 1.0
    np.save(path, np.zeros((3, 7), dtype=np.float32))  # a file of the wrong shape
    counting = CountingEncoder()
    FixedTextCache(counting, tmp_path).encode(["ab"])
    assert counting.seen == ["ab"]


def test_content_keys_separate_parts_and_the_cache_dir_follows_the_environment(tmp_path: Path) -> None:
    assert content_key(["ab", "c"]) != content_key(["a", "bc"])
    assert content_key([b"x"]) == content_key(["x"])
    assert install_cache_dir({"EDGE_ALIGN_CACHE_DIR": str(tmp_path)}) == tmp_path


@pytest.mark.parametrize("texts", [["only one"], [f"text {i}" * (i % 5 + 1) for i in range(300)]])
def test_rows_keep_the_order_of_the_texts(tmp_path: Path, texts: list[str]) -> None:
    rows = FixedTextCache(CountingEncoder(), tmp_path).encode(texts)
    assert [int(np.argmax(row)) for row in rows] == [len(t) % EMBEDDING_DIM for t in texts]
