"""A stage command lives no longer than the ``dvc`` process that runs it.

``kill -9`` of ``dvc repro`` would otherwise leave the stage's ``ml4d`` running, re-parented to
init, and the next ``dvc repro`` would start the same stage beside it (both writing the same
outputs). DVC marks every stage command by ``$DVC_STAGE`` in its environment
(``dvc/stage/run.py``: ``prepare_kwargs``), and runs it as ``$SHELL -c <cmd>``: the shell may
``exec`` the command (dvc is then the parent) or stay in between (dvc is the grandparent).

``watch_dvc`` finds the nearest ``dvc`` ancestor (pid and start time, so a reused pid is not
mistaken for it), asks the kernel for SIGTERM when the parent dies where that parent is dvc
(``prctl(PR_SET_PDEATHSIG)``), and starts a daemon thread that checks the ancestor every second:
once it is gone, the process sends itself SIGTERM (a training saves its step and ends its run
KILLED; other commands die on it, their outputs being written atomically and their run ended
by the next stage's sweep, ``mlflow_store.end_dead_runs``) and SIGKILL if it still runs a minute
later. Linux only (``/proc``); elsewhere, and outside DVC, nothing happens.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path

STAGE_VARIABLE = "DVC_STAGE"  # set by DVC for every stage command it runs
POLL_S = 1.0
GRACE_S = 60.0  # after SIGTERM, before SIGKILL (a training stops after its current step)
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
MAX_DEPTH = 16
_watching: list[tuple[int, str]] = []


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start ticks) of a live process ``pid``; None when it is gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in ("Z", "X"):  # dead, not yet reaped
        return None
    return int(fields[1]), fields[19]  # fields 4 and 22 of proc(5), counted after the name


def _is_dvc(pid: int) -> bool:
    """Whether ``pid`` runs DVC: ``dvc ...``, ``python [opts] /path/dvc ...``, ``python -m dvc``."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    argv = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    if not argv:
        return False
    program = os.path.basename(argv[0])
    if program in ("dvc", "dvc.exe"):
        return True
    if not program.startswith("python"):
        return False
    for i, word in enumerate(argv[1:], start=1):
        if word == "-m":
            return argv[i + 1 : i + 2] == ["dvc"]
        if not word.startswith("-"):
            return os.path.basename(word) == "dvc"
    return False


def dvc_ancestor() -> tuple[int, str] | None:
    """(pid, start ticks) of the nearest ancestor that runs DVC, when this process is a DVC
    stage command (``$DVC_STAGE`` set) on Linux; else None."""
    if not sys.platform.startswith("linux") or not os.environ.get(STAGE_VARIABLE):
        return None
    pid = os.getppid()
    for _ in range(MAX_DEPTH):
        stat = _stat(pid) if pid > 1 else None
        if stat is None:
            return None
        if _is_dvc(pid):
            return pid, stat[1]
        pid = stat[0]
    return None


def alive(pid: int, ticks: str) -> bool:
    """Whether the process ``pid`` that started at ``ticks`` still runs."""
    stat = _stat(pid)
    return stat is not None and stat[1] == ticks


def _die_with_parent(pid: int) -> None:
    """SIGTERM from the kernel the moment the parent dies, where the parent is ``pid``."""
    if os.getppid() != pid:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the watchdog thread still ends the process


def _stop(pid: int) -> None:
    """SIGTERM to this process (its own handler, if any, runs), SIGKILL after ``GRACE_S``."""
    try:
        print(
            f"ml4d: note: dvc (pid {pid}), which ran this stage, is gone; stopping",
            file=sys.stderr,
            flush=True,
        )
    except (OSError, ValueError):
        pass  # nobody reads the output any more
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(GRACE_S)
    os.kill(os.getpid(), signal.SIGKILL)


def _watch(pid: int, ticks: str, poll_s: float) -> None:
    while alive(pid, ticks):
        time.sleep(poll_s)
    _stop(pid)


def watch(pid: int, ticks: str, poll_s: float = POLL_S) -> threading.Thread:
    """End this process once the process ``pid`` started at ``ticks`` is gone (see above)."""
    _watching.append((pid, ticks))
    _die_with_parent(pid)
    thread = threading.Thread(
        target=_watch, args=(pid, ticks, poll_s), name="ml4d-lifeline", daemon=True
    )
    thread.start()
    return thread


def watch_dvc() -> tuple[int, str] | None:
    """Under DVC, tie this process to the dvc process that runs it (once); returns that
    process's (pid, start ticks), else None."""
    if _watching:
        return _watching[0]
    found = dvc_ancestor()
    if found is not None:
        watch(*found)
    return found
