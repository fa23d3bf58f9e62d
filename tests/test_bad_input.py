"""Bad input to every command that reads user text or files: a clear error line, never a traceback.

Property-based (hypothesis) over `ask`, `eval --file`, `norms validate`, `transcript validate` and
`replay`, run in-process through ``ui.cli.main`` for speed, plus a few real subprocesses. Covered:
empty and whitespace-only input, 100,000 characters, control characters, invalid UTF-8 in files and
arguments, deeply nested and huge JSON, YAML anchors (billion laughs), wrong types, and a data
directory that does not exist. A bad message on an existing thread leaves its history and
transcript exactly as they were.

A "crash" is an exit code of 1 (an unexpected error) or a traceback; the count is written to
artifacts/reliability/bad_input.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.processes import free_loopback_port
from tests.support.reports import reliability_report
from ui.cli import main

PROJECT_ROOT = Path(__file__).resolve().parents[1]
BOUNDED = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
KEPT_THREAD = "bad-input-kept"

_tried: Counter[str] = Counter()
_crashes: list[str] = []


write_report = reliability_report(
    "bad_input",
    what="malformed input to ask, eval --file, eval <dataset>, norms validate, transcript validate, "
    "replay (hypothesis, in-process, plus real subprocesses)",
    command=".venv/bin/python -m pytest tests/test_bad_input.py",
    figures=lambda: {
        "inputs_tried": dict(sorted(_tried.items())),
        "total": sum(_tried.values()),
        "crashes": len(_crashes),
        "crash_examples": _crashes[:10],
    },
)


@pytest.fixture(autouse=True)
def no_model_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Answers fail fast at a closed port (the wording is not under test, the input handling is)."""
    monkeypatch.setenv("EDGE_ALIGN_LLM_BASE_URL", f"http://127.0.0.1:{free_loopback_port()}/v1")
    monkeypatch.setenv("EDGE_ALIGN_LLM_MAX_RETRIES", "0")
    monkeypatch.setenv("EDGE_ALIGN_LLM_TIMEOUT", "2")


def run(command: str, argv: list[str], capsys: pytest.CaptureFixture[str], allowed: set[int]) -> tuple[int, str, str]:
    """main(argv) in-process; records the attempt and any crash, and checks the output's shape."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as leaving:  # argparse: a message that looks like an option, a bad flag
        code = int(leaving.code or 0)
    out, err = capsys.readouterr()
    _tried[command] += 1
    crashed = (code == 1 and "unexpected error" in err) or "Traceback" in out + err
    if crashed:
        _crashes.append(f"{command}: {err.strip()[:200]}")
    assert "Traceback" not in out + err
    assert code in allowed, (code, err[-500:])
    if code == 2 and "usage:" not in err:
        lines = [line for line in err.splitlines() if line.strip()]
        assert lines and lines[0].startswith("edge-align: "), err
    return code, out, err


def run_on_file(
    command: str, argv: list[str], path: Path, content: bytes, capsys: pytest.CaptureFixture[str], allowed: set[int]
) -> tuple[int, str, str]:
    """run() on a file holding ``content``, passed as the last argument."""
    path.write_bytes(content)
    return run(command, [*argv, str(path)], capsys, allowed)


# -------------------------------------------------------------------------------------- ask


@pytest.fixture(scope="module")
def kept_thread() -> dict[str, Any]:
    """A thread with one finished turn, whose history and transcript must survive every bad input."""
    from graphs.context import Context
    from graphs.runner import EdgeAlign

    agent = EdgeAlign(Context(generate_text=False))
    agent.ask("Should I lend money to my brother?", thread_id=KEPT_THREAD)
    return {
        "agent": agent,
        "history": agent.history(KEPT_THREAD),
        "transcript": agent.transcripts.path_for(KEPT_THREAD).read_bytes(),
    }


def assert_kept(kept: dict[str, Any]) -> None:
    agent = kept["agent"]
    assert agent.history(KEPT_THREAD) == kept["history"]
    assert agent.transcripts.path_for(KEPT_THREAD).read_bytes() == kept["transcript"]


@pytest.mark.parametrize(
    "message",
    ["", " ", "   \t\n  ", "\n\n", "\u00a0\u2003", "x" * 100_000, " " * 50 + "y" * 8_001],
    ids=["empty", "space", "whitespace", "newlines", "unicode-spaces", "100k", "over-limit"],
)
def test_ask_refuses_empty_and_huge_messages_and_keeps_the_thread(
    message: str, kept_thread: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    _code, _, err = run("ask", ["ask", message, "--thread", KEPT_THREAD], capsys, allowed={2})
    assert len(err.strip().splitlines()) == 1
    assert_kept(kept_thread)


control_text = st.text(
    alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zs", "L", "N", "P", "S"]),
    min_size=0,
    max_size=300,
)


@BOUNDED
@given(message=control_text)
def test_ask_survives_any_text_with_control_characters(message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run("ask", ["ask", "--thread", "bad-input-fuzz", "--", message], capsys, allowed={0, 2})
    if code == 0:
        assert out.strip()  # a reply (or a question) was printed
    else:
        assert len(err.strip().splitlines()) == 1


def test_ask_with_lone_surrogates_and_terminal_escapes(capsys: pytest.CaptureFixture[str]) -> None:
    for message in ["bad byte \udcff here", "\ud800", "\x1b[2J\x1b[31mred\x00nul\x07bell", "\u202eevil\u202c"]:
        run("ask", ["ask", "--thread", "bad-input-odd", "--", message], capsys, allowed={0})
    from memory.paths import home_dir, transcripts_dir
    from memory.transcripts import read_transcript

    records = read_transcript(transcripts_dir(home_dir()) / "bad-input-odd.jsonl")
    assert records[0]["text"] == "bad byte ? here"


def test_ask_bad_options_and_settings_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run("ask", ["ask", "hello", "--mode", "chaos"], capsys, allowed={2})
    monkeypatch.setenv("EDGE_ALIGN_CLARIFICATION_BUDGET", "many")
    _, _, err = run("ask", ["ask", "hello"], capsys, allowed={2})
    assert "EDGE_ALIGN_CLARIFICATION_BUDGET" in err
    monkeypatch.delenv("EDGE_ALIGN_CLARIFICATION_BUDGET")
    monkeypatch.setenv("EDGE_ALIGN_MODE", "steerable")
    run("ask", ["ask", "hello"], capsys, allowed={2})


# --------------------------------------------------------------------------- files: builders


def nested_json(depth: int) -> bytes:
    return b'{"id": "deep", "text": "x", "labels": ' + b"[" * depth + b"]" * depth + b"}"


BAD_JSONL: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b"   \n\t\n",
    "invalid-utf8": b'{"id": "a", "text": "caf\xe9 \xff\xfe"}\n',
    "deep-nesting": nested_json(100_000),
    "huge-line": b'{"id": "h", "text": "' + b"z" * (5 * 1024 * 1024) + b'", "labels": [' + b"1," * 10 + b"1]}\n",
    "wrong-types": b'{"id": 5, "text": ["not", "a", "string"], "labels": "yes"}\n',
    "wrong-label-types": b'{"id": "a", "text": "t", "labels": {"values": "Benevolence", "decision": 3}}\n',
    "not-an-object": b"[1, 2, 3]\n42\nnull\n",
    "truncated": b'{"id": "a", "text": "hello',
    "nul-bytes": b"\x00\x00\x00\n",
    "control-chars": b'{"id": "\x01\x02", "text": "\x1b[31m"}\n',
}

BILLION_LAUGHS = b"""a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""

BAD_YAML: dict[str, bytes] = {
    "empty": b"",
    "whitespace": b"  \n\n",
    "billion-laughs": BILLION_LAUGHS,
    "anchor-in-pack": b"id: x\nversion: 1.0.0\ncommunity: &c parents\ncommunity_name: *c\nnorms: []\n",
    "deep-nesting": b"a: " + b"[" * 50_000 + b"]" * 50_000 + b"\n",
    "invalid-utf8": b"id: caf\xe9\nversion: \xff\xfe\n",
    "wrong-types": b"id: 5\nversion: [1]\ncommunity: {a: b}\nnorms: hello\n",
    "python-tag": b"id: !!python/object/apply:os.system ['echo pwned']\n",
    "binary": bytes(range(256)),
    "huge": b"norms:\n" + b"  - text: " + b"w" * (6 * 1024 * 1024) + b"\n",
    "a-list": b"- 1\n- 2\n",
    "tabs": b"id:\tbad\n\t- x\n",
}


# ------------------------------------------------------------------------------ eval --file


@pytest.mark.parametrize("name", sorted(BAD_JSONL))
def test_eval_file_with_bad_content_is_a_clear_error(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{name}.jsonl"
    _, _, err = run_on_file("eval --file", ["eval", "--file"], path, BAD_JSONL[name], capsys, allowed={2})
    assert str(path) in err


@BOUNDED
@given(content=st.binary(max_size=2_000))
def test_eval_file_with_random_bytes_never_crashes(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_on_file("eval --file", ["eval", "--file"], tmp_path / "random.jsonl", content, capsys, allowed={2})


def test_eval_arguments_and_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run("eval", ["eval"], capsys, allowed={2})
    run("eval", ["eval", "valueeval", "--file", "x.jsonl"], capsys, allowed={2})
    run("eval", ["eval", "--file", str(tmp_path / "missing.jsonl")], capsys, allowed={2})
    run("eval", ["eval", "--file", str(tmp_path)], capsys, allowed={2})  # a directory
    run("eval", ["eval", "nosuchdataset"], capsys, allowed={2})
    run("eval", ["eval", "valueeval", "--split", "../../etc"], capsys, allowed={2})


def test_eval_dataset_with_a_missing_data_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EDGE_ALIGN_DATA", str(tmp_path / "nowhere"))
    for dataset in ("valueeval", "conflictscope", "clariq"):
        _, _, err = run("eval <dataset>", ["eval", dataset, "--limit", "3"], capsys, allowed={2})
        assert len(err.strip().splitlines()) == 1
        assert "EDGE_ALIGN_DATA" in err or "nowhere" in err


# --------------------------------------------------------------------------- norms validate


@pytest.mark.parametrize("name", sorted(BAD_YAML))
def test_norms_validate_names_the_problem(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / f"{name}.yaml"
    _, out, err = run_on_file("norms validate", ["norms", "validate"], path, BAD_YAML[name], capsys, allowed={1})
    assert str(path) in err
    assert "ok:" not in out


@BOUNDED
@given(content=st.binary(max_size=2_000) | st.text(max_size=2_000).map(str.encode))
def test_norms_validate_random_content_never_crashes(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_on_file("norms validate", ["norms", "validate"], tmp_path / "random.yaml", content, capsys, allowed={1})


def test_norms_validate_missing_paths(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run("norms validate", ["norms", "validate", str(tmp_path / "missing.yaml")], capsys, allowed={1, 2})
    run("norms validate", ["norms", "validate", str(tmp_path)], capsys, allowed={1, 2})  # no packs in it


# ----------------------------------------------------------------- transcript validate, replay


@pytest.mark.parametrize("name", sorted(BAD_JSONL))
def test_transcript_validate_and_replay_refuse_bad_files(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / f"{name}.jsonl"
    _, _, err = run_on_file(
        "transcript validate", ["transcript", "validate"], path, BAD_JSONL[name], capsys, allowed={1}
    )
    assert str(path) in err
    _, _, err = run("replay", ["replay", str(path)], capsys, allowed={2})
    assert str(path) in err


@BOUNDED
@given(
    record=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=30,
    )
)
def test_transcript_commands_refuse_records_of_any_wrong_shape(
    record: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "shaped.jsonl"
    shaped = (json.dumps(record) + "\n").encode("utf-8")
    run_on_file("transcript validate", ["transcript", "validate"], path, shaped, capsys, allowed={1})
    run("replay", ["replay", str(path)], capsys, allowed={2})


# ----------------------------------------------------------------------- real subprocesses


def cli(*args: str | bytes, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "ui.cli", *args],
        capture_output=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        timeout=400,
    )


@pytest.mark.slow
def test_real_processes_end_with_one_line_and_no_traceback(tmp_path: Path) -> None:
    laughs = tmp_path / "laughs.yaml"
    laughs.write_bytes(BILLION_LAUGHS)
    deep = tmp_path / "deep.jsonl"
    deep.write_bytes(nested_json(200_000))
    cases = [
        (("norms", "validate", str(laughs)), None, 1),
        (("transcript", "validate", str(deep)), None, 1),
        (("eval", "valueeval", "--limit", "2"), {"EDGE_ALIGN_DATA": str(tmp_path / "nowhere")}, 2),
        (("ask", "   "), None, 2),
        # Bytes that are not UTF-8, as a terminal would pass them.
        (("ask", "--thread", "bad-input-bytes", "--", b"caf\xe9 \xff"), None, 0),
    ]
    for args, env, expected in cases:
        done = cli(*args, env=env)
        text = (done.stdout + done.stderr).decode("utf-8", "replace")
        _tried["subprocess"] += 1
        # Exit 1 is how the validate commands report an invalid file; only an unexpected error is a crash.
        if "Traceback" in text or "unexpected error" in text:
            _crashes.append(f"subprocess {args[:2]}: {text[-200:]}")
        assert "Traceback" not in text, text[-2000:]
        assert done.returncode == expected, text[-2000:]
        if expected == 2:
            problems = [line for line in done.stderr.decode().splitlines() if line.startswith("edge-align: ")]
            assert len(problems) == 1, text
