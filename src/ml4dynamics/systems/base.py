"""The system protocol: what every simulated system provides.

A system owns one discrete step ``S(u, y, t)`` that advances a state ``u`` by ``dt`` given the
unresolved quantity ``y`` (the *closure*). The same step trains closures (through the displacement
field ``V(u) = (S(u, y) - u) / dt``) and rolls hybrids out; it never knows whether ``y`` came from
the exact physics or a network.

Separately, a system is the source of its *reference data*: ``reference_trajectory`` returns states
and their labels. What a system can do beyond the protocol is said by the interface it derives
from, and asked with ``isinstance``:

- ``ExactClosure``: the closure of any state can be computed (``closure(u, t)``); the reference
  data roll ``S`` out under it and label every stored state with it (``linear``, ``rd``,
  ``ns_channel``). Hybrid states can be labelled too (DAgger), and the ablation rolls the exact
  closure out with noise.
- ``CoarseGridClosure``: the state is a coarse grid closed by a fine solver (``ks``,
  ``kolmogorov``, ``burgers``): no closure of a coarse state exists, the labels come from the fine
  solver along its own trajectories; the plain solver runs at other resolutions (``ml4d
  speedup``), and with the correction closure the reference run can carry the ablation's noise.

Either way the *oracle invariant* holds and is tested for every system: rolling ``S`` out with the
stored labels reproduces the stored trajectory to round-off.

Conventions (float64 throughout; see ``ml4dynamics/__init__.py``):

- a state is one array of shape ``state_shape`` with named axes ``state_dims``, a closure one
  array of shape ``closure_shape`` with axes ``closure_dims`` (they may differ: a pressure closure
  lives on cell centres while velocities live on faces);
- every method acts on a single sample; batches are ``jax.vmap`` and rollouts ``jax.lax.scan``
  (see ``ml4dynamics.systems.rollout``);
- ``t`` is the time at the start of the step, so that non-autonomous systems (an oscillating
  inflow) fit; autonomous systems ignore it;
- *sample parameters* (``sample_params``) are per-trajectory numbers the step reads as traced
  values rather than compile-time constants: a Reynolds number swept across the trajectories of
  one split, an inflow position drawn per trajectory. One compiled step then serves a whole
  split. Their values travel with the data (a coordinate along ``sample``) and reach the physics
  through ``bind``; a system without them (the default) never needs binding.
- *physical parameters* (``physical_params``) are the config fields a user may change when
  running a trained closure (``ml4d simulate --param``, ``ml4d envelope``): coefficients of the
  physics that keep the state's shape (a diffusion coefficient, a Reynolds number, a domain
  length), each with the range over which it makes sense to scan a closure's validity. Grid
  sizes and time steps are not among them: a closure is trained for one grid.
"""

from __future__ import annotations

import abc
import copy
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from ml4dynamics.core.errors import ConfigError
from ml4dynamics.core.fields import FieldSpec
from ml4dynamics.systems.rollout import rollout


@dataclasses.dataclass(frozen=True)
class SystemConfig:
    """Base of every system's parameters: a frozen dataclass validated on construction.

    Subclasses check their physics in ``__post_init__`` and raise ``ConfigError`` naming the
    field, so a bad parameter fails at the boundary instead of inside a jit trace.
    """

    dt: float

    def as_attrs(self) -> dict[str, Any]:
        """Flat, JSON-able view of every parameter, written into dataset attributes."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            out[field.name] = _jsonable(value)
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


@dataclasses.dataclass(frozen=True)
class Physical:
    """A physical parameter of a system: the range ``[low, high]`` a validity envelope scans
    (on a log scale where ``log``; whole numbers where ``integer``)."""

    low: float
    high: float
    log: bool = False
    integer: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not self.low < self.high or (self.log and self.low <= 0):
            raise ValueError(f"bad range [{self.low}, {self.high}] (log: {self.log})")


class System(abc.ABC):
    """A discrete dynamical system with one unresolved (learnable) part.

    Concrete systems are final classes constructed from their config; coefficients that depend
    only on the config (spectral symbols, matrices) are computed once in ``__init__``. They derive
    from one of the interfaces below (``ExactClosure``, ``CoarseGridClosure``), or from ``System``
    itself when they provide their reference data otherwise.
    """

    #: identifier used in params.yaml, on the command line and in dataset attributes
    name: ClassVar[str]
    #: the config class this system is built from
    config_class: ClassVar[type[SystemConfig]]

    #: per-trajectory parameters read through ``param`` (see the module docstring): config fields
    #: that a split may sweep, and quantities drawn per trajectory by ``draw_params``
    sample_params: ClassVar[tuple[str, ...]] = ()

    #: the physical parameters a user may set (see the module docstring), in scanning order
    physical_params: ClassVar[Mapping[str, Physical]] = {}

    #: whether the true dynamics are chaotic: two solvers that differ by truncation error
    #: decorrelate within an evaluation horizon (KS on L = 128 by t ~ 50), so a pointwise error
    #: at the horizon says nothing about a closure. Evaluation then scores a closure by its error
    #: at the report time, and the gates compare it with the coarse solver alone (``gates``).
    chaotic: ClassVar[bool] = False

    #: the power p of |k| that turns the state's Fourier power into kinetic energy per mode
    #: (0: the state is a velocity; -2: a 2D vorticity), for the energy spectrum and the
    #: spectrum error of evaluation (``spectrum.py``); None: the state is not a periodic flow
    spectrum_weight: ClassVar[int | None] = None

    def __init__(self, config: SystemConfig):
        self.config = config
        self._bound: Mapping[str, Any] | None = None

    # Systems are static arguments of jitted functions: two systems built from equal configs
    # are equal, so jit reuses one compilation for them (e.g. the train, val and test splits).
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.config == other.config  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        if self._bound is not None:
            # a bound system carries traced values: it must never become a static jit argument
            raise TypeError("a system bound to sample parameters is not hashable; bind inside jit")
        return hash((type(self), self.config))

    # -- sample parameters --------------------------------------------------------------------
    def default_params(self) -> dict[str, float]:
        """The config's values of the sample parameters that are config fields."""
        fields = {f.name for f in dataclasses.fields(self.config)}
        return {n: getattr(self.config, n) for n in self.sample_params if n in fields}

    def draw_params(self, key: jax.Array) -> dict[str, jax.Array]:
        """Sample parameters drawn at random per trajectory (none by default)."""
        return {}

    def trajectory_params(self, key: jax.Array) -> dict[str, Any]:
        """Every sample parameter of one new trajectory: the config's, then the drawn ones."""
        given = {n: jnp.asarray(v, dtype=jnp.float64) for n, v in self.default_params().items()}
        return {**given, **self.draw_params(key)}

    def bind(self, q: Mapping[str, Any] | None) -> System:
        """This system reading the sample parameters ``q`` (name → scalar, possibly traced).
        ``None`` or an empty mapping returns the system itself."""
        if not q:
            return self
        missing = set(self.sample_params) - set(q)
        unknown = set(q) - set(self.sample_params)
        if missing or unknown:
            raise ValueError(
                f"{self.name}: sample parameters {sorted(q)} given, {sorted(self.sample_params)} "
                "expected"
            )
        bound = copy.copy(self)
        bound._bound = dict(q)
        return bound

    def param(self, name: str) -> Any:
        """The value of sample parameter ``name``: the bound one, else the config's."""
        if self._bound is not None:
            return self._bound[name]
        if name in self.default_params():
            return getattr(self.config, name)
        raise ValueError(
            f"{self.name}: {name!r} is drawn per trajectory; bind the trajectory's sample "
            "parameters first (system.bind(q))"
        )

    def with_physical(self, values: Mapping[str, float]) -> System:
        """This system with physical parameters replaced (``values``: name → number); a name
        that is not one of ``physical_params``, or a value the config refuses, raises
        ``ConfigError`` naming it."""
        unknown = sorted(set(values) - set(self.physical_params))
        if unknown:
            known = ", ".join(self.physical_params) or "none"
            raise ConfigError(
                unknown[0], f"is not a physical parameter of {self.name}", f"use one of: {known}"
            )
        changes: dict[str, Any] = {}
        for name, value in values.items():
            if self.physical_params[name].integer:
                if float(value) != round(float(value)):
                    raise ConfigError(name, f"must be a whole number, got {value}", "e.g. 4")
                value = round(float(value))
            changes[name] = type(getattr(self.config, name))(value)
        return type(self)(dataclasses.replace(self.config, **changes))

    def physical_values(self) -> dict[str, float]:
        """The config's value of every physical parameter."""
        return {name: float(getattr(self.config, name)) for name in self.physical_params}

    @property
    def dt(self) -> float:
        return self.config.dt

    # -- shapes and coordinates -------------------------------------------------------------
    @property
    @abc.abstractmethod
    def state_dims(self) -> tuple[str, ...]:
        """Names of the state axes, e.g. ``("field", "x1", "x2")`` (never ``u`` or ``y``)."""

    @property
    @abc.abstractmethod
    def state_shape(self) -> tuple[int, ...]: ...

    @property
    @abc.abstractmethod
    def closure_dims(self) -> tuple[str, ...]: ...

    @property
    @abc.abstractmethod
    def closure_shape(self) -> tuple[int, ...]: ...

    @abc.abstractmethod
    def coords(self) -> Mapping[str, np.ndarray]:
        """Coordinate values for the named axes (spatial positions, field names)."""

    @property
    def periodic(self) -> bool:
        """Whether the spatial domain is periodic (networks pad circularly if so)."""
        return self.boundary == "periodic"

    @property
    def state_field(self) -> FieldSpec:
        """The state as networks see it: ``(channels, *grid)``, periodic or not."""
        return FieldSpec.from_shape(self.state_shape, self.periodic)

    @property
    def closure_field(self) -> FieldSpec:
        return FieldSpec.from_shape(self.closure_shape, self.periodic)

    # -- physics ------------------------------------------------------------------------------
    @abc.abstractmethod
    def initial_state(self, key: jax.Array) -> jax.Array:
        """A random initial state drawn from ``key``, shape ``state_shape``."""

    @abc.abstractmethod
    def step(self, u: jax.Array, y: jax.Array, t: jax.Array) -> jax.Array:
        """One step ``u_{k+1} = S(u_k, y_k)`` from time ``t`` to ``t + dt``."""

    # -- reference data -----------------------------------------------------------------------
    @abc.abstractmethod
    def reference_trajectory(
        self,
        key: jax.Array,
        q: Mapping[str, Any],
        warmup_steps: int,
        steps: int,
        store_every: int,
    ) -> tuple[jax.Array, jax.Array]:
        """One reference trajectory: a random initial state from ``key`` (sample parameters
        ``q``), ``warmup_steps`` unstored steps, then ``steps`` steps stored every
        ``store_every``-th; returns states ``(F, *state_shape)`` and labels
        ``(F, *closure_shape)`` with ``F = steps // store_every + 1``, the first frame at
        ``t = warmup_steps * dt``. Called on the unbound system inside jit (the system is a
        static argument, ``q`` traced)."""

    @property
    @abc.abstractmethod
    def label_description(self) -> str:
        """What the stored labels are, for the dataset's metadata."""

    # -- metadata -----------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def scheme(self) -> str:
        """One sentence naming the discretisation, written into dataset attributes."""

    @property
    @abc.abstractmethod
    def boundary(self) -> str:
        """Boundary conditions in words (``periodic`` or a description), for the metadata."""

    def attrs(self) -> dict[str, Any]:
        """Metadata written with every dataset of this system."""
        return {
            "system": self.name,
            "scheme": self.scheme,
            "boundary": self.boundary,
            **{f"system.{k}": v for k, v in self.config.as_attrs().items()},
        }


class ExactClosure(System):
    """A system whose closure of any state can be computed: ``closure(u, t)``. Its reference
    data roll ``S`` out under that closure and label every stored state with it."""

    @abc.abstractmethod
    def closure(self, u: jax.Array, t: jax.Array) -> jax.Array:
        """The exact closure ``y = phi(u, t)``, shape ``closure_shape``."""

    def reference_trajectory(
        self,
        key: jax.Array,
        q: Mapping[str, Any],
        warmup_steps: int,
        steps: int,
        store_every: int,
    ) -> tuple[jax.Array, jax.Array]:
        """``S`` under the exact closure from a random initial state, each stored state
        labelled with it (the protocol's ``reference_trajectory``)."""
        bound = self.bind(q)
        u = bound.initial_state(key)
        if warmup_steps:
            u = rollout(self, None, u, 0.0, warmup_steps, warmup_steps, q=q)[-1]
        t0 = warmup_steps * self.dt
        states = rollout(self, None, u, t0, steps, store_every, q=q)
        times = t0 + jnp.arange(states.shape[0]) * (store_every * self.dt)
        return states, jax.vmap(bound.closure)(states, times)

    @property
    def label_description(self) -> str:
        return "exact closure of the state"


class CoarseGridClosure(System):
    """A coarse grid closed by a fine solver: the state is the restriction ``R`` of the fine
    solver's field to a coarse grid, and the closure what the coarse solver misses of the fine
    one. No closure of a coarse state exists (the sub-grid modes are gone): the labels come from
    the fine solver along its own trajectories (``label``). The plain solver runs at any
    resolution between the two grids (``plain_step``, ``resample``: ``ml4d speedup``)."""

    @abc.abstractmethod
    def fine_initial_state(self, key: jax.Array) -> jax.Array:
        """A random field of the fine solver."""

    @abc.abstractmethod
    def fine_step(self, u: jax.Array) -> jax.Array:
        """One step Δt of the fine solver (the truth) on a fine field."""

    @abc.abstractmethod
    def restrict(self, u: jax.Array) -> jax.Array:
        """The coarse state ``R u`` of a fine field, shape ``state_shape``."""

    @abc.abstractmethod
    def label(self, u: jax.Array, fine_next: jax.Array | None = None) -> jax.Array:
        """The closure of the coarse state ``R u``, from the fine field ``u`` (and its fine step
        ``fine_next``, when the caller has it already), shape ``closure_shape``."""

    @abc.abstractmethod
    def plain_step(self, n: int, dealiasing: str = "padded") -> Callable[[jax.Array], jax.Array]:
        """One step Δt of the system's solver, without any closure, on a grid of ``n`` points
        per axis (a field in physical space, as ``resample`` gives it); ``dealiasing``: how its
        products are dealiased (``systems.spectral.DEALIASING``; the default advects every mode
        the grid carries)."""

    @abc.abstractmethod
    def resample(self, u: jax.Array, n: int) -> jax.Array:
        """A field on the grid of ``n`` points per axis (spectral restriction)."""

    @property
    @abc.abstractmethod
    def noisy_reference(self) -> bool:
        """Whether ``reference_with_noise`` exists for this configuration (the ``correction``
        closure: the exact correction plus noise is a fine run with noisy coarse modes)."""

    @abc.abstractmethod
    def reference_with_noise(
        self,
        key: jax.Array,
        q: Mapping[str, Any],
        warmup_steps: int,
        steps: int,
        store_every: int,
        noise: tuple[float, int],
    ) -> jax.Array:
        """The states of ``reference_trajectory`` with the paper's ablation noise: the exact
        closure plus N(0, σ²) per element at every step from the first stored frame on
        (``noise = (σ, seed)``, drawn as ``rollout`` draws it), carried by the fine solver (the
        exact closure of a coarse grid needs the fine state)."""
