"""Backups of the workspace's MLflow store (``mlruns/mlflow.db``), and the one line that says how
to use them when the store is damaged.

The registry's aliases live only in the store: before and after each promotion of the workspace
the store is copied with SQLite's online backup (consistent even while another process writes) to
``mlruns/backups/mlflow-<UTC time>.db``; the newest ``KEEP`` are kept. A damaged store (a file
that is not a database, a malformed image) is reported by every command as one line naming the
newest backup and the command that restores it.
"""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

from ml4dynamics.core.errors import causes

KEEP = 5
DAMAGED = ("file is not a database", "database disk image is malformed")


def _database(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///"))


def backup(uri: str) -> Path | None:
    """Copy the sqlite store ``uri`` names into its ``backups/`` folder (None for a server or a
    store that does not exist yet); the oldest copies beyond ``KEEP`` are removed."""
    db = _database(uri)
    if db is None or not db.is_file():
        return None
    folder = db.parent / "backups"
    folder.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = folder / f"mlflow-{stamp}.db"
    partial = target.with_suffix(".db.partial")
    source, copy = sqlite3.connect(db), sqlite3.connect(partial)
    try:
        with copy:
            source.backup(copy)
    finally:
        source.close()
        copy.close()
    partial.rename(target)  # a kill mid-copy leaves a .partial, never a half backup
    for old in sorted(folder.glob("mlflow-*.db"))[:-KEEP]:
        old.unlink(missing_ok=True)
    for stale in folder.glob("*.partial"):
        if stale != partial:
            stale.unlink(missing_ok=True)
    return target


def damaged(err: BaseException) -> bool:
    """Whether ``err`` (or an exception in its chain) is SQLite reporting a damaged file."""
    return any(text in str(e) for e in causes(err) for text in DAMAGED)


def damaged_message(uri: str) -> str:
    """One line: the store is damaged, and how to put its newest backup back."""
    db = _database(uri)
    if db is None:
        return f"the MLflow store {uri} is damaged; restore it from the server's own backups"
    copies = sorted((db.parent / "backups").glob("mlflow-*.db"))
    if not copies:
        return (
            f"the MLflow store {db} is damaged and has no backup; move it away and run "
            "`dvc repro -f` to record the runs and register the closures again"
        )
    return (
        f"the MLflow store {db} is damaged; put its newest backup (taken at the last "
        f"promotion) back with `cp {copies[-1]} {db}`, then run `dvc repro`"
    )
