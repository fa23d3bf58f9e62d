"""Entry point of the embedded model server's process: llama.cpp's server, tied to its parent's life.

    python -m agent.llama_child [llama_cpp.server arguments]

Run by agent.llm_server, never by hand. Before handing over to ``llama_cpp.server`` it makes sure
the process ends when its parent does, however the parent ends (SIGTERM, SIGINT, SIGKILL, a crash):

* ``prctl(PR_SET_PDEATHSIG, SIGKILL)``: Linux kills this process when the thread that started it
  exits (agent.llm_server starts it from a thread that lives exactly as long as the server).
  Set here rather than in a ``preexec_fn``, which is unsafe in a parent that runs threads.
* a watchdog on stdin, which is a pipe whose only writer is the parent: when the parent dies its
  end closes, the read returns EOF, and the process exits. This covers systems without prctl.

The server keeps nothing worth saving, so both exit at once, without a graceful shutdown that an
open keep-alive connection could hold up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import runpy
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
ENV_PARENT_PID = "EDGE_ALIGN_LLM_PARENT_PID"


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return  # the stdin watchdog still applies
    # The parent may have died between starting us and the prctl call; then we are an orphan already.
    expected = os.environ.get(ENV_PARENT_PID)
    if expected and os.getppid() != int(expected):
        os._exit(0)


def _watch_stdin() -> None:
    try:
        while os.read(0, 4096):
            pass  # the parent never writes; anything it sends is ignored
    except OSError:
        pass
    os._exit(0)


def main() -> None:
    _die_with_parent()
    if not os.isatty(0):
        threading.Thread(target=_watch_stdin, name="parent-watchdog", daemon=True).start()
    sys.argv = ["llama_cpp.server", *sys.argv[1:]]
    runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
