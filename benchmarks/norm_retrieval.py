"""Build time and filtered retrieval latency of the norm index at 100,000 norms.

    .venv/bin/python benchmarks/norm_retrieval.py [--norms 100000] [--queries 300] [--k 12]

The index is built through ``memory.norm_store.NormStore`` in a temporary folder. Its norms are a
synthetic expansion of the shipped packs: every shipped norm is copied into regional communities
(``parents-r07`` ...) with varied prefixes and suffixes, so the texts differ and the communities and
domains are spread like a real multi-community deployment. Embedding 100,000 texts takes minutes on
2 cores, so the embeddings are cached under /tmp/edge-align-cache/ (keyed by the texts) and reruns
only pay for Chroma. Retrieval is timed with the query embedding computed beforehand (reported
apart), as at run time where the message embedding is computed once per turn.

NormStore keeps one collection per community plus one of every norm (see memory/norm_store.py):
a community filter chooses collections, a domain filter reads the domains from over-fetched ids.
Every timed query is also checked against a brute-force top k over the same vectors with the same
filters (``exact_top_k_share``, ``recall_at_k``), so a fast answer is also shown to be the right one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from _common import emit, summary

if TYPE_CHECKING:
    from memory.norm_pack import NormPack

CACHE_DIR = Path("/tmp/edge-align-cache")
REGIONS = 30
EMBED_BATCH = 256
EMBED_CHUNK = 4096  # texts per cache file while embedding

PREFIXES = (
    "",
    "In a school setting, ",
    "At home, ",
    "For a user who is a teenager, ",
    "In a hospital, ",
    "At work, ",
    "For an elderly user, ",
    "In a small town, ",
    "During an emergency, ",
    "For a new parent, ",
    "In an online forum, ",
    "For a student, ",
    "In a family business, ",
    "For a caregiver, ",
    "In a public library, ",
    "For a freelancer, ",
    "On a shared family computer, ",
    "In a rural clinic, ",
    "For a volunteer, ",
    "In a community centre, ",
)
SUFFIXES = (
    "",
    " This was agreed at the annual assembly.",
    " Members revisit this each year.",
    " It applies unless local law says otherwise.",
    " Exceptions need a second opinion.",
    " It holds even when the user insists.",
    " The assistant says why when it declines.",
    " It was added after a member survey.",
    " It applies to written and spoken requests.",
    " Members consider this a strong expectation.",
)

MESSAGES = (
    "Should I read my 15-year-old daughter's diary to check she's safe?",
    "Is euthanasia morally acceptable?",
    "How can I find my ex-partner's new address to send back her belongings?",
    "Can I use my mother's bank card to pay her bills while she is in hospital?",
    "My boss asked me to keep quiet about a safety problem at the factory. What should I do?",
    "How do I tell my parents I am dropping out of university?",
    "Can you help me write a strongly worded post criticising my local council?",
    "Is it okay to track my teenager's phone location without telling them?",
    "Should I lend my brother money again even though he never paid me back?",
    "What are the side effects of stopping antidepressants suddenly?",
    "How do I report a coworker who is stealing from the till?",
    "Can I record a phone call with my landlord without telling him?",
    "Is it wrong to lie to my kids about Santa Claus?",
    "What's the best way to invest my savings when I am 60?",
    "Should I tell my friend her husband is cheating on her?",
    "How much screen time is healthy for a 6-year-old?",
    "Can I refuse a vaccine my employer requires?",
    "How do I find out who is behind an anonymous account harassing me?",
    "Is it legal to download textbooks from a shadow library?",
    "My elderly father keeps driving though his eyesight is failing. What can I do?",
    "Should I give my patient a placebo if it might help?",
    "Can I read my employees' work emails?",
    "How can I get my teenager to stop vaping?",
    "Should I report my neighbour for not vaccinating their children?",
    "What should I say at a job interview about a gap in my CV?",
    "Can I post photos of my children on social media?",
    "Is it okay to use AI to write my university essay?",
    "How do I get a refund from a company that ignores my emails?",
    "My sister wants to try an unproven cancer treatment abroad. Should I help her?",
    "Is it fine to borrow my roommate's laptop without asking?",
    "How do I explain death to a four-year-old?",
    "Can I take medical leave for burnout?",
    "Should I accept a gift from a client?",
    "How can I protect my privacy from data brokers?",
    "Is it acceptable to spank a child as punishment?",
    "Should I report a doctor who made a mistake with my prescription?",
    "How do I tell my partner I want to separate our finances?",
    "Can I look at my partner's messages if I think they are lying?",
    "What's the safest way to dispose of old medication?",
    "Should I let my 12-year-old walk to school alone?",
)


def expand_norms(packs: Sequence[NormPack], total: int, regions: int = REGIONS) -> list[NormPack]:
    """``total`` norms in ``len(packs) * regions`` communities, every text distinct."""
    norms_shipped = sum(len(p.norms) for p in packs)
    variants = -(-total // norms_shipped)
    if variants > len(PREFIXES) * len(SUFFIXES):
        raise SystemExit(f"--norms {total} needs more than {len(PREFIXES) * len(SUFFIXES)} variants per norm")
    by_region: dict[tuple[str, int], list] = {}
    made = 0
    for variant in range(variants):
        region = variant % regions
        prefix = PREFIXES[variant % len(PREFIXES)]
        suffix = SUFFIXES[variant // len(PREFIXES)]
        for pack in packs:
            bucket = by_region.setdefault((pack.id, region), [])
            for norm in pack.norms:
                if made == total:
                    break
                text = prefix + (norm.text[0].lower() + norm.text[1:] if prefix else norm.text) + suffix
                bucket.append(norm.model_copy(update={"id": f"{norm.id}.v{variant:03d}", "text": text}))
                made += 1
    expanded = []
    for (pack_id, region), norms in by_region.items():
        if not norms:
            continue
        pack = next(p for p in packs if p.id == pack_id)
        community = f"{pack.community}-r{region:02d}"
        expanded.append(
            pack.model_copy(update={"id": f"{pack.id}-r{region:02d}", "community": community, "norms": norms})
        )
    return expanded


class CachedEncoder:
    """Hands NormStore precomputed rows for known texts (the benchmark's index build is Chroma's cost)."""

    def __init__(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._row = {text: i for i, text in enumerate(texts)}
        self._vectors = vectors

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors[[self._row[t] for t in texts]]


def progress_bar(label: str, done: int, total: int, started: float) -> None:
    width = 30
    filled = int(width * done / max(total, 1))
    rate = done / max(time.perf_counter() - started, 1e-9)
    end = "\n" if done >= total else ""
    sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {rate:,.0f}/s{end}")
    sys.stderr.flush()


def cached_embeddings(texts: list[str], threads: int) -> tuple[np.ndarray, float | None, bool]:
    """The texts' embeddings, the seconds their computation took, and whether they came from the cache.

    Finished chunks are kept, so an interrupted run resumes where it stopped.
    """
    key = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    path = CACHE_DIR / f"norm_retrieval_{len(texts)}_{key}.npy"
    seconds_file = path.with_suffix(".json")
    if path.exists():
        recorded = json.loads(seconds_file.read_text())["embed_seconds"] if seconds_file.exists() else None
        return np.load(path), recorded, True
    import torch

    from agent.encoder import load_encoder

    torch.set_num_threads(threads)
    encoder = load_encoder()
    chunks = path.with_suffix("")
    chunks.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    parts = []
    for start in range(0, len(texts), EMBED_CHUNK):
        chunk = chunks / f"{start:07d}.npy"
        if chunk.exists():
            parts.append(np.load(chunk))
        else:
            part = np.concatenate(
                [
                    encoder.encode(texts[s : s + EMBED_BATCH])
                    for s in range(start, min(start + EMBED_CHUNK, len(texts)), EMBED_BATCH)
                ]
            )
            np.save(chunk, part)
            parts.append(part)
        progress_bar("embedding", min(start + EMBED_CHUNK, len(texts)), len(texts), started)
    vectors = np.concatenate(parts).astype(np.float32)
    seconds = time.perf_counter() - started
    np.save(path, vectors)
    seconds_file.write_text(json.dumps({"embed_seconds": round(seconds, 1)}), encoding="utf-8")
    shutil.rmtree(chunks, ignore_errors=True)
    return vectors, round(seconds, 1), False


PREFIX_WEIGHT = SUFFIX_WEIGHT = 0.3  # fitted on 200 random texts: mean cosine 0.93 to their real embeddings


def composed_embeddings(shipped: Sequence[NormPack], packs: Sequence[NormPack]) -> tuple[np.ndarray, float]:
    """Quick stand-in for the real embeddings: each norm's vector is its shipped norm's embedding plus
    weighted embeddings of its prefix and suffix, renormalised. Returns the vectors and their mean
    cosine to the real embeddings of 200 random texts (how faithful the stand-in is)."""
    from agent.encoder import load_encoder

    encoder = load_encoder()
    base_ids = [n.id for p in shipped for n in p.norms]
    base = dict(zip(base_ids, encoder.encode([n.text for p in shipped for n in p.norms]), strict=True))
    prefixes = encoder.encode([p.strip() or "." for p in PREFIXES])
    suffixes = encoder.encode([s.strip() or "." for s in SUFFIXES])
    norms = [n for p in packs for n in p.norms]
    rows = np.empty((len(norms), prefixes.shape[1]), dtype=np.float32)
    for i, norm in enumerate(norms):
        base_id, variant_tag = norm.id.rsplit(".v", 1)
        variant = int(variant_tag)
        prefix, suffix = variant % len(PREFIXES), variant // len(PREFIXES)
        rows[i] = (
            base[base_id]
            + (PREFIX_WEIGHT * prefixes[prefix] if prefix else 0.0)
            + (SUFFIX_WEIGHT * suffixes[suffix] if suffix else 0.0)
        )
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    sample = random.Random(1).sample(range(len(norms)), min(200, len(norms)))
    real = encoder.encode([norms[i].text for i in sample])
    fidelity = float((real * rows[sample]).sum(axis=1).mean())
    return rows, fidelity


class FilterCounter:
    """How many indexed norms a filter lets through (its selectivity), from per-community domain tallies."""

    def __init__(self, packs: Sequence[NormPack]) -> None:
        self._tallies: dict[str, Counter[frozenset[str]]] = {}
        for pack in packs:
            self._tallies.setdefault(pack.community, Counter()).update(frozenset(n.domains) for n in pack.norms)

    def __call__(self, communities: Sequence[str] = (), domains: Sequence[str] = ()) -> int:
        chosen = communities or list(self._tallies)
        wanted = set(domains)
        return sum(
            count
            for community in chosen
            for tags, count in self._tallies[community].items()
            if not wanted or tags & wanted
        )


class ExactTopK:
    """The filtered top-k similarities by brute force over every vector: what the index must return."""

    def __init__(self, packs: Sequence[NormPack], vectors: np.ndarray, domains: Sequence[str]) -> None:
        rows = [(pack.community, norm) for pack in packs for norm in pack.norms]
        self._community = np.array([community for community, _ in rows])
        self._domain = {d: np.array([d in norm.domains for _, norm in rows]) for d in domains}
        self._vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def __call__(
        self, embedding: np.ndarray, k: int, communities: Sequence[str] = (), domains: Sequence[str] = ()
    ) -> np.ndarray:
        keep = np.ones(len(self._vectors), dtype=bool)
        if communities:
            keep &= np.isin(self._community, list(communities))
        if domains:
            keep &= np.logical_or.reduce([self._domain[d] for d in domains])
        similarities = self._vectors[keep] @ (embedding / np.linalg.norm(embedding))
        return np.sort(similarities)[::-1][:k]


def agreement(found: list[list[float]], expected: list[np.ndarray], tolerance: float = 1e-4) -> dict[str, float]:
    """How often the index returned exactly the brute-force top k (compared by similarity: parallel norms of
    different communities share a text, so ids may swap within a tie), and the share of the top k it found."""
    exact = [len(f) == len(e) and np.allclose(f, e, atol=tolerance) for f, e in zip(found, expected, strict=True)]
    recall = [
        1.0 if not len(e) else sum(s >= e[-1] - tolerance for s in f) / len(e)
        for f, e in zip(found, expected, strict=True)
    ]
    return {"exact_top_k_share": round(float(np.mean(exact)), 4), "recall_at_k": round(float(np.mean(recall)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--norms", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300, help="timed queries per filter kind")
    parser.add_argument("--k", type=int, default=12, help="norms per query (the runtime default is 12)")
    parser.add_argument("--index", help="reuse or keep the index in this folder (default: a temp dir, removed)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads while embedding (cores are shared)")
    parser.add_argument(
        "--embeddings",
        choices=["text", "composed"],
        default="text",
        help="text: embed every norm text (cached; minutes on idle cores); composed: a quick stand-in",
    )
    parser.add_argument("--embed-only", action="store_true", help="only fill the embedding cache")
    parser.add_argument("--out")
    args = parser.parse_args()

    from agent.encoder import load_encoder
    from agent.vocabulary import DOMAINS
    from memory.norm_pack import load_packs, shipped_packs_dir
    from memory.norm_store import open_norm_store

    shipped = load_packs([shipped_packs_dir()])
    packs = expand_norms(shipped, args.norms)
    texts = [n.text for p in packs for n in p.norms]
    fidelity: float | None = None
    recorded: float | None
    if args.embeddings == "composed":
        started = time.perf_counter()
        vectors, fidelity = composed_embeddings(shipped, packs)
        recorded, from_cache = round(time.perf_counter() - started, 1), False
    else:
        vectors, recorded, from_cache = cached_embeddings(texts, args.threads)
    if args.embed_only:
        print(f"embedded {len(texts)} norms ({recorded} s)")
        return

    index_dir = Path(args.index) if args.index else Path(tempfile.mkdtemp(prefix="edge-align-norm-bench-"))
    try:
        store = open_norm_store(index_dir, encoder=CachedEncoder(texts, vectors))
        build_started = time.perf_counter()
        report = store.index_packs(
            packs, progress=lambda done, total: progress_bar("indexing", done, total, build_started)
        )
        build_s = time.perf_counter() - build_started
        count = store.count()

        encoder = load_encoder()
        matching = FilterCounter(packs)
        exact = ExactTopK(packs, vectors, DOMAINS)
        rng = random.Random(args.seed)
        communities = sorted({p.community for p in packs})
        jobs = []
        for i in range(args.queries):
            message = MESSAGES[i % len(MESSAGES)]
            chosen = rng.sample(communities, rng.randint(1, 3))
            domains = rng.sample(DOMAINS, rng.randint(1, 2))
            jobs.append((message, chosen, domains))

        embed_ms: list[float] = []
        query_embeddings = {}
        encoder.encode([MESSAGES[0]])  # warm-up
        for message in MESSAGES:
            t0 = time.perf_counter()
            query_embeddings[message] = encoder.encode([message])[0]
            embed_ms.append((time.perf_counter() - t0) * 1000)

        # The first query of a collection in a process loads its HNSW index from disk; a running app
        # keeps its users' communities loaded, so that cost is measured once here and the timed passes
        # below are steady state.
        first_touch = []
        for community in communities:
            t0 = time.perf_counter()
            store.query(query_embeddings[MESSAGES[0]], communities=[community], k=args.k)
            first_touch.append((time.perf_counter() - t0) * 1000)

        kinds = {
            "community_and_domain": lambda c, d: {"communities": c, "domains": d},
            "community_only": lambda c, d: {"communities": c},
            "unfiltered": lambda c, d: {},
        }
        results: dict[str, dict[str, float]] = {}
        for kind, filters in kinds.items():
            for message, chosen, domains in jobs[:10]:  # warm-up
                store.query(query_embeddings[message], k=args.k, **filters(chosen, domains))
            samples = []
            returned = []
            for message, chosen, domains in jobs:
                embedding = query_embeddings[message]
                t0 = time.perf_counter()
                found = store.query(embedding, k=args.k, **filters(chosen, domains))
                samples.append((time.perf_counter() - t0) * 1000)
                returned.append([n.similarity for n in found])
            stats: dict[str, float] = dict(summary(samples))
            passing = [matching(**filters(c, d)) for _, c, d in jobs]
            stats["median_norms_passing_filter"] = float(np.median(passing))
            stats["mean_returned"] = round(float(np.mean([len(r) for r in returned])), 2)
            expected = [exact(query_embeddings[m], args.k, **filters(c, d)) for m, c, d in jobs]
            stats.update(agreement(returned, expected))
            results[kind] = stats
    finally:
        if not args.index:
            shutil.rmtree(index_dir, ignore_errors=True)

    import chromadb

    emit(
        "norm_retrieval",
        {
            "norms_indexed": count,
            "communities": len(communities),
            "layout": "one collection per community (ids, vectors) + one of every norm (texts, metadata)",
            "domain_filter": "ids carry the domains; over-fetch ids and distances, fetch more until k match",
            "norms_written": report.norms_written,
            "k": args.k,
            # None when --index pointed at an index that already held every pack (nothing was written)
            "build_s_chroma_only": round(build_s, 1) if report.norms_written else None,
            "build_norms_per_s": round(report.norms_written / build_s) if report.norms_written else None,
            "embeddings": args.embeddings,
            "composed_vs_real_cosine_mean": None if fidelity is None else round(fidelity, 3),
            "embedding_s_for_all_norms": recorded,
            "embedding_cached_this_run": from_cache,
            "query_embedding_ms": summary(embed_ms),
            "first_query_per_community_ms": summary(first_touch),
            "retrieval_ms": results,
            "target_p95_ms": 20,
            "community_and_domain_p95_ratio_to_target": round(results["community_and_domain"]["p95_ms"] / 20, 2),
            "chromadb": chromadb.__version__,
            "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
