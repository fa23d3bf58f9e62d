"""`edge-align`: ask, chat, demo, serve, norms, eval. Heavy imports happen inside commands so `--help` is instant."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class UsageError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


def _context(args: argparse.Namespace) -> Any:
    from graphs.context import Context

    overrides: dict[str, Any] = {}
    if getattr(args, "community", None):
        overrides["communities"] = tuple(args.community)
    if getattr(args, "mode", None):
        overrides["mode"] = args.mode
    if getattr(args, "steer", None):
        overrides["steer_community"] = args.steer
    return Context.from_env(**overrides)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def cmd_ask(args: argparse.Namespace) -> int:
    from ui.service_support import warm_llm_in_background

    warm_llm_in_background()  # loads beside the agent's start-up instead of after it
    from graphs.runner import EdgeAlign, new_thread_id

    agent = EdgeAlign(_context(args))
    thread_id = args.thread or new_thread_id()
    if args.json:
        _print_json(agent.ask(args.message, thread_id=thread_id, user_id=args.user).to_json())
        return 0
    result = _print_turn(agent, args.message, thread_id, args.user)
    if result.question:
        print(f'\n(answer with: edge-align ask --thread {thread_id} "<your answer>")', file=sys.stderr)
    else:
        print(f"\n[{result.decision}] thread {thread_id}", file=sys.stderr)
    return 0


def _print_turn(agent: Any, message: str, thread_id: str, user_id: str | None) -> Any:
    """Run one turn, printing the answer's tokens as the model writes them; returns the TurnResult.

    Streamed text is the model's part, printed a whole sentence at a time (a half sentence at the
    token limit is not in the reply, so it must not be on the screen); what the graph adds after it
    (perspectives, assumptions) and replies that are not generated (questions, refusals, endpoint
    failures) are printed whole.
    """
    from prompts.reply import SentenceGate, unshown_parts

    gate = SentenceGate()
    result = None
    for kind, payload in agent.stream(message, thread_id, user_id=user_id):
        if kind == "token":
            print(gate.feed(payload), end="", flush=True)
        elif kind == "result":
            result = payload
    assert result is not None
    if not gate.sent:
        print(result.reply)
    else:
        # The graph cleans the model's text (echoes and talk about "the user" dropped) and adds parts
        # of its own (the decided answer, perspectives, assumptions): print what the stream has not
        # shown, without repeating what it has.
        rest = unshown_parts(gate.sent, result.reply)
        print("\n\n" + rest if rest else "")
    for option in (result.question or {}).get("options", []):
        print(f"  - {option}")
    return result


def cmd_chat(args: argparse.Namespace) -> int:
    from ui.service_support import warm_llm_in_background

    warm_llm_in_background()
    from graphs.runner import EdgeAlign, InvalidMessageError, new_thread_id

    agent = EdgeAlign(_context(args))
    thread_id = args.thread or new_thread_id()
    print(f"Edge Align chat (thread {thread_id}). Ctrl-D or 'quit' to leave.", file=sys.stderr)
    while True:
        try:
            message = input("you> ")
        except EOFError:
            print(file=sys.stderr)
            return 0
        if message.strip().lower() in {"quit", "exit"}:
            return 0
        try:
            _print_turn(agent, message, thread_id, args.user)
        except InvalidMessageError as problem:
            print(f"edge-align: {problem}", file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> int:
    from ui.service_support import warm_llm_in_background

    # First, before Gradio's import (about 6 s here): the model loads on the other core meanwhile.
    warm_llm_in_background()
    from ui.app import launch

    launch(_context(args), host=args.host, port=args.port, model_warming=True)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    import time

    from graphs.resources import get_resources, prepare_installation

    started = time.perf_counter()
    cache = prepare_installation()
    get_resources()  # the default data home starts from the template, so its first question waits for nothing
    print(f"prepared in {time.perf_counter() - started:.1f} s: {cache}")
    return 0


def cmd_norms(args: argparse.Namespace) -> int:
    from memory.norm_pack import load_packs, pack_stats, shipped_packs_dir, validate_paths

    if args.norms_command == "validate":
        errors = validate_paths([Path(p) for p in args.paths])
        for error in errors:
            print(error, file=sys.stderr)
        if not errors:
            print(f"ok: {len(args.paths)} path(s) valid")
        return 1 if errors else 0
    if args.norms_command in ("list", "stats"):
        paths = [Path(p) for p in args.paths] if args.paths else [shipped_packs_dir()]
        packs = load_packs(paths)
        if args.norms_command == "stats":
            stats = pack_stats(packs)
            if args.json:
                _print_json(stats)
            else:
                for key, value in stats.items():
                    print(f"{key}: {value}")
            return 0
        for pack in packs:
            print(f"{pack.id} v{pack.version} ({pack.community}): {len(pack.norms)} norms")
            if args.verbose:
                for norm in pack.norms:
                    print(f"  {norm.id} [{norm.stance}] {norm.text}")
        return 0
    if args.norms_command == "index":
        from graphs.resources import index_norms
        from memory.norm_store import open_norm_store
        from memory.paths import home_dir, norm_index_path

        home = home_dir()
        store = open_norm_store(norm_index_path(home))
        report = index_norms(store, home)
        print(
            f"indexed {report.norms_written} norms; new or updated packs: {report.added or 'none'}; "
            f"unchanged: {sorted(report.unchanged) or 'none'}; total in index: {store.count()}"
        )
        return 0
    if args.norms_command == "import-polis":
        from memory.paths import home_dir
        from memory.polis import import_polis, write_pack_yaml

        pack = import_polis(Path(args.directory))
        out = Path(args.out) if args.out else home_dir() / "packs" / f"{pack.id}.yaml"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_pack_yaml(pack, out)
        contested = sum(1 for n in pack.norms if n.support and n.support.contested)
        print(f"wrote {out}: {len(pack.norms)} norms, {contested} contested")
        return 0
    raise UsageError(f"unknown norms command {args.norms_command!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-align",
        description="Edge Align: a clarification dialogue agent that keeps values plural at the edges.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--community", action="append", help="limit norms to this community (repeatable)")
        p.add_argument("--mode", choices=["overton", "steerable"], help="how norms shape the answer")
        p.add_argument("--steer", help="with --mode steerable: the community to follow")
        p.add_argument("--user", help="a user id: remembered context follows the user across threads")

    ask = sub.add_parser("ask", help="run one turn (answers a pending clarification on --thread)")
    ask.add_argument("message")
    ask.add_argument("--thread", help="conversation thread id (default: a new thread)")
    ask.add_argument("--json", action="store_true", help="print the turn's full result as JSON")
    common(ask)
    ask.set_defaults(handler=cmd_ask)

    chat = sub.add_parser("chat", help="a conversation in the terminal")
    chat.add_argument("--thread")
    common(chat)
    chat.set_defaults(handler=cmd_chat)

    demo = sub.add_parser("demo", help="serve the Gradio app")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=7860)
    common(demo)
    demo.set_defaults(handler=cmd_demo)

    prepare = sub.add_parser(
        "prepare",
        help="build once what every new process would build before its first answer (make install runs it)",
        description="Export the encoder to ONNX, embed the fixed texts (constraint exemplars, domains, ClariQ's "
        "questions, IN3's tasks) and index the shipped norm packs, into $EDGE_ALIGN_CACHE_DIR (default: "
        "<virtual environment>/share/edge-align); then open the data home. Each artefact is keyed by what it "
        "was made from and rebuilt only when that changes.",
    )
    prepare.set_defaults(handler=cmd_prepare)

    norms = sub.add_parser("norms", help="validate, list, index and import norm packs")
    norms_sub = norms.add_subparsers(dest="norms_command", required=True)
    validate = norms_sub.add_parser("validate", help="check pack files; errors name file, line and field")
    validate.add_argument("paths", nargs="+")
    listing = norms_sub.add_parser("list", help="list packs (default: the shipped ones)")
    listing.add_argument("paths", nargs="*")
    listing.add_argument("--verbose", "-v", action="store_true", help="also list every norm")
    stats = norms_sub.add_parser("stats", help="counts by community, domain and stance")
    stats.add_argument("paths", nargs="*")
    stats.add_argument("--json", action="store_true")
    norms_sub.add_parser("index", help="build or update the Chroma index (by pack version)")
    polis = norms_sub.add_parser("import-polis", help="build a pack from a Pol.is export folder")
    polis.add_argument("directory")
    polis.add_argument("--out", help="where to write the pack (default: <home>/packs/)")
    norms.set_defaults(handler=cmd_norms)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """Subcommands that live in their own modules, keeping this file small."""
    from ui import data_commands, eval_commands, model_commands, serve_commands, transcript_commands

    return [
        eval_commands.register,
        transcript_commands.register,
        data_commands.register,
        model_commands.register,
        serve_commands.register,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as problem:  # every failure becomes one clear line, never a traceback
        return _report(problem)


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The error types that carry a message meant for the user (imported lazily, each on its own)."""
    import importlib

    found: list[type[BaseException]] = [UsageError, FileNotFoundError]
    for module, name in (
        ("agent.datasets", "DatasetMissingError"),
        ("graphs.context", "ConfigError"),
        ("graphs.nodes", "InvalidMessageError"),
        ("graphs.evaluation", "CaseFileError"),
        ("memory.transcripts", "TranscriptError"),
        ("memory.norm_pack", "NormPackError"),
        ("agent.llm", "LLMConfigError"),
        ("memory.backends", "BackendConfigError"),
        ("memory.backends", "BackendUnavailableError"),
    ):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except Exception:  # a broken module must not hide the error being reported
            continue
    return tuple(found)


def _report(problem: Exception) -> int:
    if isinstance(problem, _expected_errors()):
        print(f"edge-align: {problem}", file=sys.stderr)
        return 2
    print(f"edge-align: unexpected error ({type(problem).__name__}): {problem}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
