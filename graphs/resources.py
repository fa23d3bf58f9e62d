"""The measured components a turn uses, loaded once per process and shared by every thread."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from agent.clarification_need import ClarificationNeedModel, load_clarification_model
from agent.conflict import ConflictModel, load_conflict_model
from agent.constraints import ConstraintBook
from agent.datasets import DatasetMissingError
from agent.domains import DomainDetector
from agent.embedding_cache import FixedTextCache
from agent.encoder import Encoder, MemoEncoder
from agent.install_cache import install_cache_dir
from agent.judge import Judge
from agent.onnx_encoder import OnnxPairEncoder, load_serving_encoder
from agent.question_bank import QuestionBank, QuestionBankMissingError
from agent.task_questions import TaskQuestions, TaskQuestionsMissingError
from agent.value_model import ValueScorer, load_value_scorer
from memory.index_template import build_template, is_complete, seed_index, template_path
from memory.norm_pack import load_packs, packs_digest, shipped_packs_dir
from memory.norm_store import CHROMA_URL_ENV, IndexReport, NormStore, open_norm_store
from memory.paths import home_dir, norm_index_path

log = logging.getLogger("edge_align")
T = TypeVar("T")
_lock = threading.Lock()


@dataclass
class Resources:
    encoder: Encoder
    value_scorers: dict[str, ValueScorer]
    conflict: ConflictModel
    clarification: ClarificationNeedModel
    constraints: ConstraintBook
    domains: DomainDetector
    norms: NormStore
    pack_versions: dict[str, str]
    home: Path
    question_bank: QuestionBank | None  # ClariQ's bank when the data directory has it
    task_questions: TaskQuestions | None  # IN3's vague tasks and their questions, when the data directory has them
    judge: Judge
    # The same encoder, whose second output is MiniLM with the judge's fine-tuned top layers, when the
    # shipped heads were fitted on that embedding; None when they read the packaged model's embedding.
    judge_encoder: OnnxPairEncoder | None
    # The packaged encoder behind a memo for the packs' fixed phrasings (each embedded once per process).
    phrasings: MemoEncoder
    startup_s: dict[str, float]  # seconds per loading step (StartupSteps), for benchmarks/startup.py


def _progress(message: str) -> None:
    print(f"[edge-align] {message}", file=sys.stderr, flush=True)


def pack_paths(home: Path) -> list[Path]:
    """The shipped packs, plus any the user dropped into <home>/packs."""
    paths = [shipped_packs_dir()]
    extra = home / "packs"
    if extra.is_dir() and any(extra.glob("*.yaml")):
        paths.append(extra)
    return paths


def index_norms(store: NormStore, home: Path, *, show_progress: bool = True) -> IndexReport:
    """Bring the index up to date with the packs on disk (only packs whose version changed are rewritten).

    When the pack files are byte for byte the ones last indexed, nothing is parsed: reading 503 norms'
    YAML cost every new process about 0.25 s (benchmarks/startup.py).
    """
    paths = pack_paths(home)
    digest = packs_digest(paths)
    if store.files_digest() == digest:
        return IndexReport(unchanged=store.indexed_versions())

    def report(done: int, total: int) -> None:
        if show_progress:
            _progress(f"indexing norms {done}/{total}")

    result = store.index_packs(load_packs(paths), progress=report)
    store.mark_files_digest(digest)
    return result


def _judge_encoder(encoder: OnnxPairEncoder, judge: Judge) -> OnnxPairEncoder | None:
    """The encoder again when the shipped heads read the tuned layers' embedding, else None (they read the packaged one)."""
    from agent.judge_encoder import JudgeEncoder

    if not judge.heads.encoder.startswith(JudgeEncoder.name):
        return None
    if not encoder.has_judge_layers:
        raise RuntimeError("the judge reads the tuned layers' embedding but the exported encoder has none")
    return encoder


def _research_data(load: Callable[[], T], missing: type[DatasetMissingError], without: str) -> T | None:
    """Data read in place that is not shipped (ClariQ's bank, IN3's tasks): without it, say what is used instead."""
    try:
        return load()
    except missing:
        _progress(without)
        return None


@lru_cache(maxsize=1)
def serving_encoder(cache_dir: Path) -> OnnxPairEncoder:
    """The ONNX encoder every data home of this process shares (one session, about 0.5 s to open)."""
    return load_serving_encoder(cache_dir, progress=_progress)


@dataclass
class FixedComponents:
    """What a process builds from fixed texts, the same for every data home; embedded once per installation."""

    constraints: ConstraintBook
    domains: DomainDetector
    question_bank: QuestionBank | None  # ClariQ's bank when the data directory has it
    task_questions: TaskQuestions | None  # IN3's vague tasks and their questions, when the data directory has them


def fixed_components(encoder: Encoder, cache_dir: Path) -> FixedComponents:
    embeddings = cache_dir / "embeddings"
    fixed = FixedTextCache(encoder, embeddings)
    return FixedComponents(
        constraints=ConstraintBook.load().prepare(fixed),
        domains=DomainDetector(fixed),
        question_bank=_research_data(
            lambda: QuestionBank.load(encoder=encoder, cache_dir=embeddings), QuestionBankMissingError,
            "ClariQ question bank not found: intent questions will use the generic template",
        ),
        task_questions=_research_data(
            lambda: TaskQuestions.load(encoder=encoder, cache_dir=embeddings), TaskQuestionsMissingError,
            "IN3 not found: vague tasks will be asked ClariQ's or the generic question",
        ),
    )


def prepare_installation(cache_dir: Path | None = None) -> Path:
    """Build what every new process would otherwise build before its first answer; returns the cache folder.

    The ONNX encoder, the fixed texts' embeddings and the shipped packs' index template, each kept
    under a key of what it was made from (agent/install_cache.py). ``make install`` runs this.
    """
    cache = install_cache_dir() if cache_dir is None else cache_dir
    # Every core for the thousands of fixed texts: nothing else runs during an install.
    encoder = load_serving_encoder(cache, progress=_progress, threads=os.cpu_count() or 1)
    template = template_path(cache, encoder.name)
    if not is_complete(template):
        _progress("indexing the shipped norm packs once for every data home…")
        build_template(template, encoder, progress=lambda done, total: _progress(f"indexing norms {done}/{total}"))
    fixed_components(encoder, cache)
    return cache


class StartupSteps:
    """Seconds each step of loading took, in order (benchmarks/startup.py reads them from Resources.startup_s)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def done(self, step: str) -> None:
        now = time.perf_counter()
        self.seconds[step] = round(now - self._last, 4)
        self._last = now


@lru_cache(maxsize=4)
def _load(home: Path) -> Resources:
    steps = StartupSteps()
    _progress("loading the embedding model and the judgement models…")
    cache = install_cache_dir()
    encoder = serving_encoder(cache)
    steps.done("encoder")
    index_path = norm_index_path(home)
    # Only a home without an index needs the template (its key reads the pack files and Chroma's version).
    seeding = not os.environ.get(CHROMA_URL_ENV) and not index_path.exists()
    if seeding and seed_index(index_path, template_path(cache, encoder.name)):
        steps.done("norm index copied from the installation's")
    store = open_norm_store(index_path, encoder=encoder)
    steps.done("norm store opened")
    report = index_norms(store, home)
    steps.done("norm packs checked")
    judge = Judge.load()
    fixed = fixed_components(encoder, cache)
    steps.done("constraints, domains, question banks")
    value_scorers = {"trained": load_value_scorer("trained"), "zero-shot": load_value_scorer("zero-shot")}
    conflict, clarification = load_conflict_model(), load_clarification_model()
    steps.done("judge, values, conflict and clarification heads")
    resources = Resources(
        encoder=encoder,
        value_scorers=value_scorers,
        conflict=conflict,
        clarification=clarification,
        constraints=fixed.constraints,
        domains=fixed.domains,
        norms=store,
        pack_versions={**report.unchanged, **report.added},
        home=home,
        question_bank=fixed.question_bank,
        task_questions=fixed.task_questions,
        judge=judge,
        judge_encoder=_judge_encoder(encoder, judge),
        phrasings=MemoEncoder(encoder),
        startup_s=steps.seconds,
    )
    _progress(f"ready in {sum(steps.seconds.values()):.1f} s ({store.count()} norms indexed)")
    return resources


def get_resources(home: str | None = None) -> Resources:
    """The shared components for a data home (loaded on first use, then cached)."""
    with _lock:
        return _load(home_dir(home).resolve())
