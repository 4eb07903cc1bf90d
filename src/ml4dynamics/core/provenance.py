"""Where a result came from: package version and the git revision of the code that made it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ml4dynamics import __version__

#: files whose content decides what the code computes (default scope of ``git_revision``)
CODE_PATHS = ("src", "pyproject.toml", "requirements.lock")


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_revision(cwd: Path | str = ".", paths: tuple[str, ...] = CODE_PATHS) -> str:
    """The last commit that changed ``paths``, with ``-dirty`` if they have uncommitted
    changes; ``unknown`` outside a git checkout.

    Deliberately not ``HEAD``: a stage records the revision of the code it depends on (its DVC
    code deps), so committing ``dvc.lock``, the README or code of other stages does not change
    the bytes it writes, and a fresh clone reproduces the recorded hashes.
    """
    cwd = Path(cwd)
    rev = _git(["log", "-1", "--format=%H", "--", *paths], cwd)
    if not rev:
        return "unknown"
    status = _git(["status", "--porcelain", "--", *paths], cwd)
    return rev + ("-dirty" if status else "")


def provenance(cwd: Path | str = ".", paths: tuple[str, ...] = CODE_PATHS) -> dict[str, str]:
    return {"ml4dynamics_version": __version__, "git_revision": git_revision(cwd, paths)}
