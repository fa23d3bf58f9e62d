"""Carry a hand-written plain phrasing (``says:``, ``safeguard:``) to every norm with the same text, in place.

Parallel norms of several communities share their text, so a phrasing is written once per
distinct text (keyed by topic, the id after the community prefix) and this script writes it
into every pack that holds that topic. It edits the YAML line by line, right after each norm's
``text:`` line, so comments and layout survive; it refuses a phrasing for a topic whose norms do
not all share one text, and reports topics left without a phrasing.

    python -m memory.carry_says PHRASINGS.yaml memory/packs/*.yaml
    python -m memory.carry_says --field safeguard --after says SAFEGUARDS.yaml memory/packs/*.yaml

``says`` must be given for every topic (the exit code is 1 otherwise); ``safeguard`` is optional.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import yaml

_ID_LINE = re.compile(r"^(?P<indent>\s*)- id:\s*(?P<id>\S+)\s*$")


def carry(phrasings: dict[str, str], files: list[Path], field: str = "says", after: str = "text") -> list[str]:
    """Write ``field:`` after each norm's ``after:`` line; returns the topics found with no phrasing."""
    after_line = re.compile(rf"^(?P<indent>\s*){re.escape(after)}:\s")
    field_line = re.compile(rf"^\s*{re.escape(field)}:\s")
    texts: dict[str, set[str]] = {}
    for file in files:
        # Plain YAML reading: the packs may not validate yet, since ``says`` is what is missing.
        for norm in yaml.safe_load(file.read_text(encoding="utf-8"))["norms"]:
            texts.setdefault(str(norm["id"]).split(".", 1)[-1], set()).add(str(norm["text"]))
    split = sorted(topic for topic, variants in texts.items() if len(variants) > 1 and topic in phrasings)
    if split:
        raise ValueError(f"topics worded differently across packs, phrase them one by one: {', '.join(split)}")
    for file in files:
        lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
        out: list[str] = []
        topic: str | None = None
        for line in lines:
            if field_line.match(line):
                continue  # replaced below, so the script can be re-run after editing a phrasing
            out.append(line)
            found = _ID_LINE.match(line)
            if found:
                topic = found["id"].split(".", 1)[-1]
                continue
            anchor = after_line.match(line)
            if anchor and topic in phrasings:
                # JSON strings are valid YAML double-quoted scalars: no quoting surprises.
                out.append(f"{anchor['indent']}{field}: {json.dumps(phrasings[topic], ensure_ascii=False)}\n")
        file.write_text("".join(out), encoding="utf-8")
    return sorted(set(texts) - set(phrasings))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("phrasings", type=Path, help="YAML mapping topic -> phrasing")
    parser.add_argument("packs", type=Path, nargs="+")
    parser.add_argument("--field", default="says", choices=("says", "safeguard"))
    parser.add_argument("--after", default="text", help="the field whose line the new one follows")
    args = parser.parse_args(argv)
    phrasings = yaml.safe_load(args.phrasings.read_text(encoding="utf-8"))
    missing = carry({str(k): str(v) for k, v in phrasings.items()}, list(args.packs), args.field, args.after)
    if args.field != "says":
        return 0
    for topic in missing:
        print(f"no phrasing for topic '{topic}'", file=sys.stderr)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
