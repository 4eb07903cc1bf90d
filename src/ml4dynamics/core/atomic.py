"""Outputs that are either old or new, never half-written: write beside, then swap in.

A stage writes a directory output into a fresh temporary sibling (``.<name>.new.*``) and swaps it
in. On Linux the swap is one atomic exchange of the two names (``renameat2``), so a kill at any
instant leaves the old output or the new one in place. Elsewhere it is two renames: the old output
moves aside to ``.<name>.old``, the new one into place; a kill between them leaves the old one
aside, which the next write (or ``recover``) puts back. Either way the old output is then deleted,
and stale temporaries of killed writes are removed at the next write.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ml4dynamics.core.faults import kill_point


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


def _exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False
    where the system or the file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(new: str | Path, target: str | Path) -> None:
    """Replace the directory ``target`` by ``new`` (a sibling): in one atomic exchange where the
    system has it (the old output then lies in ``new``'s temporary name until it is deleted),
    else old aside first, then new in."""
    new, target = Path(new), Path(target)
    if target.exists() and _exchange(new, target):
        kill_point("swap")  # fault-injection tests: new in place, old not yet deleted
        shutil.rmtree(new, ignore_errors=True)
        return
    old = _aside(target)
    if target.exists():
        if old.exists():
            shutil.rmtree(old)
        target.rename(old)
    kill_point("swap")  # fault-injection tests: the worst instant, old aside and new not in
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def usual_mode(path: Path, directory: bool = False) -> None:
    """Give a temporary (made 0600 / 0700 by ``tempfile``) the mode any new file or folder gets
    (0644 / 0755 under the usual umask) before it becomes an output."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)


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
        usual_mode(tmp, directory=True)
        swap_in(tmp, target)
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: Path, attempts: int = 100) -> None:
    """Remove the temporary tree ``tmp``. A writer's background threads (zarr writes chunks
    concurrently) may still add a file while it is being removed after one of them failed: try
    again until it is gone (at most ~5 s)."""
    for _ in range(attempts):
        shutil.rmtree(tmp, ignore_errors=True)
        if not tmp.exists():
            return
        time.sleep(0.05)
