"""Simulate SYSTEM's reference data (its exact closure, or its own reference solver) and write
data/SYSTEM/<split>.zarr for the splits train, val, test and ood, as configured in params.yaml.

``ml4d generate`` (stage ``generate``): a system's reference data, all four splits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ml4dynamics.config import SPLITS, load_params
from ml4dynamics.core.layout import Layout
from ml4dynamics.core.outputs import exclusive, lock_beside
from ml4dynamics.core.provenance import provenance
from ml4dynamics.datasets import generate_split, write_datasets
from ml4dynamics.datasets.generation import GENERATION_CODE

ARGUMENTS = ("system", "params")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", help="output directory (default: data/SYSTEM)")


def main(args: argparse.Namespace) -> int:
    setup = load_params(args.params).setup(args.system)  # validates every system section first
    layout = Layout()
    out = Path(args.out) if args.out else layout.data(args.system)
    # one writer of the data at a time: a second generation stops at once, touching nothing
    lock = lock_beside(out) if args.out else layout.lock(args.system, "data")
    with exclusive(lock, f"`ml4d generate {args.system}`"):
        return _generate(args, setup, out)


def _generate(args: argparse.Namespace, setup, out: Path) -> int:
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
