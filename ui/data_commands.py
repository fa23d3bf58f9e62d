"""`edge-align data`: list the registered datasets, check a data directory, fetch a dataset from its source."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

# Files at least this large get a progress bar while they are hashed or downloaded.
BIG_FILE_BYTES = 1 << 20


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "data",
        help="list, check and fetch the datasets (agent/data/datasets.yaml)",
        description="The public datasets the project reads, checked against their registered sha256 sums. "
        "The data directory is --data-dir, else $EDGE_ALIGN_DATA, else ../shared/data.",
    )
    data_sub = parser.add_subparsers(dest="data_command", required=True)

    listing = data_sub.add_parser("list", help="names, licences and whether each dataset is present")
    listing.add_argument("--data-dir", help="the data directory to look in")
    listing.add_argument("--json", action="store_true")

    check = data_sub.add_parser("check", help="verify presence and sha256 of every registered file")
    check.add_argument("names", nargs="*", metavar="NAME", help="datasets to check (default: all)")
    check.add_argument("--data-dir", help="the data directory to check")
    check.add_argument("--json", action="store_true", help="print one result per file as JSON")

    fetch = data_sub.add_parser("fetch", help="download a dataset's files from their public source, verified")
    fetch.add_argument("names", nargs="+", metavar="NAME")
    fetch.add_argument("--dest", help="data directory to write into (default: the configured one)")
    fetch.add_argument("--mirror", help="base URL holding <NAME>/<file> copies (default: $EDGE_ALIGN_DATA_MIRROR)")
    fetch.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server (default 30)")
    parser.set_defaults(handler=run)


class _ProgressBars:
    """A tqdm bar per big file, on stderr, only when stderr is a terminal (logs stay clean)."""

    def __init__(self, unit_label: str) -> None:
        self._unit_label = unit_label
        self._bars: dict[str, Any] = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        if total < BIG_FILE_BYTES:
            return
        bar = self._bars.get(label)
        if bar is None:
            from tqdm import tqdm

            bar = self._bars[label] = tqdm(
                total=total,
                desc=f"{self._unit_label} {label}",
                unit="B",
                unit_scale=True,
                file=sys.stderr,
                leave=False,
                disable=None,
            )
        bar.update(done - bar.n)
        if done >= total:
            bar.close()
            del self._bars[label]

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()


def _where(explicit: str | None) -> str:
    from agent.datasets import DATA_ENV, resolve_data_dir

    origin = "--data-dir" if explicit else f"${DATA_ENV}" if os.environ.get(DATA_ENV) else "default"
    return f"{resolve_data_dir(explicit)} ({origin})"


def _specs(names: list[str]) -> list[Any]:
    from agent.datasets import UnknownDatasetError, dataset_spec, load_registry
    from ui.cli import UsageError

    registry = load_registry()
    try:
        return [dataset_spec(name, registry) for name in names] if names else list(registry.values())
    except UnknownDatasetError as problem:
        raise UsageError(str(problem.args[0])) from None


def run(args: argparse.Namespace) -> int:
    if args.data_command == "list":
        return _list(args)
    if args.data_command == "check":
        return _check(args)
    return _fetch(args)


def _list(args: argparse.Namespace) -> int:
    from agent.datasets import resolve_data_dir

    root = resolve_data_dir(args.data_dir)
    rows = []
    for spec in _specs([]):
        present = sum(1 for f in spec.files if (root / spec.name / f.path).is_file())
        state = "present" if present == len(spec.files) else "absent" if present == 0 else "partial"
        rows.append(
            {
                "name": spec.name,
                "licence": spec.licence,
                "redistributable": spec.redistributable,
                "files": len(spec.files),
                "files_present": present,
                "state": state,
                "bytes": spec.total_bytes,
                "title": spec.title,
            }
        )
    if args.json:
        print(json.dumps({"data_dir": str(root), "datasets": rows}, indent=2))
        return 0
    print(f"data directory: {_where(args.data_dir)}")
    for row in rows:
        state = row["state"] if row["state"] != "partial" else f"partial ({row['files_present']}/{row['files']})"
        print(f"  {row['name']:<20} {state:<14} {row['bytes'] / 1e6:6.1f} MB  {row['licence']}")
    print("(presence only; `edge-align data check` verifies the sha256 sums)")
    return 0


def _check(args: argparse.Namespace) -> int:
    from agent.datasets import check_dataset

    bars = _ProgressBars("hashing")
    checks = []
    try:
        for spec in _specs(args.names):
            for result in check_dataset(spec, args.data_dir, progress=bars):
                checks.append(result)
                if not args.json:
                    print(result.describe(), file=sys.stdout if result.ok else sys.stderr, flush=True)
    finally:
        bars.close()
    failed = [c for c in checks if not c.ok]
    if args.json:
        print(json.dumps({"data_dir": _where(args.data_dir), "files": [c.to_json() for c in checks]}, indent=2))
    else:
        verdict = f"{len(checks) - len(failed)} of {len(checks)} files ok"
        print(f"{verdict}; data directory: {_where(args.data_dir)}", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0


def _fetch(args: argparse.Namespace) -> int:
    from agent.datasets import DataFetchError, fetch_dataset

    bars = _ProgressBars("downloading")
    try:
        for spec in _specs(args.names):
            for result in fetch_dataset(spec, args.dest, mirror=args.mirror, timeout=args.timeout, progress=bars):
                action = "downloaded" if result.downloaded else "already ok"
                print(f"{action:<11} {result.dataset}/{result.file} -> {result.path}", flush=True)
    except DataFetchError as problem:
        print(f"edge-align: {problem}", file=sys.stderr)
        return 1
    finally:
        bars.close()
    return 0
