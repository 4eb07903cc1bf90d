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
from ml4dynamics.core.errors import ConfigError, ML4DError
from ml4dynamics.core.outputs import exclusive, lock_beside
from ml4dynamics.datasets.store import write_store
from ml4dynamics.evaluation.envelope import describe_point, verdict
from ml4dynamics.pipeline import print_json
from ml4dynamics.registry import envelope_record
from ml4dynamics.reporting import figures
from ml4dynamics.simulation.downstream import hybrid_simulation, initial_state
from ml4dynamics.simulation.outputs import SIMULATE_MARKER, safe_out
from ml4dynamics.systems import SYSTEMS


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
        help="a physical parameter of the system, e.g. --param gamma_u=0.1 (rd), --param "
        "re=300 --param y0=0.4 (ns_channel; default: the model's training system, y0 drawn from "
        "the seed); outside the closure's validity envelope it warns and runs",
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


def _known_params(uri: str, overrides: dict[str, float], system=None) -> None:
    """One line for a --param the system does not have (``system`` None: the one the registered
    name names, where it names one)."""
    if system is None:
        name = uri.removeprefix("models:/").split("@")[0].split("/")[0].removesuffix("-closure")
        if name not in SYSTEMS:
            return
        cls = SYSTEMS[name]
    else:
        cls = type(system)
    unknown = sorted(set(overrides) - set(cls.physical_params) - set(cls.sample_params))
    if unknown:
        known = ", ".join(dict.fromkeys([*cls.physical_params, *cls.sample_params])) or "none"
        raise ML4DError(
            f"--param {unknown[0]}: {cls.name} has no such parameter; its parameters are: {known}"
        )


def _outside_envelope(uri: str, resolved: dict, values: dict, trained: dict) -> str | None:
    """Why the physical parameters ``values`` are outside the closure's trusted region (one
    line naming the nearest trusted point), or None inside it."""
    at = describe_point(values)
    where = f"{resolved.get('name', uri)} v{resolved.get('version', '?')}"
    recorded = (
        envelope_record.recorded(resolved["name"], resolved["version"], resolved["run_id"])
        if resolved.get("run_id")
        else None
    )
    if recorded is None:
        return (
            f"{at}: {where} has no validity envelope (measure one with `ml4d envelope {uri}`); "
            f"it was trained at {describe_point(trained)}"
        )
    inside, nearest = verdict(recorded, values)
    if inside:
        return None
    near = (
        describe_point({k: nearest[k] for k in values if k in nearest})  # in the system's order
        if nearest
        else "none (no point of the envelope is trusted)"
    )
    return f"{at} is outside the validity envelope of {where}; nearest trusted point: {near}"


def _warn_if_refused(uri: str, resolved: dict) -> None:
    if resolved.get("gates") == "failed":
        print(
            f"ml4d: warning: {uri} is version {resolved['version']}, which failed its "
            f"gates ({', '.join(resolved['failed_gates']) or 'see its tags'}): the registry "
            "refused it as a champion",
            file=sys.stderr,
        )


def _at_params(uri: str, system, resolved: dict, overrides: dict[str, float]):
    """The model's system with the physical parameters of ``overrides``; one line on stderr
    where they leave the closure's trusted region."""
    _known_params(uri, overrides, system)
    trained = system.physical_values()
    physical = {k: v for k, v in overrides.items() if k in system.physical_params}
    try:
        system = system.with_physical(physical)
    except ConfigError as err:
        raise ML4DError(f"--param {err.key}={overrides[err.key]:g}: {err.problem}") from None
    if any(v != trained[k] for k, v in physical.items()):
        outside = _outside_envelope(uri, resolved, system.physical_values(), trained)
        if outside:
            print(f"ml4d: warning: {outside}", file=sys.stderr)
    return system


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
    _known_params(args.model, overrides)  # before the model loads: a typo costs nothing
    seed = 0 if args.seed is None else args.seed
    init = None if args.init is None else Path(args.init)
    model, system, meta = registry.load_registered(args.model)
    resolved = meta.get("registry", {})
    system = _at_params(args.model, system, resolved, overrides)
    _warn_if_refused(args.model, resolved)
    sampled = {k: v for k, v in overrides.items() if k in system.sample_params}
    u0, t0, q, origin = initial_state(system, seed, init, args.sample, args.warmup, meta, sampled)
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
