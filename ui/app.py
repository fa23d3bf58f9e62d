"""Edge Align in the browser (Gradio): the conversation on the left, the decision trace on the right.

Start it with ``edge-align demo [--host 127.0.0.1] [--port 7860]``. It binds the loopback address unless
told otherwise and is never shared through a tunnel. Set ``EDGE_ALIGN_DEMO_USER`` and
``EDGE_ALIGN_DEMO_PASSWORD`` to require a login. ``EDGE_ALIGN_DEMO_CONCURRENCY`` (default 4) is how many
turns run at the same time; more wait in Gradio's queue.

Scripted clients: the ``/chat`` endpoint
-----------------------------------------
::

    from gradio_client import Client

    client = Client("http://127.0.0.1:7860/")          # auth=(user, password) when a login is set
    reply, thread_id, decision, options = client.predict("Should I read her diary?", api_name="/chat")
    if decision == "clarify":                           # answer on the same thread: the turn resumes
        reply, thread_id, decision, options = client.predict(options[0], thread_id, api_name="/chat")

Inputs
    ``message`` (str): the user's message, or the answer to a pending clarifying question.
    ``thread_id`` (str, optional): the conversation to continue; empty starts a new one.
Outputs
    ``reply`` (str): the answer, the refusal, or the clarifying question.
    ``thread_id`` (str): the conversation the turn ran on (keep it for the next call).
    ``decision`` (str): ``"clarify"``, ``"answer"`` or ``"refuse"``.
    ``options`` (list[str]): the clarifying question's choices (empty otherwise; free text works too).
Errors
    An empty message, one longer than the limit, or a malformed thread id raise
    ``gradio_client.exceptions.AppError`` whose message says what to change; the thread is untouched.
    A language model that is down or slow is not an error: the reply says so and the decision stands.

The API uses the communities and mode the server was started with; the browser's controls apply
to browser sessions only.
"""

# No `from __future__ import annotations` here: gr.api reads the /chat signature's types at run time.

import copy
import json
import logging
import os
import secrets
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import gradio as gr

from agent.vocabulary import Mode
from graphs.context import ConfigError, Context
from graphs.runner import STEP_LABELS, EdgeAlign, InvalidMessageError, TurnResult, new_thread_id
from prompts import load_prompt_data
from ui.service_support import valid_thread_id, warm_llm
from ui.trace_view import TRACE_CSS, trace_details_html, trace_record, trace_summary_html, value_chart_html

log = logging.getLogger("edge_align.ui")

TITLE = "Edge Align"
TAGLINE = (
    "Edge Alignment keeps values plural at the edges: instead of one averaged answer, the agent measures "
    "which of your values pull against each other, consults the norms of the communities you choose, "
    "and asks the one clarifying question whose answer matters most before it answers."
)
EXAMPLES = [
    "Should I read my 15-year-old daughter's diary to check she's safe?",
    "Is euthanasia morally acceptable?",
    "What is the capital of France?",
]
SESSION_STORAGE_KEY = "edge-align-session"
_FIRST_STEP = STEP_LABELS["begin_turn"]

CSS = (
    """
#ea-header h1 { margin-bottom: 0.1em; }
#ea-header p { margin-top: 0; color: var(--body-text-color-subdued); max-width: 70em; }
#thread-info { color: var(--body-text-color-subdued); font-size: 0.8em; }
#trace-panel { border-left: 1px solid var(--border-color-primary); padding-left: 1em; }
"""
    + TRACE_CSS
)


class BusyThreadError(RuntimeError):
    """A second turn arrived on a thread whose previous turn is still running."""


def _text_of(content: Any) -> str:
    """Chatbot content as plain text (Gradio hands messages back as lists of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(_text_of(part) for part in content)
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return str(content or "")


class TraceLog:
    """Per-thread JSONL of finished turns with their traces, so reloads and exports can show them.

    Lives under the data home beside the checkpoints, so it survives a server restart like the thread.
    """

    def __init__(self, home: Path) -> None:
        self.folder = home / "ui-traces"
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def _path(self, thread_id: str) -> Path:
        return self.folder / f"{thread_id}.jsonl"

    def append(self, thread_id: str, message: str, result: TurnResult) -> dict[str, Any]:
        """Log a finished turn; its trace gets the turn's number in the thread (1, 2, ...)."""
        with self._lock:
            path = self._path(thread_id)
            turns = sum(1 for line in path.open(encoding="utf-8") if line.strip()) if path.exists() else 0
            record = {
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "user": message,
                "reply": result.reply,
                "trace": {**trace_record(result), "turn": turns + 1},
            }
            with path.open("a", encoding="utf-8") as out:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return record

    def read(self, thread_id: str) -> list[dict[str, Any]]:
        path = self._path(thread_id)
        if not path.exists():
            return []
        with self._lock:
            lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]


@dataclass(frozen=True)
class Community:
    id: str
    name: str
    packs: str  # "pack-id v1.2.0, ..." for the selector's label


def list_communities(home: Path) -> list[Community]:
    """Communities of the shipped packs and any the user added under <home>/packs."""
    from graphs.resources import pack_paths
    from memory.norm_pack import load_packs

    found: dict[str, tuple[str, list[str]]] = {}
    for pack in load_packs(pack_paths(home)):
        _, packs = found.setdefault(pack.community, (pack.community_name, []))
        packs.append(f"{pack.id} v{pack.version}")
    return [Community(cid, name, ", ".join(packs)) for cid, (name, packs) in sorted(found.items())]


def _slot_choices(slot: str) -> list[tuple[str, str]]:
    """'Not set' plus the answers the clarifying question for this slot offers."""
    options = load_prompt_data("clarify_questions.yaml").get(slot, {}).get("options", [])
    return [("Not set", ""), *((str(o["label"]), str(o["value"])) for o in options)]


def _secret(home: Path) -> str:
    """A per-installation key for the browser-stored session, so it still decrypts after a restart."""
    path = home / "ui-session-secret"
    if not path.exists():
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()


class DemoService:
    """The one EdgeAlign of this process, shared by every session, plus what the page needs around it."""

    def __init__(self, agent: EdgeAlign, home: Path) -> None:
        self.agent = agent
        self.base_context = agent.context
        self.home = home
        self.traces = TraceLog(home)
        self.communities = list_communities(home)
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        self._export_dir = Path(tempfile.mkdtemp(prefix="edge-align-exports-"))

    # ----------------------------------------------------------------------------------- turns

    def request_context(
        self,
        communities: list[str] | None,
        mode: str | None,
        steer: str | None,
        role: str | None,
        jurisdiction: str | None,
    ) -> Context:
        """The launch context with this session's choices; raises ConfigError for an incomplete choice."""
        known = {c.id for c in self.communities}
        chosen = tuple(c for c in (communities or []) if c in known)
        # Every community ticked, or none, both mean "no filter" (which also covers packs added later).
        selected = () if len(chosen) in (0, len(known)) else chosen
        user_context = dict(self.base_context.user_context)
        for slot, value in (("role", role), ("jurisdiction", jurisdiction)):
            if value:
                user_context[slot] = value
        context = replace(
            self.base_context,
            communities=selected,
            mode=Mode(mode or self.base_context.mode),
            steer_community=(steer or None) if mode == Mode.STEERABLE else self.base_context.steer_community,
            user_context=user_context,
        )
        return Context.validated(**{f.name: getattr(context, f.name) for f in fields(context)})

    def _agent_for(self, context: Context) -> EdgeAlign:
        # EdgeAlign reads its settings from .context; a shallow copy shares the compiled graph and the
        # checkpointer but carries this request's settings, so sessions never see each other's choices.
        if context == self.base_context:
            return self.agent
        view = copy.copy(self.agent)
        view.context = context
        return view

    def run_turn(self, message: str, thread_id: str, context: Context) -> Iterator[tuple[str, Any]]:
        """EdgeAlign.stream's events on the thread, then ("trace", record) once the turn is logged.

        One turn at a time per thread: a second one meanwhile raises BusyThreadError.
        """
        with self._running_lock:
            if thread_id in self._running:
                raise BusyThreadError("I am still working on your previous message; please wait for it.")
            self._running.add(thread_id)
        try:
            for kind, payload in self._agent_for(context).stream(message, thread_id):
                yield kind, payload
                if kind == "result":
                    yield "trace", self.traces.append(thread_id, message.strip(), payload)["trace"]
        finally:
            with self._running_lock:
                self._running.discard(thread_id)

    # ------------------------------------------------------------------------------ redrawing

    def display_history(self, thread_id: str) -> list[dict[str, Any]]:
        """The thread's messages for the Chatbot, with the pending question's options as buttons."""
        messages: list[dict[str, Any]] = [dict(m) for m in self.agent.history(thread_id)]
        pending = self.agent.pending_question(thread_id)
        if pending and messages and messages[-1]["role"] == "assistant":
            messages[-1]["options"] = [{"value": str(option)} for option in pending.get("options", [])]
        return messages

    def last_trace(self, thread_id: str) -> dict[str, Any] | None:
        records = self.traces.read(thread_id)
        return records[-1]["trace"] if records else None

    def transcript(self, thread_id: str) -> list[dict[str, Any]]:
        """One record per message; assistant messages carry the decision and the trace of their turn."""
        records = self.traces.read(thread_id)
        next_record = 0
        transcript = []
        for index, message in enumerate(self.agent.history(thread_id)):
            entry: dict[str, Any] = {"thread_id": thread_id, "index": index, **message}
            if message["role"] == "assistant":
                # Turns are logged in order; match each reply to the next logged turn that produced it.
                for position in range(next_record, len(records)):
                    if records[position]["reply"] == message["content"]:
                        trace = records[position]["trace"]
                        entry.update(decision=trace["decision"], at=records[position]["at"], trace=trace)
                        next_record = position + 1
                        break
            transcript.append(entry)
        return transcript

    def export_file(self, thread_id: str) -> str | None:
        transcript = self.transcript(thread_id)
        if not transcript:
            return None
        path = self._export_dir / f"edge-align-{thread_id}.jsonl"
        lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in transcript)
        path.write_text("".join(lines), encoding="utf-8")
        return str(path)

    # ------------------------------------------------------------------------------ /chat API

    def chat(self, message: str, thread_id: str = "") -> tuple[str, str, str, list[str]]:
        """Run one turn. Returns (reply, thread_id, decision, options); see the module docstring."""
        thread = thread_id.strip() if thread_id else ""
        if thread and not valid_thread_id(thread):
            raise gr.Error("thread_id may only hold letters, digits, '-' and '_' (at most 64).", print_exception=False)
        thread = thread or new_thread_id()
        result: TurnResult | None = None
        try:
            for kind, payload in self.run_turn(message or "", thread, self.base_context):
                if kind == "result":
                    result = payload
        except (InvalidMessageError, BusyThreadError) as problem:
            raise gr.Error(str(problem), print_exception=False) from None
        except Exception as problem:  # logged in full here; the client gets one clear line
            log.exception("turn failed on thread %s", thread)
            raise gr.Error(
                f"The turn failed on the server ({type(problem).__name__}); the thread is kept, please retry.",
                print_exception=False,
            ) from None
        assert result is not None  # stream always ends with its result
        options = [str(o) for o in (result.question or {}).get("options", [])]
        return result.reply, thread, result.decision, options


# ---------------------------------------------------------------------------------------------
# The page


def _pending(label: str) -> dict[str, Any]:
    return {"role": "assistant", "content": "", "metadata": {"title": label, "status": "pending"}}


def _settled(history: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Earlier messages as plain text: old option buttons and unfinished status lines are dropped."""
    settled = []
    for message in history or []:
        if (message.get("metadata") or {}).get("status") == "pending":
            continue
        settled.append({"role": message["role"], "content": _text_of(message.get("content"))})
    return settled


def _thread_label(thread_id: str) -> str:
    return f"Conversation `{thread_id}` · this browser keeps it across reloads and restarts"


def build_app(service: DemoService) -> gr.Blocks:
    base = service.base_context
    community_ids = [c.id for c in service.communities]
    community_choices = [(f"{c.name} ({c.packs})", c.id) for c in service.communities]
    steer_choices = [(c.name, c.id) for c in service.communities]
    steerable = base.mode == Mode.STEERABLE

    def export_update(thread_id: str) -> Any:
        path = service.export_file(thread_id)
        return gr.DownloadButton(value=path, interactive=path is not None)

    with gr.Blocks(title=TITLE, fill_width=True) as app:
        session = gr.BrowserState({"thread_id": ""}, storage_key=SESSION_STORAGE_KEY, secret=_secret(service.home))
        with gr.Column(elem_id="ea-header"):
            gr.Markdown(f"# {TITLE}\n{TAGLINE}")
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=420):
                chatbot = gr.Chatbot(
                    label="Conversation",
                    elem_id="chat",
                    height=560,
                    feedback_options=None,
                    buttons=["copy"],
                    placeholder="Ask about a situation where values might pull in different directions.",
                )
                with gr.Row(equal_height=True):
                    textbox = gr.Textbox(
                        show_label=False,
                        placeholder="Type a message and press Enter…",
                        elem_id="message",
                        scale=6,
                        lines=1,
                        max_lines=6,
                        autofocus=True,
                    )
                    send = gr.Button("Send", variant="primary", elem_id="send", scale=1, min_width=90)
                gr.Examples(examples=[[e] for e in EXAMPLES], inputs=[textbox], label="Examples")
                with gr.Row():
                    new_conversation = gr.Button("New conversation", elem_id="new-conversation", size="sm")
                    export = gr.DownloadButton(
                        "Export transcript (JSONL)", elem_id="export", size="sm", interactive=False
                    )
                thread_info = gr.Markdown("New conversation", elem_id="thread-info")
                with gr.Accordion("Communities and context", open=False, elem_id="settings"):
                    communities = gr.CheckboxGroup(
                        community_choices,
                        value=list(base.communities) or community_ids,
                        label="Whose norms to consult",
                        info="All ticked, or none, means every community.",
                    )
                    with gr.Row():
                        mode = gr.Radio(
                            [
                                ("Overton: show the spread of views", Mode.OVERTON.value),
                                ("Steerable: follow one community", Mode.STEERABLE.value),
                            ],
                            value=str(base.mode),
                            label="How norms shape the answer",
                        )
                        steer = gr.Dropdown(
                            steer_choices,
                            value=base.steer_community or (community_ids[0] if community_ids else None),
                            label="Community to steer by",
                            visible=steerable,
                        )
                    with gr.Row():
                        role = gr.Dropdown(_slot_choices("role"), value="", label="Your role (optional)")
                        jurisdiction = gr.Dropdown(
                            _slot_choices("jurisdiction"), value="", label="Jurisdiction (optional)"
                        )
            with gr.Column(scale=2, min_width=360, elem_id="trace-panel"):
                gr.Markdown("### Decision trace")
                summary = gr.HTML(trace_summary_html(None), elem_id="trace-summary")
                chart = gr.HTML(elem_id="value-chart")
                details = gr.HTML(trace_details_html(None), elem_id="trace-details")

        shown_thread = gr.State("")  # the thread drawn in this tab; restores skip it
        controls = [communities, mode, steer, role, jurisdiction]
        turn_outputs = [textbox, chatbot, session, shown_thread, thread_info, summary, chart, details, export]

        def turn(
            message: str,
            history: list[dict[str, Any]],
            state: dict[str, Any],
            chosen: list[str],
            mode_value: str,
            steer_value: str | None,
            role_value: str | None,
            jurisdiction_value: str | None,
        ) -> Iterator[dict[Any, Any]]:
            text = message or ""
            if not text.strip():
                gr.Warning(load_prompt_data("messages.yaml")["empty_message"])
                yield {textbox: ""}
                return
            try:
                context = service.request_context(chosen, mode_value, steer_value, role_value, jurisdiction_value)
            except ConfigError as problem:
                gr.Warning(f"Check the settings: {problem}")
                yield {textbox: text}
                return
            thread_id = valid_thread_id((state or {}).get("thread_id")) or new_thread_id()
            shown = text if len(text) <= 600 else f"{text[:600]}… ({len(text)} characters)"
            live = [*_settled(history), {"role": "user", "content": shown}, _pending(_FIRST_STEP)]
            yield {
                textbox: "",
                chatbot: live,
                session: {"thread_id": thread_id},
                shown_thread: thread_id,
                thread_info: _thread_label(thread_id),
            }
            answer = ""
            try:
                for kind, payload in service.run_turn(text, thread_id, context):
                    if kind == "step" and not answer:
                        live[-1] = _pending(payload)
                        yield {chatbot: live}
                    elif kind == "token":
                        answer += payload
                        live[-1] = {"role": "assistant", "content": answer}
                        yield {chatbot: live}
                    elif kind == "result":
                        final: dict[str, Any] = {"role": "assistant", "content": payload.reply or answer}
                        options = (payload.question or {}).get("options", [])
                        if options:
                            final["options"] = [{"value": str(o)} for o in options]
                        live[-1] = final
                        yield {chatbot: live}  # the reply first; the trace follows a moment later
                    elif kind == "trace":
                        yield {**trace_outputs(payload), export: export_update(thread_id)}
            except (InvalidMessageError, BusyThreadError) as problem:
                live[-1] = {"role": "assistant", "content": f"⚠️ {problem}"}
                yield {chatbot: live}
            except Exception as problem:  # the session must survive whatever went wrong in one turn
                log.exception("turn failed on thread %s", thread_id)
                live[-1] = {
                    "role": "assistant",
                    "content": f"⚠️ Something went wrong on my side ({type(problem).__name__}). "
                    "Your conversation is kept; please try again.",
                }
                yield {chatbot: live}

        def option_turn(
            history: list[dict[str, Any]],
            state: dict[str, Any],
            chosen: list[str],
            mode_value: str,
            steer_value: str | None,
            role_value: str | None,
            jurisdiction_value: str | None,
            evt: gr.SelectData,
        ) -> Iterator[dict[Any, Any]]:
            yield from turn(
                str(evt.value), history, state, chosen, mode_value, steer_value, role_value, jurisdiction_value
            )

        def restore(state: dict[str, Any], drawn: str) -> dict[Any, Any]:
            """Redraw the tab from the thread the browser remembers (after a reload or a restart).

            Runs on page load and when the browser state is read from localStorage, whichever
            comes last; a thread already drawn in this tab (e.g. mid-turn) is left alone.
            """
            thread_id = valid_thread_id((state or {}).get("thread_id"))
            if not thread_id or thread_id == drawn:
                return {shown_thread: drawn}  # nothing to redraw (Gradio needs one output back)
            return {
                chatbot: service.display_history(thread_id),
                shown_thread: thread_id,
                thread_info: _thread_label(thread_id),
                **trace_outputs(service.last_trace(thread_id)),
                export: export_update(thread_id),
            }

        def start_new() -> dict[Any, Any]:
            thread_id = new_thread_id()
            return {
                textbox: "",
                chatbot: [],
                session: {"thread_id": thread_id},
                shown_thread: thread_id,
                thread_info: _thread_label(thread_id),
                **trace_outputs(None),
                export: gr.DownloadButton(value=None, interactive=False),
            }

        def trace_outputs(trace: dict[str, Any] | None) -> dict[Any, Any]:
            return {
                summary: trace_summary_html(trace),
                chart: value_chart_html(trace),
                details: trace_details_html(trace),
            }

        private: dict[str, Any] = {"api_visibility": "private"}
        turn_inputs = [textbox, chatbot, session, *controls]
        # "always_last": a message sent while the previous turn is still finishing runs after it.
        # Gradio's default ("once") ignored the click, and the typed text vanished unanswered.
        sent: dict[str, Any] = {**private, "trigger_mode": "always_last"}
        textbox.submit(turn, turn_inputs, turn_outputs, **sent)
        send.click(turn, turn_inputs, turn_outputs, **sent)
        chatbot.option_select(option_turn, [chatbot, session, *controls], turn_outputs, **private)
        new_conversation.click(start_new, None, turn_outputs, **private)
        chatbot.clear(start_new, None, turn_outputs, **private)  # the bin icon: a clean slate, a new thread
        mode.change(lambda m: gr.Dropdown(visible=m == Mode.STEERABLE), mode, steer, **private)
        gr.on([app.load, session.change], restore, [session, shown_thread], turn_outputs, **private)
        gr.api(service.chat, api_name="chat", api_description="Run one turn (see the docstring of ui.app).")
    return app


def _theme() -> Any:
    # System fonts only: the default theme would fetch web fonts, and the demo must work offline.
    system = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]
    mono = ["ui-monospace", "SFMono-Regular", "Menlo", "monospace"]
    return gr.themes.Soft(primary_hue="orange", secondary_hue="slate", font=system, font_mono=mono)


def _auth() -> tuple[str, str] | None:
    user, password = os.environ.get("EDGE_ALIGN_DEMO_USER"), os.environ.get("EDGE_ALIGN_DEMO_PASSWORD")
    return (user, password) if user and password else None


def launch(context: Context, host: str = "127.0.0.1", port: int = 7860, model_warming: bool = False) -> None:
    """Load everything, then serve the demo until interrupted (SIGINT or SIGTERM).

    ``model_warming``: the caller already started the embedded model on another thread
    (service_support.warm_llm_in_background); the page is served without waiting for it, and a
    visitor's first answer waits only for whatever of its loading is left.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from graphs.resources import get_resources
    from memory.paths import home_dir

    # SIGTERM ends the process through SystemExit, so atexit stops the embedded model server too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    home = home_dir(context.home)
    get_resources(context.home)  # prints its own progress; every session then shares the loaded models
    if not model_warming:
        warm_llm(context)
    service = DemoService(EdgeAlign(context), home)
    app = build_app(service)
    concurrency = int(os.environ.get("EDGE_ALIGN_DEMO_CONCURRENCY", "4"))
    app.queue(default_concurrency_limit=concurrency)
    auth = _auth()
    app.launch(
        server_name=host,
        server_port=port,
        share=False,
        auth=auth,
        auth_message="Edge Align demo" if auth else None,
        prevent_thread_lock=True,
        quiet=True,
        show_error=False,
        theme=_theme(),
        css=CSS,
        footer_links=["api"],
    )
    shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"Edge Align demo ready: http://{shown_host}:{port}/  (Ctrl-C to stop)", flush=True)
    if auth:
        print("[edge-align] login required (EDGE_ALIGN_DEMO_USER / EDGE_ALIGN_DEMO_PASSWORD)", flush=True)
    try:
        app.block_thread()
    finally:
        app.close()


__all__ = ["EXAMPLES", "DemoService", "TraceLog", "build_app", "launch"]
