"""Where a result came from: package version and the git revision of the code that made it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ml4dynamics import __version__

#: files whose content decides what the code computes
CODE_PATHS = ("src", "pyproject.toml", "requirements.lock")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_revision(cwd: Path | str = ".") -> str:
    """The last commit that changed the code (``CODE_PATHS``), with ``-dirty`` if it has
    uncommitted changes; ``unknown`` outside a git checkout.

    Deliberately not ``HEAD``: committing ``dvc.lock`` or the README must not change the bytes
    a stage writes, or a fresh clone could never reproduce the recorded hashes.
    """
    cwd = Path(cwd)
    rev = _git(["log", "-1", "--format=%H", "--", *CODE_PATHS], cwd)
    if not rev:
        return "unknown"
    status = _git(["status", "--porcelain", "--", *CODE_PATHS], cwd)
    return rev + ("-dirty" if status else "")


def provenance(cwd: Path | str = ".") -> dict[str, str]:
    return {"ml4dynamics_version": __version__, "git_revision": git_revision(cwd)}
