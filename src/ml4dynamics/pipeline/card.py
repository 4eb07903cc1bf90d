"""Print the model card of a registered closure: the version's description in the registry,
written at promotion (system, data, estimator, training, rollouts, every gate, known limits).
The registry is MLFLOW_TRACKING_URI, else mlruns/mlflow.db of the repository.

``ml4d card``: what a registered closure is and how far to trust it, before running it.
"""

from __future__ import annotations

import argparse

from ml4dynamics import registry

ARGUMENTS: tuple[str, ...] = ()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="registry URI, e.g. models:/rd-closure@champion")


def main(args: argparse.Namespace) -> int:
    print(registry.description(args.model), end="")
    return 0
