"""Run the Inspect task (benchmarks/inspect_task.py) over a labelled case file, against `edge-align serve`.

    .venv/bin/python benchmarks/inspect_eval.py --file tests/data/decision_cases.jsonl [--with-text]

Creates Inspect's own virtual environment on first use (benchmarks/_tool_venv.py), starts
`edge-align serve` on a free 127.0.0.1 port with its own data home and a random API key, and runs
`inspect eval` with Inspect's OpenAI-compatible provider (model `openai-api/edge-align/edge-align`,
which reads EDGE_ALIGN_BASE_URL and EDGE_ALIGN_API_KEY). Decisions do not depend on generated text,
so text generation is off unless --with-text. Inspect's log lands in artifacts/inspect-logs (open it
with `artifacts/venvs/inspect/bin/inspect view --log-dir artifacts/inspect-logs`); the accuracy of
the decisions goes to stdout and artifacts/bench/inspect.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, emit
from _tool_venv import INSPECT, endpoint, ensure_venv


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", default=str(ROOT / "tests" / "data" / "decision_cases.jsonl"))
    parser.add_argument("--with-text", action="store_true", help="let the embedded model word the replies too")
    parser.add_argument("--log-dir", default=str(ROOT / "artifacts" / "inspect-logs"))
    parser.add_argument("--max-connections", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--url", help="evaluate this running server (its /v1 URL; key in EDGE_ALIGN_API_KEY)")
    parser.add_argument("--out")
    args = parser.parse_args()
    cases = Path(args.file).resolve()
    if not cases.is_file():
        print(f"inspect_eval: no such case file: {cases}", file=sys.stderr)
        return 2

    venv, install_s = ensure_venv("inspect", INSPECT)
    # A server started here gets this data home (created on start; nothing is made with --url).
    home = Path(os.environ.get("EDGE_ALIGN_HOME") or Path(tempfile.gettempdir()) / f"edge-align-inspect-{os.getpid()}")
    base_url, key, server = endpoint(args.url, home, generate_text=args.with_text)
    log_dir = Path(args.log_dir).resolve()
    try:
        env = {
            **os.environ,
            "EDGE_ALIGN_BASE_URL": base_url,
            "EDGE_ALIGN_API_KEY": key,
            "INSPECT_LOG_DIR": str(log_dir),
            "INSPECT_LOG_FORMAT": "json",  # readable without Inspect; `inspect view` opens it too
        }
        command = [
            str(venv / "bin" / "inspect"), "eval", "benchmarks/inspect_task.py",  # relative: Inspect globs it
            "--model", "openai-api/edge-align/edge-align", "-T", f"file={cases}",
            "--max-connections", str(args.max_connections), "--display", "plain", "--no-fail-on-error",
        ]  # fmt: skip
        began = time.monotonic()
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
        eval_s = round(time.monotonic() - began, 1)
    finally:
        if server is not None:
            server.close()
    logs = sorted(log_dir.glob("*.json"), key=lambda p: p.stat().st_mtime)
    if done.returncode != 0 or not logs:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        return 1
    log = json.loads(logs[-1].read_text(encoding="utf-8"))
    samples = log.get("samples") or []
    scored = [s for s in samples if (s.get("scores") or {}).get("decision_matches", {}).get("answer")]
    correct = sum(1 for s in scored if s["scores"]["decision_matches"]["value"] == "C")
    confusion: dict[str, dict[str, int]] = {}
    for sample in scored:
        row = confusion.setdefault(str(sample["target"]), {})
        decided = str(sample["scores"]["decision_matches"]["answer"])
        row[decided] = row.get(decided, 0) + 1
    emit(
        "inspect",
        {
            "command": f".venv/bin/python benchmarks/inspect_eval.py --file {args.file}"
            + (" --with-text" if args.with_text else ""),
            "what": "inspect-ai 0.3.285, openai-api provider against edge-align serve on 127.0.0.1",
            "text_generation": None if args.url else args.with_text,
            "status": log.get("status"),
            "samples": len(samples),
            "scored": len(scored),
            "accuracy": round(correct / len(scored), 3) if scored else None,
            "confusion (label -> decided)": confusion,
            "inspect_install_s": install_s,
            "eval_s": eval_s,
            "log_file": str(logs[-1]),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
