"""The system protocol: what every simulated system provides.

A system owns one discrete step ``S(u, y, t)`` that advances a state ``u`` by ``dt`` given the
unresolved quantity ``y`` (the *closure*). The same step generates data, trains closures (through
the displacement field ``V(u) = (S(u, y) - u) / dt``) and rolls hybrids out; it never knows whether
``y`` came from the exact physics or a network. That single seam is what makes an oracle rollout
reproduce generated data to round-off.

Conventions (float64 throughout; see ``ml4dynamics/__init__.py``):

- a state is one array of shape ``state_shape`` with named axes ``state_dims``, a closure one
  array of shape ``closure_shape`` with axes ``closure_dims`` (they may differ: a pressure closure
  lives on cell centres while velocities live on faces);
- every method acts on a single sample; batches are ``jax.vmap`` and rollouts ``jax.lax.scan``
  (see ``ml4dynamics.rollout``);
- ``t`` is the time at the start of the step, so that non-autonomous systems (an oscillating
  inflow) fit; autonomous systems ignore it.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import numpy as np


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


class System(abc.ABC):
    """A discrete dynamical system with one unresolved (learnable) part.

    Concrete systems are final classes constructed from their config; coefficients that depend
    only on the config (spectral symbols, matrices) are computed once in ``__init__``.
    """

    #: identifier used in params.yaml, on the command line and in dataset attributes
    name: ClassVar[str]
    #: the config class this system is built from
    config_class: ClassVar[type[SystemConfig]]

    def __init__(self, config: SystemConfig):
        self.config = config

    # Systems are static arguments of jitted functions: two systems built from equal configs
    # are equal, so jit reuses one compilation for them (e.g. the train, val and test splits).
    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.config == other.config  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self.config))

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

    # -- physics ------------------------------------------------------------------------------
    @abc.abstractmethod
    def initial_state(self, key: jax.Array) -> jax.Array:
        """A random initial state drawn from ``key``, shape ``state_shape``."""

    @abc.abstractmethod
    def closure(self, u: jax.Array, t: jax.Array) -> jax.Array:
        """The exact closure ``y = phi(u)``, shape ``closure_shape``."""

    @abc.abstractmethod
    def step(self, u: jax.Array, y: jax.Array, t: jax.Array) -> jax.Array:
        """One step ``u_{k+1} = S(u_k, y_k)`` from time ``t`` to ``t + dt``."""

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
