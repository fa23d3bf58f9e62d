"""The measured components a turn uses, loaded once per process and shared by every thread."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

from agent.clarification_need import ClarificationNeedModel, load_clarification_model
from agent.conflict import ConflictModel, load_conflict_model
from agent.constraints import ConstraintBook
from agent.datasets import DatasetMissingError
from agent.domains import DomainDetector
from agent.encoder import Encoder, MemoEncoder, load_encoder, use_serving_threads
from agent.judge import Judge
from agent.question_bank import QuestionBank, QuestionBankMissingError
from agent.task_questions import TaskQuestions, TaskQuestionsMissingError
from agent.value_model import ValueScorer, load_value_scorer
from memory.norm_pack import load_packs, shipped_packs_dir
from memory.norm_store import NormStore, open_norm_store
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
    # MiniLM with the judge's fine-tuned top layers, when the shipped heads were fitted on its embedding;
    # None when they read the packaged model's embedding.
    judge_encoder: Any
    # The packaged encoder behind a memo for the packs' fixed phrasings (each embedded once per process).
    phrasings: MemoEncoder


def _progress(message: str) -> None:
    print(f"[edge-align] {message}", file=sys.stderr, flush=True)


def pack_paths(home: Path) -> list[Path]:
    """The shipped packs, plus any the user dropped into <home>/packs."""
    paths = [shipped_packs_dir()]
    extra = home / "packs"
    if extra.is_dir() and any(extra.glob("*.yaml")):
        paths.append(extra)
    return paths


def index_norms(store: NormStore, home: Path, *, show_progress: bool = True) -> Any:
    """Bring the index up to date with the packs on disk (only packs whose version changed are rewritten)."""
    packs = load_packs(pack_paths(home))

    def report(done: int, total: int) -> None:
        if show_progress:
            _progress(f"indexing norms {done}/{total}")

    return store.index_packs(packs, progress=report)


def _judge_encoder(encoder: Any, judge: Judge) -> Any:
    """The tuned-layer encoder the shipped heads need, or None when they read the packaged embedding."""
    from agent.judge_encoder import LAYERS_FILE, JudgeEncoder

    if not judge.heads.encoder.startswith(JudgeEncoder.name):
        return None
    return JudgeEncoder.from_files(encoder.sentence_model, LAYERS_FILE, lock=encoder.lock)


def _research_data(load: Callable[[], T], missing: type[DatasetMissingError], without: str) -> T | None:
    """Data read in place that is not shipped (ClariQ's bank, IN3's tasks): without it, say what is used instead."""
    try:
        return load()
    except missing:
        _progress(without)
        return None


@lru_cache(maxsize=4)
def _load(home: Path) -> Resources:
    started = time.perf_counter()
    _progress("loading the embedding model and the judgement models…")
    use_serving_threads()
    encoder = load_encoder()
    store = open_norm_store(norm_index_path(home), encoder=encoder)
    report = index_norms(store, home)
    judge = Judge.load()
    constraints = ConstraintBook.load()
    constraints.prepare(encoder)
    resources = Resources(
        encoder=encoder,
        value_scorers={"trained": load_value_scorer("trained"), "zero-shot": load_value_scorer("zero-shot")},
        conflict=load_conflict_model(),
        clarification=load_clarification_model(),
        constraints=constraints,
        domains=DomainDetector(encoder),
        norms=store,
        pack_versions={**report.unchanged, **report.added},
        home=home,
        question_bank=_research_data(
            lambda: QuestionBank.load(encoder=encoder), QuestionBankMissingError,
            "ClariQ question bank not found: intent questions will use the generic template",
        ),
        task_questions=_research_data(
            lambda: TaskQuestions.load(encoder=encoder), TaskQuestionsMissingError,
            "IN3 not found: vague tasks will be asked ClariQ's or the generic question",
        ),
        judge=judge,
        judge_encoder=_judge_encoder(encoder, judge),
        phrasings=MemoEncoder(encoder),
    )
    _progress(f"ready in {time.perf_counter() - started:.1f} s ({store.count()} norms indexed)")
    return resources


def get_resources(home: str | None = None) -> Resources:
    """The shared components for a data home (loaded on first use, then cached)."""
    with _lock:
        return _load(home_dir(home).resolve())
