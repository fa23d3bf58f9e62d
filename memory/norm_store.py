"""The Chroma index of community norms: built incrementally by pack version, queried by embedding.

Layout: one small collection per community (ids and vectors only) plus one collection of every
norm (vectors, texts and metadata). A community filter is a choice of collections, merged by
distance, so it needs no Chroma ``where``; a domain filter reads the domains from the record ids
of an over-fetched nearest-neighbour list and fetches more while too few match, which keeps it
exact. ``where`` filters were measured at 100,000 norms in 210 communities at p95 409 ms (community
and domain on one collection) and 699 ms (domain on a per-community collection, against about 17 ms
for over-fetching): Chroma evaluates them against one metadata table shared by every record of the
store, however small the collection. The collection of every norm answers unfiltered queries in one
nearest-neighbour search (querying 210 collections took p50 744 ms) and holds what a query returns.

Each collection's metadata keeps a ledger of the packs it holds (version, norm count, norms per
domain), so ``indexed_versions()`` is one listing of the collections and the ledgers tell a query
how far to over-fetch.

Embeddings are always computed on the client with the packaged MiniLM (the registered embedding
function below), so neither an embedded store nor a Chroma server ever downloads a model.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.errors import NotFoundError
from chromadb.utils.embedding_functions import register_embedding_function

from agent.encoder import Encoder
from agent.norms import NormEvidence
from agent.onnx_encoder import load_serving_encoder
from agent.vocabulary import DOMAINS, Stance

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from memory.norm_pack import Norm, NormPack

log = logging.getLogger("edge_align")

CHROMA_URL_ENV = "EDGE_ALIGN_CHROMA_URL"
ALL_NORMS_COLLECTION = "edge-align-norms-all"
# The single collection of earlier versions, filtered with `where`; dropped on sight.
LEGACY_COLLECTION_NAME = "edge-align-norms"
_COMMUNITY_PREFIX = "edge-align-norms-c-"
_ROLE_KEY = "edge_align_role"
_ROLE_ALL = "all-norms"
_ROLE_COMMUNITY = "community-norms"
_COMMUNITY_KEY = "community"
_LEDGER_KEY = "packs"
# On the collection of every norm: the key of the pack files last indexed completely (packs_digest).
# Any ledger write drops it, so it is only ever present for an index that holds exactly those files.
_FILES_DIGEST_KEY = "pack_files_digest"
_PENDING = ""  # the ledger's version while a pack's norms are being written
_DOMAIN_MARK = "#"
_DOMAIN_JOIN = "+"
_BATCH = 256
# A domain-filtered query first fetches this many times the neighbours the domain share predicts,
# and multiplies the fetch by it again while too few match: fetching ids and distances only costs
# little more for 600 neighbours than for 12 (measured), a second round trip costs more.
_OVERFETCH = 4
_MIN_FETCH = 64
_HNSW = {"hnsw": {"space": "cosine"}}


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's view of the packaged all-MiniLM-L6-v2; rebuilt from its config when a collection reopens."""

    def __init__(self) -> None:
        self._encoder: Encoder | None = None

    def __call__(self, input: Documents) -> Embeddings:
        if self._encoder is None:
            self._encoder = load_serving_encoder()
        return list(self._encoder.encode(list(input)))

    @staticmethod
    def name() -> str:
        return "edge-align-minilm"

    def get_config(self) -> dict[str, Any]:
        return {"model": "all-MiniLM-L6-v2", "dim": 384}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        return MiniLMEmbeddingFunction()

    def default_space(self) -> str:  # type: ignore[override]
        return "cosine"

    def supported_spaces(self) -> list[str]:  # type: ignore[override]
        return ["cosine"]


@dataclass
class IndexReport:
    """What one indexing run did, pack by pack."""

    added: dict[str, str] = field(default_factory=dict)  # pack id -> version now indexed
    unchanged: dict[str, str] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    norms_written: int = 0


def community_collection_name(community: str) -> str:
    """A name Chroma accepts (3-63 of [a-zA-Z0-9._-], alphanumeric at both ends) for any community.

    The readable slug is cut to fit; the hash of the full name keeps cut names apart. The real
    community name is kept in the collection's metadata, which is what the store reads back.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", community.lower()).strip("-")[:30].strip("-")
    digest = hashlib.sha256(community.encode("utf-8")).hexdigest()[:10]
    return f"{_COMMUNITY_PREFIX}{slug}-{digest}" if slug else f"{_COMMUNITY_PREFIX}{digest}"


def record_id(norm_id: str, domains: Iterable[str]) -> str:
    """The id a norm is stored under: its id and its domains, so a query can filter by domain on ids alone.

    Norm ids never contain the mark (pack validation allows only [a-z0-9._-]).
    """
    return f"{norm_id}{_DOMAIN_MARK}{_DOMAIN_JOIN.join(sorted(domains))}"


def norm_id_of(stored_id: str) -> str:
    return stored_id.partition(_DOMAIN_MARK)[0]


def _tagged_with_any(stored_id: str, domains: frozenset[str]) -> bool:
    tags = stored_id.partition(_DOMAIN_MARK)[2]
    return bool(tags) and not domains.isdisjoint(tags.split(_DOMAIN_JOIN))


def _metadata(pack: NormPack, norm: Norm) -> dict[str, Any]:
    return {
        "community": pack.community,
        "pack_id": pack.id,
        "pack_version": pack.version,
        "stance": str(norm.stance),
        "domains": json.dumps(list(norm.domains)),
        "applies_when": json.dumps(
            {str(k): ([v] if isinstance(v, str) else list(v)) for k, v in norm.applies_when.items()}
        ),
        "support": json.dumps(norm.support.model_dump(mode="json", by_alias=True)) if norm.support else "",
        "contested": bool(norm.support.contested) if norm.support else False,
        "says": norm.says,
        "safeguard": norm.safeguard or "",
        "community_name": pack.community_name,
    }


def _evidence(stored_id: str, text: str, meta: dict[str, Any], similarity: float) -> NormEvidence:
    support = json.loads(meta["support"]) if meta.get("support") else None
    return NormEvidence(
        id=norm_id_of(stored_id),
        text=text,
        community=str(meta["community"]),
        pack_id=str(meta["pack_id"]),
        pack_version=str(meta["pack_version"]),
        domains=tuple(json.loads(str(meta["domains"]))),
        applies_when={k: tuple(v) for k, v in json.loads(str(meta["applies_when"])).items()},
        stance=Stance(str(meta["stance"])),
        similarity=similarity,
        support=support,
        contested=bool(meta.get("contested", False)),
        says=str(meta.get("says") or ""),
        safeguard=str(meta.get("safeguard") or ""),
        community_name=str(meta.get("community_name") or ""),
    )


def _ledger_entry(pack: NormPack, version: str) -> dict[str, Any]:
    per_domain = Counter(domain for norm in pack.norms for domain in set(norm.domains))
    return {"version": version, "norms": len(pack.norms), "domains": dict(sorted(per_domain.items()))}


def _shelf_metadata(community: str | None, packs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    meta: dict[str, Any] = {
        _ROLE_KEY: _ROLE_ALL if community is None else _ROLE_COMMUNITY,
        _LEDGER_KEY: json.dumps(packs, sort_keys=True),
    }
    if community is not None:
        meta[_COMMUNITY_KEY] = community
    return meta


@dataclass
class _Shelf:
    """One collection and the ledger of packs it holds, as last read from (or written to) Chroma."""

    collection: Collection
    community: str | None  # None for the collection of every norm
    packs: dict[str, dict[str, Any]]

    @classmethod
    def read(cls, collection: Collection) -> _Shelf:
        meta = collection.metadata or {}
        community = meta.get(_COMMUNITY_KEY)
        return cls(
            collection, None if community is None else str(community), json.loads(str(meta.get(_LEDGER_KEY, "{}")))
        )

    def save(self) -> None:
        self.collection.modify(metadata=_shelf_metadata(self.community, self.packs))

    def size(self) -> int:
        return sum(int(entry["norms"]) for entry in self.packs.values())

    def matching(self, domains: frozenset[str]) -> int:
        """An upper bound on the norms tagged with any of ``domains`` (a norm may carry several)."""
        tally = sum(int(entry["domains"].get(d, 0)) for entry in self.packs.values() for d in domains)
        return min(tally, self.size())


def _first_fetch(size: int, matching: int, k: int) -> int:
    """Neighbours to fetch so that ``k`` of them likely carry the wanted domains.

    Reading the whole collection asks for one more than it holds: fewer returned than asked is how
    the search knows it has seen everything, without a second query.
    """
    whole = max(size, k) + 1
    if matching <= k:
        return whole  # every match is needed
    return min(whole, max(_MIN_FETCH, math.ceil(_OVERFETCH * k * size / matching)))


def open_chroma_client(index_path: Path, url: str | None = None) -> ClientAPI:
    """An embedded PersistentClient on ``index_path``, or an HttpClient when a server URL is configured."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    url = url or os.environ.get(CHROMA_URL_ENV)
    if url:
        parsed = urlparse(url)
        if not parsed.hostname:
            raise ValueError(f"{CHROMA_URL_ENV} must look like http://HOST:PORT, got {url!r}")
        return chromadb.HttpClient(
            host=parsed.hostname,
            port=parsed.port or 8000,
            ssl=parsed.scheme == "https",
            settings=settings,
        )
    index_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(index_path), settings=settings)


class NormStore:
    """Norm packs in Chroma, one collection per community; the query embedding is handed in, never recomputed here."""

    def __init__(self, client: ClientAPI, encoder: Encoder | None = None) -> None:
        self._client = client
        self._encoder = encoder
        self._all: _Shelf
        self._communities: dict[str, _Shelf] = {}
        self._refresh()

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = load_serving_encoder()
        return self._encoder

    @property
    def collection(self) -> Collection:
        """The collection of every norm, with texts and metadata."""
        return self._all.collection

    def communities(self) -> list[str]:
        return sorted(self._communities)

    def _create(self, name: str, shelf_metadata: dict[str, Any]) -> Collection:
        return self._client.get_or_create_collection(
            name,
            metadata=shelf_metadata,
            embedding_function=MiniLMEmbeddingFunction(),  # type: ignore[arg-type]
            configuration=_HNSW,  # type: ignore[arg-type]
        )

    def _refresh(self) -> None:
        """Re-read the collections and their ledgers: another process may have indexed in the meantime."""
        communities: dict[str, _Shelf] = {}
        every: _Shelf | None = None
        for collection in self._client.list_collections():
            role = (collection.metadata or {}).get(_ROLE_KEY)
            if collection.name == LEGACY_COLLECTION_NAME:
                held = collection.count()
                self._client.delete_collection(LEGACY_COLLECTION_NAME)
                log.warning(
                    "dropped the old single-collection norm index %r (%d norms); the next index run "
                    "rebuilds it as one collection per community",
                    LEGACY_COLLECTION_NAME,
                    held,
                )
            elif role == _ROLE_COMMUNITY:
                shelf = _Shelf.read(collection)
                communities[str(shelf.community)] = shelf
            elif role == _ROLE_ALL:
                every = _Shelf.read(collection)
        if every is None:
            every = _Shelf(self._create(ALL_NORMS_COLLECTION, _shelf_metadata(None, {})), None, {})
        self._all = every
        self._communities = communities

    def _community_shelf(self, community: str) -> _Shelf:
        shelf = self._communities.get(community)
        if shelf is None:
            collection = self._create(community_collection_name(community), _shelf_metadata(community, {}))
            shelf = self._communities[community] = _Shelf(collection, community, {})
        return shelf

    def indexed_versions(self) -> dict[str, str]:
        """Pack id -> the version completely indexed (in its community's collection and in the collection of all)."""
        self._refresh()
        seen = Counter(pack_id for shelf in self._communities.values() for pack_id in shelf.packs)
        versions: dict[str, str] = {}
        for shelf in self._communities.values():
            for pack_id, entry in shelf.packs.items():
                version = str(entry["version"])
                in_all = self._all.packs.get(pack_id, {}).get("version")
                # A pack listed twice or half written (a run stopped mid-way) is not indexed: rewrite it.
                if version != _PENDING and in_all == version and seen[pack_id] == 1:
                    versions[pack_id] = version
        return versions

    def _remove_pack(self, pack_id: str, *, keep_collection_of: str | None = None) -> None:
        """Delete a pack's norms wherever a ledger lists it (and from ``keep_collection_of``'s collection,
        which is about to receive it); a community collection left without packs is dropped."""
        for community, shelf in list(self._communities.items()):
            if pack_id not in shelf.packs and community != keep_collection_of:
                continue
            shelf.collection.delete(where={"pack_id": pack_id})
            shelf.packs.pop(pack_id, None)
            if not shelf.packs and community != keep_collection_of:
                self._client.delete_collection(shelf.collection.name)
                del self._communities[community]
            else:
                shelf.save()
        self._all.collection.delete(where={"pack_id": pack_id})
        if self._all.packs.pop(pack_id, None) is not None:
            self._all.save()

    def index_packs(
        self,
        packs: Sequence[NormPack],
        *,
        prune: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> IndexReport:
        """Write packs whose version is not indexed yet; leave the others untouched.

        A pack whose community changed moves to the new community's collection. ``prune`` removes
        packs that are indexed but no longer given. ``progress(done, total)`` is called after each
        batch of norms.
        """
        report = IndexReport()
        current = self.indexed_versions()
        todo = []
        for pack in packs:
            if current.get(pack.id) == pack.version:
                report.unchanged[pack.id] = pack.version
            else:
                todo.append(pack)
        total = sum(len(p.norms) for p in todo)
        done = 0
        for pack in todo:
            self._remove_pack(pack.id, keep_collection_of=pack.community)
            shelf = self._community_shelf(pack.community)
            # Listed before writing, so a run stopped half-way leaves a ledger entry that the next
            # run sees as not indexed (rewritten) or, with prune, as a pack to remove.
            for target in (shelf, self._all):
                target.packs[pack.id] = _ledger_entry(pack, _PENDING)
                target.save()
            for start in range(0, len(pack.norms), _BATCH):
                batch = pack.norms[start : start + _BATCH]
                texts = [n.text for n in batch]
                ids = [record_id(n.id, n.domains) for n in batch]
                vectors = list(self.encoder.encode(texts))
                shelf.collection.add(ids=ids, embeddings=vectors, metadatas=[{"pack_id": pack.id}] * len(batch))
                self._all.collection.add(
                    ids=ids, embeddings=vectors, documents=texts, metadatas=[_metadata(pack, n) for n in batch]
                )
                done += len(batch)
                if progress:
                    progress(done, total)
            for target in (shelf, self._all):
                target.packs[pack.id] = _ledger_entry(pack, pack.version)
                target.save()
            report.added[pack.id] = pack.version
            report.norms_written += len(pack.norms)
        if prune:
            given = {p.id for p in packs}
            listed = set(self._all.packs).union(*(shelf.packs for shelf in self._communities.values()))
            for pack_id in sorted(listed - given):
                self._remove_pack(pack_id)
                report.removed.append(pack_id)
        return report

    def count(self) -> int:
        return int(self._all.collection.count())

    def files_digest(self) -> str | None:
        """The key of the pack files this index was last brought up to date with, if nothing changed it since."""
        value = (self._all.collection.metadata or {}).get(_FILES_DIGEST_KEY)
        return None if value is None else str(value)

    def mark_files_digest(self, digest: str) -> None:
        """Record that the index now holds exactly the packs of the files keyed ``digest``."""
        self._all.collection.modify(metadata={**_shelf_metadata(None, self._all.packs), _FILES_DIGEST_KEY: digest})

    def _nearest(
        self, shelf: _Shelf, vector: Sequence[float], domains: frozenset[str], k: int
    ) -> list[tuple[float, str]]:
        """The ``k`` nearest (distance, stored id) of one collection carrying any of ``domains`` (all if empty).

        Only ids and distances travel; more neighbours are fetched until ``k`` match or the collection
        is exhausted, so the result is the same as filtering before the search.
        """
        fetch = _first_fetch(shelf.size(), shelf.matching(domains), k) if domains else k
        while True:
            found = shelf.collection.query(query_embeddings=[vector], n_results=fetch, include=["distances"])
            ids = found["ids"][0]
            distances = (found["distances"] or [[]])[0]
            hits = [
                (float(distance), stored_id)
                for stored_id, distance in zip(ids, distances, strict=True)
                if not domains or _tagged_with_any(stored_id, domains)
            ]
            if len(hits) >= k or len(ids) < fetch:
                return hits[:k]
            fetch *= _OVERFETCH

    def _shelves_for(self, communities: list[str]) -> list[_Shelf]:
        if any(c not in self._communities for c in communities):
            self._refresh()  # indexed by another process since this one last looked
        return [self._communities[c] for c in communities if c in self._communities]

    def query(
        self,
        embedding: np.ndarray,
        *,
        communities: Iterable[str] = (),
        domains: Iterable[str] = (),
        k: int = 12,
    ) -> list[NormEvidence]:
        """The ``k`` norms nearest to the message, optionally only from some communities and domains."""
        chosen = sorted(set(communities))
        wanted = frozenset(d for d in domains if d in DOMAINS)
        try:
            return self._query(embedding, chosen, wanted, k)
        except NotFoundError:
            # A collection was dropped by another process's index run (a pack moved or was pruned).
            self._refresh()
            return self._query(embedding, chosen, wanted, k)

    def _query(
        self, embedding: np.ndarray, communities: list[str], domains: frozenset[str], k: int
    ) -> list[NormEvidence]:
        k = max(1, k)
        vector = np.asarray(embedding, dtype=np.float32).tolist()
        if not communities and not domains:  # one search returns everything
            found = self._all.collection.query(
                query_embeddings=[vector], n_results=k, include=["documents", "metadatas", "distances"]
            )
            return [
                _evidence(stored_id, text, dict(meta), 1.0 - float(distance))
                for stored_id, text, meta, distance in zip(
                    found["ids"][0],
                    (found["documents"] or [[]])[0],
                    (found["metadatas"] or [[]])[0],
                    (found["distances"] or [[]])[0],
                    strict=True,
                )
            ]
        shelves = self._shelves_for(communities) if communities else [self._all]
        nearest = heapq.nsmallest(k, (hit for shelf in shelves for hit in self._nearest(shelf, vector, domains, k)))
        if not nearest:
            return []
        stored = self._all.collection.get(
            ids=[stored_id for _, stored_id in nearest], include=["documents", "metadatas"]
        )
        rows = dict(
            zip(stored["ids"], zip(stored["documents"] or [], stored["metadatas"] or [], strict=True), strict=True)
        )
        return [
            _evidence(stored_id, rows[stored_id][0], dict(rows[stored_id][1]), 1.0 - distance)
            for distance, stored_id in nearest
            if stored_id in rows  # removed between the two calls by another process's index run
        ]


def open_norm_store(index_path: Path, *, url: str | None = None, encoder: Encoder | None = None) -> NormStore:
    return NormStore(open_chroma_client(index_path, url), encoder)
