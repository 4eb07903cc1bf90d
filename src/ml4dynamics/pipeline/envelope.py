"""Measure where a registered closure can be trusted over the physical parameters of its system
(``ml4dynamics.evaluation.envelope``): JSON and a figure, logged on the model version, a
summary in its tags and model card.

``ml4d envelope MODEL_URI`` (e.g. ``models:/rd-closure/3``) writes ``envelope/NAME-vN.json``
(or ``--out``) and a PNG beside it. ``ml4d envelope SYSTEM`` (stage ``envelope``) measures the
system's champion and writes ``metrics/SYSTEM/envelope.json`` and ``plots/SYSTEM/envelope.png``;
where those already hold the envelope of the same closure, settings and code, it records them
on the version again instead of rolling out anew (the stage runs on every ``dvc repro``: a
fresh registry's champion gets its envelope without a second scan).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ml4dynamics import registry
from ml4dynamics.config import load_params
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.layout import Layout
from ml4dynamics.core.outputs import atomic_file, fingerprint, write_json
from ml4dynamics.evaluation import envelope as env
from ml4dynamics.evaluation.config import envelope_config, evaluate_config
from ml4dynamics.evaluation.envelope_rollouts import score_point
from ml4dynamics.learning.closure_training import frozen
from ml4dynamics.models.io import load_model
from ml4dynamics.pipeline import print_json
from ml4dynamics.registry import envelope_record, gates
from ml4dynamics.reporting.envelope_map import envelope_map
from ml4dynamics.simulation.outputs import dvc_tracked
from ml4dynamics.systems import SYSTEMS

ARGUMENTS = ("params",)

#: the code whose change changes an envelope's numbers (its key; the stage's DVC deps)
CODE = ("datasets", "evaluation", "models", "simulation", "systems")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "system",
        metavar="SYSTEM|MODEL_URI",
        help="a system, whose champion is measured where the pipeline keeps it "
        "(metrics/SYSTEM/envelope.json), or a registry URI (models:/rd-closure/3)",
    )
    parser.add_argument(
        "--out", help="output JSON for a MODEL_URI (default envelope/NAME-vN.json); PNG beside it"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier --out")
    parser.add_argument(
        "--points",
        action="append",
        metavar="NAME=COUNT",
        help="grid values over a parameter's range, e.g. --points gamma_u=9 (default: "
        "params.yaml envelope.points.SYSTEM; a parameter not named stays at its training value)",
    )
    parser.add_argument("--refinements", type=int, help="points the refinement may add")
    parser.add_argument("--trajectories", type=int, help="reference trajectories per point")
    parser.add_argument(
        "--manifold",
        help="manifold model that measures the shift (default: this workspace's "
        "models/SYSTEM/manifold where it exists; without one the shift is not measured)",
    )


def main(args: argparse.Namespace) -> int:
    layout, params = Layout(), load_params(args.params)
    stage = args.system in SYSTEMS
    uri = (
        f"models:/{registry.registered_name(args.system)}@{registry.CHAMPION}"
        if stage
        else args.system
    )
    if not uri.startswith("models:/"):
        raise ML4DError(
            f"{args.system!r} is neither a registry URI (models:/rd-closure@champion) nor a "
            f"system ({', '.join(SYSTEMS)})"
        )
    if stage:
        out, png = layout.envelope(args.system), layout.envelope_plot(args.system)
        table = layout.envelope_table(args.system)
        if (
            registry.version_by_alias(registry.registered_name(args.system), registry.CHAMPION)
            is None
        ):
            return _no_champion(args.system, out, png, table)
    model, system, meta = registry.load_registered(uri)
    if not system.physical_params:
        raise ML4DError(f"{system.name} declares no physical parameters: it has no envelope")
    version = meta["registry"]
    name, number = version["name"], version["version"]
    if not stage:
        out = Path(args.out or f"envelope/{name}-v{number}.json")
        if out.suffix != ".json":
            raise ML4DError(f"--out must name a .json file, got {out}")
        png, table = out.with_suffix(".png"), out.with_suffix(".md")
        _free(out, png, table, args.overwrite)
    settings, axes, rules = _settings(args, params, system)
    trained = {a.name: float(getattr(system.config, a.name)) for a in axes}
    manifold_dir = Path(args.manifold) if args.manifold else layout.manifold(system.name)
    reconstruct = _manifold(manifold_dir, system, explicit=args.manifold is not None)
    closure_id = (
        registry.client()
        .get_model_version(name, str(number))
        .tags.get("closure_fingerprint", version["run_id"])
    )
    package = Path(__file__).parents[1]
    key = fingerprint(  # the sources only: compiled files differ between machines and clones
        {"closure": closure_id, "settings": settings, "shift": reconstruct is not None},
        sorted(p for part in CODE for p in (package / part).rglob("*.py")),
    )
    envelope = _reused(out, key) if stage else None
    if envelope is None:
        envelope = _measure(model, system, meta, axes, trained, rules, settings, reconstruct)
        envelope |= {"key": key, "model": {"name": name, "version": number, "uri": uri}}
    else:
        envelope["model"] = {"name": name, "version": number, "uri": uri}
    envelope_map(png, envelope)  # (drawn from the JSON either way: the figure's code may change)
    write_json(out, envelope)
    write_text(table, env.markdown(envelope))
    _record(name, number, envelope, png)
    print_json(
        {
            "model": f"{name} v{number}",
            "points": len(envelope["points"]),
            "untrusted": sum(not p["trusted"] for p in envelope["points"]),
            "trusted_range": envelope["trusted_range"],
            "holes": envelope["holes"],
            "out": str(out),
            "figure": str(png),
            "table": str(table),
        }
    )
    return 0


def _free(out: Path, png: Path, table: Path, overwrite: bool) -> None:
    """Refuse (one line, before anything runs) an --out that DVC tracks, or that exists
    without --overwrite, or that --overwrite would replace though it is not an envelope."""
    tracked = dvc_tracked(out)
    if tracked is not None:
        raise ML4DError(f"--out {out}: DVC tracks {tracked}; choose a path outside its outputs")
    existing = [p for p in (out, png, table) if p.exists() or p.is_symlink()]
    if existing and not overwrite:
        raise ML4DError(
            f"--out {out}: {existing[0]} already exists; choose another --out, or pass "
            "--overwrite to replace an earlier envelope"
        )
    if existing and (not out.is_file() or "trusted_range" not in _json(out)):
        raise ML4DError(
            f"--out {out}: {existing[0]} is not an envelope `ml4d envelope` wrote, so it is not "
            "replaced even with --overwrite; choose another --out"
        )


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _settings(args, params, system):
    config = envelope_config(params)
    evaluate = evaluate_config(params, system.name)
    thresholds = gates.configured(params)
    counts = dict(config.points.get(system.name, {}))
    for item in args.points or []:
        pname, sep, count = item.partition("=")
        if not sep or not count.isdigit() or int(count) < 2:
            raise ML4DError(f"--points {item!r}: write NAME=COUNT with COUNT >= 2, e.g. gamma_u=9")
        if pname not in system.physical_params:
            known = ", ".join(system.physical_params)
            raise ML4DError(
                f"--points {pname}: not a physical parameter of {system.name} ({known})"
            )
        counts[pname] = int(count)
    if not counts:
        raise ML4DError(
            f"no parameter of {system.name} to scan: set envelope.points.{system.name} in "
            f"params.yaml or give --points NAME=COUNT ({', '.join(system.physical_params)})"
        )
    axes = [
        env.Axis(n, p.low, p.high, p.log, p.integer, counts[n])
        for n, p in system.physical_params.items()
        if n in counts
    ]
    rules = env.Rules(
        max_error=thresholds["max_error"],
        max_shift=thresholds["max_shift"],
        refinements=config.refinements if args.refinements is None else args.refinements,
        error_jump=config.error_jump,
    )
    if rules.refinements < 0 or (args.trajectories is not None and args.trajectories < 1):
        raise ML4DError("--refinements must be >= 0 and --trajectories >= 1")
    settings = {
        "trajectories": args.trajectories or config.trajectories,
        "seed": config.seed,
        "report_time": evaluate.report_time,
        "bound": evaluate.bound,
        "max_error": rules.max_error,
        "max_shift": rules.max_shift,
        "refinements": rules.refinements,
        "error_jump": rules.error_jump,
        "points": counts,
    }
    return settings, axes, rules


def _manifold(directory: Path, system, explicit: bool):
    if not (directory / "model.json").is_file():
        if explicit:
            raise ML4DError(f"--manifold {directory}: no manifold model there (no model.json)")
        return None
    manifold, _ = load_model(directory, "manifold", system.state_field)
    return frozen(manifold)


def _reused(out: Path, key: str) -> dict[str, Any] | None:
    old = _json(out)
    return old if old.get("key") == key else None


def _measure(model, system, meta, axes, trained, rules, settings, reconstruct) -> dict[str, Any]:
    start = time.perf_counter()

    def evaluate(values):
        return score_point(
            model,
            system,
            values,
            data=meta["data"],
            trajectories=settings["trajectories"],
            seed=settings["seed"],
            report_time=settings["report_time"],
            bound=settings["bound"],
            reconstruct=reconstruct,
        )

    def progress(entry):
        state = "trusted" if entry["trusted"] else f"untrusted ({entry['why']})"
        print(f"{system.name} {env.describe_point(entry['params'])}: {state}", file=sys.stderr)

    points = env.scan(axes, trained, evaluate, rules, progress)
    return {
        "system": system.name,
        "parameters": {a.name: a.as_dict() for a in axes},
        "training": trained,
        "settings": settings,
        "points": points,
        "trusted_range": env.trusted_ranges(axes, points, trained),
        "holes": env.holes(axes, points),
        "plain_solver": "the coarse solver alone"
        if any(p["plain_error"] is not None for p in points)
        else "none: the reference solver is the plain solver",
        "seconds": round(time.perf_counter() - start, 1),
    }


def _record(name: str, number: int, envelope: dict[str, Any], png: Path) -> None:
    """Log the envelope on the version (where its tags do not hold it yet) and put its
    paragraph into the version's model card."""
    found = registry.client().get_model_version(name, str(number))
    if found.tags.get(f"{envelope_record.PREFIX}key") != envelope["key"]:
        envelope_record.record(name, number, envelope, png)
        found = registry.client().get_model_version(name, str(number))
    card = envelope_record.with_envelope(found.description or "", found.tags)
    if card != (found.description or ""):
        registry.describe(name, number, card)


def write_text(path: Path, text: str) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def _no_champion(system: str, out: Path, png: Path, table: Path) -> int:
    """The stage's outputs where the system has no champion: nothing to measure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reason = f"{registry.registered_name(system)} has no champion: no envelope measured"
    write_json(out, {"system": system, "champion": None, "reason": reason, "points": []})
    write_text(table, reason + ".\n")
    fig, ax = plt.subplots(figsize=(6, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, reason, ha="center", va="center")
    with atomic_file(png) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    print(f"ml4d: warning: {reason}", file=sys.stderr)
    print_json({"system": system, "champion": None})
    return 0
