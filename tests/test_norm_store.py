"""The norm index on a real Chroma store on disk: incremental indexing, reopening, filtered retrieval.

Retrieval is checked against a brute-force top-k over the shipped packs' real MiniLM embeddings:
the per-community layout and the domain filter on over-fetched ids must give exactly the norms a
search over every norm, filtered first, would give.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chromadb
import numpy as np
import pytest
from chromadb.api.models.Collection import Collection
from chromadb.config import Settings

from agent.encoder import Encoder, load_encoder
from memory import norm_store
from memory.norm_pack import NormPack, load_packs, shipped_packs_dir
from memory.norm_store import (
    ALL_NORMS_COLLECTION,
    LEGACY_COLLECTION_NAME,
    community_collection_name,
    norm_id_of,
    open_norm_store,
)

MESSAGES = (
    "Should I read my teenage daughter's diary?",
    "Can I use my mother's bank card to pay her bills while she is in hospital?",
    "My boss asked me to keep quiet about a safety problem at the factory.",
    "Is it okay to use AI to write my university essay?",
    "Is euthanasia morally acceptable?",
)
# Ties are real: parallel norms of several communities share their text, hence their vector.
TIE = 1e-4


@pytest.fixture(scope="module")
def packs() -> list[NormPack]:
    return load_packs([shipped_packs_dir()])


class RememberingEncoder:
    """The real MiniLM, keeping each text's vector: every test indexes the same shipped norms."""

    def __init__(self, model: Encoder) -> None:
        self._model = model
        self._vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if new:
            self._vectors.update(zip(new, self._model.encode(new), strict=True))
        return np.stack([self._vectors[t] for t in texts]) if texts else self._model.encode([])


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return RememberingEncoder(load_encoder())


def raw_client(path: Path) -> chromadb.ClientAPI:
    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def collection_names(path: Path) -> set[str]:
    return {c.name for c in raw_client(path).list_collections()}


def test_index_is_incremental_by_pack_version(tmp_path: Path, packs: list[NormPack], encoder: Encoder) -> None:
    store = open_norm_store(tmp_path / "index", encoder=encoder)
    first = store.index_packs(packs)
    total = sum(len(p.norms) for p in packs)
    assert first.norms_written == total and store.count() == total
    assert store.communities() == sorted({p.community for p in packs})
    assert collection_names(tmp_path / "index") == {ALL_NORMS_COLLECTION} | {
        community_collection_name(p.community) for p in packs
    }

    again = store.index_packs(packs)
    assert again.norms_written == 0 and set(again.unchanged) == {p.id for p in packs}

    bumped = packs[0].model_copy(update={"version": packs[0].version + "-test"})
    third = store.index_packs([bumped, *packs[1:]])
    assert third.added == {bumped.id: bumped.version}
    assert third.norms_written == len(bumped.norms)
    assert store.count() == total
    assert store.indexed_versions()[bumped.id] == bumped.version

    reopened = open_norm_store(tmp_path / "index", encoder=encoder)  # versions are read back from Chroma
    assert reopened.indexed_versions() == {bumped.id: bumped.version} | {p.id: p.version for p in packs[1:]}


def test_reopened_store_rebuilds_its_registered_embedding_function(
    tmp_path: Path, packs: list[NormPack], encoder: Encoder
) -> None:
    open_norm_store(tmp_path / "index", encoder=encoder).index_packs(packs[:1])
    collection = raw_client(tmp_path / "index").get_collection(ALL_NORMS_COLLECTION)  # no function passed
    found = collection.query(query_texts=[packs[0].norms[0].text], n_results=1)
    assert norm_id_of(found["ids"][0][0]) == packs[0].norms[0].id


def test_retrieval_is_filtered_by_community_and_domain(tmp_path: Path, packs: list[NormPack], encoder: Encoder) -> None:
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
    assert store.query(embedding, communities=["no-such-community"], k=5) == []


def filter_cases(packs: list[NormPack]) -> list[tuple[list[str], list[str], int]]:
    """Community and domain filters, including ones that match fewer norms than k (the fallback)."""
    communities = sorted({p.community for p in packs})
    # The rarest domain of each community: in most, fewer than k of its norms carry it.
    rare: dict[str, str] = {}
    for pack in packs:
        tally = Counter(d for n in pack.norms for d in n.domains)
        rare[pack.community] = min(tally, key=lambda d: (tally[d], d))
    cases: list[tuple[list[str], list[str], int]] = [
        ([], [], 12),
        ([], ["education"], 12),
        (["parents"], [], 12),
        (["parents", "privacy-first"], ["education"], 12),
        (["workplace"], ["parenting", "relationships"], 12),
        (["money-advice", "medical-ethics", "general-public"], ["health"], 20),
        (communities, ["technology"], 30),
    ]
    cases += [([c], [rare[c]], 12) for c in communities]
    return cases


@pytest.mark.parametrize("first_fetch", ["as configured", "only k, so that more must be fetched"])
def test_filtered_retrieval_equals_a_brute_force_top_k(
    tmp_path: Path, packs: list[NormPack], encoder: Encoder, first_fetch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_norm_store(tmp_path / "index", encoder=encoder)
    store.index_packs(packs)
    fetches: list[int] = []
    if first_fetch != "as configured":
        monkeypatch.setattr(norm_store, "_first_fetch", lambda size, matching, k: k)
        search = Collection.query

        def counted(self: Collection, *args: Any, **kwargs: Any) -> Any:
            fetches.append(int(kwargs["n_results"]))
            return search(self, *args, **kwargs)

        monkeypatch.setattr(Collection, "query", counted)
    norms = [(pack, norm) for pack in packs for norm in pack.norms]
    vectors = encoder.encode([norm.text for _, norm in norms]).astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    checked_short = 0
    for message in MESSAGES:
        query = encoder.encode([message])[0]
        similarities = vectors @ (query / np.linalg.norm(query))
        for communities, domains, k in filter_cases(packs):
            passing = [
                i
                for i, (pack, norm) in enumerate(norms)
                if (not communities or pack.community in communities)
                and (not domains or set(norm.domains) & set(domains))
            ]
            expected = sorted(passing, key=lambda i: -similarities[i])[:k]
            found = store.query(query, communities=communities, domains=domains, k=k)
            label = f"{message!r} communities={communities} domains={domains} k={k}"
            assert len(found) == len(expected), label
            checked_short += len(expected) < k
            assert np.allclose([n.similarity for n in found], similarities[expected], atol=TIE), label
            for evidence in found:
                assert not communities or evidence.community in communities, label
                assert not domains or set(evidence.domains) & set(domains), label
            # Every norm clearly inside the brute-force top k is returned (ties at the k-th may swap).
            cut = similarities[expected[-1]] + TIE if expected else np.inf
            clearly_in = {norms[i][1].id for i in expected if similarities[i] > cut}
            assert clearly_in <= {n.id for n in found}, label
    assert checked_short, "no case exercised a filter matching fewer norms than k"
    if first_fetch != "as configured":
        assert max(fetches) > 30, "no search had to fetch more neighbours"


def test_a_pack_that_changes_community_moves_to_that_communitys_collection(
    tmp_path: Path, packs: list[NormPack], encoder: Encoder
) -> None:
    store = open_norm_store(tmp_path / "index", encoder=encoder)
    moving = next(p for p in packs if p.community == "workplace")
    store.index_packs(packs)
    moved = moving.model_copy(update={"version": "2.0.0", "community": "workers-council"})
    report = store.index_packs([moved, *(p for p in packs if p is not moving)])
    assert report.added == {moved.id: "2.0.0"}
    assert store.count() == sum(len(p.norms) for p in packs)
    assert "workplace" not in store.communities() and "workers-council" in store.communities()
    names = collection_names(tmp_path / "index")
    assert community_collection_name("workplace") not in names
    assert community_collection_name("workers-council") in names

    embedding = encoder.encode(["My boss asked me to keep quiet about a safety problem at the factory."])[0]
    assert store.query(embedding, communities=["workplace"], k=5) == []
    found = store.query(embedding, communities=["workers-council"], domains=["workplace"], k=5)
    assert len(found) == 5
    assert all(n.community == "workers-council" and n.pack_version == "2.0.0" for n in found)
    assert {n.id for n in found} <= {n.id for n in moving.norms}


def test_prune_removes_packs_no_longer_given_and_their_collections(
    tmp_path: Path, packs: list[NormPack], encoder: Encoder
) -> None:
    store = open_norm_store(tmp_path / "index", encoder=encoder)
    store.index_packs(packs)
    gone, kept = packs[0], packs[1:]
    report = store.index_packs(kept, prune=True)
    assert report.removed == [gone.id] and report.norms_written == 0
    assert store.count() == sum(len(p.norms) for p in kept)
    assert gone.id not in store.indexed_versions()
    assert gone.community not in store.communities()
    assert community_collection_name(gone.community) not in collection_names(tmp_path / "index")
    embedding = encoder.encode([gone.norms[0].text])[0]
    assert all(n.pack_id != gone.id for n in store.query(embedding, k=20))


def test_a_run_stopped_half_way_is_rewritten_by_the_next_run(
    tmp_path: Path, packs: list[NormPack], encoder: Encoder
) -> None:
    class Stopped(RuntimeError):
        pass

    def stop_after_first_batch(done: int, total: int) -> None:
        raise Stopped

    store = open_norm_store(tmp_path / "index", encoder=encoder)
    with pytest.raises(Stopped):
        store.index_packs(packs, progress=stop_after_first_batch)
    assert store.count() == len(packs[0].norms)  # written, but its version was never recorded
    assert store.indexed_versions() == {}

    report = store.index_packs(packs)
    assert set(report.added) == {p.id for p in packs}
    assert store.count() == sum(len(p.norms) for p in packs)  # rewritten, not duplicated


def test_an_old_single_collection_index_is_dropped_and_rebuilt(
    tmp_path: Path, packs: list[NormPack], encoder: Encoder, caplog: pytest.LogCaptureFixture
) -> None:
    legacy = raw_client(tmp_path / "index").create_collection(LEGACY_COLLECTION_NAME)
    legacy.add(
        ids=[packs[0].norms[0].id],
        embeddings=np.full((1, 384), 0.1, dtype=np.float32),
        metadatas=[{"pack_id": packs[0].id}],
    )
    with caplog.at_level(logging.WARNING, logger="edge_align"):
        store = open_norm_store(tmp_path / "index", encoder=encoder)
    assert any(LEGACY_COLLECTION_NAME in r.getMessage() and "rebuilds" in r.getMessage() for r in caplog.records)
    assert LEGACY_COLLECTION_NAME not in collection_names(tmp_path / "index")
    assert store.indexed_versions() == {}
    assert store.index_packs(packs).norms_written == sum(len(p.norms) for p in packs)


def test_any_community_name_gives_a_collection_chroma_accepts(tmp_path: Path) -> None:
    communities = ["parents", "a", "x" * 200, "parents-r07", "Ärzte & Pflege", "---", "192.168.0.1"]
    client = raw_client(tmp_path / "names")
    for community in communities:
        client.create_collection(community_collection_name(community))  # Chroma refuses a bad name
    assert len(client.list_collections()) == len(communities)


def test_long_community_names_sharing_a_prefix_get_distinct_collections() -> None:
    first, second = "regional-" + "n" * 40 + "-north", "regional-" + "n" * 40 + "-south"
    assert community_collection_name(first) != community_collection_name(second)
