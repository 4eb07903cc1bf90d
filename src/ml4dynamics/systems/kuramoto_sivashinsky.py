"""1D Kuramoto–Sivashinsky on a coarse grid, closed by a fine solver.

    u_t + u u_x + u_xx + u_xxxx = 0   on [0, L), periodic,

in the conservative form u_t = −u_xx − u_xxxx − ½ (u²)_x: the linear symbol k² − k⁴, integrated
exactly by ETDRK4, and the convective term of ``Convection1D`` (the product zero-padded to 3/2),
float64. The grids, the two closure kinds (``correction``; ``filter``, the sub-grid
stress τ = R(u²) − (R u)² entering as −½ ∂_x τ), the reference run and the solver ladder are
``SpectralCoarseGrid``'s (``systems/coarse_grid.py``). At L = 128 the dynamics are
spatio-temporally chaotic.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from ml4dynamics.core.validation import require_positive
from ml4dynamics.systems.base import Physical, SystemConfig
from ml4dynamics.systems.coarse_grid import CoarseGridConfig, SpectralCoarseGrid
from ml4dynamics.systems.spectral import Convection1D, Dealiasing


@dataclasses.dataclass(frozen=True)
class KuramotoSivashinskyConfig(CoarseGridConfig):
    """Defaults: L = 128, a fine grid of 512 points and a coarse one of 64 (8× coarser: where the
    plain solver alone decorrelates by t ≈ 7 and a closure is needed; at 128 points it stays
    within 3e-4 of the truth to t = 10, see bench/ks_resolution.md), Δt = 0.25 (one fine step
    per coarse step), initial states of the 16 longest waves with standard deviation 1, the
    ``correction`` closure."""

    dt: float = 0.25
    n_fine: int = 512
    coarsening: int = 8
    ic_modes: int = 16
    length: float = 128.0

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self.length, "length", "the period of the domain")


class SpectralKS(Convection1D):
    """The KS solver on ``n`` points of [0, ``length``): ETDRK4 steps of ``dt``."""

    def symbol(self, k: np.ndarray) -> np.ndarray:
        return k**2 - k**4


class KuramotoSivashinsky(SpectralCoarseGrid):
    name: ClassVar[str] = "ks"
    physical_params: ClassVar[Mapping[str, Physical]] = {
        "length": Physical(96.0, 192.0, description="the period of the domain"),
    }
    config_class: ClassVar[type[SystemConfig]] = KuramotoSivashinskyConfig
    chaotic: ClassVar[bool] = True  # spatio-temporal chaos at L = 128
    spectrum_weight: ClassVar[int | None] = 0  # u is the velocity
    flux_description: ClassVar[str] = "stress R(u^2) - (R u)^2"
    fine_in_fourier: ClassVar[bool] = False  # fields between fine steps, as ks's data were made
    config: KuramotoSivashinskyConfig

    def solver(self, n: int, dt: float, dealiasing: Dealiasing = "padded") -> SpectralKS:
        return SpectralKS(n, self.config.length, dt, dealiasing)
