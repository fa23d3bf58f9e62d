"""Where Edge Align keeps what it writes: checkpoints, the norm index, transcripts, logs."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "EDGE_ALIGN_HOME"


def home_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The data home: the argument, else $EDGE_ALIGN_HOME, else ~/.local/share/edge-align (created)."""
    if explicit:
        path = Path(explicit).expanduser()
    elif os.environ.get(HOME_ENV):
        path = Path(os.environ[HOME_ENV]).expanduser()
    else:
        path = Path.home() / ".local" / "share" / "edge-align"
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoints_path(home: Path) -> Path:
    return home / "checkpoints.sqlite"


def profiles_path(home: Path) -> Path:
    return home / "profiles.sqlite"


def norm_index_path(home: Path) -> Path:
    return home / "norm-index"


def transcripts_dir(home: Path) -> Path:
    path = home / "transcripts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def logs_dir(home: Path) -> Path:
    path = home / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path
