"""The JSON reports the reliability suites leave in artifacts/ (the README's reliability section quotes them).

A suite counts what it tried while its tests run and writes the counts once, after its last test:

    write_report = reliability_report("bad_input", what="...", command="...", figures=lambda: {...})

``figures`` is called at that moment, so it sees the counters the tests filled.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
RELIABILITY = ARTIFACTS / "reliability"


def write_json_report(path: Path, figures: dict[str, Any], *, merge: bool = False) -> None:
    """Write ``figures`` as indented JSON; with ``merge``, what the file already holds under other keys
    stays (suites whose tests run apart, as with ``-m slow``, each add their own section)."""
    previous = json.loads(path.read_text()) if merge and path.exists() else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**previous, **figures}, indent=2) + "\n")


def reliability_report(name: str, *, what: str, command: str, figures: Callable[[], dict[str, Any]]) -> Any:
    """A module-scoped autouse fixture writing artifacts/reliability/<name>.json after the module's tests."""

    @pytest.fixture(scope="module", autouse=True)
    def write_report() -> Iterator[None]:
        yield
        write_json_report(RELIABILITY / f"{name}.json", {"what": what, "command": command, **figures()})

    return write_report
