"""Can the manifold model see a closure's errors? The floor diagnostic of the tangent penalty.

The tangent penalty P of a closure φ measures the part of the hybrid field V_φ(u) that the frozen
manifold model calls normal. Applied to the exact closure (the labels y), P is not zero: it is
the manifold model's own error, the **floor**. A closure's penalty carries a tangency signal only
where it is well above the floor; with

    floor ratio = P(exact closure) / P(φ)   (on validation states)

near 1 the manifold model cannot tell φ's errors from its own, and TR trains on autoencoder
artefacts. A TR run whose training penalty ends *below* the training floor has fitted those
artefacts (it is flagged). Both are reported for every trained closure (docs/design.md §1).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ml4dynamics.learning.estimators import Estimator
from ml4dynamics.learning.estimators.base import mean_projector_penalty

#: above this floor ratio the manifold model is too coarse for the closure's errors
FLOOR_RATIO_LIMIT = 0.1


def _chunks(batch: Mapping[str, Any], size: int):
    n = jax.tree.leaves(batch)[0].shape[0]
    for start in range(0, n, size):
        yield jax.tree.map(lambda a, s=start: a[s : s + size], batch), min(size, n - start)


def _batch_mean(fn, batch: Mapping[str, Any], chunk: int) -> float:
    fn = jax.jit(fn)
    total, count = 0.0, 0
    for part, n in _chunks(batch, chunk):
        total += float(fn(part)) * n
        count += n
    return total / count


def floor(
    estimator: Estimator, system, batch: Mapping[str, Any], reconstruct, chunk: int = 64
) -> float:
    """Mean over ``batch`` (prepared by ``estimator``) of the exact closure's penalty, in the
    estimator's own form of the penalty."""
    return _batch_mean(lambda b: estimator.floor(system, b, reconstruct), batch, chunk)


def projector_floor(system, batch: Mapping[str, Any], reconstruct, chunk: int = 64) -> float:
    """The floor in the projector form ‖(I − J_{D∘E}) V‖², the form every closure's
    ``val_tr_penalty`` is reported in unless it trains on another (``fit-manifold`` reports it)."""
    return _batch_mean(
        lambda b: mean_projector_penalty(system, lambda _u: b["y"], b, reconstruct), batch, chunk
    )


def ratio(floor_value: float, penalty: float) -> float:
    """floor / penalty; infinite for a closure with no penalty at all."""
    return floor_value / penalty if penalty > 0 else float(jnp.inf)


def assess(
    estimator: Estimator,
    system,
    train: Mapping[str, Any],
    val: Mapping[str, Any],
    reconstruct,
    final: Mapping[str, float],
) -> dict[str, Any]:
    """The manifold-quality record of one trained closure.

    ``train`` and ``val`` are the pairs the closure was trained and validated on, ``final`` the
    last epoch's metrics (``val_tr_penalty``; ``train_tr_penalty`` for a TR estimator)."""
    val_floor = floor(estimator, system, estimator.prepare(val, reconstruct), reconstruct)
    penalty = float(final["val_tr_penalty"])
    out: dict[str, Any] = {
        "val_floor": val_floor,
        "val_tr_penalty": penalty,
        "floor_ratio": ratio(val_floor, penalty),
        # the natural scale of λ: where λ·penalty weighs as much as the misfit (for OLS)
        "lam_scale": ratio(float(final["val_misfit"]), penalty),
    }
    if "train_tr_penalty" in final:  # it trains on the penalty: did it go below the floor?
        train_floor = floor(estimator, system, estimator.prepare(train, reconstruct), reconstruct)
        out["train_floor"] = train_floor
        out["below_floor"] = bool(final["train_tr_penalty"] < train_floor)
    return out


def warnings(record: Mapping[str, Any], what: str) -> list[str]:
    """One line per problem of ``record`` (from ``assess``) for the closure ``what``."""
    lines = []
    if record["floor_ratio"] > FLOOR_RATIO_LIMIT:
        # a closure trained on the penalty (TR) pushes its own penalty down to the floor: then
        # the manifold model may be fine (judge it by an OLS closure's ratio), TR has used it up
        advice = (
            "it trains on the penalty and has removed the normal error the manifold model can "
            "see (a larger λ fits the model's artefacts); judge the manifold model by an OLS "
            "closure's floor ratio"
            if "train_floor" in record
            else "lower the floor (more training trajectories, manifold kind 'pca' or shift "
            "augmentation)"
        )
        lines.append(
            f"{what}: the manifold model cannot tell this closure's errors from its own "
            f"(floor/penalty = {record['floor_ratio']:.3g} > {FLOOR_RATIO_LIMIT} on validation): "
            + advice
        )
    if record.get("below_floor"):
        lines.append(
            f"{what}: its training penalty fell below the manifold's floor "
            f"({record['train_floor']:.3g}): it fits the manifold model's artefacts"
        )
    return lines
