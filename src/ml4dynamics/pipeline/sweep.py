"""``ml4d sweep`` (a command, not a DVC stage): the rd trial of ``ml4dynamics.sweep`` — for each
γ_u, generate rd data, fit the manifold model, train every estimator with every seed (TR at every
λ of the grid), roll each closure out on validation and test, choose λ on validation. Writes
every run, the λ choice and the tables (JSON and Markdown).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ml4dynamics.sweep import run

ARGUMENTS = ("params",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gamma-u", type=float, nargs="+", required=True, help="gamma_u values")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--estimator", action="append", help="estimator names (default: all)")
    parser.add_argument("--n", type=int, help="grid points per side (default: params.yaml)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: params.yaml)")
    parser.add_argument(
        "--lam",
        type=float,
        nargs="+",
        help="the λ grid of the TR estimators, chosen on validation (default: reg.rd.lam)",
    )
    parser.add_argument(
        "--out", default="sweep/rd_table.json", help="output (default: %(default)s)"
    )


def main(args: argparse.Namespace) -> int:
    result = run(
        args.params,
        args.gamma_u,
        args.seeds,
        args.estimator,
        Path(args.out),
        n=args.n,
        epochs=args.epochs,
        lams=args.lam,
    )
    print(result["table"])
    return 0
