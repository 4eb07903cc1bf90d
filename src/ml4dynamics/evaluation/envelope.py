"""Where a closure can be trusted: its validity envelope over the physical parameters of its
system (``ml4d envelope``).

The closure is rolled out (``envelope_rollouts.score_point``) at points of the parameter space
that the system declares (``System.physical_params``): first a grid spanning each parameter's
range, with the closure's training value on it, then points added where the outcome changes
between neighbouring points, so that a narrow hole is found rather than stepped over. Two
points are neighbours when they differ in one parameter only and no evaluated point lies
between them on that line; the interval between them is halved (geometrically on a log scale)
where one is trusted and the other is not, where one blew up, or where their errors differ by
more than ``error_jump`` — a hole too narrow for the grid shows first as a rise of the error at
its neighbours. A change of trust comes before an error jump, an interval on a line through the
training point (where the trusted range of each parameter is read) before the others, and the
widest first, until ``refinements`` points were added or every interval is narrower than
``min_width`` of the range.

A point is *trusted* when every rollout stays bounded to the report time, the mean relative
error at the report time is at most ``max_error``, the excess shift at most ``max_shift``
(where a manifold model measures it) and, where the system has a plain solver of its own (a
coarse grid), the hybrid errs less than that solver — the registry's gates, applied point by
point. Everything here is plain arithmetic on the recorded points: ``verdict`` answers whether
a parameter value lies inside the trusted region (``ml4d simulate --param`` warns if not).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Point = dict[str, float]


@dataclasses.dataclass(frozen=True)
class Axis:
    """One scanned parameter: its range, scale and the number of grid values."""

    name: str
    low: float
    high: float
    log: bool = False
    integer: bool = False
    points: int = 5

    def unit(self, value: float) -> float:
        """``value`` as a fraction of the range (on the log scale where ``log``)."""
        if self.log:
            return (math.log(value) - math.log(self.low)) / (
                math.log(self.high) - math.log(self.low)
            )
        return (value - self.low) / (self.high - self.low)

    def value(self, unit: float) -> float:
        if self.log:
            return math.exp(math.log(self.low) + unit * (math.log(self.high) - math.log(self.low)))
        out = self.low + unit * (self.high - self.low)
        return float(round(out)) if self.integer else out

    def grid(self, trained: float) -> list[float]:
        values = {_clean(self.value(u)) for u in np.linspace(0.0, 1.0, self.points)}
        return sorted(values | {_clean(trained)})

    def as_dict(self) -> dict[str, Any]:
        return {"low": self.low, "high": self.high, "log": self.log, "integer": self.integer}


def _clean(value: float) -> float:
    """A grid value with 6 significant digits (readable in tables and tags)."""
    return float(f"{value:.6g}")


@dataclasses.dataclass(frozen=True)
class Rules:
    """When a point is trusted and where the refinement looks."""

    max_error: float
    max_shift: float
    refinements: int = 6
    error_jump: float = 3.0
    min_width: float = 1.0 / 64

    def judge(self, scores: Mapping[str, Any]) -> tuple[bool, str]:
        """(trusted, why) of a point's scores (``envelope_rollouts.score_point``)."""
        error, shift, plain = scores["error"], scores.get("shift"), scores.get("plain_error")
        if scores.get("reference_failed"):
            return False, "the reference solver does not stay finite here"
        if not scores["stable"]:
            return False, "blew up before the report time"
        if error is None or error > self.max_error:
            return False, f"error {_fmt(error)} > {self.max_error:g}"
        if shift is not None and shift > self.max_shift:
            return False, f"shift {shift:.3g} > {self.max_shift:g}"
        if plain is not None and error >= plain:
            return False, f"the plain solver errs less ({plain:.3g} <= {error:.3g})"
        return True, "within the gates"


def _fmt(value: float | None) -> str:
    return "not finite" if value is None else f"{value:.3g}"


def scan(
    axes: Sequence[Axis],
    trained: Point,
    evaluate: Callable[[Point], dict[str, Any]],
    rules: Rules,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every evaluated point (``params``, how it was placed, its scores, ``trusted``, ``why``):
    the grid, then the refinement."""
    points: list[dict[str, Any]] = []

    def add(params: Point, stage: str) -> None:
        scores = evaluate(params)
        trusted, why = rules.judge(scores)
        entry = {"params": params, "stage": stage, **scores, "trusted": trusted, "why": why}
        points.append(entry)
        if progress is not None:
            progress(entry)

    grids = [axis.grid(trained[axis.name]) for axis in axes]
    for combo in np.array(np.meshgrid(*grids, indexing="ij")).reshape(len(axes), -1).T:
        add({a.name: float(v) for a, v in zip(axes, combo, strict=True)}, "grid")
    for _ in range(rules.refinements):
        split = _widest_change(axes, points, rules, trained)
        if split is None:
            break
        add(split, "refined")
    return points


def _lines(axes: Sequence[Axis], points: Sequence[dict[str, Any]]):
    """For every axis, the points grouped by the values of the other parameters, each group
    sorted along the axis: (axis, sorted points)."""
    for axis in axes:
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for p in points:
            key = tuple(p["params"][a.name] for a in axes if a is not axis)
            groups.setdefault(key, []).append(p)
        for line in groups.values():
            yield axis, sorted(line, key=lambda p: p["params"][axis.name])


def _widest_change(
    axes: Sequence[Axis],
    points: Sequence[dict[str, Any]],
    rules: Rules,
    trained: Point | None = None,
) -> Point | None:
    """The midpoint of the widest interval between neighbours whose outcome changes (a change
    of trust or stability before an error jump; on the lines through the training point, which
    give the trusted ranges, before the others), or None."""
    best: tuple[int, int, float, Point] | None = None
    for axis, line in _lines(axes, points):
        through = trained is not None and all(
            line[0]["params"][a.name] == trained[a.name] for a in axes if a is not axis
        )
        for a, b in zip(line, line[1:], strict=False):
            ua, ub = axis.unit(a["params"][axis.name]), axis.unit(b["params"][axis.name])
            if ub - ua < 2 * rules.min_width:
                continue
            if a["trusted"] != b["trusted"] or a["stable"] != b["stable"]:
                rank = 0
            elif _jump(a["error"], b["error"]) > rules.error_jump:
                rank = 1
            else:
                continue
            mid = _clean(axis.value((ua + ub) / 2))
            if mid in (a["params"][axis.name], b["params"][axis.name]):
                continue  # (whole numbers: nothing between them)
            candidate = (rank, 0 if through else 1, -(ub - ua), {**a["params"], axis.name: mid})
            if best is None or candidate[:3] < best[:3]:
                best = candidate
    return None if best is None else best[3]


def _jump(e1: float | None, e2: float | None) -> float:
    if e1 is None or e2 is None:
        return math.inf if (e1 is None) != (e2 is None) else 1.0
    low, high = sorted((abs(e1), abs(e2)))
    return math.inf if low == 0 and high > 0 else (high / low if low else 1.0)


def trusted_ranges(
    axes: Sequence[Axis], points: Sequence[dict[str, Any]], trained: Point
) -> dict[str, list[float] | None]:
    """Per parameter, the interval of trusted points around the training value along the line
    through the training point (the others at their training values); None where the training
    point itself is not trusted."""
    out: dict[str, list[float] | None] = {}
    for axis in axes:
        line = sorted(
            (
                p
                for p in points
                if all(p["params"][a.name] == trained[a.name] for a in axes if a is not axis)
            ),
            key=lambda p: p["params"][axis.name],
        )
        at = [i for i, p in enumerate(line) if p["params"][axis.name] == trained[axis.name]]
        if not at or not line[at[0]]["trusted"]:
            out[axis.name] = None
            continue
        lo = hi = at[0]
        while lo > 0 and line[lo - 1]["trusted"]:
            lo -= 1
        while hi < len(line) - 1 and line[hi + 1]["trusted"]:
            hi += 1
        out[axis.name] = [line[lo]["params"][axis.name], line[hi]["params"][axis.name]]
    return out


def holes(axes: Sequence[Axis], points: Sequence[dict[str, Any]]) -> list[Point]:
    """Untrusted points with trusted points on both sides along some line: holes inside the
    region the closure otherwise holds."""
    found: list[Point] = []
    for _, line in _lines(axes, points):
        trust = [p["trusted"] for p in line]
        for i, p in enumerate(line):
            if (
                not p["trusted"]
                and any(trust[:i])
                and any(trust[i + 1 :])
                and p["params"] not in found
            ):
                found.append(p["params"])
    return found


def axes_of(envelope: Mapping[str, Any]) -> list[Axis]:
    """The axes recorded in an envelope's JSON."""
    return [Axis(name, **spec) for name, spec in envelope["parameters"].items()]


def verdict(envelope: Mapping[str, Any], values: Point) -> tuple[bool, Point | None]:
    """(inside the trusted region, the nearest trusted point) for the parameter values
    ``values`` (missing ones at the training values). Inside: within every scanned range, the
    nearest evaluated point is trusted, and along each parameter the evaluated points that
    bracket the value on that point's line are trusted too."""
    axes = axes_of(envelope)
    points = envelope["points"]
    query = {a.name: float(values.get(a.name, envelope["training"][a.name])) for a in axes}

    def distance(p: Mapping[str, Any]) -> float:
        return math.dist(
            [a.unit(query[a.name]) for a in axes], [a.unit(p["params"][a.name]) for a in axes]
        )

    trusted = [p for p in points if p["trusted"]]
    nearest_trusted = min(trusted, key=distance)["params"] if trusted else None
    if not points or any(not a.low <= query[a.name] <= a.high for a in axes):
        return False, nearest_trusted
    nearest = min(points, key=distance)
    if not nearest["trusted"]:
        return False, nearest_trusted
    for axis in axes:
        line = [
            p
            for p in points
            if all(p["params"][a.name] == nearest["params"][a.name] for a in axes if a is not axis)
        ]
        v = query[axis.name]
        below = [p for p in line if p["params"][axis.name] <= v]
        above = [p for p in line if p["params"][axis.name] >= v]
        if not below or not above:
            return False, nearest_trusted
        lo = max(below, key=lambda p: p["params"][axis.name])
        hi = min(above, key=lambda p: p["params"][axis.name])
        if not (lo["trusted"] and hi["trusted"]):
            return False, nearest_trusted
    return True, nearest_trusted


def describe_point(point: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in point.items())


def markdown(envelope: Mapping[str, Any]) -> str:
    """The envelope as Markdown: one sentence saying what was scanned and how, then a row per
    point (in the order of the parameters, the trusted ones marked)."""
    names = sorted(envelope["parameters"])  # (as the JSON keeps them: one table either way)
    s = envelope["settings"]
    model = envelope["model"]
    trained = describe_point({n: envelope["training"][n] for n in names})
    ranges = "; ".join(
        f"{name} {'nowhere' if span is None else f'{span[0]:.3g}–{span[1]:.3g}'}"
        for name, span in sorted(envelope["trusted_range"].items())
    )
    holes = "; ".join(describe_point(h) for h in envelope["holes"]) or "none"
    head = (
        f"The validity envelope of {model['name']} v{model['version']} (trained at {trained}): "
        f"{len(envelope['points'])} points, {s['trajectories']} fresh reference trajectories "
        f"each (seed {s['seed']}), scored at t = {s['report_time']:g}; trusted where every "
        f"rollout stays bounded, the error is <= {s['max_error']:g}, the shift <= "
        f"{s['max_shift']:g} and (where there is one) the plain solver errs more; "
        f"{sum(p['stage'] == 'refined' for p in envelope['points'])} of them placed by "
        f"refinement. Trusted along each parameter through "
        f"the training point: {ranges}. Holes: {holes}. Plain solver: "
        f"{envelope.get('plain_solver', 'none')}.\n\n"
    )
    rows = [[*names, "hybrid error", "plain solver error", "shift", "placed by", "trusted"]]
    rows.append(["---"] * len(rows[0]))
    order = sorted(envelope["points"], key=lambda p: [p["params"][n] for n in names])
    for p in order:
        rows.append(
            [f"{p['params'][n]:g}" for n in names]
            + [_fmt(p["error"]), _opt(p["plain_error"]), _opt(p["shift"]), p["stage"]]
            + ["yes" if p["trusted"] else f"no: {p['why']}"]
        )
    return head + "\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n"


def _opt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"
