"""Where the labelled datasets are, what they must contain, and how to get them.

Datasets are never copied into the project: they are read in place from the directory named by
``EDGE_ALIGN_DATA`` (the Makefile points it at ``../shared/data`` when that folder exists).
``agent/data/datasets.yaml`` lists every dataset the project reads: its files (only those read),
their sha256 sums, licence, upstream commit and download URL. :func:`check_dataset` verifies a data
directory against it; :func:`fetch_dataset` downloads files from upstream (or from a mirror of the
measured copies, ``EDGE_ALIGN_DATA_MIRROR``), verifying each one before it is moved into place.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DATA_ENV = "EDGE_ALIGN_DATA"
MIRROR_ENV = "EDGE_ALIGN_DATA_MIRROR"
REGISTRY_FILE = Path(__file__).resolve().parent / "data" / "datasets.yaml"
DOWNLOAD_TIMEOUT_S = 30.0
_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_CHUNK = 1 << 20

# progress(label, bytes done, bytes total): called while hashing or downloading a file
Progress = Callable[[str, int, int], None]


class DatasetMissingError(FileNotFoundError):
    """A command needs a dataset that is not where the configuration says it is."""


class UnknownDatasetError(LookupError):
    """A dataset name that the registry does not list."""


class DataFetchError(RuntimeError):
    """A download failed or did not match its checksum; nothing was written in place."""


def resolve_data_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: the explicit argument, else $EDGE_ALIGN_DATA, else ../shared/data."""
    if explicit:
        return Path(explicit).expanduser()
    configured = os.environ.get(DATA_ENV)
    if configured:
        return Path(configured).expanduser()
    return _PROJECT_ROOT.parent / "shared" / "data"


def dataset_dir(name: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The folder of dataset ``name``; raises a message naming the dataset and where it looked."""
    root = resolve_data_dir(data_dir)
    folder = root / name
    if not folder.is_dir():
        hint = f" or download it with `edge-align data fetch {name}`" if name in _registered_names() else ""
        raise DatasetMissingError(
            f"dataset '{name}' not found: looked in {folder}. "
            f"Set {DATA_ENV} to the folder that holds '{name}/' (for example ../shared/data){hint}."
        )
    return folder


# --------------------------------------------------------------------------------------------------
# The registry (agent/data/datasets.yaml).
# --------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    repository: str = Field(pattern=r"^github\.com/[\w.-]+/[\w.-]+$")
    commit: str = Field(pattern=r"^[0-9a-f]{40}$")


class DataFile(_Strict):
    """One file the project reads, relative to its dataset folder."""

    path: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    url: str = Field(pattern=r"^https://")
    # False when the measured copy is a documented subset of the upstream file: a download from
    # ``url`` cannot reproduce ``sha256``.
    matches_upstream: bool = True

    @field_validator("path")
    @classmethod
    def _inside_dataset(cls, path: str) -> str:
        parts = PurePosixPath(path).parts
        if not parts or PurePosixPath(path).is_absolute() or ".." in parts or "\\" in path:
            raise ValueError("must be a relative path inside the dataset folder")
        return path


class DatasetSpec(_Strict):
    name: str = ""  # filled from the registry key
    title: str
    licence: str
    redistributable: bool
    sources: list[Source] = Field(min_length=1)
    used_for: str
    note: str = ""
    files: list[DataFile] = Field(min_length=1)

    @model_validator(mode="after")
    def _files_once(self) -> DatasetSpec:
        paths = [f.path for f in self.files]
        if len(set(paths)) != len(paths):
            raise ValueError("a file is listed twice")
        return self

    @property
    def total_bytes(self) -> int:
        return sum(f.bytes for f in self.files)


class DataRegistry(_Strict):
    datasets: dict[str, DatasetSpec] = Field(min_length=1)


def load_registry(path: Path = REGISTRY_FILE) -> dict[str, DatasetSpec]:
    """Dataset name -> spec, validated (errors name file, line and field)."""
    return dict(_load_registry(Path(path)))


@lru_cache(maxsize=4)
def _load_registry(path: Path) -> tuple[tuple[str, DatasetSpec], ...]:
    from agent.yaml_loading import load_yaml_model

    registry = load_yaml_model(path, DataRegistry)
    return tuple((name, spec.model_copy(update={"name": name})) for name, spec in sorted(registry.datasets.items()))


def _registered_names() -> set[str]:
    try:
        return set(load_registry())
    except Exception:  # a broken registry must not hide the missing-dataset message
        return set()


def dataset_spec(name: str, registry: dict[str, DatasetSpec] | None = None) -> DatasetSpec:
    specs = registry if registry is not None else load_registry()
    if name not in specs:
        raise UnknownDatasetError(f"unknown dataset '{name}'; known datasets: {', '.join(sorted(specs))}")
    return specs[name]


# --------------------------------------------------------------------------------------------------
# Checking a data directory.
# --------------------------------------------------------------------------------------------------


class FileStatus(StrEnum):
    OK = "ok"
    MISSING = "missing"
    MISMATCH = "mismatch"  # present, but its sha256 differs from the registry's
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class FileCheck:
    dataset: str
    file: DataFile
    path: Path
    status: FileStatus
    actual_sha256: str | None = None
    actual_bytes: int | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is FileStatus.OK

    def describe(self) -> str:
        """One line a person can act on: which file, what is wrong, where it looked."""
        if self.status is FileStatus.OK:
            return f"ok        {self.dataset}/{self.file.path} ({self.file.bytes:,} bytes)"
        if self.status is FileStatus.MISSING:
            return f"MISSING   {self.dataset}/{self.file.path}: looked for {self.path}"
        if self.status is FileStatus.UNREADABLE:
            return f"UNREADABLE {self.dataset}/{self.file.path}: {self.path}: {self.error}"
        size = (
            f"; size {self.actual_bytes:,} bytes, expected {self.file.bytes:,}"
            if self.actual_bytes != self.file.bytes
            else ""
        )
        return (
            f"MISMATCH  {self.dataset}/{self.file.path}: {self.path} has sha256 {self.actual_sha256}, "
            f"expected {self.file.sha256}{size}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "file": self.file.path,
            "path": str(self.path),
            "status": self.status.value,
            "expected_sha256": self.file.sha256,
            "actual_sha256": self.actual_sha256,
            "expected_bytes": self.file.bytes,
            "actual_bytes": self.actual_bytes,
            **({"error": self.error} if self.error else {}),
        }


def sha256_of(path: Path, progress: Progress | None = None, label: str = "") -> str:
    """The file's sha256, read in 1 MiB chunks (``progress`` sees the bytes hashed so far)."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(label or path.name, done, total)
    return digest.hexdigest()


def check_file(
    spec: DatasetSpec, file: DataFile, data_dir: str | os.PathLike[str] | None = None, progress: Progress | None = None
) -> FileCheck:
    path = resolve_data_dir(data_dir) / spec.name / file.path
    if not path.is_file():
        return FileCheck(spec.name, file, path, FileStatus.MISSING)
    try:
        size = path.stat().st_size
        actual = sha256_of(path, progress, f"{spec.name}/{file.path}")
    except OSError as error:
        return FileCheck(spec.name, file, path, FileStatus.UNREADABLE, error=error.strerror or str(error))
    status = FileStatus.OK if actual == file.sha256 else FileStatus.MISMATCH
    return FileCheck(spec.name, file, path, status, actual, size)


def check_dataset(
    spec: DatasetSpec, data_dir: str | os.PathLike[str] | None = None, progress: Progress | None = None
) -> list[FileCheck]:
    """Every registered file of ``spec``: present, and with the registered sha256?"""
    return [check_file(spec, file, data_dir, progress) for file in spec.files]


# --------------------------------------------------------------------------------------------------
# Fetching.
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchResult:
    dataset: str
    file: str
    path: Path
    url: str
    downloaded: bool  # False: the file was already in place with the right checksum


def file_url(spec: DatasetSpec, file: DataFile, mirror: str | None = None) -> str:
    """Upstream URL of ``file``, or ``<mirror>/<dataset>/<path>`` when a mirror is given."""
    return f"{mirror.rstrip('/')}/{spec.name}/{file.path}" if mirror else file.url


def _mirror(explicit: str | None) -> str | None:
    return explicit or os.environ.get(MIRROR_ENV) or None


def fetch_dataset(
    spec: DatasetSpec,
    dest: str | os.PathLike[str] | None = None,
    *,
    mirror: str | None = None,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    progress: Progress | None = None,
) -> list[FetchResult]:
    """Download the files of ``spec`` into ``<dest>/<name>/`` (dest: the configured data directory).

    A file already in place with the right sha256 is kept. Each download goes to a temporary file in
    the target folder and is moved into place only once its sha256 matches; otherwise the temporary
    file is deleted and :class:`DataFetchError` says which file, from where, and why.
    """
    base = _mirror(mirror)
    if base is None:
        subsets = [f.path for f in spec.files if not f.matches_upstream]
        if subsets:
            raise DataFetchError(
                f"{spec.name}: the measured copies of {', '.join(subsets)} are subsets of their upstream files "
                f"({spec.note or 'see agent/data/datasets.yaml'}); a download from upstream cannot match their "
                f"sha256. Set {MIRROR_ENV} to a copy of the measured files."
            )
    folder = resolve_data_dir(dest) / spec.name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DataFetchError(f"{spec.name}: cannot create {folder}: {error.strerror or error}") from error
    results = []
    for file in spec.files:
        target = folder / file.path
        url = file_url(spec, file, base)
        if target.is_file() and check_file(spec, file, folder.parent).ok:
            results.append(FetchResult(spec.name, file.path, target, url, downloaded=False))
            continue
        download_verified(url, target, file.sha256, file.bytes, timeout=timeout, progress=progress)
        results.append(FetchResult(spec.name, file.path, target, url, downloaded=True))
    return results


def download_verified(
    url: str,
    target: Path,
    sha256: str,
    size: int,
    *,
    timeout: float = DOWNLOAD_TIMEOUT_S,
    progress: Progress | None = None,
) -> None:
    """Stream ``url`` into a temporary file beside ``target``, check size and sha256, then move it in place."""
    import http.client
    import urllib.error
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    temp = Path(temp_name)
    digest = hashlib.sha256()
    done = 0
    try:
        with os.fdopen(handle, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": "edge-align-data-fetch"})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                while chunk := response.read(_CHUNK):
                    done += len(chunk)
                    if done > size:  # never keep streaming a response that cannot be the file
                        raise DataFetchError(f"{url}: more than the expected {size:,} bytes; nothing written")
                    digest.update(chunk)
                    out.write(chunk)
                    if progress:
                        progress(target.name, done, size)
        actual = digest.hexdigest()
        if actual != sha256:
            raise DataFetchError(
                f"{url}: sha256 mismatch: got {actual} ({done:,} bytes), expected {sha256} ({size:,} bytes); "
                f"the download was deleted and {target} left untouched"
            )
        os.replace(temp, target)
    except urllib.error.HTTPError as error:
        raise DataFetchError(f"{url}: HTTP {error.code} {error.reason}; nothing written") from None
    except urllib.error.URLError as error:
        raise DataFetchError(f"{url}: could not connect ({error.reason}); nothing written") from None
    except TimeoutError:
        raise DataFetchError(f"{url}: no answer within {timeout:g} s; nothing written") from None
    except http.client.HTTPException as error:  # e.g. the server closed the connection mid-file
        raise DataFetchError(f"{url}: broken HTTP response ({type(error).__name__}); nothing written") from None
    except ValueError as error:
        raise DataFetchError(f"{url}: not a URL that can be downloaded ({error}); nothing written") from None
    except OSError as error:  # connection reset mid-transfer, disk full, ...
        raise DataFetchError(f"{url}: download failed ({error.strerror or error}); nothing written") from None
    finally:
        temp.unlink(missing_ok=True)
