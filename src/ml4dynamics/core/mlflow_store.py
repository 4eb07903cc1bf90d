"""The workspace's MLflow store as a thing on disk: portable when copied or moved, and able to
tell which of its RUNNING runs belong to a process that has died.

**Portability.** MLflow records absolute artifact locations (experiments, runs, logged models and
model versions). A store under ``<dir>/mlruns`` that was copied or moved (``cp -a repo r2``)
still points at the old folder, so the copy would write into, and load models from, the
original. ``relocate`` detects that (an experiment's location lies under another ``mlruns``
folder) and rewrites every such path to the same place under the store's own folder, saying so in
one line. Locations outside any ``mlruns`` folder are left alone.

**Process identity and the runs of dead processes.** A run records the process that holds it
open (host, boot id, pid and the process's start time, so a reused pid is not mistaken for the
original); ``alive`` tells whether that process still exists. A process of another host (a
team's shared server) is never judged dead here: only its own machine can tell.
``end_dead_runs`` ends the RUNNING runs whose process died.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

# (table, column) holding artifact locations in MLflow 3's sqlite schema
LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "source"),
    ("model_versions", "storage_location"),
)
# the process holding a run open, and the status a resumed run had before it was reopened: a
# run left RUNNING by a dead process is ended with that status (or KILLED) by the next Run
PROCESS_TAG, STATUS_BEFORE_TAG = "ml4d.process", "ml4d.status_before"
STORE_DIR = "mlruns"
_checked: set[Path] = set()


def store_dir(uri: str) -> Path | None:
    """The ``mlruns`` folder of a ``sqlite:///…/mlruns/<db>`` URI, else None (a server, or a
    database file that does not live in a folder of that name)."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    if not db.is_absolute():
        db = Path.cwd() / db
    return db.parent if db.parent.name == STORE_DIR else None


def _as_path(location: str) -> tuple[Path | None, bool]:
    """(local path, was a file URI) of an artifact location; (None, False) for other schemes."""
    if location.startswith("file:"):
        return Path(unquote(urlparse(location).path)), True
    if location.startswith("/"):
        return Path(location), False
    return None, False


def _store_root(path: Path) -> Path | None:
    """The innermost ``mlruns`` folder containing ``path``."""
    for parent in (path, *path.parents):
        if parent.name == STORE_DIR:
            return parent
    return None


def _moved(location: str, old: Path, new: Path) -> str | None:
    path, is_uri = _as_path(location)
    if path is None or not path.is_relative_to(old):
        return None
    moved = new / path.relative_to(old)
    return moved.as_uri() if is_uri else str(moved)


def relocate(uri: str) -> Path | None:
    """Point the artifact locations of the sqlite store ``uri`` at its own folder when it was
    copied or moved; returns the folder it was copied from (None when nothing changed). Checked
    once per store and process."""
    here = store_dir(uri)
    if here is None or here in _checked:
        return None
    _checked.add(here)
    db = here / Path(uri).name
    if not db.is_file():
        return None
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con, con:
        try:
            locations = [row[0] for row in con.execute("SELECT artifact_location FROM experiments")]
        except sqlite3.DatabaseError:
            return None  # not (yet) an MLflow store: MLflow creates or reports it
        roots = {_store_root(p) for p, _ in map(_as_path, filter(None, locations)) if p}
        olds = sorted(r for r in roots if r is not None and r != here)
        if not olds:
            return None
        for table, column in LOCATION_COLUMNS:
            try:
                rows = con.execute(f"SELECT rowid, {column} FROM {table}").fetchall()
            except sqlite3.OperationalError:
                continue  # a schema without this table
            for rowid, value in rows:
                for old in olds:
                    moved = _moved(value, old, here) if value else None
                    if moved is not None:
                        con.execute(
                            f"UPDATE {table} SET {column} = ? WHERE rowid = ?", (moved, rowid)
                        )
                        break
    print(
        f"ml4d: note: the MLflow store {here} was copied or moved from "
        f"{', '.join(map(str, olds))}; its artifact locations now point into its own folder",
        file=sys.stderr,
    )
    return olds[0]


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return socket.gethostname()


def _start_ticks(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of proc(5), counted after the name


def this_process() -> str:
    """``<host>/<boot id>:<pid>:<start ticks>`` of the running process."""
    pid = os.getpid()
    return f"{socket.gethostname()}/{_boot_id()}:{pid}:{_start_ticks(pid) or '-'}"


def alive(identity: str) -> bool:
    """Whether the process ``this_process()`` returned as ``identity`` still runs. A process of
    another host is kept alive (a shared server's runs of other machines are theirs to end); one
    of an earlier boot of this host is dead; an unreadable identity is kept alive. (Identities
    written before the host was recorded, ``<boot id>:<pid>:<ticks>``, are read as this host's.)"""
    try:
        where, pid_text, ticks = identity.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return True
    host, _, boot = where.rpartition("/")
    if host and host != socket.gethostname():
        return True
    if boot != _boot_id():
        return False
    current = _start_ticks(pid)
    if current is not None or ticks != "-":
        return current == ticks
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: a RUNNING run without ``PROCESS_TAG`` older than this (by start time) is ended by the sweep:
#: runs are tagged as they are created, so it is one of older code, or of another tool that
#: was killed
UNTAGGED_GRACE_S = 600


def _dead(run, now_ms: int) -> str | None:
    """Why a RUNNING run is dead (its process died, or it never recorded one and is older than
    ``UNTAGGED_GRACE_S``); None while it may still be alive."""
    process = run.data.tags.get(PROCESS_TAG)
    if process is not None:
        return None if alive(process) else f"process {process} died"
    if now_ms - (run.info.start_time or 0) > UNTAGGED_GRACE_S * 1000:
        return f"no process recorded, started over {UNTAGGED_GRACE_S // 60} min ago"
    return None


def end_dead_runs(client, experiment_ids: list[str]) -> list[str]:
    """End every RUNNING run whose recorded process has died, or that recorded no process and
    started more than ``UNTAGGED_GRACE_S`` ago: KILLED, or the status a resumed run had before
    it was reopened (a stage that dies never rewrites a run it did not start). Returns the
    names ended."""
    ended = []
    now_ms = int(time.time() * 1000)
    for run in client.search_runs(experiment_ids, filter_string="attributes.status = 'RUNNING'"):
        why = _dead(run, now_ms)
        if why is None:
            continue
        before = run.data.tags.get(STATUS_BEFORE_TAG)
        status = before if before in ("FINISHED", "FAILED", "KILLED") else "KILLED"
        client.set_tag(run.info.run_id, "ml4d.ended", f"{why}; ended {status}")
        client.set_terminated(run.info.run_id, status)
        ended.append(f"{run.info.run_name} ({status})")
    return ended
