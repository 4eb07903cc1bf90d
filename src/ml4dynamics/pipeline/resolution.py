"""The plain coarse solver alone at several coarse grids against the fine truth, beside the exact
correction: where a learned closure is needed; writes bench/<system>_resolution.{json,md}
(``..._fine<n>x<substeps>`` with another truth).

``ml4d resolution ks --coarse 128,64,32`` runs the system as params.yaml sets it, on its test
split's trajectories (seed, count, warm-up and length) unless told otherwise, and scores where
evaluation does: at the system's report time (``evaluate``) if it is chaotic, else at the
horizon. A size *needs a closure* where the padded solver alone has decorrelated (ρ < 0.8) or
errs by more than 0.5 there while the exact correction still reproduces the truth
(``studies/resolution.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ml4dynamics.config import load_params
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.outputs import atomic_file, write_json
from ml4dynamics.evaluation.config import evaluate_config
from ml4dynamics.pipeline import print_json
from ml4dynamics.studies.resolution import resolution, table
from ml4dynamics.systems import make_system

ARGUMENTS = ("system", "params")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--coarse",
        required=True,
        type=_sizes,
        help="coarse grid sizes, comma-separated, each dividing the fine grid, e.g. 128,64,32",
    )
    parser.add_argument("--trajectories", type=int, help="default: the test split's count")
    parser.add_argument("--seed", type=int, help="default: the test split's seed")
    parser.add_argument("--horizon", type=float, help="time units; default: the test split's")
    parser.add_argument(
        "--n-fine", type=int, help="the truth's grid instead of params.yaml's (is it converged?)"
    )
    parser.add_argument("--fine-substeps", type=int, help="fine steps per coarse step, likewise")
    parser.add_argument(
        "--out", default="bench", help="folder for <system>_resolution.{json,md} (%(default)s)"
    )


def main(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    setup = params.setup(args.system)
    truth = {"n_fine": args.n_fine, "fine_substeps": args.fine_substeps}
    config = dataclasses.replace(setup.system, **{k: v for k, v in truth.items() if v})
    system = make_system(config)
    test = setup.data.test
    horizon = test.steps * system.dt if args.horizon is None else args.horizon
    result = resolution(
        system,
        args.coarse,
        seed=test.seed if args.seed is None else args.seed,
        trajectories=test.trajectories if args.trajectories is None else args.trajectories,
        warmup=setup.data.warmup_steps,
        horizon=horizon,
        # the time evaluation scores at: the report time if chaotic, else the horizon
        report_time=evaluate_config(params, args.system).report_time if system.chaotic else horizon,
    )
    out, name = Path(args.out), f"{args.system}_resolution"
    if args.n_fine or args.fine_substeps:
        name += f"_fine{config.n_fine}x{config.fine_substeps}"
    write_json(out / f"{name}.json", result)
    with atomic_file(out / f"{name}.md") as tmp:
        tmp.write_text(f"{result['what']}\n\n{table(result)}")
    print_json(result)
    return 0


def _sizes(text: str) -> list[int]:
    try:
        return [int(n) for n in text.split(",")]
    except ValueError:
        raise ML4DError(f"--coarse {text!r}: write coarse sizes as 128,64,32") from None
