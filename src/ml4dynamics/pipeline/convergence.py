"""Convergence with resolution of a coarse grid closed by a fine solver (ks, kolmogorov,
burgers): closures trained at several coarse sizes, each beside the plain alias-free solver and
the exact correction on the same grid, with the cost of each; writes
<out-dir>/<system>_convergence.{json,md,png}.

``ml4d convergence ks --coarse 32,64,128 --seeds 3 --estimators ols`` trains with params.yaml's
budget (``--epochs`` scales it) at every size, on data generated at that size from the
system's own splits, and reports the test split's numbers (``studies/convergence.py``). It
refuses to replace earlier outputs unless told ``--overwrite``, and writes all three files or
none.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.outputs import atomic_file
from ml4dynamics.studies.convergence import convergence, figure, tables, verdict

ARGUMENTS = ("system", "params")
SUFFIXES = ("json", "md", "png")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--coarse",
        type=_ints,
        help="coarse grid sizes, comma-separated, each dividing the fine grid, e.g. 32,64,128 "
        "(default: half, once and twice the system's own coarse grid)",
    )
    parser.add_argument(
        "--seeds", type=int, default=3, help="training seeds 0 … N-1 per size (%(default)s)"
    )
    parser.add_argument(
        "--estimators",
        default="ols",
        help="estimator names of params.yaml, comma-separated (%(default)s)",
    )
    parser.add_argument("--epochs", type=int, help="training epochs (default: params.yaml)")
    parser.add_argument("--out-dir", default="bench", help="output folder (%(default)s)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace this command's earlier outputs"
    )
    parser.add_argument(
        "--render",
        action="store_true",
        help="rewrite the table, figure and verdict from the recorded JSON in --out-dir "
        "(runs nothing)",
    )


def main(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        raise ML4DError(f"--seeds {args.seeds}: give the number of training seeds, >= 1")
    if args.epochs is not None and args.epochs < 1:
        raise ML4DError(f"--epochs {args.epochs}: give a number of epochs >= 1")
    names = [n for n in args.estimators.split(",") if n]
    if not names:
        raise ML4DError("--estimators: name at least one estimator of params.yaml, e.g. ols")
    paths = [Path(args.out_dir) / f"{args.system}_convergence.{s}" for s in SUFFIXES]
    if args.render:
        return _render(paths, args.overwrite)
    _refuse_existing(paths, args.overwrite)
    result = convergence(
        args.params,
        args.system,
        args.coarse,
        list(range(args.seeds)),
        names,
        epochs=args.epochs,
    )
    command = _command(args, result["settings"]["sizes"], names)
    result = {"command": command, **result}
    _refuse_existing(paths, args.overwrite)  # (again: another process may have written them)
    _write(result, paths)
    return 0


def _render(paths: list[Path], overwrite: bool) -> int:
    if not paths[0].is_file():
        raise ML4DError(f"--render: no recorded {paths[0]}; run the study first")
    _refuse_existing(paths[1:], overwrite)
    result = json.loads(paths[0].read_text())
    result["verdict"] = verdict(result)  # derived, like the table: the numbers stay as recorded
    _write(result, paths)
    return 0


def _write(result: dict, paths: list[Path]) -> None:
    """The JSON, the table and the figure: all of them or none."""
    with (
        atomic_file(paths[0]) as js,
        atomic_file(paths[1]) as md,
        atomic_file(paths[2]) as png,
    ):
        js.write_text(json.dumps(result, indent=2) + "\n")
        md.write_text(_heading(result) + tables(result) + "\n" + result["verdict"] + "\n")
        figure(result, png)
    print(tables(result))
    print(result["verdict"])


def _heading(result: dict) -> str:
    s = result["settings"]
    return (
        f"`{result['command']}`: closures trained at n = {', '.join(map(str, s['sizes']))} "
        f"coarse points ({', '.join(s['estimators'])}; {s['epochs']} epochs, seeds "
        f"{', '.join(map(str, s['seeds']))}; data generated at each n from {result['system']}'s "
        f"params.yaml splits, fine grid {result['fine']['n']}), against the alias-free plain "
        f"solver and the exact correction (oracle), on the test split's "
        f"{s['test_trajectories']} trajectories; time ρ ≥ 0.8: mean time the centred "
        f"correlation with the truth stays >= 0.8 (to t = {result['horizon']:g}); cost: "
        f"{s['timing']}, {s['backend']}, one run.\n\n"
    )


def _command(args: argparse.Namespace, sizes: list[int], names: list[str]) -> str:
    parts = ["ml4d convergence", args.system, "--coarse", ",".join(map(str, sizes))]
    parts += ["--seeds", str(args.seeds), "--estimators", ",".join(names)]
    if args.epochs is not None:
        parts += ["--epochs", str(args.epochs)]
    if args.params != "params.yaml":
        parts += ["--params", args.params]
    return " ".join(parts)


def _refuse_existing(paths: list[Path], overwrite: bool) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing and not overwrite:
        raise ML4DError(
            f"{existing[0]} exists; pass --overwrite to replace it (or choose another --out-dir)"
        )


def _ints(text: str) -> list[int]:
    try:
        return [int(n) for n in text.split(",")]
    except ValueError:
        raise ML4DError(f"--coarse {text!r}: write coarse sizes as 32,64,128") from None
