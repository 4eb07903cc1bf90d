"""DVC stages: thin functions over the library that read params, write outputs, log runs.

Each stage is one module here with ``configure(parser)`` and ``main(args)``; ``ml4dynamics.cli``
lists them. Stages never import one another: what they share (the arguments every command takes
alike, JSON on stdout) lives in this file.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def system_argument(parser: argparse.ArgumentParser, what: str = "system", **kwargs: Any) -> None:
    """The positional SYSTEM, its help listing the registered systems."""
    from ml4dynamics.systems import SYSTEMS

    parser.add_argument("system", help=f"{what}: one of {', '.join(SYSTEMS)}", **kwargs)


def params_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--params", default="params.yaml", help="parameter file (default: %(default)s)"
    )


def estimator_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--estimator",
        required=True,
        help="estimator name under `estimators` in params.yaml, e.g. ols or tr-projector",
    )


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))
