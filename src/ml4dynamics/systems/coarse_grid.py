"""The spectral coarse grid closed by a fine solver, in 1D and 2D: what ``ks``, ``kolmogorov`` and
``burgers`` share, so that each of them says only its physics.

A PDE names its linear symbol and its nonlinear term (a ``SpectralSolver``, in ``spectral.py``);
``SpectralCoarseGrid`` builds the *fine* solver from it on ``n_fine`` points per axis
(``fine_substeps`` ETDRK4 steps of Δt/substeps per step: the truth) and the *coarse* one on
``n_coarse = n_fine / coarsening`` (one step Δt), and provides the rest. The state is the fine
field's spectral restriction ``R`` (its Fourier modes below the coarse Nyquist). The closure has
one of two forms (``closure_kind``): ``correction``, y = (R F(u) − S_c(R u)) / Δt with F the fine
step and S_c the coarse one, and the hybrid step S(ū, y) = S_c(ū) + Δt (y − ⟨y⟩): the stored
labels reproduce the restricted fine trajectory to round-off (the oracle; both solvers conserve
the mean, so the exact y is mean-free, and the step removes the mean of a learned one, which
would drift the conserved mean off the data); ``filter``, the sub-grid flux τ = R(F) − F(R u) of
the PDE's own dealiased flux F, one component per axis, held fixed over the step: it gives the
restricted fine nonlinear term on every coarse mode, but frozen over a step it is first order in
Δt. The reference run (``fine_reference.py``) warms the fine solver up from a random smooth
field, then restricts and labels every ``store_every``-th fine state; the same run carries the
ablation's noise in its coarse modes (``correction`` only); the plain solver runs at any
resolution between the grids.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import jax
import numpy as np

from ml4dynamics.core.validation import require, require_positive
from ml4dynamics.systems.base import CoarseGridClosure, SystemConfig
from ml4dynamics.systems.fine_reference import (
    FineRun,
    coarse_kick,
    mean_free,
    noisy_fine_run,
    stored_fine_run,
)
from ml4dynamics.systems.spectral import Dealiasing, SpectralSolver, smooth_random_field

CLOSURE_KINDS = ("correction", "filter")


@dataclasses.dataclass(frozen=True)
class CoarseGridConfig(SystemConfig):
    """The grids, the closure's form and the random initial fields of a coarse grid closed by a
    fine solver; a system's config adds its physics (and may change these defaults)."""

    dt: float = 0.25
    n_fine: int = 256
    coarsening: int = 4
    fine_substeps: int = 1
    closure_kind: Literal["correction", "filter"] = "correction"
    ic_modes: int = 4
    ic_std: float = 1.0

    def __post_init__(self) -> None:
        require_positive(self.dt, "dt", "the time step of the coarse solver")
        example = type(self).__dataclass_fields__["n_fine"].default
        require(
            self.n_fine >= 16 and self.n_fine % 2 == 0,
            "n_fine",
            f"must be an even number >= 16, got {self.n_fine}",
            f"use e.g. {example}",
        )
        require(
            self.coarsening >= 1 and self.n_fine % self.coarsening == 0,
            "coarsening",
            f"must divide n_fine = {self.n_fine}, got {self.coarsening}",
            "use e.g. 4",
        )
        n_coarse = self.n_coarse
        require(
            n_coarse % 2 == 0 and n_coarse >= 8,
            "coarsening",
            f"leaves {n_coarse} coarse points per axis; an even number >= 8 is needed",
            "use a smaller coarsening",
        )
        require(self.fine_substeps >= 1, "fine_substeps", "must be >= 1", "use e.g. 1")
        require(
            self.closure_kind in CLOSURE_KINDS,
            "closure_kind",
            f"must be one of {', '.join(CLOSURE_KINDS)}, got {self.closure_kind!r}",
            "use correction",
        )
        require(
            1 <= self.ic_modes < self.n_fine / 2,
            "ic_modes",
            f"must be between 1 and the fine grid's band |k| < {self.n_fine // 2}, "
            f"got {self.ic_modes}",
            "use e.g. 4",
        )
        require_positive(self.ic_std, "ic_std", "the spread of the random initial state")

    @property
    def n_coarse(self) -> int:
        return self.n_fine // self.coarsening


class SpectralCoarseGrid(CoarseGridClosure):
    """A coarse grid closed by a fine solver, both pseudo-spectral (see the module docstring).
    A system names its PDE (``solver``), its field (``field_name``) and its filter flux in words
    (``flux_description``); its config is a ``CoarseGridConfig``."""

    config: CoarseGridConfig
    #: for the metadata: the state's one field (its coordinate along ``field``), the filter
    #: closure's flux in words, and how the PDE is written ("": not named in the scheme)
    field_name: ClassVar[str] = "u"
    flux_description: ClassVar[str] = "flux"
    form: ClassVar[str] = ""
    #: where a reference run keeps its fine state between steps: Fourier coefficients (one
    #: transform pair fewer per fine step) or a field (``ks``, whose data were generated so);
    #: the two agree to round-off
    fine_in_fourier: ClassVar[bool] = True

    def __init__(self, config: CoarseGridConfig):
        super().__init__(config)
        self.fine = self.solver(config.n_fine, config.dt / config.fine_substeps)
        self.coarse = self.solver(config.n_coarse, config.dt)

    @abc.abstractmethod
    def solver(self, n: int, dt: float, dealiasing: Dealiasing = "padded") -> SpectralSolver:
        """The PDE on ``n`` points per axis, stepped by ``dt``, its products dealiased as
        ``dealiasing`` says (``spectral.DEALIASING``)."""

    # -- shapes ------------------------------------------------------------------------------------
    @property
    def _spatial(self) -> tuple[str, ...]:
        return ("x1", "x2")[: self.fine.grid.dims]

    @property
    def state_dims(self) -> tuple[str, ...]:
        return ("field", *self._spatial)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return (1, *(self.config.n_coarse,) * len(self._spatial))

    @property
    def closure_dims(self) -> tuple[str, ...]:
        if self.config.closure_kind == "filter" and len(self._spatial) > 1:
            return ("closure_field", *self._spatial)  # one flux component per axis
        return self.state_dims

    @property
    def closure_shape(self) -> tuple[int, ...]:
        if self.config.closure_kind == "filter":
            return (len(self._spatial), *self.state_shape[1:])
        return self.state_shape

    def coords(self) -> Mapping[str, np.ndarray]:
        points = self.coarse.grid.points()
        coords = {"field": np.array([self.field_name], dtype=object)}
        coords.update({axis: points for axis in self._spatial})
        if "closure_field" in self.closure_dims:
            names = [f"tau{i + 1}" for i in range(len(self._spatial))]
            coords["closure_field"] = np.array(names, dtype=object)
        return coords

    # -- the fine solver ---------------------------------------------------------------------------
    def fine_initial_state(self, key: jax.Array) -> jax.Array:
        """A random smooth mean-free field on the fine grid (``smooth_random_field``)."""
        c = self.config
        return smooth_random_field(key, self.fine.grid, c.ic_modes, c.ic_std)

    def _fine_step_hat(self, v: jax.Array) -> jax.Array:
        steps = self.config.fine_substeps
        return jax.lax.fori_loop(0, steps, lambda _, w: self.fine.step_hat(w), v)

    def fine_step(self, u: jax.Array) -> jax.Array:
        """One step Δt of the fine solver (``fine_substeps`` ETDRK4 steps) on the fine grid."""
        grid = self.fine.grid
        return grid.irfft(self._fine_step_hat(grid.rfft(u)))

    def plain_step(self, n: int, dealiasing: str = "padded") -> Callable[[jax.Array], jax.Array]:
        """⌈fine_substeps · n / n_fine⌉ ETDRK4 steps on ``n`` points per axis, no closure: Δt per
        step shrinks with the grid spacing as the CFL condition asks (the coarse solver's one
        step at n_coarse ≤ n_fine / fine_substeps, the fine solver's ``fine_substeps`` at
        n_fine). ``dealiasing="two_thirds"``: the 2/3-rule solver, to show what it loses."""
        c = self.config
        substeps = max(1, math.ceil(c.fine_substeps * n / c.n_fine))
        solver = self.solver(n, c.dt / substeps, dealiasing)  # type: ignore[arg-type]

        def step(u: jax.Array) -> jax.Array:
            v = solver.grid.rfft(u)
            v = jax.lax.fori_loop(0, substeps, lambda _, w: solver.step_hat(w), v)
            return solver.grid.irfft(v)

        return step

    def resample(self, u: jax.Array, n: int) -> jax.Array:
        return self.fine.grid.restrict(u, n)

    def _restrict_hat(self, v: jax.Array) -> jax.Array:
        """The coarse state ``(1, *grid)`` of fine coefficients ``v``."""
        return self.coarse.grid.irfft(self.fine.grid.restrict_hat(v, self.config.n_coarse))[None]

    def restrict(self, u: jax.Array) -> jax.Array:
        return self._restrict_hat(self.fine.grid.rfft(u))

    def _label_hat(self, v: jax.Array, v_next: jax.Array | None = None) -> jax.Array:
        """The closure of the coarse state from the fine coefficients ``v`` (and, for the
        ``correction`` kind, those of its fine step ``v_next`` when the caller has them)."""
        c = self.config
        u_bar = self._restrict_hat(v)[0]
        if c.closure_kind == "filter":
            fine_flux = self.fine.grid.restrict_hat(self.fine.flux_hat(v), c.n_coarse)
            coarse_flux = self.coarse.flux_hat(self.coarse.grid.rfft(u_bar))
            return self.coarse.grid.irfft(fine_flux - coarse_flux)
        if v_next is None:
            v_next = self._fine_step_hat(v)
        target = self._restrict_hat(v_next)[0]
        return ((target - self.coarse.step(u_bar)) / self.dt)[None]

    def label(self, u: jax.Array, fine_next: jax.Array | None = None) -> jax.Array:
        if fine_next is None and self.config.closure_kind == "correction":  # as the run takes it
            fine_next = None if self.fine_in_fourier else self.fine_step(u)
        grid = self.fine.grid
        return self._label_hat(grid.rfft(u), None if fine_next is None else grid.rfft(fine_next))

    # -- the protocol ------------------------------------------------------------------------------
    def initial_state(self, key: jax.Array) -> jax.Array:
        return self.restrict(self.fine_initial_state(key))

    def step(self, u: jax.Array, y: jax.Array, t: jax.Array) -> jax.Array:
        if self.config.closure_kind == "filter":
            return self.coarse.step(u[0], flux=y)[None]
        return self.coarse.step(u[0])[None] + self.dt * mean_free(y)

    def _fine_run(self) -> FineRun:
        fine, coarse, n_fine = self.fine.grid, self.coarse.grid, self.config.n_fine
        if self.fine_in_fourier:
            return FineRun(
                step=self._fine_step_hat,
                restrict=self._restrict_hat,
                label=self._label_hat,
                add_coarse=lambda v, x: v + coarse.prolong_hat(coarse.rfft(x[0]), n_fine),
                start=lambda key: fine.rfft(self.fine_initial_state(key)),
            )
        return FineRun(
            step=self.fine_step,
            restrict=self.restrict,
            label=self.label,
            add_coarse=lambda u, x: u + fine.irfft(coarse.prolong_hat(coarse.rfft(x[0]), n_fine)),
            start=self.fine_initial_state,
        )

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
        coarse grid and labelled with its closure (``stored_fine_run``)."""
        run = self._fine_run()
        return stored_fine_run(
            run.step, run.restrict, run.label, run.start(key), warmup_steps, steps, store_every
        )

    @property
    def noisy_reference(self) -> bool:
        return self.config.closure_kind == "correction"

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
        modes at every step (``noisy_fine_run``). The noise's coarse Nyquist modes, which no
        restricted state holds, are left out. The ``correction`` closure only."""
        if not self.noisy_reference:
            raise NotImplementedError(
                f"{self.name} with closure_kind {self.config.closure_kind!r} has no reference run "
                "with the ablation's noise: the exact filter closure does not reproduce the fine "
                "run"
            )
        run, kick = self._fine_run(), coarse_kick(noise, self.dt, self.closure_shape)
        start = run.start(key)
        return noisy_fine_run(
            run.step, run.restrict, run.add_coarse, start, warmup_steps, steps, store_every, kick
        )

    # -- metadata ----------------------------------------------------------------------------------
    @property
    def label_description(self) -> str:
        if self.config.closure_kind == "filter":
            return f"sub-grid {self.flux_description} of the fine solution"
        return (
            f"(R(fine step) - coarse step of R {self.field_name}) / dt: the coarse solver's "
            "one-step error"
        )

    @property
    def scheme(self) -> str:
        c, size = self.config, " points" if len(self._spatial) == 1 else "^2"
        return (
            f"{self.form + ', ' if self.form else ''}pseudo-spectral, products zero-padded to 3/2 "
            "(every carried mode advected), ETDRK4 "
            f"(contour-integral coefficients); fine grid {c.n_fine}{size} with {c.fine_substeps} "
            f"step(s) per dt, restricted spectrally to {c.n_coarse}{size}"
        )

    @property
    def boundary(self) -> str:
        return "periodic"
