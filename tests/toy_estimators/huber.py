"""A toy estimator kind kept outside the package: Huber regression of the closure,

    mean over the batch of Σ_i h_δ(y_i − φ_θ(u)_i),  h_δ(r) = r²/2 for |r| ≤ δ, δ(|r| − δ/2) else,

robust to outlying labels. ``tests/test_extending.py`` drops this file, unchanged, into a copy of
``ml4dynamics/learning/estimators`` to show that a new kind is one module plus its params.yaml entry.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Literal

import jax
import jax.numpy as jnp

from ml4dynamics.core.validation import require_positive
from ml4dynamics.learning.estimators.base import Estimator


@dataclasses.dataclass(frozen=True)
class HuberConfig:
    kind: Literal["huber"]
    delta: float

    def __post_init__(self) -> None:
        require_positive(self.delta, "delta", "the Huber threshold")


class Huber(Estimator):
    kind: ClassVar[str] = "huber"
    config_class: ClassVar[type] = HuberConfig

    def loss(self, system, closure, batch, key, reconstruct):
        r = jnp.abs(batch["y"] - closure(batch["u"]))
        d = self.config.delta
        h = jnp.where(r <= d, 0.5 * r**2, d * (r - 0.5 * d))
        huber = jnp.mean(jax.vmap(jnp.sum)(h))
        return huber, {"huber": huber}
