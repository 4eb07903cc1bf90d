"""`build`: generate reference test/ood trajectories of every system (seeds +1000) into
data/benchmark with their recipe, and track them as data.dvc (refuses to overwrite). `score`:
roll registered closures out on it with the recipe's evaluation settings; write the scores as
JSON and log them to MLflow.

``ml4d golden`` (a command, not a DVC stage): the frozen golden benchmark
(``data/benchmark``, tracked by the top-level ``data.dvc``).

``build`` generates reference trajectories once — the test and ood splits of every system in
params.yaml, with seeds of their own so they never coincide with pipeline data — and stores the
recipe beside them (``recipe.yaml``: every parameter, the evaluation settings, the code revision,
the command). It then tracks the directory with DVC as ``data.dvc``; from then on the benchmark
changes only if someone rebuilds it on purpose, and its DVC hash says which one a score used.

``score`` rolls registered closures out on it with the settings of the recipe (not of the
current params.yaml, which may have moved on), scores them as ``ml4d evaluate`` and promotion do
(one ``EvaluationResult`` each: a chaotic system at the report time) and logs the results to
MLflow, so versions registered months apart compare on the same trajectories. The shift metric
needs an autoencoder and is not part of the benchmark: the manifold is retrained with the data,
the benchmark is not.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ml4dynamics import registry
from ml4dynamics.config import SCORED_SPLITS, SPLITS, SystemSetup, load_params
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.layout import Layout
from ml4dynamics.core.outputs import write_json
from ml4dynamics.core.provenance import provenance
from ml4dynamics.core.tracking import Run
from ml4dynamics.core.validation import parse
from ml4dynamics.datasets import generate_split, open_splits, write_datasets
from ml4dynamics.datasets.generation import GENERATION_CODE
from ml4dynamics.datasets.pairs import system_of
from ml4dynamics.evaluation.config import EvaluateConfig, evaluate_config
from ml4dynamics.evaluation.result import EvaluationResult
from ml4dynamics.evaluation.rollouts import evaluate_closure
from ml4dynamics.models.io import model_identity

BENCHMARK_SPLITS = SCORED_SPLITS
SEED_OFFSET = 1000  # benchmark seeds: the pipeline's seeds + 1000 (distinct trajectories)
RECIPE = "recipe.yaml"


def _benchmark_setup(setup: SystemSetup) -> SystemSetup:
    splits = {
        split: dataclasses.replace(
            getattr(setup.data, split), seed=getattr(setup.data, split).seed + SEED_OFFSET
        )
        for split in SPLITS
    }
    return dataclasses.replace(setup, data=dataclasses.replace(setup.data, **splits))


def build(params_path: str, out: Path, systems: list[str] | None, track: bool = True) -> dict:
    """Generate the benchmark under ``out`` and track it as ``data.dvc`` (refuses to overwrite:
    the benchmark is frozen; delete it and its .dvc file on purpose to rebuild)."""
    if out.exists():
        raise ML4DError(
            f"{out} exists: the benchmark is frozen. To rebuild it on purpose, run "
            f"`dvc remove data.dvc && rm -rf {out}` first"
        )
    if track and Path("data.dvc").is_file():
        raise ML4DError(
            "data.dvc already tracks the benchmark: fetch it with `dvc pull data.dvc` (needs "
            "the team's DVC remote), or run `dvc remove data.dvc` to rebuild it on purpose"
        )
    params = load_params(params_path)
    evaluate = evaluate_config(params)
    names = systems or list(params.systems)
    prov = provenance(".", GENERATION_CODE)
    recipe: dict[str, Any] = {
        "command": f"ml4d golden build --params {params_path} --out {out}",
        "built": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "seed_offset": SEED_OFFSET,
        "evaluate": evaluate.as_dict(),
        **prov,
        "systems": {},
    }
    tmp = out.with_name(f".{out.name}.building")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for name in names:
            setup = _benchmark_setup(params.setup(name))
            datasets = {split: generate_split(setup, split, prov) for split in BENCHMARK_SPLITS}
            write_datasets(datasets, tmp / name)
            recipe["systems"][name] = {
                "system": dataclasses.asdict(setup.system),
                "data": {
                    "warmup_steps": setup.data.warmup_steps,
                    "store_every": setup.data.store_every,
                    "label_noise": setup.data.label_noise,
                    **{s: _fields(getattr(setup.data, s)) for s in BENCHMARK_SPLITS},
                },
            }
        (tmp / RECIPE).write_text(yaml.safe_dump(_plain(recipe), sort_keys=False))
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if track:
        _track(out)
    return recipe


def _fields(config: Any) -> dict[str, Any]:
    """A frozen config's fields (its read-only override mappings as plain dicts)."""
    return {
        f.name: dict(v) if isinstance(v := getattr(config, f.name), Mapping) else v
        for f in dataclasses.fields(config)
    }


def _plain(value: Any) -> Any:
    """Tuples (matrices in system configs) as lists, for YAML."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _track(out: Path) -> None:
    """``dvc add`` the benchmark and keep its .dvc file at the top level as ``data.dvc``."""
    result = subprocess.run(["dvc", "add", str(out)], capture_output=True, text=True)
    if result.returncode != 0:
        raise ML4DError(f"`dvc add {out}` failed: {result.stderr.strip().splitlines()[-1]}")
    made = out.with_name(out.name + ".dvc")
    stage = yaml.safe_load(made.read_text())
    for entry in stage["outs"]:
        entry["path"] = str(out)  # relative to the top level, where data.dvc lives
    Path("data.dvc").write_text(yaml.safe_dump(stage, sort_keys=False))
    made.unlink()


def benchmark_hash(dvc_file: Path = Path("data.dvc")) -> str:
    if not dvc_file.is_file():
        return "untracked"
    return str(yaml.safe_load(dvc_file.read_text())["outs"][0].get("md5", "untracked"))


def score(model_uris: list[str], root: Path, out: Path) -> dict:
    """Score each registered closure on the benchmark; write ``out`` and log to MLflow."""
    recipe_path = root / RECIPE
    if not recipe_path.is_file():
        raise ML4DError(
            f"no benchmark at {root}: fetch it with `dvc pull data.dvc` (needs the team's DVC "
            "remote) or build one with `ml4d golden build`"
        )
    recipe = yaml.safe_load(recipe_path.read_text())
    evaluate = parse(EvaluateConfig, recipe["evaluate"], f"{recipe_path}: evaluate")
    md5 = benchmark_hash()
    report: dict[str, Any] = {"benchmark": str(root), "benchmark_md5": md5, "models": {}}
    for uri in model_uris:
        result = score_model(uri, root, evaluate)
        report["models"][uri] = result.to_json()
        tracker = Run(
            result.system,
            "benchmark",
            f"benchmark {uri}",
            {"model_uri": uri, "benchmark_md5": md5, "evaluate": recipe["evaluate"]},
            tags={"role": "benchmark", "model_uri": uri, "benchmark_md5": md5},
        )
        tracker.log_metrics(
            result.metrics("bench")
            | ({"bench.score": result.score} if result.score is not None else {})
        )
        tracker.end()
        print(f"{uri} ({result.estimator}): score {result.score}")
    write_json(out, report)
    return report


def score_model(uri: str, root: Path, evaluate: EvaluateConfig) -> EvaluationResult:
    """The registered closure ``uri`` rolled out on the benchmark's data of its system under
    ``root`` and scored as every evaluation is (``evaluate_closure``: a chaotic system at the
    report time), with the recipe's settings ``evaluate``."""
    model, system, meta = registry.load_registered(uri)
    data_dir = root / system.name
    if not data_dir.is_dir():
        raise ML4DError(f"the benchmark has no {system.name} data; rebuild it with that system")
    datasets = open_splits(data_dir, BENCHMARK_SPLITS)
    reference = system_of(datasets["test"])
    if reference.state_shape != system.state_shape:
        raise ML4DError(
            f"{uri} closes {system.name} states of shape {system.state_shape}; the "
            f"benchmark's are {reference.state_shape}"
        )
    result, *_ = evaluate_closure(
        datasets,
        model,
        evaluate,
        estimator=meta.get("estimator"),
        closure_fingerprint=model_identity(model, meta),
    )
    return result


ARGUMENTS = ("params",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("build", "score"), help="build or score")
    parser.add_argument("--model", action="append", help="registry URI to score (repeatable)")
    parser.add_argument("--system", action="append", help="build: only these systems (repeatable)")
    parser.add_argument("--out", help="benchmark dir (default: data/benchmark)")
    parser.add_argument(
        "--scores", default="benchmark_scores.json", help="score: output (default: %(default)s)"
    )


def main(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Layout().benchmark
    if args.action == "build":
        if args.model:
            raise ML4DError("`ml4d golden build` takes no --model; use `ml4d golden score`")
        recipe = build(args.params, out, args.system or None)
        print(f"built {out} for {', '.join(recipe['systems'])}; tracked by data.dvc")
        print("commit data.dvc and data/.gitignore; `dvc push` shares it through the remote")
        return 0
    if not args.model:
        raise ML4DError("`ml4d golden score` needs --model models:/<system>-closure@<alias>")
    score(args.model, out, Path(args.scores))
    print(f"wrote {args.scores}")
    return 0
