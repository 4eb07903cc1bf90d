"""Estimators of the closure as loss functions (DESIGN §2).

Per sample, averaged over the batch (``‖·‖²`` sums over every element of a sample):

- ``ols``:  ‖y − φ_θ(u)‖²
- ``mols``: OLS + wd ‖θ‖²  (weight decay; added by the trainer, which owns θ)
- ``aols``: ‖y − φ_θ(u + ε)‖², ε ~ N(0, σ²)  (input-noise augmentation)
- ``tr``:   OLS + λ · P(u), the tangent-space penalty on the hybrid's discrete vector field
  V_θ(u) = (S(u, φ_θ(u)) − u)/Δt computed with the system's own step S (resolved part included):
    * ``gradient`` (Algorithm 3.1 of the paper): P = (nᵀ V_θ(u))², n = ∇F/(‖∇F‖ + ε) with
      F(u) = ‖u − D(E(u))‖² for a frozen autoencoder. n does not depend on θ, so it is computed
      once per training state (``unit_normals``) and the step costs one S per sample.
    * ``projector`` (ours): P = ‖(I − J_{D∘E}(u)) V_θ(u)‖², one JVP of the autoencoder per sample.
      For a linear autoencoder with D∘E = P_V it is the paper's linear-theory penalty
      ‖P_{V⊥}(A + BĈ)u‖²; unlike the gradient form it does not vanish on exact data (∇F = 0 there).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp

from ml4dynamics.rollout import displacement
from ml4dynamics.systems import System
from ml4dynamics.validation import require, require_non_negative, require_positive

Reconstruct = Callable[[jax.Array], jax.Array]  # u ↦ D(E(u)), single sample
BatchClosure = Callable[[jax.Array], jax.Array]  # (B, *state) ↦ (B, *closure)


@dataclasses.dataclass(frozen=True)
class RegConfig:
    """``reg`` in params.yaml: which estimator, and its weights."""

    kind: Literal["ols", "mols", "aols", "tr"]
    lam: float
    normal: Literal["gradient", "projector"]
    sigma: float
    wd: float
    eps: float

    def __post_init__(self) -> None:
        require_non_negative(self.lam, "lam", "the weight of the tangent-space penalty")
        require_non_negative(self.sigma, "sigma", "the input-noise level of aOLS")
        require_non_negative(self.wd, "wd", "the weight decay of mOLS")
        require_positive(self.eps, "eps", "the regulariser of the normal's length")
        require(
            self.kind != "aols" or self.sigma > 0,
            "sigma",
            "must be > 0 for kind aols",
            "set the input noise level",
        )

    @property
    def label(self) -> str:
        """Short name for runs and tables: ols, mols, aols, tr-gradient, tr-projector."""
        return f"tr-{self.normal}" if self.kind == "tr" else self.kind


def squared_norm(x: jax.Array) -> jax.Array:
    return jnp.sum(x**2)


def reconstruction_error(reconstruct: Reconstruct, u: jax.Array) -> jax.Array:
    """F(u) = ‖u − D(E(u))‖², ≈ 0 on the data manifold."""
    return squared_norm(u - reconstruct(u))


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


def projector_penalty(reconstruct: Reconstruct, u: jax.Array, v: jax.Array) -> jax.Array:
    """‖(I − J_{D∘E}(u)) V‖² for one sample: one JVP of the autoencoder."""
    _, jv = jax.jvp(reconstruct, (u,), (v,))
    return squared_norm(v - jv)


def tangent_penalty(
    reg: RegConfig,
    system: System,
    closure: BatchClosure,
    batch: dict[str, jax.Array],
    reconstruct: Reconstruct | None,
) -> jax.Array:
    """Mean over the batch of the per-sample tangent-space penalty of the hybrid field."""
    u, t, q = batch["u"], batch["t"], batch.get("q", {})
    # each sample with its own sample parameters (a Reynolds sweep, a random inflow)
    v = jax.vmap(lambda ui, yi, ti, qi: displacement(system, ui, yi, ti, qi))(u, closure(u), t, q)
    if reg.normal == "gradient":
        return jnp.mean(jax.vmap(gradient_penalty)(batch["n"], v))
    if reconstruct is None:
        raise ValueError("the projector form needs the autoencoder's reconstruction")
    return jnp.mean(jax.vmap(lambda ui, vi: projector_penalty(reconstruct, ui, vi))(u, v))


def data_misfit(closure: BatchClosure, u: jax.Array, y: jax.Array) -> jax.Array:
    """Mean over the batch of ‖y − φ_θ(u)‖²."""
    return jnp.mean(jax.vmap(squared_norm)(y - closure(u)))


def estimator_loss(
    reg: RegConfig,
    system: System,
    closure: BatchClosure,
    batch: dict[str, jax.Array],
    key: jax.Array,
    reconstruct: Reconstruct | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The estimator's loss on a batch (weight decay excluded) and its parts."""
    u, y = batch["u"], batch["y"]
    if reg.kind == "aols":
        u_in = u + reg.sigma * jax.random.normal(key, u.shape, dtype=u.dtype)
        misfit = data_misfit(closure, u_in, y)
    else:
        misfit = data_misfit(closure, u, y)
    if reg.kind != "tr":
        return misfit, {"misfit": misfit}
    penalty = tangent_penalty(reg, system, closure, batch, reconstruct)
    return misfit + reg.lam * penalty, {"misfit": misfit, "tr_penalty": penalty}
