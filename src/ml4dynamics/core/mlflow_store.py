"""The workspace's MLflow store as a thing on disk: portable when copied or moved, and able to
tell which of its RUNNING runs belong to a process that has died.

**Portability.** MLflow records absolute artifact locations (experiments, runs, logged models and
model versions). A store under ``<dir>/mlruns`` that was copied or moved (``cp -a repo r2``)
still points at the old folder, so the copy would write into, and load models from, the
original. ``relocate`` detects that (an experiment's location lies under another ``mlruns``
folder) and rewrites every such path to the same place under the store's own folder, saying so in
one line. Locations outside any ``mlruns`` folder are left alone.

**Process identity.** A run records the process that holds it open (boot id, pid and the
process's start time, so a reused pid is not mistaken for the original); ``alive`` tells whether
that process still exists.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import sys
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
    """``<boot id>:<pid>:<start ticks>`` of the running process."""
    pid = os.getpid()
    return f"{_boot_id()}:{pid}:{_start_ticks(pid) or '-'}"


def alive(identity: str) -> bool:
    """Whether the process ``this_process()`` returned as ``identity`` still runs. A process of
    another boot (or another machine) is dead to this one; an unreadable identity is kept alive."""
    try:
        boot, pid_text, ticks = identity.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
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
