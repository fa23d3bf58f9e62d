"""The norm index on a real Chroma store on disk: incremental indexing, reopening, filtered retrieval."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.encoder import load_encoder
from memory.norm_pack import load_packs, shipped_packs_dir
from memory.norm_store import COLLECTION_NAME, open_norm_store


@pytest.fixture(scope="module")
def packs() -> list:
    return load_packs([shipped_packs_dir()])


def test_index_is_incremental_by_pack_version(tmp_path: Path, packs: list) -> None:
    store = open_norm_store(tmp_path / "index", encoder=load_encoder())
    first = store.index_packs(packs)
    total = sum(len(p.norms) for p in packs)
    assert first.norms_written == total and store.count() == total

    again = store.index_packs(packs)
    assert again.norms_written == 0 and set(again.unchanged) == {p.id for p in packs}

    bumped = packs[0].model_copy(update={"version": packs[0].version + "-test"})
    third = store.index_packs([bumped, *packs[1:]])
    assert third.added == {bumped.id: bumped.version}
    assert third.norms_written == len(bumped.norms)
    assert store.count() == total
    assert store.indexed_versions()[bumped.id] == bumped.version


def test_reopened_store_rebuilds_its_registered_embedding_function(tmp_path: Path, packs: list) -> None:
    open_norm_store(tmp_path / "index", encoder=load_encoder()).index_packs(packs[:1])
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(tmp_path / "index"), settings=Settings(anonymized_telemetry=False))
    collection = client.get_collection(COLLECTION_NAME)  # no embedding function passed: rebuilt from config
    found = collection.query(query_texts=[packs[0].norms[0].text], n_results=1)
    assert found["ids"][0][0] == packs[0].norms[0].id


def test_retrieval_is_filtered_by_community_and_domain(tmp_path: Path, packs: list) -> None:
    encoder = load_encoder()
    store = open_norm_store(tmp_path / "index", encoder=encoder)
    store.index_packs(packs)
    embedding = encoder.encode(["Should I read my teenage daughter's diary?"])[0]
    communities = sorted({p.community for p in packs})
    chosen = communities[:2]
    found = store.query(embedding, communities=chosen, k=10)
    assert found and {n.community for n in found} <= set(chosen)
    assert found == sorted(found, key=lambda n: -n.similarity)
    privacy = store.query(embedding, domains=["privacy"], k=10)
    assert privacy and all("privacy" in n.domains for n in privacy)
    every = store.query(embedding, k=30)
    assert len({n.community for n in every}) >= 3
