"""`edge-align transcript validate` and `edge-align replay`: for evaluators comparing versions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    transcript = sub.add_parser("transcript", help="work with recorded transcripts")
    transcript_sub = transcript.add_subparsers(dest="transcript_command", required=True)
    validate = transcript_sub.add_parser("validate", help="check files against the transcript v1 schema")
    validate.add_argument("files", nargs="+")
    validate.set_defaults(handler=validate_files)

    replay = sub.add_parser(
        "replay",
        help="re-run recorded conversations through the current graph and report what changed",
        description="Recorded answers are fed back to questions the recording also asked; a new question "
        "marks the conversation 'diverged'. Replies are not regenerated unless --with-text is given.",
    )
    replay.add_argument("files", nargs="+")
    replay.add_argument("--json", action="store_true", help="print the full comparison as JSON")
    replay.add_argument("--out", help="directory for report.md, results.json and charts")
    replay.add_argument("--strict", action="store_true", help="exit with status 3 on any difference in decisions")
    replay.add_argument("--with-text", action="store_true", help="also generate and compare reply texts")
    replay.set_defaults(handler=replay_files)


def validate_files(args: argparse.Namespace) -> int:
    from memory.transcripts import TranscriptError, read_transcript

    failed = False
    for name in args.files:
        try:
            records = read_transcript(Path(name))
        except TranscriptError as problem:
            print(problem, file=sys.stderr)
            failed = True
        else:
            print(f"ok: {name}: {len(records)} records")
    return 1 if failed else 0


def replay_files(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from langgraph.checkpoint.memory import InMemorySaver

    from graphs.context import Context
    from graphs.replay import replay
    from graphs.runner import EdgeAlign
    from memory.transcripts import read_transcript

    records = [r for name in args.files for r in read_transcript(Path(name))]
    context = replace(Context.from_env(), generate_text=bool(args.with_text))
    agent = EdgeAlign(context, checkpointer=InMemorySaver(), record=False)
    summary = replay(agent, records, with_text=args.with_text)
    if args.out:
        _write_report(Path(args.out), summary)
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        agreement = summary["decision_agreement"]
        print(
            f"{summary['conversations']} conversations, {summary['turns']} turns: decision agreement {agreement:.3f}"
            if agreement is not None
            else "no turns to compare"
        )
        print(f"turns with differences: {summary['turns_with_differences']}, diverged: {summary['diverged']}")
        for conversation in summary["results"]:
            for turn in conversation["turns"]:
                if turn["differences"]:
                    print(
                        f"  {conversation['conversation_id']} turn {turn['turn']}: {json.dumps(turn['differences'])[:300]}"
                    )
            if conversation["note"]:
                print(f"  {conversation['conversation_id']}: {conversation['note']}")
    if args.strict and (summary["decision_differences"] or summary["diverged"]):
        return 3
    return 0


def _write_report(out: Path, summary: dict[str, Any]) -> None:
    from agent.metrics import multiclass_metrics
    from ui.reports import confusion_png, write_report

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    turns = [t for c in summary["results"] for t in c["turns"]]
    figures = {}
    metrics: dict[str, Any] = {
        "replay": {
            k: summary[k]
            for k in ("conversations", "turns", "decision_agreement", "turns_with_differences", "diverged")
        }
    }
    if turns:
        labels = ["answer", "clarify", "refuse"]
        confusion = multiclass_metrics(
            [t["recorded_decision"] for t in turns], [t["replayed_decision"] for t in turns], labels
        )
        metrics["decision"] = {"accuracy": confusion["accuracy"], "n": confusion["n"]}
        figures["Recorded vs replayed decisions"] = confusion_png(
            confusion["confusion"], labels, out / "confusion_decision.png", "recorded (rows) vs replayed"
        )
    worst = [
        dict(t, conversation_id=c["conversation_id"])
        for c in summary["results"]
        for t in c["turns"]
        if t["differences"]
    ]
    write_report(out, "Replay report", metrics, figures, worst[:20])
