"""The Chroma index of community norms: built incrementally by pack version, queried by embedding.

Embeddings are always computed on the client with the packaged MiniLM (the registered embedding
function below), so neither an embedded store nor a Chroma server ever downloads a model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from agent.encoder import Encoder, load_encoder
from agent.norms import NormEvidence
from agent.vocabulary import DOMAINS, Stance

if TYPE_CHECKING:
    from chromadb.api import ClientAPI
    from chromadb.api.models.Collection import Collection

    from memory.norm_pack import NormPack

COLLECTION_NAME = "edge-align-norms"
CHROMA_URL_ENV = "EDGE_ALIGN_CHROMA_URL"
_BATCH = 256
_VERSION_PAGE = 5_000


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma's view of the packaged all-MiniLM-L6-v2; rebuilt from its config when a collection reopens."""

    def __init__(self) -> None:
        self._encoder: Encoder | None = None

    def __call__(self, input: Documents) -> Embeddings:
        if self._encoder is None:
            self._encoder = load_encoder()
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


def _metadata(pack: NormPack, norm: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {
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
    }
    # One boolean per domain: Chroma's `where` filters cannot look inside lists.
    for domain in norm.domains:
        meta[f"domain_{domain}"] = True
    return meta


def _evidence(norm_id: str, text: str, meta: dict[str, Any], similarity: float) -> NormEvidence:
    support = json.loads(meta["support"]) if meta.get("support") else None
    return NormEvidence(
        id=norm_id,
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
    )


def _all_of(clauses: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Chroma wants $and with two or more clauses, and a bare clause otherwise."""
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _any_of(clauses: list[dict[str, Any]]) -> dict[str, Any] | None:
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


class NormStore:
    """Norm packs in a Chroma collection; the query embedding is handed in, never recomputed here."""

    def __init__(self, client: ClientAPI, encoder: Encoder | None = None) -> None:
        self._encoder = encoder
        self.collection: Collection = client.get_or_create_collection(
            COLLECTION_NAME,
            embedding_function=MiniLMEmbeddingFunction(),  # type: ignore[arg-type]
            configuration={"hnsw": {"space": "cosine"}},
        )

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = load_encoder()
        return self._encoder

    def indexed_versions(self) -> dict[str, str]:
        """Pack id -> the version currently indexed."""
        versions: dict[str, str] = {}
        # Paged: one get() of the whole collection fails inside Chroma at 100,000 norms with
        # "too many SQL variables" (SQLite's limit), so re-indexing a large store would break.
        for offset in range(0, self.count(), _VERSION_PAGE):
            found = self.collection.get(include=["metadatas"], limit=_VERSION_PAGE, offset=offset)
            for meta in found["metadatas"] or []:
                versions[str(meta["pack_id"])] = str(meta["pack_version"])
        return versions

    def index_packs(
        self,
        packs: Sequence[NormPack],
        *,
        prune: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> IndexReport:
        """Write packs whose version is not indexed yet; leave the others untouched.

        ``prune`` removes packs that are indexed but no longer given. ``progress(done, total)``
        is called after each batch of norms.
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
            if pack.id in current:
                self.collection.delete(where={"pack_id": pack.id})
            for start in range(0, len(pack.norms), _BATCH):
                batch = pack.norms[start : start + _BATCH]
                texts = [n.text for n in batch]
                self.collection.add(
                    ids=[n.id for n in batch],
                    documents=texts,
                    embeddings=list(self.encoder.encode(texts)),
                    metadatas=[_metadata(pack, n) for n in batch],
                )
                done += len(batch)
                if progress:
                    progress(done, total)
            report.added[pack.id] = pack.version
            report.norms_written += len(pack.norms)
        if prune:
            given = {p.id for p in packs}
            for pack_id in current:
                if pack_id not in given:
                    self.collection.delete(where={"pack_id": pack_id})
                    report.removed.append(pack_id)
        return report

    def count(self) -> int:
        return int(self.collection.count())

    def query(
        self,
        embedding: np.ndarray,
        *,
        communities: Iterable[str] = (),
        domains: Iterable[str] = (),
        k: int = 12,
    ) -> list[NormEvidence]:
        """The ``k`` norms nearest to the message, optionally only from some communities and domains."""
        clauses: list[dict[str, Any]] = []
        wanted = sorted(set(communities))
        if wanted:
            clauses.append({"community": {"$in": wanted}} if len(wanted) > 1 else {"community": wanted[0]})
        domain_clause = _any_of([{f"domain_{d}": True} for d in sorted(set(domains)) if d in DOMAINS])
        if domain_clause:
            clauses.append(domain_clause)
        result = self.collection.query(
            query_embeddings=[np.asarray(embedding, dtype=np.float32).tolist()],
            n_results=max(1, k),
            where=_all_of(clauses),
            include=["documents", "metadatas", "distances"],
        )
        ids = result["ids"][0]
        documents = (result["documents"] or [[]])[0]
        metadatas = (result["metadatas"] or [[]])[0]
        distances = (result["distances"] or [[]])[0]
        return [
            _evidence(norm_id, text, dict(meta), 1.0 - float(distance))
            for norm_id, text, meta, distance in zip(ids, documents, metadatas, distances, strict=True)
        ]


def open_norm_store(index_path: Path, *, url: str | None = None, encoder: Encoder | None = None) -> NormStore:
    return NormStore(open_chroma_client(index_path, url), encoder)
