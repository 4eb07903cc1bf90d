"""The ``ml4d`` command: thin stages over library functions.

Every failure a user can fix ends as one line ``ml4d: error: ...`` on stderr and exit code 2,
with nothing written. Heavy imports (JAX, xarray) happen inside the commands so that ``--help``
is instant.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ml4dynamics.errors import ML4DError

EXIT_USER_ERROR = 2
PARAMS_HELP = "parameter file (default: %(default)s)"
ESTIMATOR_HELP = "estimator name under `estimators` in params.yaml, e.g. ols or tr-projector"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line that says where to look."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message}; see `{self.prog} --help`\n")


def _cmd_generate(args: argparse.Namespace) -> int:
    from ml4dynamics.config import SPLITS, load_params
    from ml4dynamics.datasets import generate_split, write_datasets
    from ml4dynamics.datasets.generation import GENERATION_CODE
    from ml4dynamics.provenance import provenance

    setup = load_params(args.params).setup(args.system)  # validates the whole file first
    out = Path(args.out) if args.out else Path("data") / args.system
    prov = provenance(".", GENERATION_CODE)
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


def _cmd_fit_manifold(args: argparse.Namespace) -> int:
    from ml4dynamics.pipeline import manifold

    result = manifold.run(
        args.system,
        args.params,
        Path("data") / args.system,
        Path("models") / args.system / "manifold",
        Path("metrics") / args.system / "manifold.json",
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from ml4dynamics.pipeline import train

    models = Path("models") / args.system
    result = train.run(
        args.system,
        args.estimator,
        args.params,
        Path("data") / args.system,
        models / "manifold",
        models / "closures" / args.estimator,
        models / "checkpoints" / args.estimator,
        Path("metrics") / args.system / "train" / f"{args.estimator}.json",
        Path("plots") / args.system / "train",
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ml4dynamics.pipeline import evaluate

    models = Path("models") / args.system
    result = evaluate.run(
        args.system,
        args.estimator,
        args.params,
        Path("data") / args.system,
        models / "manifold",
        models / "closures" / args.estimator,
        Path("metrics") / args.system / "evaluate" / f"{args.estimator}.json",
        Path("plots") / args.system / "evaluate" / args.estimator,
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_promote(args: argparse.Namespace) -> int:
    from ml4dynamics.pipeline import promote

    report = promote.run(
        args.system,
        args.params,
        Path("data") / args.system,
        Path("models") / args.system / "closures",
        Path("metrics") / args.system / "evaluate",
        Path("metrics") / args.system / "promotion.json",
    )
    print(json.dumps(report["champion"]))
    return 0


def _param_overrides(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = float(value)
        except ValueError:
            raise ML4DError(f"--param {item!r}: write NAME=NUMBER, e.g. --param re=300") from None
    return out


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ml4dynamics.pipeline import simulate

    if args.seed is not None and args.init is not None:
        raise ML4DError("give either --seed or --init, not both")
    result = simulate.run(
        args.model,
        args.steps,
        Path(args.out),
        seed=0 if args.seed is None else args.seed,
        init=None if args.init is None else Path(args.init),
        sample=args.sample,
        store_every=args.store_every,
        warmup=args.warmup,
        params=_param_overrides(args.param or []),
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_benchmark(args: argparse.Namespace) -> int:
    from ml4dynamics.pipeline import benchmark

    if args.action == "build":
        if args.model:
            raise ML4DError("`ml4d benchmark build` takes no --model; use `ml4d benchmark score`")
        recipe = benchmark.build(args.params, Path(args.out), args.system or None)
        print(f"built {args.out} for {', '.join(recipe['systems'])}; tracked by data.dvc")
        print("commit data.dvc and data/.gitignore; `dvc push` shares it through the remote")
        return 0
    if not args.model:
        raise ML4DError("`ml4d benchmark score` needs --model models:/<system>-closure@<alias>")
    benchmark.score(args.model, Path(args.out), Path(args.scores))
    print(f"wrote {args.scores}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ml4dynamics.pipeline import sweep

    result = sweep.run(
        args.params,
        args.gamma_u,
        args.seeds,
        args.estimator,
        Path(args.out),
        n=args.n,
        epochs=args.epochs,
    )
    print(result["table"])
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from ml4dynamics.pipeline import bench

    models = Path("models") / args.system
    out = Path(args.out or f"bench/{args.system}_train_step.json")
    report = bench.time_steps(
        args.system, args.params, Path("data") / args.system, models / "manifold", out
    )
    print(json.dumps(report, indent=2))
    return 0


def _cmd_linear_theory(args: argparse.Namespace) -> int:
    from ml4dynamics.pipeline import linear_theory

    result = linear_theory.run(
        args.params, Path("data") / "linear", Path("metrics") / "linear_theory.json", Path("plots")
    )
    print(json.dumps(result, indent=2))
    return 0


def _cmd_shift_correlation(args: argparse.Namespace) -> int:
    from ml4dynamics.pipeline import shift_correlation

    dirs = [Path("metrics") / system / "evaluate" for system in args.system]
    result = shift_correlation.run(dirs, Path(args.out))
    print(json.dumps(result, indent=2))
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
    gen.add_argument("system", help="system name: linear, rd or ns_channel")
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

    fm = sub.add_parser(
        "fit-manifold",
        help="train the autoencoder whose reconstruction error F measures distribution shift",
        description="Train the autoencoder (E, D) on data/SYSTEM/train.zarr; write "
        "models/SYSTEM/manifold and metrics/SYSTEM/manifold.json; log an MLflow run.",
    )
    fm.add_argument("system", help="system name: linear, rd or ns_channel")
    fm.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    fm.set_defaults(func=_cmd_fit_manifold)

    tr = sub.add_parser(
        "train",
        help="train the closure with one of the estimators in params.yaml (ols/mols/aols/tr)",
        description="Train the closure on data/SYSTEM with estimator ESTIMATOR of params.yaml "
        "`estimators` (TR weight from `reg`); checkpoint to models/SYSTEM/checkpoints/ESTIMATOR "
        "(resumes after SIGINT/SIGTERM), export models/SYSTEM/closures/ESTIMATOR, write "
        "metrics/SYSTEM/train/ESTIMATOR.json and plots/SYSTEM/train/; log to MLflow.",
    )
    tr.add_argument("system", help="system name: linear, rd or ns_channel")
    tr.add_argument("--estimator", required=True, help=ESTIMATOR_HELP)
    tr.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    tr.set_defaults(func=_cmd_train)

    ev = sub.add_parser(
        "evaluate",
        help="hybrid rollouts of a trained closure on test and ood: errors, stability, shift",
        description="Roll the closure models/SYSTEM/closures/ESTIMATOR out (un-nudged, float64, "
        "with the system's own step) from the first frame of every test and ood trajectory; "
        "write metrics/SYSTEM/evaluate/ESTIMATOR.json, per-frame curves and figures under "
        "plots/SYSTEM/evaluate/ESTIMATOR/, and log them to the model's MLflow run.",
    )
    ev.add_argument("system", help="system name: linear, rd or ns_channel")
    ev.add_argument("--estimator", required=True, help=ESTIMATOR_HELP)
    ev.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    ev.set_defaults(func=_cmd_evaluate)

    pr = sub.add_parser(
        "promote",
        help="register the evaluated closures of a system; move `champion` past the gates",
        description="For every metrics/SYSTEM/evaluate/ESTIMATOR.json: register the closure as "
        "a version of SYSTEM-closure (MLflow models-from-code pyfunc, once per closure), alias "
        "it `candidate`, run the gates of params.yaml `promote` and move `champion` to it only "
        "if all pass. Writes metrics/SYSTEM/promotion.json; gate results become version tags.",
    )
    pr.add_argument("system", help="system name: linear, rd or ns_channel")
    pr.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    pr.set_defaults(func=_cmd_promote)

    si = sub.add_parser(
        "simulate",
        help="run a hybrid simulation with a registered closure (models:/rd-closure@champion)",
        description="Load a closure from the MLflow registry and run the hybrid simulation "
        "with its system's own solver; write the trajectory (u and the predicted closure y) "
        "to a zarr store and a PNG beside it. The registry is MLFLOW_TRACKING_URI, else "
        "mlruns/mlflow.db of the repository.",
    )
    si.add_argument("--model", required=True, help="registry URI, e.g. models:/rd-closure@champion")
    si.add_argument("--steps", type=int, required=True, help="solver steps to simulate")
    si.add_argument("--out", required=True, help="output zarr store, e.g. run.zarr")
    si.add_argument("--seed", type=int, help="random initial state from this seed (default 0)")
    si.add_argument("--init", help="start from the last frame of a trajectory in this zarr store")
    si.add_argument("--sample", type=int, default=0, help="trajectory of --init (default 0)")
    si.add_argument(
        "--warmup",
        type=int,
        help="exact-closure steps after a random initial state (default: the training data's)",
    )
    si.add_argument("--store-every", type=int, default=1, help="store every k-th step (default 1)")
    si.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a sample parameter of the trajectory, e.g. --param re=300 --param y0=0.4 "
        "(ns_channel; default: the model's training system, y0 drawn from the seed)",
    )
    si.set_defaults(func=_cmd_simulate)

    bm = sub.add_parser(
        "benchmark",
        help="the frozen golden benchmark: build it once (data.dvc), score registry versions on it",
        description="`build`: generate reference test/ood trajectories of every system (seeds "
        "+1000) into data/benchmark with their recipe, and track them as data.dvc (refuses to "
        "overwrite). `score`: roll registered closures out on it with the recipe's evaluation "
        "settings; write the scores as JSON and log them to MLflow.",
    )
    bm.add_argument("action", choices=("build", "score"), help="build or score")
    bm.add_argument("--model", action="append", help="registry URI to score (repeatable)")
    bm.add_argument("--system", action="append", help="build: only these systems (repeatable)")
    bm.add_argument("--out", default="data/benchmark", help="benchmark dir (default: %(default)s)")
    bm.add_argument(
        "--scores", default="benchmark_scores.json", help="score: output (default: %(default)s)"
    )
    bm.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    bm.set_defaults(func=_cmd_benchmark)

    sw = sub.add_parser(
        "sweep",
        help="the paper's rd table: error at t = report_time vs gamma_u, every estimator x seed",
        description="For each gamma_u: generate rd data with the exact solver, fit the "
        "autoencoder, train every estimator with every seed and roll out on the test split. "
        "Writes every run and a mean +- std table (JSON and Markdown).",
    )
    sw.add_argument("--gamma-u", type=float, nargs="+", required=True, help="gamma_u values")
    sw.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    sw.add_argument("--estimator", action="append", help="estimator names (default: all)")
    sw.add_argument("--n", type=int, help="grid points per side (default: params.yaml)")
    sw.add_argument("--epochs", type=int, help="training epochs (default: params.yaml)")
    sw.add_argument("--out", default="sweep/rd_table.json", help="output (default: %(default)s)")
    sw.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    sw.set_defaults(func=_cmd_sweep)

    lt = sub.add_parser(
        "linear-theory",
        help="the paper's linear experiment: hybrid terminal error vs λ for OLS, mOLS and TR",
        description="Closed-form OLS, mOLS and TR estimators on data/linear for every λ in "
        "params.yaml `linear_theory`, rolled out with the system's step; writes "
        "metrics/linear_theory.json and plots/linear_theory.{csv,png}.",
    )
    lt.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    lt.set_defaults(func=_cmd_linear_theory)

    sc = sub.add_parser(
        "shift-correlation",
        help="rank correlation between distribution shift and rollout error over all evaluations",
        description="Spearman's rank correlation between the excess shift and the error at the "
        "horizon over every evaluated (closure, split or swept parameter value) of the given "
        "systems, read from metrics/SYSTEM/evaluate; blown-up units are counted, not ranked.",
    )
    sc.add_argument("system", nargs="+", help="systems whose evaluations to pool, e.g. rd")
    sc.add_argument("--out", default="metrics/shift_correlation.json", help="output JSON")
    sc.set_defaults(func=_cmd_shift_correlation)

    be = sub.add_parser(
        "bench",
        help="time one training step of every estimator (OLS, mOLS, aOLS, TR both forms)",
        description="Time one optimisation step of each estimator on data/SYSTEM side by side "
        "and write the medians and their ratios to OLS as JSON. Needs the generate and "
        "fit_manifold outputs (`dvc repro fit_manifold@SYSTEM`).",
    )
    be.add_argument("system", nargs="?", default="rd", help="system name (default: rd)")
    be.add_argument("--params", default="params.yaml", help=PARAMS_HELP)
    be.add_argument("--out", help="output (default: bench/SYSTEM_train_step.json)")
    be.set_defaults(func=_cmd_bench)

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


def enable_compilation_cache() -> None:
    """Keep JAX's compiled programs between runs (a sweep of `dvc exp run` recompiles the same
    training step otherwise): ``$ML4D_CACHE_DIR/jax``, default ``~/.cache/ml4dynamics/jax``.
    JAX keys entries by program, options and version, so a stale entry is never used."""
    root = os.environ.get("ML4D_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ml4dynamics"
    )
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(root) / "jax"))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    enable_compilation_cache()
    try:
        return args.func(args)
    except ML4DError as err:
        print(f"ml4d: error: {err}", file=sys.stderr)
        signum = getattr(err, "signum", None)  # interrupted training: the shell's convention
        return 128 + signum if signum else EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
