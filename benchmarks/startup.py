"""Start-up of a new process: what its imports cost, each loading step, and whole commands, before and after.

    .venv/bin/python benchmarks/startup.py [--rounds 5] [--before REF] [--skip-demo] [--figure]

Every `edge-align ask`, `eval` and replay is a new process. This measures, each in fresh processes,
``--rounds`` times, alternating the checkouts so a change of load hits both alike:

- imports: wall seconds of ``python -c "import X"`` less those of ``python -c pass``, per library;
- steps: the seconds of each loading step (graphs.resources.StartupSteps) in a new data home;
- commands: ``edge-align eval --file`` deciding one labelled case, with the index built and in a
  fresh data home; ``edge-align ask`` on a request it clarifies (no text generation) and on one it
  answers (the embedded model's start and the reply included); the demo's seconds until its page
  answers HTTP 200.

``--before REF`` runs the same commands on a git worktree of REF (same virtual environment, its
code first on PYTHONPATH) for a before/after table on one machine at one time. Medians and p95
go to artifacts/bench/startup.json; ``--figure`` also writes docs/figures/startup.{json,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import ROOT, emit, summary

PYTHON = sys.executable
EDGE_ALIGN = [PYTHON, "-m", "ui.cli"]
IMPORTS = {
    "numpy": "numpy",
    "onnxruntime + tokenizers": "onnxruntime, tokenizers",
    "chromadb": "chromadb",
    "langgraph": "langgraph.graph",
    "the decision path (graphs.graph)": "graphs.graph",
    "torch": "torch",
    "sentence_transformers": "sentence_transformers",
    "gradio": "gradio",
}
ONE_CASE = {"id": "startup", "text": "What is the capital of France?", "labels": {"decision": "answer"}}
CLARIFIED = "Find me a good school."
ANSWERED = "What is the capital of France?"


def _env(code: Path, home: Path | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(code)
    env.setdefault("EDGE_ALIGN_DATA", str((ROOT.parent / "shared" / "data").resolve()))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if home is not None:
        env["EDGE_ALIGN_HOME"] = str(home)
    return env


def _timed(command: list[str], code: Path, home: Path | None = None) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=code, env=_env(code, home), capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def _demo_ready(code: Path, home: Path, port: int) -> float:
    """Seconds from starting `edge-align demo` until its page answers HTTP 200."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [*EDGE_ALIGN, "demo", "--port", str(port)], cwd=code, env=_env(code, home),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while time.perf_counter() - started < 180:
            if process.poll() is not None:
                raise RuntimeError(f"the demo exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the demo did not answer within 180 s")
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def _summary(seconds: list[float]) -> dict[str, Any]:
    return {**summary(seconds, unit="s"), "runs_s": [round(s, 2) for s in seconds]}


def _steps(code: Path) -> dict[str, float]:
    """The loading steps of a new process in a fresh data home (the graph's imports timed as one step)."""
    snippet = (
        "import json, time; t = time.perf_counter(); import graphs.graph; imported = time.perf_counter() - t\n"
        "from graphs.resources import get_resources\n"
        "steps = getattr(get_resources(), 'startup_s', None)\n"
        "print(json.dumps({'imports (graphs.graph)': round(imported, 3), **(steps or {})}))"
    )
    home = Path(tempfile.mkdtemp(prefix="edge-align-startup-"))
    try:
        done = subprocess.run([PYTHON, "-c", snippet], cwd=code, env=_env(code, home), capture_output=True, text=True,
                              timeout=600, check=True)  # fmt: skip
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _worktree(ref: str) -> Path:
    target = Path(tempfile.mkdtemp(prefix="edge-align-before-")) / "code"
    subprocess.run(["git", "worktree", "add", "--detach", str(target), ref], cwd=ROOT, check=True, capture_output=True)
    _compile(target)
    return target


def _compile(code: Path) -> None:
    """Write the project's bytecode, as `make install` does, so neither checkout compiles its sources per process."""
    packages = [str(code / name) for name in ("agent", "graphs", "memory", "ui", "prompts")]
    subprocess.run([PYTHON, "-m", "compileall", "-q", *packages], check=True, capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--before", help="a git ref to measure beside the working tree (e.g. 5c14e2a)")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-answer", action="store_true", help="leave out the ask that starts the chat model")
    parser.add_argument("--figure", action="store_true", help="also write docs/figures/startup.{json,png}")
    parser.add_argument("--out")
    parser.add_argument("--plot-only", action="store_true", help="redraw docs/figures/startup.png from its JSON")
    args = parser.parse_args(argv)
    if args.plot_only:
        figure_json = ROOT / "docs" / "figures" / "startup.json"
        _plot(json.loads(figure_json.read_text(encoding="utf-8")), figure_json.with_suffix(".png"))
        return 0

    codes = {"after": ROOT}
    _compile(ROOT)
    if args.before:
        codes = {"before": _worktree(args.before), **codes}
    work = Path(tempfile.mkdtemp(prefix="edge-align-startup-"))
    case_file = work / "one_case.jsonl"
    case_file.write_text(json.dumps(ONE_CASE) + "\n", encoding="utf-8")
    built_home = work / "built-home"

    commands: dict[str, Callable[[Path, int], float]] = {
        "eval: one case, index built": lambda code, _: _timed([*EDGE_ALIGN, "eval", "--file", str(case_file)], code,
                                                              built_home),
        "eval: one case, fresh data home": lambda code, i: _timed(
            [*EDGE_ALIGN, "eval", "--file", str(case_file)], code, work / f"fresh-{code.name}-{i}"),
        "ask: clarified (no generation)": lambda code, _: _timed([*EDGE_ALIGN, "ask", CLARIFIED], code, built_home),
    }  # fmt: skip
    if not args.skip_answer:
        commands["ask: answered (model start and reply)"] = lambda code, _: _timed(
            [*EDGE_ALIGN, "ask", ANSWERED], code, built_home
        )
    if not args.skip_demo:
        commands["demo: page answers"] = lambda code, i: _demo_ready(code, work / f"demo-{code.name}-{i}", 7890 + i)

    load = {"before": [round(x, 2) for x in os.getloadavg()]}
    results: dict[str, Any] = {"rounds": args.rounds, "cores": os.cpu_count(), "before_ref": args.before}
    try:
        for label, code in codes.items():
            print(f"[startup] {label}: building the data home's index once", file=sys.stderr, flush=True)
            _timed([*EDGE_ALIGN, "eval", "--file", str(case_file)], code, built_home)
        baseline = statistics.median(_timed([PYTHON, "-c", "pass"], ROOT) for _ in range(args.rounds))
        results["imports_s"] = {}
        for name, modules in IMPORTS.items():
            samples = [_timed([PYTHON, "-c", f"import {modules}"], ROOT) - baseline for _ in range(args.rounds)]
            results["imports_s"][name] = _summary(samples)
            print(f"[startup] import {name}: {results['imports_s'][name]['median_s']} s", file=sys.stderr, flush=True)
        results["steps_s"] = {label: _steps(code) for label, code in codes.items()}
        timings: dict[str, dict[str, list[float]]] = {name: {label: [] for label in codes} for name in commands}
        for i in range(args.rounds):
            for name, run in commands.items():
                for label, code in codes.items():
                    timings[name][label].append(run(code, i))
                    print(f"[startup] round {i + 1}/{args.rounds} {name} ({label}): {timings[name][label][-1]:.2f} s",
                          file=sys.stderr, flush=True)  # fmt: skip
        results["commands_s"] = {
            name: {label: _summary(samples) for label, samples in by_code.items()} for name, by_code in timings.items()
        }
        if args.before:
            for by_code in results["commands_s"].values():
                by_code["speed_up"] = round(by_code["before"]["median_s"] / by_code["after"]["median_s"], 2)
    finally:
        load["after"] = [round(x, 2) for x in os.getloadavg()]
        results["load_average"] = load
        if args.before:
            subprocess.run(["git", "worktree", "remove", "--force", str(codes["before"])], cwd=ROOT, capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    emit("startup", results, args.out)
    if args.figure:
        figure_json = ROOT / "docs" / "figures" / "startup.json"
        figure_json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        _plot(results, ROOT / "docs" / "figures" / "startup.png")
    return 0


def _plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    commands = results["commands_s"]
    labels = [label for label in ("before", "after") if label in next(iter(commands.values()))]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5.4), gridspec_kw={"width_ratios": [3, 2]})
    names = list(commands)
    width = 0.8 / len(labels)
    for k, label in enumerate(labels):
        medians = [commands[n][label]["median_s"] for n in names]
        p95 = [commands[n][label]["p95_s"] - commands[n][label]["median_s"] for n in names]
        xs = [i + (k - (len(labels) - 1) / 2) * width for i in range(len(names))]
        bars = left.bar(xs, medians, width, yerr=[[0] * len(names), p95], capsize=3, label=label)
        left.bar_label(bars, fmt="%.1f", fontsize=8)
    left.axhline(3, color="grey", linestyle=":", linewidth=1)
    left.axhline(8, color="grey", linestyle="--", linewidth=1)
    left.set_xticks(range(len(names)), [textwrap.fill(n, 16) for n in names], fontsize=8)
    left.set_ylabel("seconds, new process (median; whisker to p95)")
    left.set_title(f"Start-up, {results['cores']} cores ({results['rounds']} rounds; 3 s and 8 s targets dotted/dashed)")
    left.legend()
    imports = results["imports_s"]
    right.barh(list(imports), [imports[n]["median_s"] for n in imports], color="tab:gray")
    right.invert_yaxis()
    right.set_xlabel("seconds to import, new process (median)")
    right.set_title("What importing costs")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    raise SystemExit(main())
