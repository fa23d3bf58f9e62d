"""Start-up of the embedded server with the model file mmap'd or read into memory.

    .venv/bin/python benchmarks/llm_startup.py [--model qwen2.5-coder-1.5b] [--rounds 3]

Starts the model's server alternately both ways, ``--rounds`` times each, and reports the seconds
until /v1/models answers (EmbeddedLlamaServer.startup_s), with the load average. The first start
may find the file outside the page cache; later ones show the warm cost of each way.
"""

from __future__ import annotations

import argparse
import os

from _common import emit, packaged_model, private_home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a packaged model name (default: the table's default)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    home = private_home()

    from agent.llm_server import EmbeddedLlamaServer

    model = packaged_model(args.model)
    load_before = os.getloadavg()
    startup: dict[str, list[float]] = {"mmap": [], "read": []}
    for _ in range(args.rounds):
        for mmap in (True, False):  # alternating, so a change of load hits both alike
            server = EmbeddedLlamaServer(home / "logs", model=model, use_mmap=mmap, progress=False).start()
            startup["mmap" if mmap else "read"].append(round(server.startup_s or 0.0, 2))
            server.stop()
    emit("llm_startup", {
        "model": model.name,
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "startup_s": startup,
    }, args.out)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
