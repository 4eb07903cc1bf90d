"""Place registered closures on their plain solver's accuracy–cost curve: the equivalent
resolution and the speed-up at matched accuracy, with bootstrap intervals
(``ml4dynamics.studies.speedup``). Writes bench/SYSTEM_speedup.json and a PNG beside it, and logs
both (and the speed-ups as metrics) to each model's MLflow run.

``ml4d speedup MODEL_URI [MODEL_URI ...]``: e.g. ``ml4d speedup models:/ks-closure@champion``,
or several versions side by side (``models:/ks-closure/1 models:/ks-closure/2``). Not a DVC
stage: timings are not reproducible bytes (the report stage tabulates bench/).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ml4dynamics import registry
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.outputs import write_json
from ml4dynamics.core.tracking import Run
from ml4dynamics.reporting import figures
from ml4dynamics.studies.speedup import default_ladder, speedup, summary_lines


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models", nargs="+", metavar="MODEL_URI", help="registry URIs of one system's closures"
    )
    parser.add_argument(
        "--ladder",
        help="resolutions of the plain solver, comma-separated (default: from the coarse grid "
        "to below the fine one, e.g. 128,144,160,192,224,256,320,384 for ks)",
    )
    parser.add_argument("--trajectories", type=int, default=16, help="reference trajectories (16)")
    parser.add_argument("--horizon", type=float, default=100.0, help="time units rolled out (100)")
    parser.add_argument(
        "--spacing", type=float, default=1.0, help="time between compared frames (1)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        help="fine steps onto the attractor (default: those of the closure's training data)",
    )
    parser.add_argument(
        "--seed", type=int, default=1000, help="initial states (default 1000: not a data seed)"
    )
    parser.add_argument("--steps", type=int, default=1000, help="timed steps per repeat (1000)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; median kept (5)")
    parser.add_argument("--out", help="output JSON (default: bench/SYSTEM_speedup.json)")


def _ladder(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise ML4DError(f"--ladder {text!r}: write resolutions as 128,160,192") from None


def main(args: argparse.Namespace) -> int:
    for flag in ("trajectories", "steps", "repeats"):
        if getattr(args, flag) < 1:
            raise ML4DError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    if args.horizon <= 0 or args.spacing <= 0:
        raise ML4DError("--horizon and --spacing must be > 0")
    loaded = {}
    for uri in args.models:
        model, system, meta = registry.load_registered(uri)
        version = meta.get("registry", {})
        label = f"{meta.get('estimator', '?')} v{version.get('version', '?')}"
        loaded[label] = (uri, model, system, version)
        warmups = meta.get("data", {}).get("warmup_steps")
    systems = {system for _, _, system, _ in loaded.values()}
    if len(systems) > 1:
        raise ML4DError(
            f"{', '.join(args.models)} close different system configurations; compare closures "
            "of one system at a time"
        )
    system = systems.pop()
    warmup = args.warmup if args.warmup is not None else warmups
    if warmup is None:
        raise ML4DError(f"{args.models[-1]} does not record its data's warm-up; give --warmup")
    if warmup < 0:
        raise ML4DError(f"--warmup must be >= 0, got {warmup}")
    ladder = _ladder(args.ladder) if args.ladder else default_ladder(system)
    result = speedup(
        system,
        {label: model for label, (_, model, _, _) in loaded.items()},
        ladder=ladder,
        trajectories=args.trajectories,
        horizon=args.horizon,
        warmup=warmup,
        seed=args.seed,
        spacing=args.spacing,
        steps=args.steps,
        repeats=args.repeats,
    )
    result["models"] = {
        label: {"uri": uri, "version": v.get("version"), "run_id": v.get("run_id")}
        for label, (uri, _, _, v) in loaded.items()
    }
    out = Path(args.out or f"bench/{system.name}_speedup.json")
    write_json(out, result)
    png = figures.speedup(out.with_suffix(".png"), result)
    for label, (_, _, _, version) in loaded.items():
        if not version.get("run_id"):
            continue
        run = Run(system.name, "speedup", label, {}, run_id=version["run_id"])
        metrics = {}
        for level, eq in result["hybrids"][label]["equivalent"].items():
            tag = f"rho{round(float(level) * 100)}"
            metrics[f"speedup.{tag}"] = eq["speedup"]
            metrics[f"speedup.{tag}.equivalent_resolution"] = eq["resolution"]
        run.log_metrics(metrics)
        run.log_artifact(out, "speedup")
        run.log_artifact(png, "speedup")
        run.end(run.previous_status or "FINISHED")
    for line in summary_lines(result):
        print(line)
    print(f"wrote {out} and {png}")
    return 0
