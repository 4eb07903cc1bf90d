"""The ``ml4d`` command: one table of subcommands, each a thin module under ``pipeline/``.

Every failure a user can fix ends as one line ``ml4d: error: ...`` on stderr and exit code 2,
with nothing written. ``ml4d --help`` reads only the table below; a command's module (and with it
JAX, xarray, MLflow) is imported only when that command runs or shows its own help, so the top
level stays instant. A command's module gives its description (the first paragraph of its
docstring), the shared arguments it takes (``ARGUMENTS``: ``system``, ``estimator``, ``params``),
optionally ``configure(parser)`` for arguments of its own, and ``main(args) -> exit code``.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ml4dynamics.core.errors import ML4DError, causes
from ml4dynamics.core.lifeline import watch_dvc
from ml4dynamics.pipeline import estimator_argument, params_argument, system_argument

EXIT_USER_ERROR = 2
EXIT_SYSTEM_ERROR = 1


@dataclasses.dataclass(frozen=True)
class Command:
    module: str  # the pipeline module that configures and runs it
    help: str  # one line for `ml4d --help`


COMMANDS: dict[str, Command] = {
    name: Command(f"ml4dynamics.pipeline.{module}", help)
    for name, module, help in (
        ("generate", "generate", "simulate a system and write train/val/test/ood zarr stores"),
        ("inspect", "inspect_store", "validate a dataset store and print its contents"),
        (
            "fit-manifold",
            "manifold",
            "train the autoencoder whose reconstruction error F measures distribution shift",
        ),
        ("train", "train", "train the closure with one of the estimators in params.yaml"),
        (
            "evaluate",
            "evaluate",
            "hybrid rollouts of a trained closure on val, test and ood: errors, stability, shift",
        ),
        ("promote", "promote", "register the evaluated closures; move `champion` past the gates"),
        (
            "envelope",
            "envelope",
            "where a registered closure can be trusted over its system's physical parameters",
        ),
        ("simulate", "simulate", "run a hybrid simulation with a registered closure"),
        ("card", "card", "print a registered closure's model card: data, training, gates, limits"),
        ("ui", "ui", "start MLflow's web UI on this workspace's runs and registry"),
        (
            "server",
            "server",
            "start a team's MLflow server (PostgreSQL, artifacts served) that every machine uses",
        ),
        (
            "speedup",
            "speedup",
            "a registered closure's speed-up over its plain solver at matched accuracy",
        ),
        (
            "golden",
            "benchmark",
            "the frozen golden benchmark: build it once (data.dvc), score registry versions",
        ),
        (
            "sweep",
            "sweep",
            "every estimator x seed (along one system parameter), lambda chosen on validation",
        ),
        (
            "experiments",
            "experiments",
            "the DVC experiments side by side: λ, validation and test error, gates",
        ),
        ("report", "report", "write docs/results.md: the results tables, from the metrics"),
        (
            "resolution",
            "resolution",
            "the plain coarse solver alone at several coarse grids: where a closure is needed",
        ),
        (
            "convergence",
            "convergence",
            "closures trained at several coarse grids vs the plain solver and the oracle, and cost",
        ),
        (
            "timing",
            "bench",
            "time one training step of every estimator side by side (or our solvers vs peers)",
        ),
        ("linear-theory", "linear_theory", "the paper's linear experiment: terminal error vs λ"),
        (
            "shift-correlation",
            "shift_correlation",
            "rank correlation between distribution shift and rollout error",
        ),
        ("params", "params", "validate params.yaml and print the resolved configuration"),
    )
}


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to look."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def build_parser(configure: str | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand; ``configure`` names the one whose arguments are added
    (importing its module), the others parse nothing until chosen."""
    parser = _Parser(
        prog="ml4d",
        description="ML4Dynamics: data, closures and hybrid rollouts for ML-augmented simulation.",
    )
    from ml4dynamics import __version__

    parser.add_argument("--version", action="version", version=f"ml4d {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        if name == configure:
            _configure(p, importlib.import_module(command.module))
    return parser


SHARED_ARGUMENTS = {
    "system": system_argument,
    "estimator": estimator_argument,
    "params": params_argument,
}


def _configure(parser: argparse.ArgumentParser, module: Any) -> None:
    """A command's description and arguments, from its module."""
    parser.description = inspect.cleandoc(module.__doc__).split("\n\n")[0].replace("``", "`")
    for name in getattr(module, "ARGUMENTS", ()):
        SHARED_ARGUMENTS[name](parser)
    if hasattr(module, "configure"):
        module.configure(parser)


#: old names kept working for a release (each prints which name to use)
ALIASES = {"bench": "timing", "benchmark": "golden"}


def _chosen(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first argument that is one), if any."""
    return next((a for a in argv if a in COMMANDS), None)


def _renamed(argv: list[str]) -> list[str]:
    """``argv`` with an old command name (``ALIASES``) replaced by its new one, and a note."""
    for i, arg in enumerate(argv):
        if arg in COMMANDS:
            break
        if arg in ALIASES:
            print(
                f"ml4d: note: `ml4d {arg}` is now `ml4d {ALIASES[arg]}`; the old name goes in a "
                "later release",
                file=sys.stderr,
            )
            return [*argv[:i], ALIASES[arg], *argv[i + 1 :]]
    return argv


def enable_compilation_cache() -> None:
    """Keep JAX's compiled programs between runs (a sweep of `dvc exp run` recompiles the same
    training step otherwise): ``$ML4D_CACHE_DIR/jax``, default ``~/.cache/ml4dynamics/jax``.
    JAX keys entries by program, options and version, so a stale entry is never used."""
    root = os.environ.get("ML4D_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ml4dynamics"
    )
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(root) / "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


def main(argv: Sequence[str] | None = None) -> int:
    watch_dvc()  # a stage of `dvc repro` ends when that dvc dies (never a second copy beside it)
    argv = _renamed(list(sys.argv[1:] if argv is None else argv))
    enable_compilation_cache()
    # MLflow logs a failed store query with its SQL before raising it: the one line below (or
    # the traceback of a bug) reports it instead
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    try:
        args = build_parser(_chosen(argv)).parse_args(argv)
        return importlib.import_module(COMMANDS[args.command].module).main(args)
    except ML4DError as err:
        print(f"ml4d: error: {err}", file=sys.stderr)
        signum = getattr(err, "signum", None)  # interrupted training: the shell's convention
        return 128 + signum if signum else EXIT_USER_ERROR
    except OSError as err:  # the machine, not the code: a full disk, a read-only folder, ...
        print(f"ml4d: error: {os_error(err)}", file=sys.stderr)
        return EXIT_SYSTEM_ERROR
    except Exception as err:
        line = _known_failure(err)
        if line is None:
            raise
        print(f"ml4d: error: {line}", file=sys.stderr)
        return EXIT_SYSTEM_ERROR


def _known_failure(err: Exception) -> str | None:
    """One line for a failure of the machine or of the store that a library reported in its own
    exception (a full disk inside Orbax, a damaged ``mlflow.db`` inside SQLAlchemy); None for
    anything else (a bug: its traceback is the report)."""
    from ml4dynamics.core import store_backup

    if store_backup.damaged(err):
        from ml4dynamics.core.tracking import tracking_uri

        return store_backup.damaged_message(os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri())
    cause = system_cause(err)
    return None if cause is None else os_error(cause)


#: what the machine can refuse a write for, as libraries word it in their own exceptions
#: (Orbax and TensorStore report a full disk as a plain Exception carrying the system's text)
SYSTEM_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)


def system_cause(err: BaseException) -> OSError | None:
    """The operating-system failure behind ``err``: an OSError in its chain of causes, or the
    system's wording of a full disk, a quota, a size limit or a read-only folder in its text."""
    for link in causes(err):
        if isinstance(link, OSError):
            return link
        text = str(link)
        if "database or disk is full" in text:  # SQLite's wording (the MLflow store)
            return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if "disk I/O error" in text:  # SQLite's, e.g. for a write past the size limit
            return OSError(errno.EIO, "the MLflow store could not be written (disk I/O error)")
        for number in SYSTEM_ERRNOS:
            if os.strerror(number) in text:
                return OSError(number, os.strerror(number))
    return None


def os_error(err: OSError) -> str:
    """An operating-system failure as one line with what to do about it. Outputs are written
    beside their target and swapped in (``ml4dynamics.core.atomic``), so the old ones are intact."""
    where = f" ({err.filename})" if err.filename else ""
    what = err.strerror or (str(err).splitlines() or [type(err).__name__])[0]
    hints = {
        errno.ENOSPC: "free some space (or point the output elsewhere) and run again",
        errno.EDQUOT: "free some space within your quota and run again",
        errno.EFBIG: "a file grew past the size limit (`ulimit -f`); raise it and run again",
        errno.EROFS: "the folder is read-only; run from a writable copy",
        errno.EACCES: "check the permissions of that path",
        errno.EIO: "check that the disk has room and is writable, and run again",
    }
    hint = hints.get(err.errno, "fix the cause and run again")
    return f"{what}{where}; {hint} (earlier outputs are left as they were)"


if __name__ == "__main__":
    sys.exit(main())
