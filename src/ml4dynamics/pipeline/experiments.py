"""``ml4d experiments``: the workspace's DVC experiments as a table a person can read — per
experiment each system's λ (where the experiments differ in it) and, per model, the validation
score λ is chosen on, the test error, the stable fraction and the gate outcome (from `dvc exp
show --json`, whose plain table lists every parameter and code dependency).
"""

from __future__ import annotations

import argparse

from ml4dynamics.reporting.experiments import committed_gates, shown, table

ARGUMENTS: tuple[str, ...] = ()


def main(args: argparse.Namespace) -> int:
    print(table(shown(), committed_gates()))
    return 0
