"""Where the artefacts derived from the installed packages live, built once by ``edge-align prepare``.

The encoder exported to ONNX, the embeddings of fixed texts (constraint exemplars, domain
descriptions, ClariQ's questions, IN3's tasks) and the shipped packs' norm index depend on the
installation, not on a user's data home: a new data home reuses them instead of rebuilding them.
Every artefact's name carries a key of what it was made from, so a changed model or text set is
rebuilt, never read stale.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

ENV_CACHE_DIR = "EDGE_ALIGN_CACHE_DIR"


def install_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$EDGE_ALIGN_CACHE_DIR, else <virtual environment>/share/edge-align, else ~/.cache/edge-align.

    Inside a virtual environment the artefacts go with it (``make clean`` removes both); a system
    Python's prefix is not writable, so the user's cache folder is used instead.
    """
    env = os.environ if environ is None else environ
    if env.get(ENV_CACHE_DIR):
        return Path(env[ENV_CACHE_DIR]).expanduser()
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "share" / "edge-align"
    base = Path(env["XDG_CACHE_HOME"]).expanduser() if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "edge-align"


def content_key(parts: Iterable[str | bytes], length: int = 16) -> str:
    """A short sha256 of ``parts`` in order; each part is length-prefixed so ("ab", "c") != ("a", "bc")."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()[:length]
