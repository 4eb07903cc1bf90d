"""What the coarse grids closed by a fine solver (``ks``, ``kolmogorov``) share: the checks of
their grid parameters, the reference run that stores every ``store_every``-th fine state with
its label, and the same run with the ablation's noise added to its coarse modes.

Not a system (no ``System`` subclass here): helpers the two system modules call, and the mixin
that gives both their reference runs from one description of their fine solver (``FineRun``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ml4dynamics.core.validation import require

CLOSURE_KINDS = ("correction", "filter")


def check_grids(config: Any, example_fine: int) -> None:
    """``n_fine``, ``coarsening``, ``fine_substeps`` and ``closure_kind`` of ``config``, one clear
    error naming the field (``example_fine``: the value suggested for ``n_fine``)."""
    require(
        config.n_fine >= 16 and config.n_fine % 2 == 0,
        "n_fine",
        f"must be an even number >= 16, got {config.n_fine}",
        f"use e.g. {example_fine}",
    )
    require(
        config.coarsening >= 1 and config.n_fine % config.coarsening == 0,
        "coarsening",
        f"must divide n_fine = {config.n_fine}, got {config.coarsening}",
        "use e.g. 4",
    )
    n_coarse = config.n_fine // config.coarsening
    require(
        n_coarse % 2 == 0 and n_coarse >= 8,
        "coarsening",
        f"leaves {n_coarse} coarse points per axis; an even number >= 8 is needed",
        "use a smaller coarsening",
    )
    require(config.fine_substeps >= 1, "fine_substeps", "must be >= 1", "use e.g. 1")
    require(
        config.closure_kind in CLOSURE_KINDS,
        "closure_kind",
        f"must be one of {', '.join(CLOSURE_KINDS)}, got {config.closure_kind!r}",
        "use correction",
    )


def stored_fine_run(
    fine_step: Callable[[jax.Array], jax.Array],
    restrict: Callable[[jax.Array], jax.Array],
    label: Callable[[jax.Array, jax.Array | None], jax.Array],
    start: jax.Array,
    warmup_steps: int,
    steps: int,
    store_every: int,
) -> tuple[jax.Array, jax.Array]:
    """The fine solver from ``start``: ``warmup_steps`` unstored steps onto the attractor, then
    ``steps`` steps; every ``store_every``-th fine state restricted (``restrict``) and labelled
    (``label(state, its fine step)``). The first fine step of each stride is the one the
    correction label needs: passed to it, never taken twice; the last frame's label gets
    ``None`` and steps only if its kind needs it. ``fine_step`` may act in Fourier space, as
    long as ``restrict`` and ``label`` take the same representation."""
    v = jax.lax.fori_loop(0, warmup_steps, lambda _, w: fine_step(w), start)

    def stride(w: jax.Array, _: Any) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        w_next = fine_step(w)
        frame = (restrict(w), label(w, w_next))
        return jax.lax.fori_loop(1, store_every, lambda _, x: fine_step(x), w_next), frame

    last, (states, labels) = jax.lax.scan(stride, v, None, length=steps // store_every)
    return (
        jnp.concatenate([states, restrict(last)[None]]),
        jnp.concatenate([labels, label(last, None)[None]]),
    )


def noisy_fine_run(
    fine_step: Callable[[jax.Array], jax.Array],
    restrict: Callable[[jax.Array], jax.Array],
    add_coarse: Callable[[jax.Array, jax.Array], jax.Array],
    start: jax.Array,
    warmup_steps: int,
    steps: int,
    store_every: int,
    kick: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """The states of ``stored_fine_run`` with a coarse field ``kick(k)`` added after step ``k``
    (counted from the first stored frame) to the fine state's coarse modes (``add_coarse``):
    the restricted states follow S_c(ū) + Δt y_exact + ``kick(k)`` while the fine solver keeps
    the sub-grid modes consistent — the exact closure with a per-step error, for a coarse grid
    whose exact closure needs the fine state. A zero kick gives the stored states."""
    v = jax.lax.fori_loop(0, warmup_steps, lambda _, w: fine_step(w), start)

    def stride(w: jax.Array, j: jax.Array) -> tuple[jax.Array, jax.Array]:
        def one(i: jax.Array, x: jax.Array) -> jax.Array:
            return add_coarse(fine_step(x), kick(j * store_every + i))

        return jax.lax.fori_loop(0, store_every, one, w), restrict(w)

    last, states = jax.lax.scan(stride, v, jnp.arange(steps // store_every))
    return jnp.concatenate([states, restrict(last)[None]])


def coarse_kick(
    noise: tuple[float, int], dt: float, shape: tuple[int, ...]
) -> Callable[[jax.Array], jax.Array]:
    """k ↦ Δt · mean_free(σ ξ_k), ξ_k ~ N(0, 1) of ``shape`` drawn from ``seed`` and k as
    ``rollout`` draws the ablation's noise: what a correction closure's noise adds to the coarse
    state at step k (``noise = (σ, seed)``)."""
    sigma, seed = noise

    def kick(k: jax.Array) -> jax.Array:
        xi = jax.random.normal(jax.random.fold_in(jax.random.key(seed), k), shape)
        return dt * mean_free(sigma * xi)

    return kick


def mean_free(y: jax.Array) -> jax.Array:
    """``y`` (``(field, *grid)``) less its spatial mean per field: a correction that cannot
    change a conserved mean (the exact one of a mean-conserving pair of solvers is mean-free)."""
    axes = tuple(range(1, y.ndim))
    return y - jnp.mean(y, axis=axes, keepdims=True)


@dataclasses.dataclass(frozen=True)
class FineRun:
    """How a coarse grid closed by a fine solver runs the truth, in the representation its fine
    solver works in (a field or its Fourier coefficients): ``step`` advances a fine state by Δt,
    ``restrict`` gives its coarse state, ``label(fine, fine after one step or None)`` its
    closure, ``add_coarse(fine, field)`` adds a coarse field to its coarse modes, ``start(key)``
    draws a random fine state."""

    step: Callable[[jax.Array], jax.Array]
    restrict: Callable[[jax.Array], jax.Array]
    label: Callable[[jax.Array, jax.Array | None], jax.Array]
    add_coarse: Callable[[jax.Array, jax.Array], jax.Array]
    start: Callable[[jax.Array], jax.Array]


class FineReference:
    """The reference runs of a ``System`` closed by a fine solver (listed before ``System`` among
    its bases), from its ``fine_run()``: ``reference_trajectory`` (``stored_fine_run``) and
    ``reference_with_noise`` (``noisy_fine_run``, the ``correction`` closure only)."""

    def fine_run(self) -> FineRun:
        raise NotImplementedError

    def reference_trajectory(
        self,
        key: jax.Array,
        q: Mapping[str, Any],
        warmup_steps: int,
        steps: int,
        store_every: int,
    ) -> tuple[jax.Array, jax.Array]:
        """The fine solver from a random state, ``warmup_steps`` unstored steps onto the
        attractor, then ``steps`` steps; every ``store_every``-th fine state is restricted to the
        coarse grid and labelled with its closure (the first fine step of each stride is the one
        the correction's label needs, never taken twice)."""
        run = self.fine_run()
        return stored_fine_run(
            run.step, run.restrict, run.label, run.start(key), warmup_steps, steps, store_every
        )

    def reference_with_noise(
        self,
        key: jax.Array,
        q: Mapping[str, Any],
        warmup_steps: int,
        steps: int,
        store_every: int,
        noise: tuple[float, int],
    ) -> jax.Array:
        """The states of ``reference_trajectory`` with the ablation's noise added to the coarse
        modes at every step (``noisy_fine_run``): the exact correction plus noise, the sub-grid
        modes carried by the fine solver. The noise's coarse Nyquist modes, which no restricted
        state holds, are left out. The ``correction`` closure only."""
        if not self.has_reference_with_noise:
            raise NotImplementedError(
                f"{self.name} with closure_kind {self.config.closure_kind!r} has no reference run "
                "with the ablation's noise: the exact filter closure does not reproduce the fine "
                "run"
            )
        run = self.fine_run()
        kick = coarse_kick(noise, self.dt, self.closure_shape)
        return noisy_fine_run(
            run.step,
            run.restrict,
            run.add_coarse,
            run.start(key),
            warmup_steps,
            steps,
            store_every,
            kick,
        )

    @property
    def has_reference_with_noise(self) -> bool:
        return self.config.closure_kind == "correction"
