"""`edge-align serve`: Edge Align behind an OpenAI-compatible chat-completions endpoint (ui.openai_server)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any


def cmd_serve(args: argparse.Namespace) -> int:
    from ui.cli import _context
    from ui.openai_server import ServeSettings, serve

    context = _context(args)
    if args.no_text:
        context = replace(context, generate_text=False)
    settings = ServeSettings.from_env()
    if args.workers is not None:
        settings = replace(settings, workers=max(1, args.workers))
    serve(context, host=args.host, port=args.port, settings=settings)
    return 0


def register(sub: Any) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve an OpenAI-compatible API (POST /v1/chat/completions, GET /v1/models, GET /health)",
        description="Serve Edge Align as the model 'edge-align' of an OpenAI-compatible endpoint. "
        "EDGE_ALIGN_API_KEY turns on bearer authentication; the header X-Edge-Align-Thread names the "
        "conversation (see the docstring of ui.openai_server).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument(
        "--workers", type=int, help="turns run at the same time (default: EDGE_ALIGN_SERVE_WORKERS or 8)"
    )
    serve.add_argument(
        "--no-text",
        action="store_true",
        help="decision path only: replies carry the decision and the fixed parts, no generated text",
    )
    serve.add_argument("--community", action="append", help="limit norms to this community (repeatable)")
    serve.add_argument("--mode", choices=["overton", "steerable"], help="how norms shape the answer")
    serve.add_argument("--steer", help="with --mode steerable: the community to follow")
    serve.set_defaults(handler=cmd_serve)
