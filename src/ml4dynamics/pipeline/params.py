"""Read params.yaml into typed configuration, every section checked by the code that uses it, and
report the first problem.

``ml4d params``: validate the whole of params.yaml (every section, by the module that owns it)
and print the resolved configuration as YAML.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping

import yaml

from ml4dynamics.config import SPLITS, jsonable, load_params
from ml4dynamics.evaluation.config import envelope_config, evaluate_config
from ml4dynamics.learning import estimators
from ml4dynamics.learning.network_config import all_network_stages
from ml4dynamics.registry import gates
from ml4dynamics.studies import linear_theory

ARGUMENTS = ("params",)


def _plain(value):
    """``value`` as YAML can write it: dataclasses and read-only mappings as mappings, tuples
    as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return jsonable(value)


def resolved(params) -> dict:
    """Every section of ``params`` as the code that owns it parses it, with its defaults filled
    in and each TR weight the effective one (``reg.lam`` × ``reg.<system>.lam``)."""
    out: dict = {}
    for name, setup in params.systems.items():
        out[name] = {
            "system": _plain(setup.system),
            "data": {
                split: {
                    "parameter_combinations": len(setup.variants(split)),
                    **_plain(getattr(setup.data, split)),
                }
                for split in SPLITS
            },
        }
    for section in ("manifold", "train"):
        stages = all_network_stages(params, section)
        if stages:
            out[section] = {system: _plain(stage) for system, stage in stages.items()}
    if params.has("estimators"):
        out["estimators"] = {
            system: {n: _plain(e.config) for n, e in estimators.configured(params, system).items()}
            for system in params.systems
        }
    if params.has("evaluate"):
        out["evaluate"] = _plain(evaluate_config(params))
    if params.has("envelope"):
        out["envelope"] = _plain(envelope_config(params))
    if params.has("promote"):
        out["promote"] = _plain(gates.configured(params))
    if params.has("linear_theory"):
        out["linear_theory"] = _plain(linear_theory.theory_config(params))
    return out


def main(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    print(yaml.safe_dump(resolved(params), sort_keys=False, allow_unicode=True), end="")
    print(f"# {args.params}: valid")
    return 0
