"""The shipped packs' norm index, built once per installation and copied into each new data home.

Indexing the 503 shipped norms cost a new data home's first question up to a minute on 2 busy
cores. ``edge-align prepare`` (run by ``make install``) builds that index once, in the installation's
cache; a data home without an index starts from a copy of it (a few MB, milliseconds), and
indexing then only writes the packs the user added. The template's name carries a key of the pack
files, the encoder's model and Chroma's version: any change makes a new template, never a stale copy.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from agent.encoder import Encoder
from agent.install_cache import content_key
from memory.norm_pack import load_packs, packs_digest, shipped_packs_dir
from memory.norm_store import open_norm_store

_COMPLETE = ".complete"  # written last: a template without it was interrupted and is never copied


def template_path(cache_dir: Path, model_name: str, packs_dir: Path | None = None) -> Path:
    folder = shipped_packs_dir() if packs_dir is None else packs_dir
    return cache_dir / "norm-index" / content_key([model_name, importlib.metadata.version("chromadb"), packs_digest([folder])])


def is_complete(template: Path) -> bool:
    return (template / _COMPLETE).is_file()


def build_template(
    template: Path, encoder: Encoder, packs_dir: Path | None = None, progress: Callable[[int, int], None] | None = None
) -> Path:
    """Index the shipped packs into ``template`` (kept as it is when already complete)."""
    if is_complete(template):
        return template
    from chromadb.api.client import SharedSystemClient

    partial = template.with_name(f".{template.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    folder = shipped_packs_dir() if packs_dir is None else packs_dir
    store = open_norm_store(partial, encoder=encoder)
    store.index_packs(load_packs([folder]), progress=progress)
    store.mark_files_digest(packs_digest([folder]))
    del store
    # Chroma keeps one system per path open in the process; stop it so every write is on disk
    # before the folder is renamed and copied.
    SharedSystemClient.clear_system_cache()
    (partial / _COMPLETE).write_text("built by edge-align prepare\n", encoding="utf-8")
    shutil.rmtree(template, ignore_errors=True)  # an interrupted build's leftovers (never complete)
    try:
        partial.rename(template)
    except OSError:
        # Another process finished the same template first: keep its copy.
        shutil.rmtree(partial, ignore_errors=True)
        if not is_complete(template):
            raise
    return template


def seed_index(index_path: Path, template: Path) -> bool:
    """Start a data home's index as a copy of the template; False (and nothing done) when either rules it out."""
    if index_path.exists() or not is_complete(template):
        return False
    partial = index_path.with_name(f".{index_path.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(template, partial, ignore=shutil.ignore_patterns(_COMPLETE))
    try:
        partial.rename(index_path)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)  # another process seeded it first
    return True
