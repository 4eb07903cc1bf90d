"""``ml4d sweep`` (a command, not a DVC stage): the trial of ``ml4dynamics.studies.sweep`` — for
each value of one system parameter (e.g. rd's γ_u), or once at params.yaml's settings, generate the
system's data, fit the manifold model, train every estimator with every seed (TR at every λ of
the grid), roll each closure out on validation and test, choose λ on validation. Writes every
run, the λ choice and the tables (JSON and Markdown).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.layout import Layout
from ml4dynamics.studies.sweep import run
from ml4dynamics.studies.trial_compare import compare
from ml4dynamics.studies.trial_records import merge, render

ARGUMENTS = ("params",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--system", default="rd", help="the system (default: %(default)s)")
    parser.add_argument("--vary", metavar="PARAM", help="a system parameter to sweep (--values)")
    parser.add_argument("--values", type=float, nargs="+", help="the values of --vary")
    parser.add_argument(
        "--gamma-u", type=float, nargs="+", help="rd's gamma_u values (--vary gamma_u --values)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--estimator", action="append", help="estimator names (default: all)")
    parser.add_argument("--n", type=int, help="grid points per side (default: params.yaml)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: params.yaml)")
    parser.add_argument("--batch-size", type=int, help="training batch size (default: params.yaml)")
    parser.add_argument(
        "--lr", type=float, help="the (peak) learning rate of training (default: params.yaml)"
    )
    parser.add_argument(
        "--lam",
        type=float,
        nargs="+",
        help="the λ grid of the TR estimators, chosen on validation (default: reg.SYSTEM.lam)",
    )
    parser.add_argument("--out", help="output (default: sweep/SYSTEM_table.json)")
    parser.add_argument(
        "--compare",
        metavar="JSON",
        nargs="+",
        help="tabulate recorded sweeps side by side (e.g. training budgets) into --out "
        "(Markdown; runs nothing)",
    )
    parser.add_argument(
        "--merge",
        metavar="JSON",
        nargs="+",
        help="one trial from recorded sweeps of the same settings and different seeds or λ "
        "values, into --out (JSON; runs nothing)",
    )
    parser.add_argument(
        "--render",
        metavar="JSON",
        help="rewrite the tables of a recorded sweep from its JSON (runs nothing)",
    )


def main(args: argparse.Namespace) -> int:
    if args.compare:
        if not args.out:
            raise ML4DError("--compare writes a Markdown table: give --out PATH.md")
        command = " ".join(["ml4d sweep --compare", *args.compare, "--out", args.out])
        print(compare([Path(p) for p in args.compare], Path(args.out), command))
        return 0
    if args.merge:
        if not args.out:
            raise ML4DError("--merge writes one trial: give --out PATH_table.json")
        print(merge([Path(p) for p in args.merge], Path(args.out))["table"])
        return 0
    if args.render:
        result = render(Path(args.render))
        print(result["table"])
        return 0
    param, values = args.vary, args.values
    if args.gamma_u is not None:
        if args.system != "rd" or param not in (None, "gamma_u"):
            raise ML4DError("--gamma-u sweeps rd's gamma_u; for another system use --vary/--values")
        param, values = "gamma_u", args.gamma_u
    if (param is None) != (values is None):
        raise ML4DError("--vary PARAM and --values V [V ...] go together")
    result = run(
        args.params,
        values,
        args.seeds,
        args.estimator,
        Path(args.out) if args.out else Layout().trials / f"{args.system}_table.json",
        n=args.n,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lams=args.lam,
        system_name=args.system,
        param=param,
    )
    print(result["table"])
    return 0
