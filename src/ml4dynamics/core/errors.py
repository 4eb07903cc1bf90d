"""Errors a user can fix. The CLI prints them as one line and exits non-zero. Warnings: one line
on stderr, the run goes on."""

import sys
from collections.abc import Iterator


class ML4DError(Exception):
    """Base class: a problem with the user's input, stated with what to do about it."""


class ConfigError(ML4DError):
    """A parameter in params.yaml is unknown, of the wrong type, or not physical."""

    def __init__(self, key: str, problem: str, fix: str):
        self.key, self.problem, self.fix = key, problem, fix
        super().__init__(f"{key}: {problem}; {fix}")


class DatasetError(ML4DError):
    """A dataset store is missing, malformed, or holds non-finite values."""


def warn(message: str) -> None:
    """One line on stderr that a user should read (the run goes on)."""
    print(f"ml4d: warning: {message}", file=sys.stderr)


def causes(err: BaseException | None) -> Iterator[BaseException]:
    """``err`` and the exceptions behind it (``__cause__``, else ``__context__``), each once."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__
