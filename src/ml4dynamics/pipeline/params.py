"""Read params.yaml into typed configuration, every section checked by the code that uses it, and
report the first problem.

``ml4d params``: validate the whole of params.yaml (every section, by the module that owns it)
and print the resolved configuration.
"""

from __future__ import annotations

import argparse
import dataclasses

from ml4dynamics.config import SPLITS, load_params
from ml4dynamics.evaluation.config import evaluate_config
from ml4dynamics.learning import estimators
from ml4dynamics.learning.network_config import all_network_stages
from ml4dynamics.registry import gates
from ml4dynamics.studies import linear_theory

ARGUMENTS = ("params",)


def main(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    for name, setup in params.systems.items():
        print(f"{name}: {dataclasses.asdict(setup.system)}")
        for split in SPLITS:
            print(
                f"  {split}: {len(setup.variants(split))} parameter combination(s), "
                f"{getattr(setup.data, split)}"
            )
    for section in ("manifold", "train"):
        for system, stage in all_network_stages(params, section).items():
            print(f"{section}.{system}: {stage}")
    if params.has("estimators"):
        for system in params.systems:
            for name, est in estimators.configured(params, system).items():
                print(f"estimators.{name} ({system}): {est.config}")
    if params.has("evaluate"):
        print(f"evaluate: {evaluate_config(params)}")
    if params.has("promote"):
        print(f"promote: {gates.configured(params)} (gates: {', '.join(gates.GATES)})")
    if params.has("linear_theory"):
        print(f"linear_theory: {linear_theory.theory_config(params)}")
    print(f"{args.params}: valid")
    return 0
