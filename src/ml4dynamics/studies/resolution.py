"""Where a closure is needed: the plain coarse solver alone at several coarse grids, against the
fine truth, beside the exact correction (the oracle), for a spectral coarse grid closed by a fine
solver (``SpectralCoarseGrid``): ``ml4d resolution``.

A closure is worth learning on a coarse grid only where the best plain solver on that grid fails
and the exact closure still holds. For each coarse size n the fine solver runs from
``trajectories`` random states (the same ones at every n, drawn as a split with ``seed`` draws
its first ones: the fine solver does not depend on the coarse grid), ``warmup`` steps onto the
attractor, then ``horizon`` time units, restricted to n points per axis at every step. From the
first restricted state three runs follow:

- **padded alone**: the coarse solver as the system uses it, products zero-padded to 3/2 (every
  mode the grid carries advected), no closure;
- **2/3 alone**: the same solver with Orszag's 2/3 rule, which leaves the top third of the
  carried modes unadvected (what the coarse solver was before; shown for the difference);
- **oracle**: the padded solver plus the exact correction y = (R F(u) − S_c(R u))/Δt at every
  step, which must reproduce the restricted truth to round-off (``correction`` closures).

Per run: the mean relative L2 error and correlation at ``report_time``, the largest error up to
the report time (the oracle's round-off; over a chaotic system's longer horizon it grows like any
perturbation), and the mean time until the centred correlation with the truth first drops below
0.8 (censored at the horizon). A coarse size *needs a closure* when the padded solver alone has,
at the report time, a mean correlation below 0.8 or a mean error above 0.5, and the oracle holds
(largest error up to then ≤ 1e-10).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.datasets.generation import initial_keys
from ml4dynamics.evaluation.metrics import correlation, finite, mean, relative_error
from ml4dynamics.studies.speedup import correlation_times
from ml4dynamics.systems import make_system
from ml4dynamics.systems.coarse_grid import SpectralCoarseGrid

LEVEL = 0.8  # the correlation a run must keep
MAX_ERROR = 0.5  # the error above which a run has failed visibly
ORACLE_TOLERANCE = 1e-10  # the oracle's largest relative error that still counts as exact
RUNS = ("padded", "two_thirds", "oracle")


def check_sizes(system, sizes: Sequence[int]) -> list[int]:
    """The coarse sizes, largest first; one clear error for a system or a size that cannot run."""
    if not isinstance(system, SpectralCoarseGrid) or system.config.closure_kind != "correction":
        raise ML4DError(
            f"`ml4d resolution` needs a spectral coarse grid with the correction closure; "
            f"{system.name} is not one (see `ml4d params` for its settings)"
        )
    fine = system.config.n_fine
    bad = [n for n in sizes if n % 2 or n < 8 or fine % n]
    if bad or not sizes:
        raise ML4DError(
            f"--coarse {','.join(map(str, sizes))}: give even coarse sizes >= 8 that divide the "
            f"fine grid ({fine}), e.g. {fine // 4},{fine // 8}"
        )
    return sorted(set(sizes), reverse=True)


def coarse_runs(system: SpectralCoarseGrid, keys: jax.Array, warmup: int, steps: int) -> dict:
    """The restricted truth and the three runs of ``RUNS`` from its first state, each
    ``(trajectory, step, *grid)`` for steps 1 … ``steps``."""
    two_thirds = system.solver(system.config.n_coarse, system.dt, "two_thirds")

    def one(key: jax.Array) -> dict[str, jax.Array]:
        states, labels = system.reference_trajectory(key, {}, warmup, steps, 1)

        def advance(carry: dict[str, jax.Array], y: jax.Array):
            nxt = {
                "padded": system.step(carry["padded"], 0 * y, 0.0),
                "two_thirds": two_thirds.step(carry["two_thirds"][0])[None],
                "oracle": system.step(carry["oracle"], y, 0.0),
            }
            return nxt, nxt

        start = {run: states[0] for run in RUNS}
        _, runs = jax.lax.scan(advance, start, labels[:-1])
        return {"truth": states[1:], **runs}

    return jax.jit(jax.vmap(one))(keys)


def size_row(runs: Mapping[str, np.ndarray], dt: float, report_time: float) -> dict[str, Any]:
    """The numbers of one coarse size (see the module docstring)."""
    truth = runs["truth"]
    at = round(report_time / dt) - 1  # the frame at the report time (frame k: time (k + 1) dt)
    spatial = truth.ndim - 2
    row: dict[str, Any] = {}
    for run in RUNS:
        frames = runs[run]
        blown = ~np.isfinite(frames).all(axis=tuple(range(2, frames.ndim)))
        error = relative_error(frames, truth, blown)
        rho = correlation(frames, truth, spatial)
        row[run] = {  # None where a trajectory has blown up by then
            "error_at_report": mean(error[:, at]),
            "max_error_to_report": finite(float(np.max(error[:, : at + 1]))),
            "correlation_at_report": mean(rho[:, at]),
            "time_above_0.8": float(np.mean(correlation_times(frames, truth, dt, (LEVEL,))[LEVEL])),
            "blown_up": int(blown.any(axis=1).sum()),
        }
    padded, oracle = row["padded"], row["oracle"]
    rho, error = padded["correlation_at_report"], padded["error_at_report"]
    fails = rho is None or error is None or rho < LEVEL or error > MAX_ERROR
    largest = oracle["max_error_to_report"]
    holds = largest is not None and largest <= ORACLE_TOLERANCE
    row["needs_closure"] = bool(fails and holds)
    return row


def resolution(
    system: SpectralCoarseGrid,
    sizes: Sequence[int],
    *,
    seed: int,
    trajectories: int,
    warmup: int,
    horizon: float,
    report_time: float,
) -> dict[str, Any]:
    """The table of the module docstring for every coarse size in ``sizes``."""
    sizes = check_sizes(system, sizes)
    steps = round(horizon / system.dt)
    if not 1 <= round(report_time / system.dt) <= steps:
        raise ML4DError(
            f"the report time {report_time:g} must lie within the horizon {horizon:g} "
            f"(steps of {system.dt:g}); pass a longer --horizon"
        )
    keys = initial_keys(seed, np.arange(trajectories))  # as a split with this seed draws them
    rows = {}
    for n in sizes:
        config = dataclasses.replace(system.config, coarsening=system.config.n_fine // n)
        coarse = make_system(config)
        runs = {k: np.asarray(v) for k, v in coarse_runs(coarse, keys, warmup, steps).items()}
        rows[str(n)] = size_row(runs, system.dt, report_time)
    return {
        "system": system.name,
        "what": (
            f"the plain coarse solver alone (padded: products zero-padded to 3/2; two_thirds: "
            f"the 2/3 rule) and the exact correction (oracle) against the fine solver on "
            f"{system.config.n_fine} points per axis, {trajectories} trajectories from seed "
            f"{seed} after {warmup} warm-up steps of the fine solver, to t = {horizon:g}; errors "
            f"and correlations at the report time t = {report_time:g}, the mean time with "
            f"correlation >= {LEVEL}; a size needs a closure when padded alone has correlation "
            f"< {LEVEL} or error > {MAX_ERROR} there while the oracle stays within "
            f"{ORACLE_TOLERANCE:g} up to then"
        ),
        "report_time": report_time,
        "horizon": horizon,
        "sizes": rows,
    }


def table(result: Mapping[str, Any]) -> str:
    """The result as a Markdown table, a row per coarse size."""
    head = (
        "| coarse grid | padded alone: error (t = {t:g}) | correlation | time ρ ≥ 0.8 | "
        "2/3 alone: error | correlation | time ρ ≥ 0.8 | oracle: largest error to t = {t:g} | "
        "needs a closure |"
    ).format(t=result["report_time"])
    lines = [head, "|" + "---|" * 9]
    for n, row in result["sizes"].items():
        p, t, o = row["padded"], row["two_thirds"], row["oracle"]
        lines.append(
            f"| {n} | {_num(p['error_at_report'])} | {_num(p['correlation_at_report'])} | "
            f"{p['time_above_0.8']:.3g} | {_num(t['error_at_report'])} | "
            f"{_num(t['correlation_at_report'])} | {t['time_above_0.8']:.3g} | "
            f"{_num(o['max_error_to_report'])} | {'yes' if row['needs_closure'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def _num(value: float | None) -> str:
    if value is None:
        return "blown up"
    return f"{value:.2g}"
