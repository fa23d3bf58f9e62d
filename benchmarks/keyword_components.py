"""Precision and recall of the keyword components on the turn path, on labels the datasets state.

    EDGE_ALIGN_DATA=../shared/data .venv/bin/python benchmarks/keyword_components.py [--out FILE]

Writes docs/figures/keyword_components.{json,md,png} (issue 14: every keyword list on a decisive path
is measured, with counts and a 95% Wilson interval). What each component decides (graphs/nodes.py):

- ``extract_options`` (agent/conflict.py), in ``detect_conflict``: the options a request names are
  embedded as "<request> I <option>." and become the candidate actions of the conflict model (the
  cost stake is the cheapest option's); with fewer than two, the actions are do / do not / safeguard.
- ``is_personal`` (agent/context_slots.py), in ``decide`` and the reply plan: only a personal request
  gets a question about its context; a general one with stakes or disagreement is answered with
  perspectives, and the plan names unknown facts only for a personal one.
- ``extract_context``, in ``begin_turn`` (the request) and ``clarify`` (the answer): the slots it
  finds are known context, which decides which norms apply and which questions are left to ask.
- ``wants_answer_now``, in ``clarify`` (the answer to a question): true stops all further questions.
- ``asks_for_work`` (agent/context_slots.py), in the reply plan: a request for a piece of work
  ("Write a persuasive essay arguing that we should ...") gets the work, never a community verdict.
- ``DOMAIN_KEYWORDS`` (memory/polis.py): the domains of each imported Pol.is norm, which the norm
  store's domain filter reads at retrieval.
- ``match_option`` is not measured: no dataset pairs an answer with the option it picks (IN3 lists
  options per missing detail but records no choice).

Labels (nothing hand-written; each measurement in the JSON says what its label means and its limits):

- Options stated by the dataset: MoralChoice gives two actions per scenario (``action1``/``action2``),
  put as a request in the project's two phrasings (train_conflict.chat_form "<context> Should I A or
  B?", judge_data "... Should I do this: a, or this: b?"). DailyDilemmas states that every dilemma has
  two actions (to_do / not_to_do) and asks it as the dataset's own question ("Should you ...?"), also
  measured after a mechanical second-to-first-person rewrite (you -> I, your -> my), since a user
  writes about themselves. Its request-level recall is a lower bound: a yes/no dilemma ("Should I
  report my colleague?") names one action, and by its contract extract_options then returns [] (the
  conflict model falls back to do / do not / safeguard, which is the right pair there). An extracted option matches a stated one when their word sets overlap with
  F1 >= 0.5 (exact matches after normalising are reported too). Plain requests from AmbigNQ, ClariQ,
  IN3, CoCoNot and Abg-CoQA are not dilemmas: any options found there count as invented (an upper
  bound on false positives: a plain request could still name alternatives).
- Personal situations: DailyDilemmas dilemmas and MoralChoice contexts describe the situation of the
  person addressed ("You are ..."; about a third of DailyDilemmas tells of a named third person,
  "Should John ...?"), ConflictScope prompts are written as the user's own request; AmbigNQ
  (search-engine questions about facts) and Abg-CoQA (questions about a story passage) are about
  nobody's situation. The label is per source, not per row. is_personal is measured on the texts as
  phrased only: the first-person rewrite inserts exactly the pronouns it reads.
- No dataset labels a request to skip questions; wants_answer_now is measured only by how often it
  fires on real answers to clarifying questions (ClariQ, ClariQ multi-turn, Qulac), which the datasets
  record as answers. No dataset labels context slots either; extract_context is measured by how often
  it finds a slot where there is no situation (false positives) and how often it finds one in personal
  situations (a firing rate, not a recall).
- The Pol.is export has no topic labels: coverage (share left to the fallback domain) and agreement
  with the project's embedding domain detector (agent/domains.py, a reference, not a truth).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import ROOT, emit

FIGURES = ROOT / "docs" / "figures"
COMMAND = "EDGE_ALIGN_DATA=../shared/data .venv/bin/python benchmarks/keyword_components.py"
Z95 = 1.959963984540054
OPTION_MATCH_F1 = 0.5
EXAMPLES = 8


# --- metrics (unit-tested in tests/test_keyword_components.py) ------------------------------------------


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion k / n (None when n is 0)."""
    if n <= 0:
        return None
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    p = k / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Counts:
    """Confusion counts of one binary detector on labelled rows."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    def add(self, label: bool, predicted: bool) -> None:
        if label and predicted:
            self.tp += 1
        elif predicted:
            self.fp += 1
        elif label:
            self.fn += 1
        else:
            self.tn += 1


def count(labels: Iterable[bool], predictions: Iterable[bool]) -> Counts:
    counts = Counts()
    for label, predicted in zip(labels, predictions, strict=True):
        counts.add(bool(label), bool(predicted))
    return counts


def _words(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    while words and words[0] in {"i", "to"}:  # "I refuse ..." and "refuse ..." name the same action
        words = words[1:]
    return words


def overlap_f1(first: str, second: str) -> float:
    """F1 of the two texts' word sets (lower-cased, a leading "I" / "to" dropped)."""
    a, b = set(_words(first)), set(_words(second))
    shared = len(a & b)
    if not shared:
        return 0.0
    precision, recall = shared / len(a), shared / len(b)
    return 2 * precision * recall / (precision + recall)


def same_option(found: str, stated: str, threshold: float = OPTION_MATCH_F1) -> bool:
    return overlap_f1(found, stated) >= threshold


def option_matches(found: Sequence[str], stated: Sequence[str], threshold: float = OPTION_MATCH_F1) -> tuple[int, int]:
    """(found options that match some stated option, stated options that some found option matches)."""
    precise = sum(any(same_option(f, s, threshold) for s in stated) for f in found)
    recalled = sum(any(same_option(f, s, threshold) for f in found) for s in stated)
    return precise, recalled


def exact_option(found: str, stated: str) -> bool:
    return _words(found) == _words(stated)


# --- measurements ---------------------------------------------------------------------------------------


@dataclass
class Measurement:
    component: str
    metric: str  # precision / recall (of what) | false_positive_rate | firing_rate | fallback_rate | agreement_*
    data: str
    label: str
    k: int
    n: int
    examples: list[Any] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def value(self) -> float | None:
        return self.k / self.n if self.n else None

    def to_dict(self, shareable: Callable[[str], bool] = lambda _data: True) -> dict[str, Any]:
        interval = wilson_interval(self.k, self.n)
        examples = self.examples if shareable(self.data) else []
        return {
            "component": self.component,
            "metric": self.metric,
            "data": self.data,
            "label": self.label,
            "k": self.k,
            "n": self.n,
            "value": None if self.value is None else round(self.value, 4),
            "wilson95": None if interval is None else [round(interval[0], 4), round(interval[1], 4)],
            **({"extra": self.extra} if self.extra else {}),
            **({"examples": examples[:EXAMPLES]} if examples else {}),
            **({"examples_withheld": "the dataset may not be redistributed"} if self.examples and not examples else {}),
        }


def redistributable(data: str) -> bool:
    """Whether texts of the dataset a measurement's ``data`` names may be quoted in the committed report
    (agent/data/datasets.yaml ``redistributable``); an unknown dataset is not."""
    from agent.datasets import load_registry

    squeezed = re.sub(r"[^a-z0-9]", "", data.lower())
    named = [spec for name, spec in load_registry().items() if squeezed.startswith(re.sub(r"[^a-z0-9]", "", name))]
    return bool(named) and all(spec.redistributable for spec in named)


_SECOND_TO_FIRST = (
    (re.compile(r"\byou're\b", re.I), "I'm"),
    (re.compile(r"\byou've\b", re.I), "I've"),
    (re.compile(r"\byou'll\b", re.I), "I'll"),
    (re.compile(r"\byou'd\b", re.I), "I'd"),
    (re.compile(r"\byourself\b", re.I), "myself"),
    (re.compile(r"\byours\b", re.I), "mine"),
    (re.compile(r"\byour\b", re.I), "my"),
    (re.compile(r"\byou\b", re.I), "I"),
)


def first_person(text: str) -> str:
    """A mechanical second-to-first-person rewrite ("Should you tell your boss" -> "Should I tell my
    boss"); object pronouns come out ungrammatical ("asks I"), which none of the patterns reads."""
    for pattern, replacement in _SECOND_TO_FIRST:
        text = pattern.sub(replacement, text)
    return text


def _rate(
    component: str, metric: str, data: str, label: str, texts: Sequence[str], fires: Callable[[str], Any]
) -> Measurement:
    hits = [t for t in texts if fires(t)]
    return Measurement(component, metric, data, label, len(hits), len(texts), examples=hits)


def _fires_options(text: str) -> bool:
    from agent.conflict import extract_options

    return len(extract_options(text)) >= 2


def _plain_requests(data_dir: str | None) -> dict[str, list[str]]:
    """Requests that name no options and describe nobody's dilemma, per source."""
    from agent.training import judge_data

    sources: dict[str, list[str]] = {}
    for name in ("ambignq", "clariq", "in3", "coconot", "abg_coqa"):
        sources[name] = [row.text for row in getattr(judge_data, name)(data_dir)]
    return sources


def measure_options(data_dir: str | None, plain: dict[str, list[str]]) -> list[Measurement]:
    from agent.conflict import extract_options
    from agent.training import judge_data
    from agent.training.train_conflict import chat_form, read_moralchoice

    component = "extract_options"
    out: list[Measurement] = []
    mc = read_moralchoice(data_dir)
    stated = [(a, b) for a, b in mc.actions]
    phrasings = {
        "MoralChoice, chat_form ('... Should I A or B?')": [
            chat_form(c, a, b) for c, (a, b) in zip(mc.contexts, mc.actions, strict=True)
        ],
        # judge_data.moralchoice reads the same two CSVs in the same order.
        "MoralChoice, judge_data ('... do this: a, or this: b?')": [
            row.text for row in judge_data.moralchoice(data_dir)
        ],
    }
    for data, texts in phrasings.items():
        assert len(texts) == len(stated)
        found = [extract_options(t) for t in texts]
        named = sum(len(f) >= 2 for f in found)
        precise = recalled = exact = extracted = 0
        over_split: list[list[str]] = []
        for options, pair in zip(found, stated, strict=True):
            if len(options) < 2:
                continue
            p, r = option_matches(options, pair)
            precise, recalled, extracted = precise + p, recalled + r, extracted + len(options)
            exact += sum(any(exact_option(o, s) for o in options) for s in pair)
            if len(options) != 2:
                over_split.append(options)
        label = "MoralChoice states two actions per scenario (action1, action2)"
        missed = [t[-160:] for t, f in zip(texts, found, strict=True) if len(f) < 2]
        out.append(Measurement(component, "recall (requests)", data, label + "; >= 2 options found",
                               named, len(texts), examples=missed))
        out.append(Measurement(component, "precision (options)", data, label + f"; a found option matches "
                               f"a stated action (word-set F1 >= {OPTION_MATCH_F1})", precise, extracted,
                               examples=over_split, extra={"found_options_not_two": len(over_split)}))
        out.append(Measurement(component, "recall (options)", data, label + "; a stated action is found "
                               "(matched anywhere among all stated actions)", recalled, 2 * len(texts),
                               extra={"stated_actions_found_exactly": exact}))
    dilemmas = [row.text for row in judge_data.daily_dilemmas(data_dir)]
    for data, texts in (
        ("DailyDilemmas as phrased ('Should you ...?')", dilemmas),
        ("DailyDilemmas, rewritten you -> I", [first_person(t) for t in dilemmas]),
    ):
        found = [extract_options(t) for t in texts]
        fired = [f for f in found if len(f) >= 2]
        label = "DailyDilemmas: every dilemma has two actions (to_do / not_to_do)"
        out.append(Measurement(component, "recall (requests)", data, label + "; >= 2 options found",
                               len(fired), len(texts)))
        out.append(Measurement(component, "precision (two options)", data, label + "; of the requests where options are "
                               "found, exactly two (more is an invented option)", sum(len(f) == 2 for f in fired),
                               len(fired), examples=[f for f in fired if len(f) != 2]))
    for name, texts in plain.items():
        out.append(_rate(component, "false_positive_rate", name, "plain request, not a dilemma: options found "
                         "count as invented (an upper bound)", texts, _fires_options))
    conflictscope = [row.text for row in judge_data.conflictscope(data_dir)]
    out.append(_rate(component, "firing_rate", "conflictscope", "no label: value conflicts, options not stated",
                     conflictscope, _fires_options))
    return out


def _personal_sources(data_dir: str | None) -> dict[str, list[str]]:
    from agent.training import judge_data
    from agent.training.train_conflict import read_moralchoice

    dilemmas = [row.text for row in judge_data.daily_dilemmas(data_dir)]
    contexts = read_moralchoice(data_dir).contexts
    return {
        "daily_dilemmas as phrased": dilemmas,
        "daily_dilemmas, rewritten you -> I": [first_person(t) for t in dilemmas],
        "moralchoice contexts as phrased": contexts,
        "moralchoice contexts, rewritten you -> I": [first_person(t) for t in contexts],
        "conflictscope prompts": [row.text for row in judge_data.conflictscope(data_dir)],
    }


PERSONAL_LABEL = "personal: the source presents the text as one person's own situation (per source, not per row)"
IMPERSONAL_LABEL = "impersonal: a question about facts or a story passage, nobody's situation (per source)"


def measure_personal(personal: dict[str, list[str]], impersonal: dict[str, list[str]]) -> list[Measurement]:
    from agent.context_slots import _FIRST_PERSON, is_personal

    component = "is_personal"
    # The first-person rewrites put in exactly the pronouns is_personal reads, so they would measure the
    # rewrite, not the component: only the texts as the datasets phrase them count here.
    personal = {k: v for k, v in personal.items() if "rewritten" not in k}
    out = [
        _rate(component, "recall", name, PERSONAL_LABEL, texts, lambda t: not is_personal(t))
        for name, texts in personal.items()
    ]
    for m in out:  # _rate counted the misses (as examples); recall counts the hits
        m.k = m.n - m.k
    for name, texts in impersonal.items():
        false = _rate(component, "false_positive_rate", name, IMPERSONAL_LABEL, texts, is_personal)
        # Which first-person word fired ("us" is also the country, "my" sits inside titles).
        words = Counter(hit.group(0).lower() for t in texts if (hit := _FIRST_PERSON.search(t)))
        false.extra["first_word_matched"] = dict(words.most_common())
        out.append(false)
    # One pooled precision over every labelled row: it depends on the mix, which the extra field states.
    pooled = personal
    labels = [True] * sum(map(len, pooled.values())) + [False] * sum(map(len, impersonal.values()))
    texts = [t for v in pooled.values() for t in v] + [t for v in impersonal.values() for t in v]
    counts = count(labels, [is_personal(t) for t in texts])
    out.append(Measurement(component, "precision", f"pooled: the {len(pooled)} personal + {len(impersonal)} impersonal sources above",
                           "personal vs impersonal sources as above", counts.tp, counts.tp + counts.fp,
                           extra={"sources": [*pooled, *impersonal], "positives": sum(labels),
                                  "negatives": len(labels) - sum(labels), "counts": vars(counts)}))
    return out


def measure_context(personal: dict[str, list[str]], impersonal: dict[str, list[str]],
                    answers: dict[str, list[str]]) -> list[Measurement]:
    from agent.context_slots import extract_context

    component = "extract_context"
    out = []
    for name, texts in impersonal.items():
        found = [(t, extract_context(t)) for t in texts]
        slots = Counter(f"{s}={v}" for _, d in found for s, v in d.items())
        out.append(Measurement(component, "false_positive_rate", name, IMPERSONAL_LABEL + "; any slot found is false",
                               sum(bool(d) for _, d in found), len(texts),
                               examples=[[t, d] for t, d in found if d], extra={"slots": dict(slots.most_common())}))
    for name, texts in {**personal, **answers}.items():
        found = [(t, extract_context(t)) for t in texts]
        slots = Counter(f"{s}={v}" for _, d in found for s, v in d.items())
        label = ("no slot labels: share of answers to clarifying questions with a slot found" if name in answers
                 else "no slot labels: share of personal situations with a slot found (not a recall)")
        out.append(Measurement(component, "firing_rate", name, label, sum(bool(d) for _, d in found), len(texts),
                               examples=[[t[-160:], d] for t, d in found if d], extra={"slots": dict(slots.most_common())}))
    return out


def clarification_answers(data_dir: str | None) -> dict[str, list[str]]:
    """Real replies to clarifying questions: ClariQ (train + dev), ClariQ multi-turn, Qulac."""
    from agent.clarification_need import load_clariq_topics
    from agent.datasets import dataset_dir

    clariq = sorted({a for split in ("train", "dev") for topic in load_clariq_topics(split, data_dir)
                     for a in topic.answers})
    multi: list[str] = []
    with (dataset_dir("clariq", data_dir) / "multi_turn_human_generated_data.tsv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            multi.extend(row[f"answer{i}"] for i in (1, 2, 3) if row.get(f"answer{i}"))
    qulac = json.loads((dataset_dir("qulac", data_dir) / "qulac.json").read_text(encoding="utf-8"))
    return {
        "clariq answers": clariq,
        "clariq multi-turn answers": multi,
        "qulac answers": [str(a) for a in qulac["answer"].values()],
    }


def measure_answer_now(answers: dict[str, list[str]]) -> list[Measurement]:
    from agent.context_slots import wants_answer_now

    label = ("the dataset records the reply as an answer to the clarifying question, not a request to skip "
             "(no dataset labels skip requests, so recall is not measured)")
    return [_rate("wants_answer_now", "false_positive_rate", name, label, texts, wants_answer_now)
            for name, texts in answers.items()]


def measure_work_requests(data_dir: str | None) -> list[Measurement]:
    """asks_for_work: on requests for persuasive writing (recall) and on "should I?" questions, which
    must keep their verdict (false positives)."""
    from agent.context_slots import asks_for_work
    from agent.training import judge_data

    work = [row.text for row in judge_data.debate_essays(data_dir)]
    measured = [_rate("asks_for_work", "recall", "touche23_valueeval (debate requests)",
                      "the judge's debate_essays: a persuasive-writing request on each debate conclusion", work,
                      asks_for_work)]
    label = "a question about acting or a situation to judge, which wants a verdict, not a piece of work"
    for name in ("clarifydelphi", "daily_dilemmas", "moralchoice", "conflictscope"):
        texts = [row.text for row in getattr(judge_data, name)(data_dir)]
        measured.append(_rate("asks_for_work", "false_positive_rate", name, label, texts, asks_for_work))
    return measured


def measure_polis(data_dir: str | None, agreement: bool) -> list[Measurement]:
    from agent.datasets import dataset_dir
    from memory.polis import DEFAULT_DOMAIN, _read_rows, domains_for, moderated_in_statements

    component = "polis DOMAIN_KEYWORDS"
    folder = dataset_dir("ccai_polis", data_dir)
    norms = [" ".join(r["comment-body"].split()) for _, r in sorted(moderated_in_statements(folder).items(),
                                                                      key=lambda kv: int(kv[0]))]
    every = [" ".join(r["comment-body"].split()) for r in _read_rows(folder / "comments.csv")]
    label = f"no topic labels in the export: share given only the fallback domain '{DEFAULT_DOMAIN}'"
    out = [
        _rate(component, "fallback_rate", "ccai_polis moderated-in statements (the imported norms)", label, norms,
              lambda t: domains_for(t) == [DEFAULT_DOMAIN]),
        _rate(component, "fallback_rate", "ccai_polis comments.csv, all statements", label, every,
              lambda t: domains_for(t) == [DEFAULT_DOMAIN]),
    ]
    keyword_sets = [domains_for(t) for t in norms]
    out[0].extra["domains"] = dict(Counter(d for ds in keyword_sets for d in ds).most_common())
    if not agreement:
        return out
    from agent.domains import DomainDetector
    from agent.encoder import load_encoder

    encoder = load_encoder()
    detector = DomainDetector(encoder)
    vectors = encoder.encode(norms)
    detected = [detector.detect(v) for v in vectors]
    reference = "agreement with agent/domains.py DomainDetector.detect (embedding; a reference, not a truth)"
    data = "ccai_polis moderated-in statements"
    top_in = sum(d[0] in k for d, k in zip(detected, keyword_sets, strict=True))
    pairs_k = {(i, d) for i, ds in enumerate(keyword_sets) for d in ds}
    pairs_d = {(i, d) for i, ds in enumerate(detected) for d in ds}
    per_domain = {
        name: {"keywords": sum(name in k for k in keyword_sets), "detector": sum(name in d for d in detected),
               "both": sum(name in k and name in d for k, d in zip(keyword_sets, detected, strict=True))}
        for name in sorted({d for ds in keyword_sets + detected for d in ds})
    }
    disagree = [[t, k, d] for t, k, d in zip(norms, keyword_sets, detected, strict=True) if not set(k) & set(d)]
    out += [
        Measurement(component, "agreement_top1", data, reference + "; the detector's top domain is among the "
                    "keyword domains", top_in, len(norms), examples=disagree,
                    extra={"detector_domains": dict(Counter(d for ds in detected for d in ds).most_common()),
                           "per_domain": per_domain}),
        Measurement(component, "agreement_precision", data, reference + "; (statement, domain) pairs the keywords "
                    "give that the detector also gives", len(pairs_k & pairs_d), len(pairs_k)),
        Measurement(component, "agreement_recall", data, reference + "; (statement, domain) pairs the detector "
                    "gives that the keywords also give", len(pairs_k & pairs_d), len(pairs_d)),
    ]
    # Both say "technology" for most statements (every one is about "the AI"): the agreement that matters
    # for the domain filter is on the other domains.
    topical = [(set(k) - {DEFAULT_DOMAIN}, set(d) - {DEFAULT_DOMAIN}) for k, d in zip(keyword_sets, detected, strict=True)]
    out += [
        Measurement(component, "agreement_precision", data + ", domains other than the fallback",
                    reference + "; statements given a non-fallback domain by the keywords that share one with the "
                    "detector", sum(bool(k & d) for k, d in topical if k), sum(bool(k) for k, _ in topical)),
        Measurement(component, "agreement_recall", data + ", domains other than the fallback",
                    reference + "; statements given a non-fallback domain by the detector that share one with the "
                    "keywords", sum(bool(k & d) for k, d in topical if d), sum(bool(d) for _, d in topical)),
    ]
    return out


# --- report ---------------------------------------------------------------------------------------------

FEEDS = {
    "extract_options": "conflict model's candidate actions (detect_conflict)",
    "is_personal": "whether decide() may ask about context; reply plan's unknowns",
    "extract_context": "known context: applicable norms, questions left (begin_turn, clarify)",
    "wants_answer_now": "stops all further questions (clarify)",
    "asks_for_work": "a request for a piece of work gets the work, no verdict (reply plan)",
    "polis DOMAIN_KEYWORDS": "domains of imported Pol.is norms (retrieval filter)",
}


def _fmt(m: dict[str, Any]) -> tuple[str, str]:
    if m["value"] is None:
        return "n/a", "n/a"
    lo, hi = m["wilson95"]
    return f"{m['value']:.3f}", f"{lo:.3f}-{hi:.3f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Keyword components on the turn path: measured",
        "",
        f"Command (from the project root): `{report['command']}`",
        "",
        "Each row: what the component decides, the data and what its label means, the metric, the counts and a "
        "95% Wilson interval. `false_positive_rate` and `fallback_rate` are better low; `firing_rate` has no "
        "label behind it; `agreement_*` compares with another model, not with truth. Definitions and limits: "
        "the docstring of `benchmarks/keyword_components.py`; examples of the errors (withheld for ClariQ and Pol.is, "
        "which may not be redistributed): "
        "`docs/figures/keyword_components.json`.",
        "",
        "| component (decides) | data | metric | k / n | value | 95% CI |",
        "|---|---|---|---|---|---|",
    ]
    for m in report["measurements"]:
        value, interval = _fmt(m)
        decides = f"{m['component']} ({FEEDS[m['component']]})"
        lines.append(f"| {decides} | {m['data']} | {m['metric']} | {m['k']} / {m['n']} | {value} | {interval} |")
    lines += ["", "Labels:", ""]
    seen: set[str] = set()
    for m in report["measurements"]:
        key = f"{m['component']}: {m['label']}"
        if key not in seen:
            seen.add(key)
            lines.append(f"- {key}")
    lines += ["", f"Not measured: {report['not_measured']}", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [m for m in report["measurements"] if m["value"] is not None]
    components = list(dict.fromkeys(m["component"] for m in rows))
    cmap = plt.get_cmap("tab10")
    colours = {name: cmap(i) for i, name in enumerate(components)}
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(rows) + 1.5))
    for y, m in enumerate(reversed(rows)):
        lo, hi = m["wilson95"]
        marker = "o" if m["metric"].startswith(("precision", "recall")) else "s" if m["metric"].startswith("agreement") else "x"
        ax.errorbar(m["value"], y, xerr=[[m["value"] - lo], [hi - m["value"]]], fmt=marker,
                    color=colours[m["component"]], capsize=2, markersize=4)
    labels = [f"{m['component']} | {m['metric']} | {m['data'][:52]}" for m in reversed(rows)]
    ax.set_yticks(range(len(rows)), labels, fontsize=6)
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("proportion (95% Wilson interval); o precision/recall, x error or firing rate, s agreement")
    ax.set_title("Keyword components on the turn path, on labels the datasets state")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def run(data_dir: str | None, agreement: bool = True) -> dict[str, Any]:
    plain = _plain_requests(data_dir)
    personal = _personal_sources(data_dir)
    impersonal = {"ambignq": plain["ambignq"], "abg_coqa": plain["abg_coqa"]}
    answers = clarification_answers(data_dir)
    measurements = [
        *measure_options(data_dir, plain),
        *measure_personal(personal, impersonal),
        *measure_context(personal, impersonal, answers),
        *measure_answer_now(answers),
        *measure_work_requests(data_dir),
        *measure_polis(data_dir, agreement),
    ]
    return {
        "command": COMMAND + ("" if agreement else " --no-agreement"),
        "option_match": f"word-set F1 >= {OPTION_MATCH_F1} (a leading 'I' / 'to' dropped)",
        "not_measured": "match_option (no dataset pairs an answer with the option it picks); recall of "
        "wants_answer_now and of extract_context's slots (no dataset labels them).",
        "measurements": [m.to_dict(redistributable) for m in measurements],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data-dir", help="default: $EDGE_ALIGN_DATA, else ../shared/data")
    parser.add_argument("--out", default=str(FIGURES / "keyword_components.json"))
    parser.add_argument("--no-agreement", action="store_true", help="skip the embedding domain detector")
    args = parser.parse_args(argv)
    report = run(args.data_dir, agreement=not args.no_agreement)
    out = Path(args.out)
    emit("keyword_components", report, str(out))
    out.with_suffix(".md").write_text(markdown(report), encoding="utf-8")
    plot(report, out.with_suffix(".png"))
    print(f"wrote {out}, {out.with_suffix('.md')}, {out.with_suffix('.png')}", file=sys.stderr)


if __name__ == "__main__":
    main()
