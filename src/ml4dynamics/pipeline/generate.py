"""Simulate SYSTEM's reference data (its exact closure, or its own reference solver) and write
data/SYSTEM/<split>.zarr for the splits train, val, test and ood, as configured in params.yaml.

``ml4d generate`` (stage ``generate``): a system's reference data, all four splits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ml4dynamics.config import SPLITS, load_params
from ml4dynamics.core.layout import Layout
from ml4dynamics.core.provenance import provenance
from ml4dynamics.datasets import generate_split, write_datasets
from ml4dynamics.datasets.generation import GENERATION_CODE

ARGUMENTS = ("system", "params")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="output directory (default: data/SYSTEM)")


def main(args: argparse.Namespace) -> int:
    setup = load_params(args.params).setup(args.system)  # validates every system section first
    out = Path(args.out) if args.out else Layout().data(args.system)
    prov = provenance(".", GENERATION_CODE)
    datasets = {}
    for split in SPLITS:
        datasets[split] = ds = generate_split(setup, split, prov)
        print(
            f"{args.system}/{split}: {ds.sizes['sample']} trajectories x {ds.sizes['time']} frames"
        )
    for path in write_datasets(datasets, out):
        print(f"wrote {path}")
    return 0
