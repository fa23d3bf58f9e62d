"""Edge Align on engines its users already run: a Chroma server, PostgreSQL, `langgraph dev`, another model server.

Every server here is real and started by the test on a loopback port, then stopped: `chroma run`
from the chromadb package, a private PostgreSQL cluster (initdb + pg_ctl), `langgraph dev` from
langgraph-cli, and a second llama.cpp server behind the pass-through proxy. The engines are chosen
by configuration only (EDGE_ALIGN_CHROMA_URL, EDGE_ALIGN_DATABASE_URL, EDGE_ALIGN_LLM_BASE_URL);
without it the embedded defaults stay as they were.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import pytest
from langchain_core.messages import AnyMessage, HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.memory import InMemoryStore
from langgraph.store.sqlite import SqliteStore
from langgraph.types import Command

from agent.llm_server import EmbeddedLlamaServer
from graphs import builder
from graphs.context import Context
from memory.backends import (
    DATABASE_URL_ENV,
    BackendConfigError,
    BackendUnavailableError,
    open_checkpointer,
    open_postgres_store,
    open_store,
)
from memory.norm_pack import load_packs, shipped_packs_dir
from memory.norm_store import (
    ALL_NORMS_COLLECTION,
    CHROMA_URL_ENV,
    LEGACY_COLLECTION_NAME,
    community_collection_name,
    norm_id_of,
    open_chroma_client,
    open_norm_store,
)
from memory.paths import checkpoints_path, norm_index_path, profiles_path
from memory.profiles import load_user_context
from tests.support.fault_proxy import FaultMode, FaultProxy

if TYPE_CHECKING:  # the module itself is loaded as a pytest plugin below, so pytest can rewrite its asserts
    from tests.support.servers import ChromaServer, PostgresCluster

pytest_plugins = ["tests.support.servers", "tests.support.llm_server"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DIARY = "Should I read my 15-year-old daughter's diary to check she's safe?"
PASSWORD = "s3cret-Pa55"
CLI_TIMEOUT_S = 420


# --------------------------------------------------------------------------------------------
# Configuration: defaults unchanged, bad settings named (fast, no servers)


def test_without_configuration_the_sqlite_files_in_the_data_home_are_used(tmp_path: Path) -> None:
    saver = open_checkpointer(tmp_path, environ={})
    store = open_store(tmp_path, environ={})
    assert isinstance(saver, SqliteSaver) and isinstance(store, SqliteStore)
    assert checkpoints_path(tmp_path).exists() and profiles_path(tmp_path).exists()


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://edge:{PASSWORD}@127.0.0.1:3306/edge",  # not PostgreSQL
        f"edge:{PASSWORD}@127.0.0.1/edge",  # no scheme
        f"postgresql://edge:{PASSWORD}@127.0.0.1:99999/edge",  # port out of range
        f"postgresql://edge:{PASSWORD}@127.0.0.1:5432",  # no database
    ],
)
def test_a_malformed_database_url_is_refused_naming_the_variable_not_the_password(url: str, tmp_path: Path) -> None:
    with pytest.raises(BackendConfigError) as refused:
        open_checkpointer(tmp_path, environ={DATABASE_URL_ENV: url})
    assert DATABASE_URL_ENV in str(refused.value)
    assert PASSWORD not in str(refused.value)
    assert not checkpoints_path(tmp_path).exists()  # no silent fall-back to SQLite


def test_an_unreachable_database_is_reported_naming_the_variable_and_the_server(tmp_path: Path) -> None:
    from tests.support.servers import free_loopback_port

    port = free_loopback_port()  # nothing listens there
    url = f"postgresql://edge:{PASSWORD}@127.0.0.1:{port}/edge"
    with pytest.raises(BackendUnavailableError) as failed:
        open_store(tmp_path, environ={DATABASE_URL_ENV: url})
    message = str(failed.value)
    assert DATABASE_URL_ENV in message and f"127.0.0.1:{port}/edge" in message
    assert PASSWORD not in message


# --------------------------------------------------------------------------------------------
# Helpers for the server-backed tests


def run_cli(home: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`edge-align ...` in its own process, with its own data home and the given engine settings."""
    environment = {**os.environ, "EDGE_ALIGN_HOME": str(home), "EDGE_ALIGN_RECORD": "0", **env}
    done = subprocess.run(
        [sys.executable, "-m", "ui.cli", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=CLI_TIMEOUT_S,
        cwd=PROJECT_ROOT,
    )
    if done.returncode != 0:
        raise AssertionError(f"edge-align {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def ask_json(home: Path, message: str, thread: str, env: dict[str, str]) -> dict[str, Any]:
    done = run_cli(home, "ask", message, "--thread", thread, "--json", env=env)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def shipped_norm_count() -> int:
    return sum(len(pack.norms) for pack in load_packs([shipped_packs_dir()]))


def first_option(question: dict[str, Any]) -> str:
    """The first offered option; an open question (no options) gets an answer that states a fact."""
    options = question.get("options") or []
    return str(options[0]) if options else "I would do it without her knowing."


@pytest.fixture(scope="module")
def engines(
    chroma_server: ChromaServer, postgres_cluster: PostgresCluster, embedded_llm: EmbeddedLlamaServer
) -> dict[str, str]:
    """The settings that point an app process at the shared engines (one fresh database per module)."""
    return {
        CHROMA_URL_ENV: chroma_server.url,
        DATABASE_URL_ENV: postgres_cluster.create_database("scale_out"),
        "EDGE_ALIGN_LLM_BASE_URL": embedded_llm.base_url,  # one model server for every app process
    }


@pytest.fixture(scope="module")
def indexed_norms(engines: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`edge-align norms index` run against the Chroma server; returns the CLI's home and its output."""
    home = tmp_path_factory.mktemp("indexer-home")
    done = run_cli(home, "norms", "index", env=engines)
    return home, done.stdout


@pytest.fixture()
def scaled_env(engines: dict[str, str], indexed_norms: tuple[Path, str]) -> Iterator[None]:
    """This process configured like an app process on the shared engines (for in-process agents)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in engines.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="module")
def scaled_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("scaled-home")


# --------------------------------------------------------------------------------------------
# 1. The norm store on a Chroma server


@pytest.mark.slow
def test_norms_index_command_writes_to_the_chroma_server_and_is_incremental(
    engines: dict[str, str], indexed_norms: tuple[Path, str], chroma_server: ChromaServer
) -> None:
    home, output = indexed_norms
    expected = shipped_norm_count()
    assert f"total in index: {expected}" in output
    server = open_chroma_client(Path("/nonexistent"), chroma_server.url)
    assert server.get_collection(ALL_NORMS_COLLECTION).count() == expected
    # One collection per community, holding that community's norms (what a community filter searches).
    by_community: dict[str, int] = {}
    for pack in load_packs([shipped_packs_dir()]):
        by_community[pack.community] = by_community.get(pack.community, 0) + len(pack.norms)
    for community, norms in by_community.items():
        assert server.get_collection(community_collection_name(community)).count() == norms
    assert LEGACY_COLLECTION_NAME not in {c.name for c in server.list_collections()}
    assert not norm_index_path(home).exists()  # nothing went to an embedded index
    again = run_cli(home, "norms", "index", env=engines).stdout
    assert "indexed 0 norms; new or updated packs: none" in again
    # Embeddings are computed by the client: the server never fetched a model.
    assert chroma_server.downloaded_files() == []
    assert "download" not in chroma_server.log_path.read_text(errors="replace").lower()


@pytest.mark.slow
def test_community_and_domain_filtered_retrieval_through_the_chroma_server(
    indexed_norms: tuple[Path, str], chroma_server: ChromaServer
) -> None:
    from agent.encoder import load_encoder

    encoder = load_encoder()
    store = open_norm_store(Path("/nonexistent"), url=chroma_server.url, encoder=encoder)
    found = store.query(encoder.encode([DIARY])[0], communities=["parents", "privacy-first"], domains=["privacy"], k=8)
    assert len(found) == 8
    assert all(n.community in {"parents", "privacy-first"} and "privacy" in n.domains for n in found)
    assert [n.similarity for n in found] == sorted((n.similarity for n in found), reverse=True)


@pytest.mark.slow
def test_a_graph_turn_retrieves_its_norms_from_the_chroma_server(
    scaled_env: None, scaled_home: Path, chroma_server: ChromaServer
) -> None:
    from graphs.runner import EdgeAlign

    agent = EdgeAlign(Context.from_env(home=str(scaled_home), generate_text=False), record=False)
    result = agent.ask(DIARY, thread_id="norms-from-server")
    assert result.norms, result.policy
    served = open_chroma_client(Path("/nonexistent"), chroma_server.url).get_collection(ALL_NORMS_COLLECTION)
    served_norm_ids = {norm_id_of(stored_id) for stored_id in served.get(include=[])["ids"]}
    assert {n["id"] for n in result.norms} <= served_norm_ids
    assert not norm_index_path(scaled_home).exists()


# --------------------------------------------------------------------------------------------
# 2. Checkpoints and user memory in PostgreSQL


@pytest.mark.slow
def test_user_context_learned_on_one_thread_is_known_on_another_thread_through_postgres(
    scaled_env: None, scaled_home: Path, engines: dict[str, str]
) -> None:
    from graphs.runner import EdgeAlign

    agent = EdgeAlign(Context.from_env(home=str(scaled_home), generate_text=False), record=False)
    assert type(agent.checkpointer).__name__ == "PostgresSaver"
    assert type(agent.store).__name__ == "PostgresStore"
    first = agent.ask(DIARY, thread_id="memory-a", user_id="parent-1")
    assert first.decision == "clarify", first.policy
    assert first.question is not None
    answered = agent.ask(first_option(first.question), thread_id="memory-a", user_id="parent-1")
    learned = {k: v for k, v in answered.known_context.items() if first.known_context.get(k) != v}
    assert learned, answered.known_context  # the answer taught the agent something about this user
    # The facts live in PostgreSQL, read back through a store of its own.
    remembered = load_user_context(open_postgres_store(engines[DATABASE_URL_ENV]), "parent-1")
    assert learned.items() <= remembered.items()

    other_thread = agent.ask(DIARY, thread_id="memory-b", user_id="parent-1")
    assert learned.items() <= other_thread.known_context.items()
    if other_thread.question is not None:
        assert other_thread.question["about"] not in learned  # it does not ask again what it knows
    stranger = agent.ask(DIARY, thread_id="memory-c", user_id="someone-else")
    assert all(stranger.known_context.get(k) != v for k, v in learned.items())
    assert not checkpoints_path(scaled_home).exists() and not profiles_path(scaled_home).exists()


# --------------------------------------------------------------------------------------------
# 3. Two app processes, one conversation


@pytest.mark.slow
def test_a_clarification_asked_by_one_process_is_answered_by_another(
    engines: dict[str, str], indexed_norms: tuple[Path, str], tmp_path: Path
) -> None:
    homes = [tmp_path / "app-1", tmp_path / "app-2"]  # nothing local is shared between the two
    first = ask_json(homes[0], DIARY, "shared-thread", engines)
    assert first["decision"] == "clarify", first["policy"]
    turn = ask_json(homes[1], first_option(first["question"]), "shared-thread", engines)
    hops = 2
    while turn["decision"] == "clarify" and hops < 4:  # a second question goes back to the other process
        turn = ask_json(homes[hops % 2], first_option(turn["question"]), "shared-thread", engines)
        hops += 1
    assert turn["decision"] == "answer", turn["policy"]
    assert turn["thread_id"] == "shared-thread"
    assert turn["llm_error"] is None and len(turn["reply"]) > 20
    assert set(first["known_context"]) < set(turn["known_context"])  # the answers were remembered
    for home in homes:
        assert not checkpoints_path(home).exists() and not norm_index_path(home).exists()


# --------------------------------------------------------------------------------------------
# 4. `langgraph dev` serves the graph; the graph nests as a subgraph


@pytest.mark.slow
def test_langgraph_dev_serves_the_graph_through_clarify_and_resume(
    engines: dict[str, str], indexed_norms: tuple[Path, str], tmp_path: Path
) -> None:
    from langgraph_sdk import get_sync_client

    from tests.support.servers import LangGraphDevServer

    env = {**engines, "EDGE_ALIGN_HOME": str(tmp_path / "server-home"), "EDGE_ALIGN_RECORD": "0"}
    env.pop(DATABASE_URL_ENV)  # `langgraph dev` brings its own checkpointer and store
    with LangGraphDevServer(PROJECT_ROOT / "langgraph.json", extra_env=env) as server:
        client = get_sync_client(url=server.url, timeout=CLI_TIMEOUT_S)
        assert [a["graph_id"] for a in client.assistants.search()] == ["edge-align"]
        thread = client.threads.create()
        thread_id = thread["thread_id"]
        message: Any = {"role": "user", "content": DIARY}
        client.runs.wait(thread_id, "edge-align", input={"messages": [message]}, context={})
        state: Any = client.threads.get_state(thread_id)
        assert state["next"] == ["clarify"], server.log_tail()
        question = state["interrupts"][0]["value"]
        assert state["values"]["decision"] == "clarify" and question["question"]
        for _ in range(3):
            client.runs.wait(thread_id, "edge-align", command={"resume": first_option(question)}, context={})
            state = client.threads.get_state(thread_id)
            if not state["interrupts"]:
                break
            question = state["interrupts"][0]["value"]
        assert state["next"] == [] and state["values"]["decision"] == "answer", server.log_tail()
        assert state["values"]["llm_error"] is None and len(state["values"]["reply"]) > 20
        assert question["about"] in state["values"]["known_context"]


class ParentState(TypedDict):
    messages: Annotated[list[AnyMessage], lambda left, right: [*left, *right]]
    handled_by: str


def test_the_graph_works_as_a_subgraph_whose_interrupt_surfaces_in_the_parent() -> None:
    def triage(state: ParentState) -> dict[str, Any]:
        return {"handled_by": "edge-align"}

    parent = StateGraph(ParentState, context_schema=Context)
    parent.add_node("triage", triage)
    parent.add_node("edge_align", builder.compile())  # the checkpointer comes from the parent
    parent.add_edge(START, "triage")
    parent.add_edge("triage", "edge_align")
    parent.add_edge("edge_align", END)
    app: Any = parent.compile(checkpointer=InMemorySaver(), store=InMemoryStore())

    config: Any = {"configurable": {"thread_id": "nested"}}
    context = Context(generate_text=False)
    paused = app.invoke({"messages": [HumanMessage(DIARY)]}, config, context=context)
    assert "__interrupt__" in paused, paused.keys()
    question = paused["__interrupt__"][0].value
    assert question["question"] and app.get_state(config).next == ("edge_align",)

    done = app.invoke(Command(resume=first_option(question)), config, context=context)
    for _ in range(2):
        if "__interrupt__" not in done:
            break
        done = app.invoke(Command(resume=first_option(done["__interrupt__"][0].value)), config, context=context)
    assert "__interrupt__" not in done
    assert done["handled_by"] == "edge-align"
    assert [m.type for m in done["messages"]][:1] == ["human"] and done["messages"][-1].type == "ai"
    assert app.get_state(config).next == ()


# --------------------------------------------------------------------------------------------
# 5. A remote model endpoint chosen by configuration


@pytest.mark.slow
def test_the_answer_is_worded_by_the_endpoint_the_configuration_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphs.runner import EdgeAlign

    with EmbeddedLlamaServer(log_dir=tmp_path, progress=False) as other, FaultProxy(other.base_url) as proxy:
        proxy.set_mode(FaultMode.PASS)
        monkeypatch.setenv("EDGE_ALIGN_LLM_BASE_URL", proxy.base_url)
        context = Context.from_env(home=str(tmp_path / "home"))
        assert context.llm_base_url == proxy.base_url
        agent = EdgeAlign(context, checkpointer=InMemorySaver(), record=False)
        result = agent.ask("What is the capital of France?")
        assert result.decision == "answer", result.policy
        assert result.llm_error is None and result.reply
        assert proxy.requests_seen >= 1 and not proxy.unexpected_errors
        assert other.log_path is not None and "/v1/chat/completions" in other.log_path.read_text(errors="replace")
        assert agent.fingerprint()["llm_endpoint"] == f"http://127.0.0.1:{proxy.port}"
