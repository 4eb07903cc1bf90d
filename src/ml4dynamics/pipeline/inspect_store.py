"""Open a zarr dataset through the validating reader (``ml4d inspect``) and summarise it."""

from __future__ import annotations

import argparse

from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import system_groups
from ml4dynamics.evaluation.spectrum import band_shares
from ml4dynamics.systems import system_class


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .zarr store written by `ml4d generate`")


def main(args: argparse.Namespace) -> int:
    ds = open_dataset(args.path)
    print(f"{args.path}: valid {ds.attrs['system']} dataset, split {ds.attrs['split']}")
    print(ds)
    if system_class(ds.attrs["system"]).spectrum_weight is not None:  # a periodic flow
        system = system_groups(ds)[0][0]
        spatial = len(system.state_dims) - 1
        shares = band_shares(ds.y.values, spatial)  # where its closure labels live
        cells = ", ".join(f"{band}: {share:.1%}" for band, share in shares.items())
        n = min(system.state_shape[1:])
        print(f"closure label energy by wavenumber band (n = {n}): {cells}")
    return 0
