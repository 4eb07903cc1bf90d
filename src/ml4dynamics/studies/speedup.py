"""Speed-up at matched accuracy: where a hybrid sits on its plain solver's accuracy–cost curve
(the recipe of Kochkov et al., PNAS 2021), for a system whose state is a coarse grid closed by a
fine solver (a ``CoarseGridClosure``).

- **Reference**: the fine solver (the truth the closures were trained on), from ``trajectories``
  random states after ``warmup`` fine steps onto the attractor, for ``horizon`` time units.
- **Ladder**: the plain solver (no closure) at resolutions between the coarse grid and the fine
  one, started from the reference's initial state restricted spectrally onto its grid; alias-free
  (products zero-padded to 3/2: every mode a rung carries is advected), the strongest plain
  solver on each grid, not the 2/3-rule one that leaves a third of its modes unadvected.
- **Hybrids**: the coarse solver plus each closure network, from the restricted initial state.
- **Accuracy**: per trajectory, the time until the centred correlation with the reference (every
  run restricted to the coarse grid) first drops below c (c = 0.95 and 0.8), censored at the
  horizon; the mean over trajectories, with a bootstrap interval over trajectories.
- **Cost**: wall-clock milliseconds per simulated time unit for the whole batch of trajectories,
  each solver stepping in one compiled loop (``jax.vmap`` over the batch, as ``hybrid_rollouts``
  and a user's rollout run), all measured in the same run, each repeat timing every solver in
  turn (a change of a shared machine's load falls on all alike); the median of ``repeats``.
- **Placement**: the ladder's points (accuracy, log cost), made monotone in the resolution (a
  finer rung is at least as accurate, and a rung costs the cheapest of itself and the finer
  ones), are interpolated at a hybrid's accuracy; that gives its *equivalent resolution* and
  the cost of the plain solver that is as accurate, and the *speed-up* = that cost ÷ the
  hybrid's own cost. The interval resamples trajectories (the costs are held fixed: they are
  one run's medians). A hybrid less accurate than the coarsest rung, or more accurate than the
  finest, is marked ``below`` or ``above`` the ladder and its numbers are the ladder's end (a
  bound, not an estimate).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.evaluation.metrics import correlation
from ml4dynamics.simulation.hybrid import network_closure
from ml4dynamics.studies.solver_bench import timed_together
from ml4dynamics.systems import CoarseGridClosure

THRESHOLDS = (0.95, 0.8)
#: rungs of the default ladder, as multiples of the coarse grid (rounded to even sizes)
DEFAULT_RUNGS = (1.0, 1.125, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0)


def require_ladder(system) -> None:
    """One clear error for a system with no plain solver at other resolutions."""
    if not isinstance(system, CoarseGridClosure):
        raise ML4DError(
            f"`ml4d speedup` needs a system whose state is a coarse grid closed by a fine solver; "
            f"{system.name} is not (its closure replaces exact physics, there is no cheaper "
            "solver to compare with)"
        )


def default_ladder(system) -> list[int]:
    """Resolutions from the coarse grid up to below the fine one (``DEFAULT_RUNGS``); the
    system's config names both grids (``n_coarse``, ``n_fine``)."""
    require_ladder(system)
    coarse, fine = system.config.n_coarse, system.config.n_fine
    sizes = {2 * round(coarse * r / 2) for r in DEFAULT_RUNGS}
    return sorted(n for n in sizes if coarse <= n < fine)


def check_ladder(system, ladder: Sequence[int]) -> list[int]:
    """The ladder, sorted; one clear error for a rung the system cannot run."""
    require_ladder(system)
    coarse, fine = system.config.n_coarse, system.config.n_fine
    bad = [n for n in ladder if n % 2 or not coarse <= n <= fine]
    if bad or len(ladder) < 2:
        raise ML4DError(
            f"--ladder {','.join(map(str, ladder))}: give at least two even resolutions between "
            f"the coarse grid ({coarse}) and the fine one ({fine}), e.g. "
            f"{','.join(map(str, default_ladder(system)))}"
        )
    return sorted(set(ladder))


def reference_states(system, seed: int, trajectories: int, warmup: int) -> jax.Array:
    """Fine initial states on the attractor: ``warmup`` fine steps from random ones."""
    keys = jax.random.split(jax.random.key(seed), trajectories)

    @jax.jit
    def start(key: jax.Array) -> jax.Array:
        u = system.fine_initial_state(key)
        return jax.lax.fori_loop(0, warmup, lambda _, w: system.fine_step(w), u)

    return jax.vmap(start)(keys)


def trajectory(
    step: Callable[[jax.Array], jax.Array], u0: jax.Array, frames: int, stride: int
) -> jax.Array:
    """``frames`` states after ``u0``, every ``stride`` steps of ``step``, for a batch ``u0``."""

    @jax.jit
    def run(u: jax.Array) -> jax.Array:
        def advance(v: jax.Array, _: Any) -> tuple[jax.Array, jax.Array]:
            v = jax.lax.fori_loop(0, stride, lambda _, w: step(w), v)
            return v, v

        return jax.lax.scan(advance, u, None, length=frames)[1]

    return jax.vmap(run)(u0)


def correlation_times(
    frames: np.ndarray, reference: np.ndarray, spacing: float, levels: Sequence[float]
) -> dict[float, np.ndarray]:
    """Per trajectory and level c: the time of the first frame with correlation < c (or a
    non-finite frame), the horizon where it never drops. ``frames`` and ``reference`` are
    ``(trajectory, frame, *grid)`` on one grid, frame k at time ``(k + 1) · spacing``."""
    spatial = frames.ndim - 2
    rho = correlation(frames, reference, spatial)
    rho = np.where(np.isfinite(rho), rho, -np.inf)
    horizon = frames.shape[1] * spacing
    out = {}
    for level in levels:
        below = rho < level
        first = np.where(below.any(axis=1), below.argmax(axis=1), -1)
        out[level] = np.where(first >= 0, (first + 1) * spacing, horizon)
    return out


def place(
    accuracy: float, ladder_acc: np.ndarray, ladder_n: np.ndarray, ladder_cost: np.ndarray
) -> tuple[float, float, str]:
    """(equivalent resolution, equivalent cost, where) of a hybrid of mean correlation time
    ``accuracy`` on the ladder. First the ladder is made monotone: a finer grid never counts as
    less accurate than a coarser one, and the cost of a rung is the cheapest of it and every
    finer rung (FFT sizes with large prime factors are slower: 144 or 320 points can cost more
    than 192 or 384, and a user would take the finer, cheaper grid)."""
    acc = np.maximum.accumulate(ladder_acc)
    ladder_cost = np.minimum.accumulate(np.asarray(ladder_cost)[::-1])[::-1]
    where = "below" if accuracy < acc[0] else "above" if accuracy > acc[-1] else "inside"
    n = float(np.interp(accuracy, acc, ladder_n))
    cost = float(np.exp(np.interp(accuracy, acc, np.log(ladder_cost))))
    return n, cost, where


def _interval(values: np.ndarray) -> list[float]:
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def speedup(
    system,
    closures: Mapping[str, Any],
    *,
    ladder: Sequence[int],
    trajectories: int,
    horizon: float,
    warmup: int,
    seed: int = 0,
    spacing: float = 1.0,
    steps: int = 1000,
    repeats: int = 5,
    resamples: int = 2000,
) -> dict[str, Any]:
    """The whole measurement (see the module docstring) for the closure networks ``closures``
    (label → network) of ``system``; a JSON-able result."""
    ladder = check_ladder(system, ladder)
    stride, frames = _frames(system, spacing, horizon, trajectories)
    u0 = reference_states(system, seed, trajectories, warmup)
    fine, times, batched, starts = _rollouts(system, closures, ladder, u0, frames, stride, spacing)
    # every solver timed in turn within each repeat: a change of the machine's load hits all
    per_unit = 1.0 / system.dt  # steps per simulated time unit
    costs = {
        name: ms * per_unit for name, ms in timed_together(batched, starts, steps, repeats).items()
    }

    rng = np.random.default_rng(seed)
    picks = rng.integers(0, trajectories, size=(resamples, trajectories))
    ladder_n = np.asarray(ladder, dtype=float)
    ladder_cost = np.asarray([costs[f"solver {n}"] for n in ladder])
    rungs = [times[f"solver {n}"] for n in ladder]
    result: dict[str, Any] = {
        "system": system.name,
        "settings": {
            "trajectories": trajectories,
            "horizon": frames * spacing,
            "spacing": spacing,
            "warmup_steps": warmup,
            "seed": seed,
            "dt": system.dt,
            "coarse": system.config.n_coarse,
            "fine": system.config.n_fine,
            "timing": f"median of {repeats} x {steps} steps, batch of {trajectories}, one jit",
            "bootstrap_resamples": resamples,
            "backend": jax.default_backend(),
        },
        "solvers": {},
        "hybrids": {},
    }
    fine_n = system.config.n_fine
    result["solvers"][fine] = {"resolution": fine_n, "cost_ms_per_time_unit": costs[fine]}
    for name in times:
        entry: dict[str, Any] = {"cost_ms_per_time_unit": costs[name]}
        entry["accuracy"] = _accuracy(times[name], picks, frames * spacing)
        if name not in closures:  # a rung: its grid (JSON sorts names: 112 before 64)
            entry["resolution"] = int(name.split()[-1])
            result["solvers"][name] = entry
            continue
        entry["equivalent"] = _equivalent(
            times[name], rungs, ladder_n, ladder_cost, costs[name], picks
        )
        result["hybrids"][name] = entry
    return result


def _frames(system, spacing: float, horizon: float, trajectories: int) -> tuple[int, int]:
    """(steps between two frames, frames after the start) of every rollout; one clear error for
    a spacing that is no multiple of the time step, a horizon of under two frames, or fewer
    than two trajectories (the interval resamples them)."""
    stride = round(spacing / system.dt)
    if stride < 1 or not math.isclose(stride * system.dt, spacing):
        raise ML4DError(f"--spacing {spacing:g} must be a multiple of the time step {system.dt:g}")
    frames = round(horizon / spacing)
    if frames < 2:
        raise ML4DError(f"--horizon {horizon:g} must span at least two frames of {spacing:g}")
    if trajectories < 2:
        raise ML4DError(
            f"--trajectories must be >= 2 (the interval resamples them), got {trajectories}"
        )
    return stride, frames


def _rollouts(
    system,
    closures: Mapping[str, Any],
    ladder: list[int],
    u0: jax.Array,
    frames: int,
    stride: int,
    spacing: float,
):
    """(the reference's name, correlation times with the reference of every rung and hybrid
    (per level, per trajectory), and every solver to time, in turn: the rungs, the fine
    reference, the hybrids — its batched step and its batch of start states)."""
    coarse = system.config.n_coarse

    def on_coarse(fields: jax.Array) -> np.ndarray:
        return np.asarray(system.resample(fields, coarse))

    reference = on_coarse(trajectory(system.fine_step, u0, frames, stride))
    times: dict[str, dict[float, np.ndarray]] = {}
    batched: dict[str, Callable[[jax.Array], jax.Array]] = {}
    starts: dict[str, jax.Array] = {}

    def measure(name: str, step, start: jax.Array, restrict_out=None) -> None:
        if restrict_out is not None:  # (the reference itself: its cost only)
            run = trajectory(step, start, frames, stride)
            times[name] = correlation_times(restrict_out(run), reference, spacing, THRESHOLDS)
        batched[name], starts[name] = jax.vmap(step), start

    for n in ladder:
        measure(f"solver {n}", system.plain_step(n), system.resample(u0, n), on_coarse)
    fine = f"fine {system.config.n_fine} (the reference)"
    measure(fine, system.fine_step, u0)
    states = jax.vmap(system.restrict)(u0)
    for label, model in closures.items():
        closure = network_closure(model)

        def hybrid_step(u: jax.Array, closure=closure) -> jax.Array:
            return system.step(u, closure(u, 0.0), 0.0)

        measure(label, hybrid_step, states, lambda x: np.asarray(x)[:, :, 0])
    return fine, times, batched, starts


def _accuracy(
    times: dict[float, np.ndarray], picks: np.ndarray, horizon: float
) -> dict[str, dict[str, Any]]:
    """Per level: the mean correlation time over the trajectories, its bootstrap interval over
    the resamples ``picks`` (``(resample, trajectory)`` indices) and the number censored at the
    horizon."""
    return {
        f"{level:g}": {
            "mean": float(times[level].mean()),
            "interval": _interval(times[level][picks].mean(axis=1)),
            "censored": int(np.sum(times[level] >= horizon)),
        }
        for level in THRESHOLDS
    }


def _equivalent(
    own: dict[float, np.ndarray],
    rungs: list[dict[float, np.ndarray]],
    ladder_n: np.ndarray,
    ladder_cost: np.ndarray,
    cost: float,
    picks: np.ndarray,
) -> dict[str, dict[str, Any]]:
    """Per level: a hybrid (correlation times ``own``, cost ``cost``) placed on the ladder
    (``rungs``' correlation times, its resolutions and costs): its equivalent resolution and
    speed-up, each with its interval over the resamples ``picks``, and where it fell."""
    out = {}
    for level in THRESHOLDS:
        ladder_t = np.stack([rung[level] for rung in rungs])  # (rung, traj)
        mine = own[level]
        n_eq, cost_eq, where = place(
            float(mine.mean()), ladder_t.mean(axis=1), ladder_n, ladder_cost
        )
        boot = [
            place(float(mine[p].mean()), ladder_t[:, p].mean(axis=1), ladder_n, ladder_cost)
            for p in picks
        ]
        speed = np.asarray([b[1] for b in boot]) / cost
        out[f"{level:g}"] = {
            "resolution": n_eq,
            "resolution_interval": _interval(np.asarray([b[0] for b in boot])),
            "speedup": cost_eq / cost,
            "speedup_interval": _interval(speed),
            "where": where,
        }
    return out


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """What a person reads first: per hybrid and threshold, the equivalent resolution and the
    speed-up with their intervals."""
    lines = []
    coarse = result["settings"]["coarse"]
    for name, entry in result["hybrids"].items():
        for level, eq in entry["equivalent"].items():
            lo, hi = eq["speedup_interval"]
            n_lo, n_hi = eq["resolution_interval"]
            note = {
                "below": " (less accurate than the coarsest solver)",
                "above": " (more accurate than the finest rung: a lower bound)",
            }.get(eq["where"], "")
            lines.append(
                f"{name}: correlation >= {level}: like the alias-free plain solver at "
                f"{eq['resolution']:.0f} points [{n_lo:.0f}, {n_hi:.0f}] (coarse {coarse}); "
                f"speed-up {eq['speedup']:.2f}x [{lo:.2f}, {hi:.2f}]{note}"
            )
    return lines
