"""Open a zarr dataset through the validating reader (``ml4d inspect``) and summarise it."""

from __future__ import annotations

import argparse

from ml4dynamics.datasets import open_dataset


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .zarr store written by `ml4d generate`")


def main(args: argparse.Namespace) -> int:
    ds = open_dataset(args.path)
    print(f"{args.path}: valid {ds.attrs['system']} dataset, split {ds.attrs['split']}")
    print(ds)
    return 0
