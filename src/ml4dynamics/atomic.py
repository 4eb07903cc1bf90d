"""Outputs that are either old or new, never half-written: write beside, then swap in.

A stage writes a directory output into a fresh temporary sibling (``.<name>.new.*``) and swaps it
in with two renames: the old output moves aside to ``.<name>.old``, the new one into place, and the
old one is deleted. Renames within a folder are atomic, so a kill at any instant leaves the old
output, the new one, or — between the two renames — the old one aside, which the next write (or
``recover``) puts back. Stale temporaries of killed writes are removed at the next write.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _aside(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def recover(target: str | Path) -> None:
    """Undo what a killed write left: the old output put back if it was moved aside and the new
    one never arrived, and every stale temporary sibling removed."""
    target = Path(target)
    old = _aside(target)
    if old.exists():
        if target.exists():
            shutil.rmtree(old)
        else:
            old.rename(target)
    for stale in target.parent.glob(f".{target.name}.new.*"):
        shutil.rmtree(stale, ignore_errors=True)


def swap_in(new: str | Path, target: str | Path) -> None:
    """Replace the directory ``target`` by ``new`` (a sibling), old aside first."""
    new, target = Path(new), Path(target)
    old = _aside(target)
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def replacing(target: str | Path) -> Iterator[Path]:
    """An empty temporary sibling of ``target`` to write the new output into; swapped in when
    the block ends, removed (leaving the old output) if it raises or the process is stopped."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.new.", dir=target.parent))
    try:
        yield tmp
        swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
