"""Writing stage outputs: JSON metrics, CSV plot data, model directories, fingerprints."""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ml4dynamics.core.atomic import usual_mode
from ml4dynamics.core.errors import ML4DError


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary sibling of the file ``path`` to write; renamed over ``path`` when the block
    ends (a reader, or a kill at any instant, sees the old file or the new one, never half), and
    removed if the block raises. Temporaries of killed writes to ``path`` are removed first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.new.*"):
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.new.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        usual_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically (a reader never sees half a file)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return Path(path)


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Write CSV rows (the keys of the first row are the header) atomically."""
    fields = list(rows[0]) if rows else []
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def fingerprint(config: Any, paths: Iterable[str | Path] = ()) -> str:
    """sha256 of a JSON-able config and the bytes of every file under ``paths``."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for root in paths:
        root = Path(root)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for p in files:
            h.update(str(p.relative_to(root) if root.is_dir() else p.name).encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def lock_beside(path: str | Path) -> Path:
    """The lock file of a writer of ``path`` outside the workspace's layout: hidden beside it."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def exclusive(lock: str | Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on the file ``lock`` for the duration: a second process that
    wants it stops at once with one line naming the holder (its pid and what it runs), disturbing
    nothing. ``what`` names this process's work. The lock dies with its process, so a killed run
    never leaves a stale one."""
    lock = Path(lock)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise ML4DError(
                f"cannot start {what}: {holder} is writing the same outputs in this workspace "
                f"(lock {lock}); wait for it to finish or stop it, then run again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} ({what})")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
