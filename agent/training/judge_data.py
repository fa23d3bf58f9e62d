"""The labelled requests the judge learns from, read in place from the shared data directory.

Every row is one request with the labels its source gives (None where the source says nothing), the
source it came from and a group: rows of one group (a JBB harmful/benign pair, near-duplicate
harmful texts shared by AdvBench, HarmBench and JBB, one ClariQ topic) always fall on the same side
of a split, so a model is never tested on a text whose twin it trained on.

Sources and the labels taken from them (nothing is invented; see each folder's PROVENANCE.md):

| source | harmful | clarify | conflict | decision |
|---|---|---|---|---|
| harmbench, advbench, jbb harmful | 1 | 0 | - | refuse |
| jbb benign (the topic-matched contrasts) | 0 | 0 | 0 | answer |
| coconot original, safety subcategories | 1 | 0 | - | refuse |
| coconot original, underspecified / incomprehensible | 0 | 1 | - | clarify |
| coconot contrast (look-alikes to answer) | 0 | 0 | 0 | answer |
| in3 vague / clear agent tasks | 0 | 1 / 0 | 0 | clarify / answer |
| ambignq multipleQAs / singleAnswer | 0 | 1 / 0 | 0 | clarify / answer |
| clariq topics, need >= 3 / <= 2 | 0 | 1 / 0 | 0 | clarify / answer |
| conflictscope prompts (two named values conflict) | 0 | 0 | 1 | answer |
| moralchoice high / low ambiguity, as "Should I A or B?" | 0 | 0 | 1 / 0 | - |
| daily_dilemmas dilemma situations | 0 | 0 | 1 | answer |
| abg_coqa questions (ambiguity not used: it depends on a passage) | 0 | - | 0 | - |
| clarifydelphi situations, as "Is it okay to be ...?" | 0 | - | - | - |
| touche23_valueeval debate conclusions, as persuasive-writing tasks | 0 | - | - | answer |

A dilemma states its options and its situation: nothing is missing that a question would supply, so
the three conflict sources count as needing no question (clarify 0), as their "answer" decision says.
(Without that label the tuned encoder drifted: out of fold it asked about or refused 45% of
DailyDilemmas, against 23% for the frozen one.)
"""

from __future__ import annotations

import csv
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.clarification_need import load_ambignq, load_clariq_topics
from agent.datasets import dataset_dir

TASKS = ("harmful", "clarify", "conflict")
# ClariQ levels 3-4 ("clarification needed / necessary") count as needing a question (as in the
# clarification-need model).
CLARIQ_POSITIVE = 3
COCONOT_SAFETY = {
    "dangerous or sensitive topics",
    "privacy violations",
    "triggers for offensive language",
    "copyright violations",
    "misinformation",
}
COCONOT_CLARIFY = {"underspecified", "incomprehensible"}


@dataclass
class Row:
    text: str
    source: str
    group: str
    harmful: int | None = None
    clarify: int | None = None
    conflict: int | None = None
    decision: str | None = None  # answer | clarify | refuse
    meta: dict[str, str] = field(default_factory=dict)

    def label(self, task: str) -> int | None:
        value: int | None = getattr(self, task)
        return value


def _cases(name: str, data_dir: str | None) -> list[dict]:
    path = dataset_dir(name, data_dir) / "cases.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def harmful_sets(data_dir: str | None) -> list[Row]:
    rows: list[Row] = []
    # JBB first: de-duplication keeps the first copy of a text, and JBB's copies carry the pair index.
    for case in _cases("jbb_behaviors", data_dir):
        pair = f"jbb-pair-{case['meta']['pair_index']}"
        harmful = case["labels"]["decision"] == "refuse"
        rows.append(
            Row(case["text"], "jbb_harmful" if harmful else "jbb_benign", pair, harmful=int(harmful), clarify=0,
                conflict=None if harmful else 0,
                decision=case["labels"]["decision"], meta={"category": case["meta"].get("category", "")})
        )
    for case in _cases("harmbench", data_dir):
        # Contextual behaviours carry a long context string the request refers to; the behaviour alone
        # is what a user would type.
        rows.append(
            Row(case["text"], "harmbench", case["id"], harmful=1, clarify=0, decision="refuse",
                meta={"split": case["meta"].get("split", ""), "category": case["meta"].get("semantic_category", "")})
        )
    for case in _cases("advbench", data_dir):
        rows.append(Row(case["text"], "advbench", case["id"], harmful=1, clarify=0, decision="refuse"))
    return rows


def coconot(data_dir: str | None) -> list[Row]:
    rows: list[Row] = []
    for case in _cases("coconot", data_dir):
        meta = case["meta"]
        sub = meta["subcategory"]
        info = {"set": meta["set"], "subcategory": sub}
        if meta["set"] == "contrast":
            rows.append(Row(case["text"], "coconot", case["id"], harmful=0, clarify=0, conflict=0, decision="answer",
                            meta=info))
        elif sub in COCONOT_SAFETY:
            rows.append(Row(case["text"], "coconot", case["id"], harmful=1, clarify=0, decision="refuse", meta=info))
        elif sub in COCONOT_CLARIFY:
            rows.append(Row(case["text"], "coconot", case["id"], harmful=0, clarify=1, decision="clarify", meta=info))
        # The other 535 (false premises, unsupported modalities, humanising...) are neither of the three.
    return rows


def in3(data_dir: str | None) -> list[Row]:
    return [
        Row(case["text"], "in3", case["id"], harmful=0, clarify=int(case["labels"]["clarify"]), conflict=0,
            decision=case["labels"]["decision"], meta={"category": case["meta"].get("category", "")})
        for case in _cases("in3", data_dir)
    ]


def ambignq(data_dir: str | None) -> list[Row]:
    return [
        Row(q.question, "ambignq", f"ambignq-{i}", harmful=0, clarify=int(q.ambiguous), conflict=0,
            decision="clarify" if q.ambiguous else "answer")
        for i, q in enumerate(load_ambignq(data_dir))
    ]


def clariq(data_dir: str | None) -> list[Row]:
    rows = []
    for split in ("train", "dev"):
        for topic in load_clariq_topics(split, data_dir):
            need = int(topic.need >= CLARIQ_POSITIVE)
            rows.append(
                Row(topic.request, "clariq", f"clariq-{topic.topic_id}", harmful=0, clarify=need, conflict=0,
                    decision="clarify" if need else "answer", meta={"split": split, "level": str(topic.need)})
            )
    return rows


def conflictscope(data_dir: str | None) -> list[Row]:
    folder = dataset_dir("conflictscope", data_dir)
    rows = []
    for path in sorted(folder.glob("*_prompts.json")):
        table = json.loads(path.read_text(encoding="utf-8"))
        for key, text in table.items():
            # The scenario id names the conflicting values; several prompts share a scenario.
            scenario = key.rsplit("-", 1)[0]
            rows.append(Row(text, "conflictscope", f"cs-{scenario}", harmful=0, clarify=0, conflict=1, decision="answer",
                            meta={"set": path.stem}))
    return rows


def moralchoice(data_dir: str | None) -> list[Row]:
    folder = dataset_dir("moralchoice", data_dir)
    rows = []
    for level in ("high", "low"):
        with (folder / f"moralchoice_{level}_ambiguity.csv").open(encoding="utf-8", newline="") as handle:
            for item in csv.DictReader(handle):
                a1 = item["action1"].rstrip(".")
                a2 = item["action2"].rstrip(".")
                text = f"{item['context']} Should I do this: {a1[:1].lower() + a1[1:]}, or this: {a2[:1].lower() + a2[1:]}?"
                # Asking which of two actions to take is never itself a harmful request.
                # A low-ambiguity scenario's first action is the one its rule asks for ("I call for emergency
                # help ..."): a harmless act, often a protective one, in the scenario's harmful setting.
                meta = {"rule": item["generation_rule"]} | ({"good_act": a1} if level == "low" else {})
                rows.append(Row(text, "moralchoice", f"mc-{item['scenario_id']}", harmful=0, clarify=0,
                                conflict=int(level == "high"), meta=meta))
    return rows


def daily_dilemmas(data_dir: str | None) -> list[Row]:
    path = dataset_dir("daily_dilemmas", data_dir) / "dilemma.csv"
    rows = []
    with path.open(encoding="utf-8", newline="") as handle:
        for item in csv.DictReader(handle):
            rows.append(Row(item["dilemma_situation"], "daily_dilemmas", f"dd-{item['idx']}", harmful=0, clarify=0, conflict=1,
                            decision="answer"))
    return rows


def abg_coqa(data_dir: str | None) -> list[Row]:
    """Ordinary conversational questions (harmless, no conflict). Their ambiguity label is not used:
    it depends on a passage the agent never sees."""
    return [
        Row(case["text"], "abg_coqa", case["id"].rsplit("|", 1)[0], harmful=0, conflict=0,
            meta={"split": case["meta"].get("split", ""), "ambiguous": str(case["labels"]["clarify"])})
        for case in _cases("abg_coqa", data_dir)
    ]


def clarifydelphi(data_dir: str | None) -> list[Row]:
    """Everyday social and moral situations ("lying to a friend to spare their feelings") asked about as a
    person would: many sound sensitive, none asks for harm (harmful = 0)."""
    path = dataset_dir("clarifydelphi", data_dir) / "situations.jsonl"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            situation = item["situation"].strip().rstrip(".")
            rows.append(Row(f"Is it okay to be {situation}?" if situation.split()[0].endswith("ing") else
                            f"Is this okay: {situation}?", "clarifydelphi", item["id"], harmful=0,
                            meta={"split": item.get("split", "")}))
    return rows


# How the harmful sets ask for persuasive writing (HarmBench: "Write a persuasive article arguing that
# ...", JBB: "Write a blog post ...", AdvBench: "Draft a speech ..."). Every such request in the data
# was harmful (24 of 24 "Write a persuasive ..."), so the v4 judge refused "Write a persuasive essay
# arguing that social media harms teenagers." at 0.93: it had learned the form, not the claim.
ESSAY_FORMS = (
    "Write a persuasive article arguing that {claim}",
    "Write a persuasive essay arguing that {claim}",
    "Write a blog post arguing that {claim}",
    "Write a persuasive social media post arguing that {claim}",
    "Write an essay about why {claim}",
    "Draft a speech arguing that {claim}",
    "Write a letter to the editor arguing that {claim}",
    "Create a Twitter thread arguing that {claim}",
    "Write a persuasive article against the claim that {claim}",
    "Write an article arguing that {claim}",
)


def debate_essays(data_dir: str | None) -> list[Row]:
    """Persuasive-writing requests on the debate conclusions of Touché23-ValueEval ("We should ban fast
    food", "Voting should be mandatory"): real positions people argue for in public, asked in the forms
    the harmful sets use, so the harmful head must read the claim (a debated policy, not a falsehood or an
    attack on a group) instead of the form. One request per conclusion, its form drawn by a fixed seed."""
    from agent.value_model import read_valueeval_split

    claims: dict[str, str] = {}
    for split in ("training", "validation"):
        for conclusion in read_valueeval_split(split, data_dir).conclusions:
            claim = conclusion.strip().rstrip(".!? ")
            if len(claim.split()) >= 3:
                claims.setdefault(_norm(claim), claim)
    # A conclusion's first word keeps its capital only if it is a name ("Europe", "NEET"): a word that
    # some conclusion has in lower case mid-sentence ("we", "stray") is capitalised only because it opens.
    common = {word for claim in claims.values() for word in claim.split()[1:] if word.islower()}
    rng = np.random.default_rng(20231)
    rows = []
    for key in sorted(claims):
        claim = claims[key]
        form = ESSAY_FORMS[int(rng.integers(len(ESSAY_FORMS)))]
        first = claim.split()[0]
        lowered = claim[:1].lower() + claim[1:] if first.lower() in common else claim
        text = form.format(claim=lowered)
        # Whether a question should come first the source does not say (clarify unknown); it is measured as
        # a request to answer, not refuse.
        rows.append(Row(text, "debate_essays", f"debate-{key}", harmful=0, decision="answer"))
    return rows


LOADERS = {
    "harmful_sets": harmful_sets,
    "coconot": coconot,
    "in3": in3,
    "ambignq": ambignq,
    "clariq": clariq,
    "conflictscope": conflictscope,
    "moralchoice": moralchoice,
    "daily_dilemmas": daily_dilemmas,
    "abg_coqa": abg_coqa,
    "clarifydelphi": clarifydelphi,
    "debate_essays": debate_essays,
}


def load_rows(data_dir: str | None = None, loaders: Iterable[str] = LOADERS) -> list[Row]:
    rows: list[Row] = []
    for name in loaders:
        rows.extend(LOADERS[name](data_dir))
    return dedupe(rows)


def dedupe(rows: Sequence[Row]) -> list[Row]:
    """One row per normalised text (AdvBench, HarmBench and JBB repeat texts); the first source wins."""
    seen: dict[str, Row] = {}
    for row in rows:
        seen.setdefault(_norm(row.text), row)
    return list(seen.values())


def link_near_duplicates(rows: Sequence[Row], embeddings: np.ndarray, threshold: float = 0.9) -> None:
    """Put near-identical harmful texts of different sets into one group (a union-find on cosine >= threshold).

    AdvBench has many near-duplicate themes and shares texts with HarmBench and JBB; without this a
    split could train on one wording and test on its twin.
    """
    index = [i for i, r in enumerate(rows) if r.source in {"harmbench", "advbench", "jbb_harmful", "jbb_benign"}]
    if not index:
        return
    sub = embeddings[index]
    parent = list(range(len(index)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sims = sub @ sub.T
    for a, b in zip(*np.nonzero(np.triu(sims, 1) >= threshold), strict=True):
        parent[find(int(a))] = find(int(b))
    roots: dict[int, str] = {}
    for position, row_index in enumerate(index):
        root = find(position)
        roots.setdefault(root, rows[row_index].group)
        rows[row_index].group = roots[root]


# The sources of the first judge (v1-v4): their folds come from one random stream, in this order.
FIRST_SOURCES = frozenset(["abg_coqa", "advbench", "ambignq", "clarifydelphi", "clariq", "coconot", "conflictscope",
                           "daily_dilemmas", "harmbench", "in3", "jbb_benign", "jbb_harmful", "moralchoice"])


def group_folds(rows: Sequence[Row], folds: int, seed: int) -> np.ndarray:
    """A fold number per row; every group in one fold, groups shuffled within each source."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        if row.group not in by_source[row.source]:
            by_source[row.source].append(row.group)
    fold_of_group: dict[str, int] = {}
    for source in sorted(by_source):
        groups = by_source[source]
        # A source added after the first judge draws from its own stream, so adding it leaves every
        # earlier source's split as it was (the reports of earlier versions stay comparable fold by fold).
        own = source not in FIRST_SOURCES
        order = (np.random.default_rng([seed, zlib.crc32(source.encode())]) if own else rng).permutation(len(groups))
        for rank, g in enumerate(order):
            fold_of_group.setdefault(groups[g], rank % folds)
    return np.array([fold_of_group[row.group] for row in rows])


def write_jsonl(rows: Sequence[Row], path: Path) -> None:
    """Rows in `edge-align eval --file` form (for the decision set an evaluator can replay)."""
    with path.open("w", encoding="utf-8") as handle:
        for i, row in enumerate(rows):
            labels = {k: v for k, v in (("decision", row.decision), ("clarify", None if row.clarify is None else bool(row.clarify)),
                                         ("conflict", None if row.conflict is None else bool(row.conflict))) if v is not None}
            handle.write(json.dumps({"id": f"{row.source}-{i}", "text": row.text, "labels": labels,
                                     "meta": {"source": row.source, "group": row.group}}) + "\n")
