"""The tangent-space regularised estimator (TR, docs/design.md §1):

    ‖y − φ_θ(u)‖² + λ · P(u),   V_θ(u) = (S(u, φ_θ(u)) − u)/Δt

with the system's own step S (resolved part included), per sample. Two forms of P:

- ``gradient`` (Algorithm 3.1 of the paper): P = (nᵀ V_θ(u))², n = ∇F/(‖∇F‖ + ε) with
  F(u) = ‖u − D(E(u))‖² for a frozen autoencoder. n does not depend on θ, so ``prepare`` computes
  it once per training state and the step costs one S per sample.
- ``projector`` (ours): P = ‖(I − J_{D∘E}(u)) V_θ(u)‖², one JVP of the autoencoder per sample. For a
  linear autoencoder with D∘E = P_V it is the paper's linear-theory penalty ‖P_{V⊥}(A + BĈ)u‖²;
  unlike the gradient form it does not vanish on exact data (∇F = 0 there).

λ and ε come from the params.yaml section ``reg``, shared by every TR estimator.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from ml4dynamics.core.validation import require_non_negative, require_positive
from ml4dynamics.learning.estimators.base import (
    Estimator,
    Reconstruct,
    data_misfit,
    evaluated_once,
    hybrid_field,
    mean_projector_penalty,
    reconstruction_error,
    squared_norm,
)


@dataclasses.dataclass(frozen=True)
class TangentConfig:
    kind: Literal["tr"]
    normal: Literal["gradient", "projector"]
    lam: float
    eps: float

    def __post_init__(self) -> None:
        require_non_negative(self.lam, "lam", "the weight of the tangent-space penalty")
        require_positive(self.eps, "eps", "the regulariser of the normal's length")


def unit_normal(reconstruct: Reconstruct, u: jax.Array, eps: float) -> jax.Array:
    """n(u) = ∇F(u) / (‖∇F(u)‖ + ε), the manifold's normal direction seen by F."""
    g = jax.grad(lambda v: reconstruction_error(reconstruct, v))(u)
    return g / (jnp.sqrt(squared_norm(g)) + eps)


def unit_normals(reconstruct: Reconstruct, u: jax.Array, eps: float, chunk: int = 64) -> jax.Array:
    """``unit_normal`` for a batch ``(N, *state)``, in chunks to bound memory."""
    fn = jax.jit(jax.vmap(lambda v: unit_normal(reconstruct, v, eps)))
    return jnp.concatenate([fn(u[i : i + chunk]) for i in range(0, u.shape[0], chunk)])


def gradient_penalty(n: jax.Array, v: jax.Array) -> jax.Array:
    """(nᵀ V)² for one sample."""
    return jnp.sum(n * v) ** 2


class TangentSpace(Estimator):
    kind: ClassVar[str] = "tr"
    config_class: ClassVar[type] = TangentConfig
    shared_section: ClassVar[str | None] = "reg"
    shared_keys: ClassVar[tuple[str, ...]] = ("lam", "eps")
    needs_manifold: ClassVar[bool] = True

    @property
    def label(self) -> str:
        return f"tr-{self.config.normal}"

    def prepare(self, data, reconstruct):
        """The gradient form's unit normals n(u), computed once (they do not depend on θ)."""
        if self.config.normal != "gradient":
            return data
        if reconstruct is None:
            raise ValueError("the TR estimator needs the frozen autoencoder (reconstruct)")
        return {**data, "n": unit_normals(reconstruct, data["u"], self.config.eps)}

    def penalty(self, system, closure, batch, reconstruct):
        """Mean over the batch of the per-sample tangent-space penalty of the hybrid field."""
        if self.config.normal == "gradient":
            v = hybrid_field(system, closure, batch)
            return jnp.mean(jax.vmap(gradient_penalty)(batch["n"], v))
        if reconstruct is None:
            raise ValueError("the projector form needs the autoencoder's reconstruction")
        return mean_projector_penalty(system, closure, batch, reconstruct)

    def loss(self, system, closure, batch, key, reconstruct):
        once = evaluated_once(closure, batch["u"])  # the misfit and the penalty share it
        misfit = data_misfit(once, batch["u"], batch["y"])
        penalty = self.penalty(system, once, batch, reconstruct)
        return misfit + self.config.lam * penalty, {"misfit": misfit, "tr_penalty": penalty}

    def validation(self, system, closure, batch, reconstruct):
        out = super().validation(system, closure, batch, reconstruct)
        out["val_loss"] = out["val_misfit"] + self.config.lam * out["val_tr_penalty"]
        return out
