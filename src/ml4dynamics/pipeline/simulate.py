"""Load a closure from the MLflow registry and run the hybrid simulation with its system's own
solver; write the trajectory (u and the predicted closure y) to a zarr store and a PNG beside
it. The registry is MLFLOW_TRACKING_URI, else mlruns/mlflow.db of the repository.

``ml4d simulate``: a downstream hybrid simulation with a closure pulled from the registry.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ml4dynamics import registry
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.outputs import exclusive, lock_beside
from ml4dynamics.datasets.store import write_store
from ml4dynamics.pipeline import print_json
from ml4dynamics.reporting import figures
from ml4dynamics.simulation.downstream import hybrid_simulation, initial_state
from ml4dynamics.simulation.outputs import SIMULATE_MARKER, safe_out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="registry URI, e.g. models:/rd-closure@champion"
    )
    parser.add_argument("--steps", type=int, required=True, help="solver steps to simulate")
    parser.add_argument(
        "--out",
        required=True,
        help="output zarr store, e.g. run.zarr (a new path; see --overwrite), and a PNG beside it",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out (and its PNG) if it is a store an earlier `ml4d simulate` wrote; "
        "anything else is never replaced",
    )
    parser.add_argument("--seed", type=int, help="random initial state from this seed (default 0)")
    parser.add_argument("--init", help="start from the last frame of a trajectory in this store")
    parser.add_argument("--sample", type=int, default=0, help="trajectory of --init (default 0)")
    parser.add_argument(
        "--warmup",
        type=int,
        help="reference-solver steps after a random initial state (default: the training data's)",
    )
    parser.add_argument(
        "--store-every", type=int, default=1, help="store every k-th step (default 1)"
    )
    parser.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="a sample parameter of the trajectory, e.g. --param re=300 --param y0=0.4 "
        "(ns_channel; default: the model's training system, y0 drawn from the seed)",
    )


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


def main(args: argparse.Namespace) -> int:
    if args.seed is not None and args.init is not None:
        raise ML4DError("give either --seed or --init, not both")
    steps, store_every, out = args.steps, args.store_every, Path(args.out)
    if steps < 1:
        raise ML4DError(f"--steps must be >= 1, got {steps}")
    if store_every < 1 or steps % store_every:
        raise ML4DError(
            f"--store-every must be >= 1 and divide --steps ({steps}), got {store_every}"
        )
    if out.suffix != ".zarr":
        raise ML4DError(f"--out must name a .zarr store, got {out}")
    safe_out(out, args.overwrite)
    overrides = _param_overrides(args.param or [])
    seed = 0 if args.seed is None else args.seed
    init = None if args.init is None else Path(args.init)
    model, system, meta = registry.load_registered(args.model)
    resolved = meta.get("registry", {})
    if resolved.get("gates") == "failed":
        print(
            f"ml4d: warning: {args.model} is version {resolved['version']}, which failed its "
            f"gates ({', '.join(resolved['failed_gates']) or 'see its tags'}): the registry "
            "refused it as a champion",
            file=sys.stderr,
        )
    u0, t0, q, origin = initial_state(system, seed, init, args.sample, args.warmup, meta, overrides)
    ds = hybrid_simulation(
        model,
        system,
        u0,
        t0,
        q,
        steps,
        store_every,
        {
            "split": "simulate",
            "created_by": SIMULATE_MARKER,
            "seed": -1 if init is not None else int(seed),
            "model_uri": args.model,
            # what the URI resolved to when this ran (an alias moves; the version does not)
            "model_name": str(resolved.get("name", "")),
            "model_version": int(resolved.get("version", -1)),
            "model_run_id": str(resolved.get("run_id", "")),
            "model_gates": str(resolved.get("gates", "unknown")),
            "estimator": str(meta.get("estimator")),
            "initial_state": origin,
            "steps": steps,
            "store_every": store_every,
            "git_revision": str(meta.get("git_revision", "unknown")),
        },
    )
    with exclusive(lock_beside(out), f"`ml4d simulate --out {out}`"):
        safe_out(out, args.overwrite)  # (again: another process may have written it meanwhile)
        write_store(ds, out)
    png = out.with_suffix(".png")
    fields = [str(f) for f in ds.coords["field"].values] if "field" in ds.coords else []
    frames, times = ds.u.values[0], ds.time.values
    figures.snapshots(
        png,
        times,  # the store's own times (the figure and `ml4d inspect` agree)
        {"hybrid": frames},
        f"{args.model}\nhybrid simulation",  # (two lines: a narrow 1D figure)
        fields,
        figures.spatial_axes(ds),
    )
    print_json(
        {
            "model": args.model,
            "model_version": resolved.get("version"),
            "system": system.name,
            "frames": len(frames),
            "t_start": float(t0),
            "t_end": float(times[-1]),
            "initial_state": origin,
            "out": str(out),
            "figure": str(png),
        }
    )
    return 0
