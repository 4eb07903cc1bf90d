"""Least-squares estimators of the closure (docs/design.md §1), per sample and averaged over the
batch:

- ``ols``:  ‖y − φ_θ(u)‖²
- ``mols``: OLS + wd ‖θ‖²  (weight decay)
- ``aols``: ‖y − φ_θ(u + ε)‖², ε ~ N(0, σ²)  (input-noise augmentation)
- ``field-ols``: ‖V_θ(u) − V(u)‖², the misfit of the hybrid's vector field V = (S(u, ·) − u)/Δt
  rather than of the closure: the error as the solver sees it. For ns_channel, where the closure
  is the pressure and S projects with Δt∇p, this is an H¹-type norm of the pressure error; it
  separates the effect of measuring the error through S from the effect of tangency (TR).
- ``ols-field``: ‖y − φ_θ(u)‖² + λ‖V_θ(u) − V(u)‖², TR's loss with the normal projection
  (I − J_{D∘E}) replaced by the identity: the same misfit and the same weight λ (``reg.<system>``)
  on the field's error, but on all of it, not only its part normal to the manifold. Beside TR it
  says whether TR's gain comes from tangency or from adding an H¹-type norm to the L² misfit.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import nnx

from ml4dynamics.core.validation import require_non_negative, require_positive
from ml4dynamics.learning.estimators.base import (
    VALIDATION_CHUNK,
    Estimator,
    data_misfit,
    evaluated_once,
    hybrid_field,
    squared_norm,
)


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


@dataclasses.dataclass(frozen=True)
class FieldOLSConfig:
    kind: Literal["field-ols"]


def field_misfit(system, closure, batch) -> jax.Array:
    """Mean over the batch of ‖V_θ(u) − V(u)‖², V with the labels as the closure."""
    exact = hybrid_field(system, lambda _u: batch["y"], batch)
    return jnp.mean(jax.vmap(squared_norm)(hybrid_field(system, closure, batch) - exact))


class FieldOLS(Estimator):
    kind: ClassVar[str] = "field-ols"
    config_class: ClassVar[type] = FieldOLSConfig

    def loss(self, system, closure, batch, key, reconstruct):
        once = evaluated_once(closure, batch["u"])  # the field and the reported misfit share it
        field = field_misfit(system, once, batch)
        return field, {"misfit": data_misfit(once, batch["u"], batch["y"]), "field": field}

    def validation(self, system, closure, batch, reconstruct):
        closure = evaluated_once(closure, batch["u"], chunk=VALIDATION_CHUNK)  # super() reuses it
        out = super().validation(system, closure, batch, reconstruct)
        out["val_field_misfit"] = out["val_loss"] = field_misfit(system, closure, batch)
        return out


@dataclasses.dataclass(frozen=True)
class FieldRegularisedConfig:
    kind: Literal["ols-field"]
    lam: float

    def __post_init__(self) -> None:
        require_non_negative(self.lam, "lam", "the weight of the field misfit")


class FieldRegularised(Estimator):
    kind: ClassVar[str] = "ols-field"
    config_class: ClassVar[type] = FieldRegularisedConfig
    shared_section: ClassVar[str | None] = "reg"  # TR's λ: the control at TR's own weight
    shared_keys: ClassVar[tuple[str, ...]] = ("lam",)

    def loss(self, system, closure, batch, key, reconstruct):
        once = evaluated_once(closure, batch["u"])  # the misfit and the field share it
        misfit = data_misfit(once, batch["u"], batch["y"])
        field = field_misfit(system, once, batch)
        return misfit + self.config.lam * field, {"misfit": misfit, "field": field}

    def validation(self, system, closure, batch, reconstruct):
        closure = evaluated_once(closure, batch["u"], chunk=VALIDATION_CHUNK)  # super() reuses it
        out = super().validation(system, closure, batch, reconstruct)
        out["val_field_misfit"] = field_misfit(system, closure, batch)
        out["val_loss"] = out["val_misfit"] + self.config.lam * out["val_field_misfit"]
        return out
