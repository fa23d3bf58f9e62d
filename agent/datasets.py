"""Where the labelled datasets are, and a clear error when one is missing.

Datasets are never copied into the project: they are read in place from the directory named by
``EDGE_ALIGN_DATA`` (the Makefile points it at ``../shared/data`` when that folder exists).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "EDGE_ALIGN_DATA"
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class DatasetMissingError(FileNotFoundError):
    """A command needs a dataset that is not where the configuration says it is."""


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
        raise DatasetMissingError(
            f"dataset '{name}' not found: looked in {folder}. "
            f"Set {DATA_ENV} to the folder that holds '{name}/' (for example ../shared/data)."
        )
    return folder
