"""``ml4d timing SYSTEM``: time one optimisation step of each estimator on data/SYSTEM side by
side, with the closure network in float32 and in float64 (``ml4dynamics.studies.step_cost``), and
write the medians, their ratios to OLS and the float64 ÷ float32 ratios as JSON. Needs the generate
and fit_manifold outputs (`dvc repro fit_manifold@SYSTEM`).

``ml4d timing solvers``: our solver steps against the peers (exponax; jax-cfd in 2D) and the FFT
floor, single trajectory and batched, in one run (``ml4dynamics.studies.solver_bench``; needs the
bench extra), to bench/solvers.json.

Not DVC stages (timings are not reproducible bytes); the report stage tabulates bench/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.layout import Layout
from ml4dynamics.pipeline import print_json, system_argument
from ml4dynamics.studies.step_cost import time_steps

ARGUMENTS = ("params",)


def configure(parser: argparse.ArgumentParser) -> None:
    system_argument(
        parser,
        nargs="?",
        default="rd",
        what="`solvers` (our solvers against the peers), or the system whose training step "
        "is timed (default: rd)",
    )
    parser.add_argument(
        "--out", help="output (default: bench/SYSTEM_train_step.json, bench/solvers.json)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is kept")
    parser.add_argument(
        "--steps", type=int, default=None, help="steps per repeat (default: 20; solvers: 200)"
    )
    parser.add_argument("--batch", type=int, default=64, help="solvers: the batch size (64)")
    parser.add_argument(
        "--kolmogorov-n", type=int, default=256, help="solvers: the 2D grid's points per side (256)"
    )
    parser.add_argument(
        "--kolmogorov-batch",
        type=int,
        default=8,
        help="solvers: the 2D batch size (8: the run takes ~1.5 minutes on 2 CPU cores, 64 ~8)",
    )
    parser.add_argument(
        "--kolmogorov-steps", type=int, default=20, help="solvers: 2D steps per repeat (20)"
    )


def main(args: argparse.Namespace) -> int:
    if args.system == "solvers":
        from ml4dynamics.studies.solver_bench import run

        out = Path(args.out or "bench/solvers.json")
        report = run(
            out,
            args.batch,
            args.steps or 200,
            args.repeats,
            args.kolmogorov_n,
            args.kolmogorov_batch,
            args.kolmogorov_steps,
        )
        print_json(report)
        return 0
    args.steps = 20 if args.steps is None else args.steps
    for flag in ("repeats", "steps"):
        if getattr(args, flag) < 1:
            raise ML4DError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    layout = Layout()
    out = Path(args.out or f"bench/{args.system}_train_step.json")
    report = time_steps(
        args.system,
        args.params,
        layout.data(args.system),
        layout.manifold(args.system),
        out,
        repeats=args.repeats,
        steps=args.steps,
    )
    print_json(report)
    return 0
