"""Security defaults: loopback only, optional login, no share link, no secret anywhere, no path escapes.

* ``edge-align demo`` binds 127.0.0.1 unless --host is given, and the running demo listens there only.
* With EDGE_ALIGN_DEMO_USER / EDGE_ALIGN_DEMO_PASSWORD set, the API refuses callers without them.
* A Gradio share link is never opened.
* A fake API key (sk-test-...) never reaches stdout, stderr, transcripts, checkpoints, the demo log
  or an error message, through `ask`, a failing endpoint and the demo.
* Commands that write files keep them inside the requested folder whatever a conversation id, a
  case id or a thread id holds (``../``, absolute paths).
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.demo_server import DemoServer
from tests.support.processes import free_loopback_port
from tests.support.reports import reliability_report
from ui.cli import build_parser, main

pytest_plugins = ["tests.support.demo_server"]

SECRET = "sk-test-" + "S3CR3T" + "0123456789abcdef"
ESCAPES = ["../../escape-dotdot", "/tmp/escape-absolute", "..", "a/../../escape-nested", "..\\..\\escape-win"]
_checks: dict[str, int] = {}


write_report = reliability_report(
    "security",
    what="bind address, login, share link, secret hygiene and path escapes",
    command=".venv/bin/python -m pytest tests/test_security.py",
    figures=lambda: {"checks_passed": _checks},
)


def passed(name: str) -> None:
    _checks[name] = _checks.get(name, 0) + 1


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket in LISTEN state on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if fields[3] == "0A" and int(port_hex, 16) == port:
                found.add(address)
    return found


def assert_no_secret_under(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


# --------------------------------------------------------------------------- bind and share


def test_the_demo_binds_loopback_unless_told_otherwise() -> None:
    assert build_parser().parse_args(["demo"]).host == "127.0.0.1"
    assert build_parser().parse_args(["demo", "--host", "0.0.0.0"]).host == "0.0.0.0"
    passed("default host is 127.0.0.1")


def test_launch_never_shares() -> None:
    import inspect

    from ui import app

    source = inspect.getsource(app.launch)
    assert "share=False" in source
    assert "share=True" not in inspect.getsource(app)
    passed("share=False in launch")


@pytest.mark.slow
def test_the_running_demo_listens_on_loopback_only(demo_server: DemoServer) -> None:
    addresses = listening_addresses(demo_server.port)
    assert addresses == {"0100007F"}, addresses  # 127.0.0.1, little-endian hex; nothing on 0.0.0.0 or ::
    log = demo_server.log_path.read_text(errors="replace")
    assert "gradio.live" not in log and "share link" not in log.lower()
    passed("running demo listens on 127.0.0.1 only, no share link")


# ------------------------------------------------------------------------------ basic auth


class LoginDemo(DemoServer):
    """A demo with a login; it answers /config with 401 until one logs in, which counts as up."""

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "config", timeout=5) as response:
                return bool(response.status == 200)
        except urllib.error.HTTPError as refused:
            return refused.code in (401, 403)
        except (urllib.error.URLError, OSError):
            return False


@pytest.fixture(scope="module")
def login_demo(tmp_path_factory: pytest.TempPathFactory, test_home: Path) -> Iterator[tuple[LoginDemo, str]]:
    import shutil

    home = tmp_path_factory.mktemp("login-demo-home")
    # The session's norm index, so this demo does not index the packs again.
    if (test_home / "norm-index").is_dir():
        shutil.copytree(test_home / "norm-index", home / "norm-index")
    password = secrets.token_urlsafe(12)
    server = LoginDemo(
        home,
        extra_env={
            "EDGE_ALIGN_DEMO_USER": "alice",
            "EDGE_ALIGN_DEMO_PASSWORD": password,
            "EDGE_ALIGN_LLM_API_KEY": SECRET,
            # An endpoint that is down: answers carry the failure message, which must not hold the key.
            "EDGE_ALIGN_LLM_BASE_URL": f"http://127.0.0.1:{free_loopback_port()}/v1",
            "EDGE_ALIGN_LLM_MAX_RETRIES": "0",
        },
    )
    server.start()
    try:
        yield server, password
    finally:
        server.stop()


@pytest.mark.slow
def test_without_credentials_the_api_is_refused(login_demo: tuple[LoginDemo, str]) -> None:
    from gradio_client import Client

    server, password = login_demo
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises different types by version
        Client(server.url, verbose=False)
    with pytest.raises(Exception):  # noqa: B017
        Client(server.url, auth=("alice", "wrong-" + password), verbose=False)
    for path in ("config", "gradio_api/info", "gradio_api/call/chat"):
        request = urllib.request.Request(
            server.url + path,
            data=json.dumps({"data": ["hello", ""]}).encode() if path.endswith("chat") else None,
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code in (401, 403), (path, refused.value.code)
    passed("API refused without or with wrong credentials")

    client = Client(server.url, auth=("alice", password), verbose=False)
    reply, thread_id, decision, _ = client.predict("What is a good way to start learning to cook?", api_name="/chat")
    assert decision in {"answer", "clarify", "refuse"} and reply.strip() and thread_id
    assert SECRET not in reply
    passed("API works with the credentials")


@pytest.mark.slow
def test_the_key_is_not_in_the_demo_log_or_its_files(login_demo: tuple[LoginDemo, str]) -> None:
    from gradio_client import Client

    server, password = login_demo
    client = Client(server.url, auth=("alice", password), verbose=False)
    reply, _, _, _ = client.predict("Is it fine to eat cereal for dinner?", api_name="/chat")
    assert SECRET not in reply
    assert password not in server.log_path.read_text(errors="replace")
    assert_no_secret_under(server.home)  # the log lives in the home too
    passed("no key or password in the demo log, transcripts or checkpoints")


# ------------------------------------------------------------------------- secret hygiene


def test_the_key_never_reaches_output_transcripts_or_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], test_home: Path
) -> None:
    monkeypatch.setenv("EDGE_ALIGN_LLM_API_KEY", SECRET)
    monkeypatch.setenv("EDGE_ALIGN_LLM_BASE_URL", f"http://127.0.0.1:{free_loopback_port()}/v1")
    monkeypatch.setenv("EDGE_ALIGN_LLM_MAX_RETRIES", "0")
    assert main(["ask", "What is the capital of France?", "--thread", "secret-check", "--json"]) == 0
    out, err = capsys.readouterr()
    result = json.loads(out)
    assert result["llm_error"] == "unreachable"  # the endpoint failure path was taken
    assert SECRET not in out + err
    assert_no_secret_under(test_home / "transcripts")
    assert SECRET.encode() not in (test_home / "checkpoints.sqlite").read_bytes()
    passed("ask with a failing endpoint: key absent from output, transcripts, checkpoints")

    # A URL with the key in it as credentials: the error names the variable, never the value.
    monkeypatch.setenv("EDGE_ALIGN_LLM_BASE_URL", f"http://user:{SECRET}@127.0.0.1:{free_loopback_port()}/v1")
    code = main(["ask", "hello again", "--thread", "secret-check-2"])
    out, err = capsys.readouterr()
    assert code in (0, 2)
    assert SECRET not in out + err
    assert_no_secret_under(test_home / "transcripts")
    passed("credentials in the endpoint URL never echoed")


# ----------------------------------------------------------------------------- path escapes


def files_outside(root: Path, allowed: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and allowed not in p.parents]


def test_transcript_files_stay_in_their_folder(tmp_path: Path) -> None:
    from memory.transcripts import TranscriptWriter

    writer = TranscriptWriter(tmp_path / "transcripts")
    for conversation_id in [*ESCAPES, "", "/"]:
        path = writer.path_for(conversation_id)
        assert path.parent == tmp_path / "transcripts", conversation_id
    passed("transcript names cannot escape")


def test_ask_with_an_escaping_thread_id_writes_inside_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], test_home: Path
) -> None:
    monkeypatch.setenv("EDGE_ALIGN_LLM_BASE_URL", f"http://127.0.0.1:{free_loopback_port()}/v1")
    monkeypatch.setenv("EDGE_ALIGN_LLM_MAX_RETRIES", "0")
    before = set(Path("/tmp").glob("escape-*"))
    for thread in ESCAPES:
        assert main(["ask", "Should I lend money to my brother?", "--thread", thread]) in (0, 2)
    capsys.readouterr()
    assert set(Path("/tmp").glob("escape-*")) == before
    assert not list(test_home.parent.glob("escape-*"))
    assert not list(test_home.parent.parent.glob("escape-*"))
    passed("ask --thread with ../ or absolute ids writes nothing outside the home")


def test_replay_and_eval_out_write_only_inside_the_out_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from memory.transcripts import TranscriptEvent, make_record

    monkeypatch.chdir(tmp_path)
    config = {"llm_model": "m", "llm_endpoint": "embedded"}
    transcript = tmp_path / "in" / "t.jsonl"
    transcript.parent.mkdir()
    lines = [
        make_record(TranscriptEvent.USER_MESSAGE, cid, 1, "Should I lend money to my brother?", config)
        for cid in ESCAPES
    ]
    transcript.write_text("".join(json.dumps(r) + "\n" for r in lines))
    out = tmp_path / "work" / "replay-out"
    assert main(["replay", str(transcript), "--out", str(out)]) == 0
    assert files_outside(tmp_path, out) == [transcript]
    passed("replay --out stays inside its folder")

    cases = tmp_path / "in" / "cases.jsonl"
    cases.write_text(
        "".join(json.dumps({"id": cid, "text": "Should I lend money to my brother?"}) + "\n" for cid in ESCAPES)
    )
    eval_out = tmp_path / "work" / "eval-out"
    assert main(["eval", "--file", str(cases), "--out", str(eval_out)]) == 0
    predictions = tmp_path / "work" / "eval-preds" / "p.jsonl"
    assert main(["eval", "--file", str(cases), "--out", str(predictions)]) == 0
    capsys.readouterr()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path not in (transcript, cases):
            assert any(folder in path.parents for folder in (out, eval_out, predictions.parent)), path
    assert not list(tmp_path.parent.glob("escape-*"))
    passed("eval --out stays inside its folder")


def test_pack_ids_and_ui_thread_ids_cannot_name_a_path() -> None:
    import re

    from memory.norm_pack import NormPack
    from ui.app import valid_thread_id

    pattern = NormPack.model_fields["id"].metadata
    ids = [m.pattern for m in pattern if hasattr(m, "pattern")]
    assert ids, "the pack id is constrained by a pattern"
    for escape in ESCAPES:
        assert not re.match(ids[0], escape)  # import-polis names its output after the pack id
        assert valid_thread_id(escape) is None  # the demo names trace and export files after the thread
    passed("pack ids and UI thread ids refuse path characters")
