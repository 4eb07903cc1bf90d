"""Open a zarr dataset through the validating reader (``ml4d inspect``) and summarise it."""

from __future__ import annotations

import argparse

from ml4dynamics.datasets import open_dataset
from ml4dynamics.spectrum import band_shares
from ml4dynamics.systems import system_class


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a .zarr store written by `ml4d generate`")


def main(args: argparse.Namespace) -> int:
    ds = open_dataset(args.path)
    print(f"{args.path}: valid {ds.attrs['system']} dataset, split {ds.attrs['split']}")
    print(ds)
    cls = system_class(ds.attrs["system"])
    spatial = [d for d in ds.y.dims if d.startswith("x")] if "y" in ds else []
    if cls.spectrum_weight is not None and spatial:  # a periodic flow: where its labels live
        shares = band_shares(ds.y.values, len(spatial))
        cells = ", ".join(f"{band}: {share:.1%}" for band, share in shares.items())
        n = min(ds.sizes[d] for d in spatial)
        print(f"closure label energy by wavenumber band (n = {n}): {cells}")
    return 0
