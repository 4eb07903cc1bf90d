"""The ``ml4d`` command: thin stages over library functions.

Every failure a user can fix ends as one line ``ml4d: error: ...`` on stderr and exit code 2,
with nothing written. Heavy imports (JAX, xarray) happen inside the commands so that ``--help``
is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from ml4dynamics.errors import ML4DError

EXIT_USER_ERROR = 2
PARAMS_HELP = "parameter file (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to look."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _cmd_generate(args: argparse.Namespace) -> int:
    from ml4dynamics.config import SPLITS, load_params
    from ml4dynamics.datasets import generate_split, write_datasets
    from ml4dynamics.provenance import provenance

    setup = load_params(args.params).setup(args.system)  # validates the whole file first
    out = Path(args.out) if args.out else Path("data") / args.system
    prov = provenance()
    datasets = {}
    for split in SPLITS:
        datasets[split] = generate_split(setup, split, prov)
        ds = datasets[split]
        print(
            f"{args.system}/{split}: {ds.sizes['sample']} trajectories x {ds.sizes['time']} frames"
        )
    for path in write_datasets(datasets, out):
        print(f"wrote {path}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from ml4dynamics.datasets import open_dataset

    ds = open_dataset(args.path)
    print(f"{args.path}: valid {ds.attrs['system']} dataset, split {ds.attrs['split']}")
    print(ds)
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    import dataclasses

    from ml4dynamics.config import load_params

    params = load_params(args.params)
    for name, setup in params.systems.items():
        print(f"{name}: {dataclasses.asdict(setup.system)}")
        for split in ("train", "val", "test", "ood"):
            print(
                f"  {split}: {len(setup.variants(split))} parameter combination(s), "
                f"{getattr(setup.data, split)}"
            )
    print(f"{args.params}: valid")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ml4d",
        description="ML4Dynamics: data, closures and hybrid rollouts for ML-augmented simulation.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    gen = sub.add_parser(
        "generate",
        help="simulate a system with its exact closure and write train/val/test/ood zarr stores",
        description="Simulate SYSTEM with its exact closure and write data/SYSTEM/<split>.zarr "
        "for the splits train, val, test and ood, as configured in params.yaml.",
    )
    gen.add_argument("system", help="system name: linear or rd")
    gen.add_argument(
        "--params", default="params.yaml", help="parameter file (default: %(default)s)"
    )
    gen.add_argument("--out", help="output directory (default: data/SYSTEM)")
    gen.set_defaults(func=_cmd_generate)

    ins = sub.add_parser(
        "inspect",
        help="validate a dataset store and print its contents",
        description="Open a zarr dataset through the validating reader and summarise it.",
    )
    ins.add_argument("path", help="a .zarr store written by `ml4d generate`")
    ins.set_defaults(func=_cmd_inspect)

    par = sub.add_parser(
        "params",
        help="validate params.yaml and print the resolved configuration",
        description="Read params.yaml into typed configuration and report the first problem.",
    )
    par.add_argument(
        "--params", default="params.yaml", help="parameter file (default: %(default)s)"
    )
    par.set_defaults(func=_cmd_params)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ML4DError as err:
        print(f"ml4d: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
