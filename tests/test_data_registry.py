"""The dataset registry: checksums of the shared copies, `edge-align data check/list/fetch`.

Nothing here touches the internet: downloads are served by http.server on 127.0.0.1 from a temp
folder or from the shared data folder itself (read in place), and failures are provoked locally
(a corrupted file, a 404, a refused connection, a silent server, an oversized response).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import ClassVar

import pytest

from agent.datasets import (
    MIRROR_ENV,
    DataFetchError,
    DataFile,
    DatasetMissingError,
    DatasetSpec,
    FileStatus,
    Source,
    check_dataset,
    dataset_dir,
    dataset_spec,
    fetch_dataset,
    load_registry,
    resolve_data_dir,
    sha256_of,
)
from agent.yaml_loading import DataFileError
from ui.cli import main

PROJECT = Path(__file__).resolve().parents[1]
SHARED = resolve_data_dir()
needs_shared_data = pytest.mark.skipif(
    not (SHARED / "clariq").is_dir(), reason=f"shared datasets not found in {SHARED} (set EDGE_ALIGN_DATA)"
)


@pytest.fixture(autouse=True)
def _no_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MIRROR_ENV, raising=False)


# ---------------------------------------------------------------------------------------------
# A local HTTP server.


class _Handler(http.server.SimpleHTTPRequestHandler):
    slow_paths: ClassVar[set[str]] = set()

    def do_GET(self) -> None:
        if self.path in self.slow_paths:
            time.sleep(3)  # longer than the client's timeout: the client must give up cleanly
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        return


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return  # a client that gave up (the timeout test) is expected, not a failure to print


@pytest.fixture
def serve() -> Iterator[object]:
    """serve(folder, slow=()) -> base URL of an HTTP server on 127.0.0.1 exposing ``folder``."""
    servers: list[_QuietServer] = []

    def start(folder: Path, slow: tuple[str, ...] = ()) -> str:
        handler = type("Handler", (_Handler,), {"slow_paths": set(slow)})
        server = _QuietServer(("127.0.0.1", 0), partial(handler, directory=str(folder)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def refused_url() -> str:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def make_spec(folder: Path, contents: dict[str, bytes], name: str = "toyset") -> DatasetSpec:
    """A registry entry for files written under ``folder/<name>/`` (the served mirror)."""
    (folder / name).mkdir(parents=True, exist_ok=True)
    files = []
    for path, data in contents.items():
        (folder / name / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / name / path).write_bytes(data)
        files.append(
            DataFile(
                path=path,
                bytes=len(data),
                sha256=hashlib.sha256(data).hexdigest(),
                url=f"https://raw.githubusercontent.com/example/toyset/{'0' * 40}/{path}",
            )
        )
    return DatasetSpec(
        name=name,
        title="toy",
        licence="MIT",
        redistributable=True,
        sources=[Source(repository="github.com/example/toyset", commit="0" * 40)],
        used_for="tests",
        files=files,
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.part"))


# ---------------------------------------------------------------------------------------------
# The registry itself.


def test_registry_urls_are_raw_github_files_at_the_recorded_commits() -> None:
    registry = load_registry()
    assert registry
    for spec in registry.values():
        known = {(s.repository.removeprefix("github.com/"), s.commit) for s in spec.sources}
        for file in spec.files:
            match = re.fullmatch(r"https://raw\.githubusercontent\.com/([^/]+/[^/]+)/([0-9a-f]{40})/(.+)", file.url)
            assert match, f"{spec.name}/{file.path}: {file.url}"
            assert (match[1], match[2]) in known, f"{spec.name}/{file.path}: {file.url} is not at a recorded commit"


def test_every_dataset_the_code_reads_is_registered() -> None:
    names = set()
    for source in [*PROJECT.glob("agent/**/*.py"), *PROJECT.glob("graphs/**/*.py"), *PROJECT.glob("tests/*.py")]:
        names |= set(re.findall(r"dataset_dir\(\s*\"([a-z0-9_]+)\"", source.read_text(encoding="utf-8")))
    from agent.value_model import DATASET_NAME

    names.add(DATASET_NAME)
    assert names, "the scan found no dataset_dir() calls"
    assert names <= set(load_registry()), f"read but not registered: {sorted(names - set(load_registry()))}"


@needs_shared_data
def test_sources_match_each_folders_provenance() -> None:
    for spec in load_registry().values():
        provenance = (SHARED / spec.name / "PROVENANCE.md").read_text(encoding="utf-8")
        for source in spec.sources:
            assert source.commit in provenance, f"{spec.name}: commit {source.commit} not in PROVENANCE.md"
            # Folders name a repository as a URL (github.com/owner/repo) or in backticks (`owner/repo`).
            named = source.repository in provenance or f"`{source.repository.removeprefix('github.com/')}`" in provenance
            assert named, f"{spec.name}: {source.repository} not in PROVENANCE.md"


@needs_shared_data
def test_shared_copies_match_every_registered_checksum() -> None:
    for spec in load_registry().values():
        for result in check_dataset(spec):
            assert result.status is FileStatus.OK, result.describe()
            assert result.actual_bytes == result.file.bytes


def test_broken_registry_names_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "datasets.yaml"
    bad.write_text(
        "datasets:\n"
        "  toy:\n"
        "    title: t\n"
        "    licence: MIT\n"
        "    redistributable: true\n"
        "    sources: [{repository: github.com/a/b, commit: '" + "0" * 40 + "'}]\n"
        "    used_for: tests\n"
        "    files:\n"
        "      - path: ../escape.csv\n"
        "        bytes: 1\n"
        "        sha256: '" + "a" * 64 + "'\n"
        "        url: https://example.org/x\n",
        encoding="utf-8",
    )
    with pytest.raises(DataFileError) as caught:
        load_registry(bad)
    assert f"{bad}:9" in str(caught.value) and "path" in str(caught.value)


def test_missing_dataset_message_says_where_it_looked_and_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(DatasetMissingError) as caught:
        dataset_dir("clariq", tmp_path)
    message = str(caught.value)
    assert str(tmp_path / "clariq") in message and "edge-align data fetch clariq" in message


def test_hashing_reports_progress_up_to_the_file_size(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    data = os.urandom(3 * (1 << 20) + 17)
    big.write_bytes(data)
    seen: list[tuple[int, int]] = []
    digest = sha256_of(big, lambda label, done, total: seen.append((done, total)))
    assert digest == hashlib.sha256(data).hexdigest()
    assert [done for done, _ in seen] == sorted(done for done, _ in seen) and seen[-1] == (len(data), len(data))
    assert len(seen) == 4


# ---------------------------------------------------------------------------------------------
# `edge-align data check` and `list`.


def test_check_reports_missing_and_corrupted_files_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = dataset_spec("ccai_polis")
    good = next(f for f in spec.files if f.path == "ids-to-toss.csv")
    corrupt = next(f for f in spec.files if f.path == "comments.csv")
    folder = tmp_path / "ccai_polis"
    folder.mkdir()
    if (SHARED / "ccai_polis" / good.path).is_file():
        (folder / good.path).write_bytes((SHARED / "ccai_polis" / good.path).read_bytes())
    (folder / corrupt.path).write_bytes(b"comment-id,comment-body\n1,tampered\n")

    code = main(["data", "check", "ccai_polis", "--data-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert f"MISMATCH  ccai_polis/comments.csv: {folder / 'comments.csv'}" in err
    assert f"expected {corrupt.sha256}" in err
    assert f"MISSING   ccai_polis/clean_votes.csv: looked for {folder / 'clean_votes.csv'}" in err
    if (folder / good.path).is_file():
        assert "ok        ccai_polis/ids-to-toss.csv" in out
    assert f"of 4 files ok; data directory: {tmp_path} (--data-dir)" in err


def test_check_json_gives_one_result_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    code = main(["data", "check", "qulac", "clariq", "--data-dir", str(tmp_path), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [(r["dataset"], r["file"], r["status"]) for r in report["files"]] == [
        ("qulac", "qulac.json", "missing"),
        ("clariq", "train.tsv", "missing"),
        ("clariq", "dev.tsv", "missing"),
        ("clariq", "question_bank.tsv", "missing"),
    ]
    assert report["files"][0]["path"] == str(tmp_path / "qulac" / "qulac.json")


@needs_shared_data
def test_check_passes_on_the_shared_data(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check"]) == 0
    out = capsys.readouterr().out
    total = sum(len(s.files) for s in load_registry().values())
    assert f"{total} of {total} files ok" in out


def test_unknown_dataset_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "check", "no_such_set"]) == 2
    assert "unknown dataset 'no_such_set'; known datasets: abg_coqa, advbench, ambignq" in capsys.readouterr().err


def test_list_shows_licence_and_presence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    (tmp_path / "qulac").mkdir()
    (tmp_path / "qulac" / "qulac.json").write_text("{}", encoding="utf-8")
    assert main(["data", "list", "--data-dir", str(tmp_path), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["datasets"]}
    assert rows["qulac"]["state"] == "present" and rows["qulac"]["licence"] == "MIT"
    assert rows["clariq"]["state"] == "absent" and not rows["clariq"]["redistributable"]
    assert rows["touche23_valueeval"]["licence"] == "CC-BY-SA-4.0"


# ---------------------------------------------------------------------------------------------
# Fetching from a local server.


def test_fetch_downloads_verifies_and_skips_what_is_already_there(tmp_path: Path, serve: object) -> None:
    mirror_dir = tmp_path / "mirror"
    spec = make_spec(mirror_dir, {"a.csv": b"id,text\n1,hello\n", "sub/b.json": b'{"x": 1}'})
    base = serve(mirror_dir)  # type: ignore[operator]
    dest = tmp_path / "data"

    first = fetch_dataset(spec, dest, mirror=base)
    assert [r.downloaded for r in first] == [True, True]
    assert (dest / "toyset" / "a.csv").read_bytes() == b"id,text\n1,hello\n"
    assert all(r.ok for r in check_dataset(spec, dest))
    assert leftovers(dest) == []

    again = fetch_dataset(spec, dest, mirror=base)
    assert [r.downloaded for r in again] == [False, False]


def test_corrupted_download_is_deleted_and_the_target_left_untouched(tmp_path: Path, serve: object) -> None:
    mirror_dir = tmp_path / "mirror"
    spec = make_spec(mirror_dir, {"a.csv": b"id,text\n1,hello\n"})
    (mirror_dir / "toyset" / "a.csv").write_bytes(b"id,text\n1,HELLO\n")  # same size, other bytes
    dest = tmp_path / "data"
    (dest / "toyset").mkdir(parents=True)
    (dest / "toyset" / "a.csv").write_bytes(b"old")

    with pytest.raises(DataFetchError) as caught:
        fetch_dataset(spec, dest, mirror=serve(mirror_dir))  # type: ignore[operator]
    message = str(caught.value)
    assert "sha256 mismatch" in message and spec.files[0].sha256 in message and "/toyset/a.csv" in message
    assert (dest / "toyset" / "a.csv").read_bytes() == b"old"
    assert leftovers(dest) == []


def test_oversized_response_is_cut_off(tmp_path: Path, serve: object) -> None:
    mirror_dir = tmp_path / "mirror"
    spec = make_spec(mirror_dir, {"a.csv": b"short"})
    (mirror_dir / "toyset" / "a.csv").write_bytes(b"x" * (3 << 20))
    with pytest.raises(DataFetchError, match="more than the expected 5 bytes"):
        fetch_dataset(spec, tmp_path / "data", mirror=serve(mirror_dir))  # type: ignore[operator]
    assert not (tmp_path / "data" / "toyset" / "a.csv").exists() and leftovers(tmp_path / "data") == []


def test_http_404_fails_clearly(tmp_path: Path, serve: object) -> None:
    mirror_dir = tmp_path / "mirror"
    spec = make_spec(mirror_dir, {"a.csv": b"data"})
    (mirror_dir / "toyset" / "a.csv").unlink()
    with pytest.raises(DataFetchError, match=r"/toyset/a\.csv: HTTP 404"):
        fetch_dataset(spec, tmp_path / "data", mirror=serve(mirror_dir))  # type: ignore[operator]
    assert not (tmp_path / "data" / "toyset" / "a.csv").exists() and leftovers(tmp_path / "data") == []


def test_refused_connection_fails_clearly(tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "mirror", {"a.csv": b"data"})
    with pytest.raises(DataFetchError, match="could not connect"):
        fetch_dataset(spec, tmp_path / "data", mirror=refused_url())
    assert leftovers(tmp_path / "data") == []


def test_silent_server_times_out(tmp_path: Path, serve: object) -> None:
    mirror_dir = tmp_path / "mirror"
    spec = make_spec(mirror_dir, {"a.csv": b"data"})
    base = serve(mirror_dir, slow=("/toyset/a.csv",))  # type: ignore[operator]
    started = time.perf_counter()
    with pytest.raises(DataFetchError, match=r"no answer within 0\.5 s|could not connect \(timed out\)"):
        fetch_dataset(spec, tmp_path / "data", mirror=base, timeout=0.5)
    assert time.perf_counter() - started < 2.5
    assert leftovers(tmp_path / "data") == []


def test_mirror_comes_from_the_environment(tmp_path: Path, serve: object, monkeypatch: pytest.MonkeyPatch) -> None:
    mirror_dir = tmp_path / "mirror"
    spec = make_spec(mirror_dir, {"a.csv": b"data"})
    monkeypatch.setenv(MIRROR_ENV, serve(mirror_dir))  # type: ignore[operator]
    assert fetch_dataset(spec, tmp_path / "data")[0].url.startswith("http://127.0.0.1:")


def test_subset_files_are_refused_from_upstream_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(DataFetchError) as caught:
        fetch_dataset(dataset_spec("moralchoice"), tmp_path)
    assert "subsets of their upstream files" in str(caught.value) and MIRROR_ENV in str(caught.value)


@needs_shared_data
def test_cli_fetches_real_files_from_a_local_mirror_of_the_shared_data(
    tmp_path: Path, serve: object, capsys: pytest.CaptureFixture[str]
) -> None:
    base = serve(SHARED)  # type: ignore[operator]  # the shared folder, served read-only in place
    dest = tmp_path / "data"
    assert main(["data", "fetch", "ccai_polis", "moralchoice", "--dest", str(dest), "--mirror", base]) == 0
    out = capsys.readouterr().out
    assert f"downloaded  ccai_polis/clean_votes.csv -> {dest / 'ccai_polis' / 'clean_votes.csv'}" in out
    assert main(["data", "check", "ccai_polis", "moralchoice", "--data-dir", str(dest)]) == 0
    assert "6 of 6 files ok" in capsys.readouterr().out


def test_cli_network_failure_is_one_line_without_traceback(tmp_path: Path) -> None:
    env = {**os.environ, MIRROR_ENV: refused_url(), "EDGE_ALIGN_DATA": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "ui.cli", "data", "fetch", "qulac"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=PROJECT,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert (
        done.stderr.startswith("edge-align: http://127.0.0.1:") and "qulac/qulac.json: could not connect" in done.stderr
    )
    assert not (tmp_path / "qulac" / "qulac.json").exists()
