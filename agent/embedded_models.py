"""The chat models that ship inside PyPI packages, and how one becomes a .gguf file on disk.

The table lives in ``agent/data/embedded_models.yaml`` and is validated here. A model split over
several packages is joined once, byte for byte, into ``<data home>/models/<file>``; the result must
have the listed size and sha256, or it is deleted and the error says so. A model in one package is
used where pip put it, after the same check. Nothing is fetched from a model hub: a missing part
is an error naming the packages to install.

``EDGE_ALIGN_EMBEDDED_MODEL`` names the model to serve; unset, the table's default.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.llm import EmbeddedServerError, LLMConfigError

ENV_EMBEDDED_MODEL = "EDGE_ALIGN_EMBEDDED_MODEL"
# The data home is memory.paths.home_dir's; agent/ imports nothing outside itself, so the two-line
# rule is repeated here (an explicit ``home`` argument always wins).
ENV_MODELS_DIR = "EDGE_ALIGN_MODELS_DIR"
DATA_DIR = Path(__file__).resolve().parent / "data"
REGISTRY_PATH = DATA_DIR / "embedded_models.yaml"
NOTICES_DIR = DATA_DIR / "notices"
_CHUNK = 8 * 1024 * 1024


class ModelPart(BaseModel):
    """One file inside one installed package (``path`` is relative to the package's folder)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    package: str = Field(min_length=1)  # the name pip knows
    version: str = Field(min_length=1)
    module: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")  # the import name, found without importing
    path: str = Field(min_length=1)

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


class EmbeddedModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str
    alias: str = Field(min_length=1)  # the model id the server reports (and requests name)
    file: str = Field(pattern=r"^[^/\\]+\.gguf$")
    bytes: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    licence: str
    notice: str | None = None  # a file in agent/data/notices/, for packages that carry no licence
    # Which answer prompt suits the model (graphs.nodes.uses_compact_prompt), as benchmarks/wording.py
    # measured it: all three packaged models word better from the compact one (the 135M and 0.5B retell
    # norm texts and instructions from the full one, and it costs the 1.5B twice the first-token time).
    answer_prompt: Literal["compact", "full"] = "full"
    extra: str | None = None  # the pyproject extra that installs the parts, when they are optional
    parts: tuple[ModelPart, ...] = Field(min_length=1)

    @property
    def joined(self) -> bool:
        """True when the parts are joined into the data home; False when the one part is used in place."""
        return len(self.parts) > 1

    @property
    def requirements(self) -> list[str]:
        return [part.requirement for part in self.parts]

    def notice_path(self) -> Path | None:
        return NOTICES_DIR / self.notice if self.notice else None


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: str
    models: tuple[EmbeddedModel, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        names = [m.name for m in self.models]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        if self.default not in names:
            raise ValueError(f"default {self.default!r} is not one of {names}")
        for model in self.models:
            notice = model.notice_path()
            if notice is not None and not notice.is_file():
                raise ValueError(f"{model.name}: notice file {notice} does not exist")
        return self

    def get(self, name: str) -> EmbeddedModel:
        for model in self.models:
            if model.name == name:
                return model
        raise UnknownEmbeddedModelError(
            f"{ENV_EMBEDDED_MODEL}={name!r} is not a packaged model; choose one of: {', '.join(self.names)}."
        )

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.models]


class UnknownEmbeddedModelError(LLMConfigError):
    """EDGE_ALIGN_EMBEDDED_MODEL names no model in the table."""


class ModelNotInstalledError(EmbeddedServerError):
    """A package the model needs is missing, or its bytes do not check out."""


@cache
def load_registry(path: Path = REGISTRY_PATH) -> Registry:
    """The validated model table; a broken table is an error naming the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return Registry.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as problem:
        raise LLMConfigError(f"the embedded model table {path} is invalid: {problem}") from None


def selected_model(environ: Mapping[str, str] | None = None) -> EmbeddedModel:
    """The model $EDGE_ALIGN_EMBEDDED_MODEL names, else the table's default."""
    env = os.environ if environ is None else environ
    registry = load_registry()
    return registry.get(env.get(ENV_EMBEDDED_MODEL, "").strip() or registry.default)


def models_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Where joined models live: ``home``/models when given, else $EDGE_ALIGN_MODELS_DIR, else the installation's cache.

    A joined model is derived from installed packages, like the ONNX encoder (agent/install_cache.py),
    so every data home shares the copy ``make install`` prepared: a new data home used to join the
    1.1 GB default model again before its first answer.
    """
    if home is not None:
        return Path(home).expanduser() / "models"
    if os.environ.get(ENV_MODELS_DIR):
        return Path(os.environ[ENV_MODELS_DIR]).expanduser()
    from agent.install_cache import install_cache_dir

    return install_cache_dir() / "models"


def part_path(part: ModelPart) -> Path | None:
    """Where pip put a part, or None when its package is not installed (the package is not imported)."""
    spec = importlib.util.find_spec(part.module)
    for folder in list(spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / part.path
        if candidate.is_file():
            return candidate
    return None


def _missing(model: EmbeddedModel) -> list[ModelPart]:
    return [part for part in model.parts if part_path(part) is None]


def _not_installed(model: EmbeddedModel, missing: list[ModelPart]) -> ModelNotInstalledError:
    listed = " ".join(p.requirement for p in missing)
    how = f'pip install "edge-align[{model.extra}]" (or: pip install {listed})' if model.extra else f"pip install {listed}"
    return ModelNotInstalledError(
        f"The embedded model {model.name} is not installed (missing package(s): "
        f"{', '.join(p.package for p in missing)}).",
        f"install them with: {how}   (or choose another model with {ENV_EMBEDDED_MODEL})",
    )


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + ".verified.json")


def _stamp_of(path: Path) -> dict[str, object]:
    stat = path.stat()
    return {"path": str(path), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _verified(model: EmbeddedModel, path: Path, stamp_at: Path) -> bool:
    """Whether ``path`` was hashed before and has not changed since (size and mtime unchanged)."""
    try:
        recorded = json.loads(stamp_at.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(recorded == {**_stamp_of(path), "sha256": model.sha256})


def _progress_bar(total: int, description: str, show: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description,
                disable=not show, file=sys.stderr, leave=False)  # fmt: skip


def _hash_file(path: Path, model: EmbeddedModel, show: bool) -> str:
    digest = hashlib.sha256()
    bar = _progress_bar(model.bytes, f"checking {model.name}", show)
    with open(path, "rb") as source:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    bar.close()
    return digest.hexdigest()


def _bad_bytes(model: EmbeddedModel, size: int, digest: str) -> ModelNotInstalledError:
    return ModelNotInstalledError(
        f"The embedded model {model.name} does not match its checksum; reinstall its packages.",
        f"expected {model.bytes} bytes with sha256 {model.sha256}, got {size} bytes with sha256 {digest}; "
        f"pip install --force-reinstall {' '.join(model.requirements)}",
    )


def model_file(model: EmbeddedModel, home: str | os.PathLike[str] | None = None) -> Path | None:
    """The model's .gguf if it is ready to serve (prepared and verified), else None. Cheap: no hashing."""
    if model.joined:
        target = models_dir(home) / model.file
        return target if target.is_file() and _verified(model, target, _stamp_path(target)) else None
    source = part_path(model.parts[0])
    if source is None:
        return None
    return source if _verified(model, source, models_dir(home) / f"{model.name}.verified.json") else None


def prepare(model: EmbeddedModel, home: str | os.PathLike[str] | None = None, *, progress: bool = True) -> Path:
    """The model's .gguf, joined and checked on first call; later calls only compare size and mtime.

    Raises ModelNotInstalledError naming the missing packages, or when the bytes do not match.
    """
    ready = model_file(model, home)
    if ready is not None:
        return ready
    missing = _missing(model)
    if missing:
        raise _not_installed(model, missing)
    folder = models_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    show = progress and sys.stderr.isatty()
    if not model.joined:
        source = part_path(model.parts[0])
        assert source is not None
        found = _hash_file(source, model, show)
        if found != model.sha256 or source.stat().st_size != model.bytes:
            raise _bad_bytes(model, source.stat().st_size, found)
        _write_stamp(folder / f"{model.name}.verified.json", source, model)
        return source
    target = folder / model.file
    free = shutil.disk_usage(folder).free
    if free < model.bytes:
        raise ModelNotInstalledError(
            f"Not enough disk space to prepare the embedded model {model.name}.",
            f"{folder} has {free / 1e9:.2f} GB free; the model needs {model.bytes / 1e9:.2f} GB",
        )
    if progress:
        print(f"[edge-align] joining {len(model.parts)} parts of {model.name} into {target}", file=sys.stderr)
    # Written beside the target under a name of its own, then renamed: a second process preparing
    # the same model, or a crash halfway, never leaves a half-written .gguf under the real name.
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    bar = _progress_bar(model.bytes, f"joining {model.name}", show)
    try:
        with open(partial, "wb") as out:
            for part in model.parts:
                source = part_path(part)
                if source is None:  # uninstalled while joining
                    raise _not_installed(model, [part])
                with open(source, "rb") as piece:
                    while chunk := piece.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        bar.update(len(chunk))
        size = partial.stat().st_size
        if size != model.bytes or digest.hexdigest() != model.sha256:
            raise _bad_bytes(model, size, digest.hexdigest())
        os.replace(partial, target)
    finally:
        bar.close()
        partial.unlink(missing_ok=True)
    _write_stamp(_stamp_path(target), target, model)
    return target


def _write_stamp(at: Path, path: Path, model: EmbeddedModel) -> None:
    at.write_text(json.dumps({**_stamp_of(path), "sha256": model.sha256}), encoding="utf-8")


def status(home: str | os.PathLike[str] | None = None) -> list[dict[str, object]]:
    """One row per model: installed packages, prepared file, size (for ``edge-align models list``)."""
    registry = load_registry()
    rows = []
    for model in registry.models:
        ready = model_file(model, home)
        rows.append({
            "name": model.name,
            "title": model.title,
            "default": model.name == registry.default,
            "packages_installed": not _missing(model),
            "prepared": ready is not None,
            "file": str(ready) if ready else None,
            "bytes": model.bytes,
            "licence": model.licence,
            "notice": str(model.notice_path()) if model.notice else None,
        })  # fmt: skip
    return rows
