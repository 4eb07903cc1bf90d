"""Least-squares estimators of the closure (DESIGN §2), per sample and averaged over the batch:

- ``ols``:  ‖y − φ_θ(u)‖²
- ``mols``: OLS + wd ‖θ‖²  (weight decay)
- ``aols``: ‖y − φ_θ(u + ε)‖², ε ~ N(0, σ²)  (input-noise augmentation)
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from ml4dynamics.estimators.base import Estimator, data_misfit
from ml4dynamics.validation import require_non_negative, require_positive


@dataclasses.dataclass(frozen=True)
class OLSConfig:
    kind: Literal["ols"]


@dataclasses.dataclass(frozen=True)
class MOLSConfig:
    kind: Literal["mols"]
    wd: float

    def __post_init__(self) -> None:
        require_non_negative(self.wd, "wd", "the weight decay of mOLS")


@dataclasses.dataclass(frozen=True)
class AOLSConfig:
    kind: Literal["aols"]
    sigma: float

    def __post_init__(self) -> None:
        require_positive(self.sigma, "sigma", "the input-noise level of aOLS")


def param_norm2(model: nnx.Module) -> jax.Array:
    """‖θ‖² over every ``nnx.Param`` of the model."""
    return sum(jnp.sum(p**2) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


class OLS(Estimator):
    kind: ClassVar[str] = "ols"
    config_class: ClassVar[type] = OLSConfig

    def loss(self, system, closure, batch, key, reconstruct):
        misfit = data_misfit(closure, batch["u"], batch["y"])
        return misfit, {"misfit": misfit}


class MOLS(OLS):
    kind: ClassVar[str] = "mols"
    config_class: ClassVar[type] = MOLSConfig

    def regulariser(self):
        wd = self.config.wd
        return lambda model: wd * param_norm2(model)


class AOLS(Estimator):
    kind: ClassVar[str] = "aols"
    config_class: ClassVar[type] = AOLSConfig

    def loss(self, system, closure, batch, key, reconstruct):
        u = batch["u"]
        noisy = u + self.config.sigma * jax.random.normal(key, u.shape, dtype=u.dtype)
        misfit = data_misfit(closure, noisy, batch["y"])
        return misfit, {"misfit": misfit}
