"""IN3 nearest-task questions: the lookup's logic on hand-made vectors, then the real tasks and encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.datasets import DatasetMissingError, dataset_dir
from agent.encoder import EMBEDDING_DIM
from agent.task_questions import TaskQuestions, TaskQuestionsMissingError, VagueTask, load_vague_tasks


def _has_in3() -> bool:
    try:
        dataset_dir("in3")
    except DatasetMissingError:
        return False
    return True


needs_in3 = pytest.mark.skipif(not _has_in3(), reason="IN3 data directory not available")


def _unit(*weights: float) -> np.ndarray:
    vector = np.zeros(EMBEDDING_DIM, dtype=np.float32)
    vector[: len(weights)] = weights
    return vector / np.linalg.norm(vector)


def _task(text: str, question: str, *options: str) -> VagueTask:
    return VagueTask(text=text, question=question, options=options, questions=(question,))


PARIS = _task("Plan a trip to Paris", "How long do you plan to stay in Paris?", "A weekend", "A week")
TRIP = _task("Plan a trip", "What is your budget for the trip?", "Under $500", "More")
LAPTOP = _task("Recommend a good laptop", "What will you primarily use the laptop for?", "Gaming", "Business")


def _lookup() -> TaskQuestions:
    return TaskQuestions([PARIS, TRIP, LAPTOP], np.stack([_unit(1, 0.1), _unit(1, 0.3), _unit(0, 0, 1)]))


def test_the_nearest_task_gives_its_question_and_options() -> None:
    found = _lookup().nearest(_unit(0, 0.05, 1), "Which laptop should I buy?")
    assert found is not None
    assert (found.task, found.question, found.options) == (LAPTOP.text, LAPTOP.question, LAPTOP.options)
    assert found.similarity == pytest.approx(float(_unit(0, 0.05, 1) @ _unit(0, 0, 1)), abs=1e-6)


def test_a_question_naming_another_subject_is_passed_over_for_the_next_nearest() -> None:
    # Nearest is the Paris task, but its question names Paris, which a trip to Rome does not.
    found = _lookup().nearest(_unit(1, 0.1), "Plan a trip to Rome")
    assert found is not None and found.question == TRIP.question
    # Asked of Paris itself, the Paris question fits.
    found = _lookup().nearest(_unit(1, 0.1), "Plan a trip to Paris")
    assert found is not None and found.question == PARIS.question


def test_a_question_about_the_tasks_own_situation_is_not_asked_of_a_request_without_it() -> None:
    child = _task("My child is curious about the solar system. Explain it simply.",
                  "How old is your child, or what is their educational level?", "5-7 years old")
    lookup = TaskQuestions([child, TRIP], np.stack([_unit(1, 0.1), _unit(1, 0.3)]))
    # "Tell me about the sun." says nothing of a child: asking the child's age would invent one.
    found = lookup.nearest(_unit(1, 0.1), "Tell me about the sun.")
    assert found is not None and found.question == TRIP.question
    found = lookup.nearest(_unit(1, 0.1), "Explain the sun to my child")
    assert found is not None and found.question == child.question
    # What any such request leaves out ("your budget": the task never mentions one) is still asked.
    assert lookup.nearest(_unit(1, 0.3), "Plan a holiday").question == TRIP.question  # type: ignore[union-attr]


def test_below_the_floor_there_is_no_task_question() -> None:
    lookup = _lookup()
    request = _unit(1, 1, 1)  # about as far from every task
    similarity = lookup.nearest(request, "Plan a trip").similarity  # type: ignore[union-attr]
    assert lookup.question_for(request, "Plan a trip", floor=similarity + 0.01) is None
    assert lookup.question_for(request, "Plan a trip", floor=similarity - 0.01) is not None


def test_leaving_a_task_out_measures_the_others() -> None:
    found = _lookup().nearest(_unit(0, 0, 1), "laptop", exclude=2)
    assert found is not None and found.task != LAPTOP.text


def test_embeddings_must_match_the_tasks() -> None:
    with pytest.raises(ValueError, match="task embeddings"):
        TaskQuestions([PARIS, TRIP], np.zeros((3, EMBEDDING_DIM), dtype=np.float32))


def test_missing_in3_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TaskQuestionsMissingError, match="IN3"):
        load_vague_tasks(tmp_path)


@needs_in3
def test_real_in3_tasks_each_carry_their_most_important_question() -> None:
    tasks = load_vague_tasks()
    assert len(tasks) > 500
    assert all(t.question and t.question in t.questions and t.question == t.questions[0] for t in tasks)
    assert sum(bool(t.options) for t in tasks) > len(tasks) // 2, "most IN3 questions come with options"


@needs_in3
def test_a_vague_laptop_request_gets_in3s_laptop_question(tmp_path: Path) -> None:
    from agent.encoder import load_encoder

    encoder = load_encoder()
    lookup = TaskQuestions.load(encoder=encoder, cache_dir=tmp_path)
    from agent.embedding_cache import FixedTextCache

    cached = FixedTextCache(encoder, tmp_path).path_for([task.text for task in lookup.tasks])
    assert cached.is_file(), "task embeddings were not cached"
    request = "Can you recommend a good laptop for me?"
    found = lookup.nearest(encoder.encode([request])[0], request)
    # The nearest task ("I need a new laptop for graphic design work...") asks about "your new laptop",
    # which this request never said: the next one's question fits.
    assert found is not None and found.similarity > 0.6
    assert "laptop" in found.question.lower() and "new" not in found.question.lower() and found.options
