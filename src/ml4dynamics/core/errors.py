"""Errors a user can fix. The CLI prints them as one line and exits non-zero. Warnings: one line
on stderr, the run goes on."""

import sys


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
