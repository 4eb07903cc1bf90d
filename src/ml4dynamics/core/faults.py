"""Deterministic fault injection for the fault-injection tests (``tests/test_faults.py``).

``kill_point(name)`` does nothing unless ``$ML4D_KILL_AT`` names it: then the process kills itself
with SIGKILL on the spot, as a power cut or the OOM killer would, so that a test can check what
every stage leaves behind when it dies at that instant. The points are placed where a write is
half done (after a checkpoint, between registering and aliasing, before a swap).
``$ML4D_FAIL_AT`` names a point where the process meets a full disk instead (an ``OSError``
ENOSPC raised on the spot), to check what a failure, rather than a kill, leaves behind.
"""

from __future__ import annotations

import errno
import os
import signal

ENV = "ML4D_KILL_AT"
FAIL_ENV = "ML4D_FAIL_AT"


_arrivals: dict[str, int] = {}


def kill_point(name: str) -> None:
    """SIGKILL this process if ``$ML4D_KILL_AT`` is ``name`` (its first arrival there) or
    ``name#k`` (its k-th arrival)."""
    if os.environ.get(FAIL_ENV) == name:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (injected at {name})")
    wanted = os.environ.get(ENV)
    if not wanted or wanted.partition("#")[0] != name:
        return
    _arrivals[name] = _arrivals.get(name, 0) + 1
    if _arrivals[name] == int(wanted.partition("#")[2] or 1):
        os.kill(os.getpid(), signal.SIGKILL)
