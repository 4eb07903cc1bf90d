"""For each gamma_u: generate rd data with the exact solver, fit the autoencoder, train every
estimator with every seed and roll out on the test split. Writes every run and a mean +- std table
(JSON and Markdown).

``ml4d sweep`` (a command, not a DVC stage): the paper's rd table — error at t = 10 vs γ_u
for every estimator and seed.

For each γ_u: generate train/val/test with the exact solver (the rd settings of params.yaml with
γ_u replaced), fit the autoencoder once, then train every estimator with every seed (the seed of
the network's initialisation and of the batch order; the data stay the same) and roll each
closure out on the test trajectories. Everything runs in one process, so JAX compiles each
program once for the whole sweep. Results: a JSON file with every run and a Markdown table of
mean ± std over seeds.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from ml4dynamics import estimators
from ml4dynamics.closure_training import frozen, train_closure
from ml4dynamics.config import load_params
from ml4dynamics.datasets import generate_split
from ml4dynamics.datasets.generation import GENERATION_CODE
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.errors import ML4DError
from ml4dynamics.evaluation import evaluate_config, evaluate_splits
from ml4dynamics.manifold_fitting import fit_autoencoder
from ml4dynamics.models import build_closure
from ml4dynamics.network_config import network_stage
from ml4dynamics.outputs import write_json
from ml4dynamics.provenance import provenance


def run(
    params_path: str,
    gamma_us: list[float],
    seeds: list[int],
    names: list[str] | None,
    out: Path,
    n: int | None = None,
    epochs: int | None = None,
) -> dict[str, Any]:
    params = load_params(params_path)
    base = params.setup("rd")
    train_stage = network_stage(params, "train", "rd")
    manifold_stage = network_stage(params, "manifold", "rd")
    evaluate = evaluate_config(params)
    names = names or list(estimators.configured(params))
    regs = {name: estimators.estimator(params, name) for name in names}
    if not gamma_us or not seeds:
        raise ML4DError("give at least one --gamma-u and one --seed")
    test_time = base.data.test.steps * base.system.dt
    if test_time < evaluate.report_time:
        raise ML4DError(
            f"rd.data.test spans t = {test_time:g} < evaluate.report_time = "
            f"{evaluate.report_time:g}; lengthen the test split"
        )
    optim = (
        train_stage.optim
        if epochs is None
        else dataclasses.replace(train_stage.optim, epochs=epochs)
    )
    system_cfg = base.system if n is None else dataclasses.replace(base.system, n=n)
    prov = provenance(".", GENERATION_CODE)
    key = f"error_t{evaluate.report_time:g}"
    runs: list[dict[str, Any]] = []
    for gamma_u in gamma_us:
        setup = dataclasses.replace(base, system=dataclasses.replace(system_cfg, gamma_u=gamma_u))
        data = {s: generate_split(setup, s, prov) for s in ("train", "val", "test")}
        system = system_of(data["train"])
        train, val = as_pairs(data["train"]), as_pairs(data["val"])
        manifold, _ = fit_autoencoder(system.state_field, manifold_stage, train["u"], val["u"])
        reconstruct = frozen(manifold)
        for seed in seeds:
            for name, reg in regs.items():
                start = time.perf_counter()
                model = build_closure(
                    train_stage.model, system.state_field, system.closure_field, seed
                )
                train_closure(
                    system,
                    model,
                    reg,
                    dataclasses.replace(optim, seed=seed),
                    train,
                    reconstruct=reconstruct,
                    progress=False,
                )
                summaries, *_ = evaluate_splits(
                    {"test": data["test"]},
                    model,
                    None,
                    evaluate.bound,
                    evaluate.report_time,
                    with_ablation=False,
                )
                summary = summaries["test"]
                row = {
                    "gamma_u": gamma_u,
                    "seed": seed,
                    "estimator": name,
                    "error": summary[key],
                    "error_sq": summary[f"{key}_sq"],
                    "stable_fraction": summary["stable_fraction"],
                    "seconds": round(time.perf_counter() - start, 1),
                }
                runs.append(row)
                print(row, flush=True)
    result = {
        "settings": {
            "n": system_cfg.n,
            "epochs": optim.epochs,
            "report_time": evaluate.report_time,
            "model": dataclasses.asdict(train_stage.model),
            "estimators": {k: dataclasses.asdict(v.config) for k, v in regs.items()},
        },
        "runs": runs,
        "table": table(runs, names, gamma_us),
    }
    write_json(out, result)
    out.with_suffix(".md").write_text(result["table"] + "\n")
    return result


def table(runs: list[dict[str, Any]], names: list[str], gamma_us: list[float]) -> str:
    """Markdown: one row per γ_u, one column per estimator, mean ± std over seeds of the
    relative L2 error (a run that blew up counts as ∞ and is reported as such)."""
    lines = [
        "| γ_u | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for gamma_u in gamma_us:
        cells = []
        for name in names:
            values = [
                np.inf if r["error"] is None else r["error"]
                for r in runs
                if r["gamma_u"] == gamma_u and r["estimator"] == name
            ]
            if not np.isfinite(values).all():
                cells.append(f"blew up in {int(np.sum(~np.isfinite(values)))}/{len(values)}")
            else:
                cells.append(f"{np.mean(values):.3g} ± {np.std(values):.2g}")
        lines.append(f"| {gamma_u:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


ARGUMENTS = ("params",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gamma-u", type=float, nargs="+", required=True, help="gamma_u values")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--estimator", action="append", help="estimator names (default: all)")
    parser.add_argument("--n", type=int, help="grid points per side (default: params.yaml)")
    parser.add_argument("--epochs", type=int, help="training epochs (default: params.yaml)")
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
    )
    print(result["table"])
    return 0
