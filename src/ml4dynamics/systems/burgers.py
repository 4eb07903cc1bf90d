"""1D viscous Burgers on a coarse grid, closed by a fine solver.

    u_t + u u_x = ν u_xx   on [0, L), periodic,

in the conservative form u_t = ν u_xx − ½ (u²)_x: the linear symbol −ν k², integrated exactly by
ETDRK4, and the convective term of ``Convection1D``. Smooth random waves steepen into shocks of
width ~ν/|u| that the fine grid resolves and the coarse one does not; with no forcing the
energy then decays, and the dynamics are not chaotic. Everything else (the grids, the closures,
the reference run, the solver ladder) is ``SpectralCoarseGrid``'s (``systems/coarse_grid.py``).
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
class BurgersConfig(CoarseGridConfig):
    """Defaults: [0, 2π), 256 fine points and 64 coarse ones, ν = 0.01, Δt = 0.02 with 4 fine
    steps per coarse step (Δt |u|max k_max ≲ 1 on both grids: ETDRK4 holds below ~2.8)."""

    dt: float = 0.02
    fine_substeps: int = 4
    length: float = 2 * np.pi
    viscosity: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        require_positive(self.length, "length", "the period of the domain")
        require_positive(self.viscosity, "viscosity", "the kinematic viscosity ν")


class SpectralBurgers(Convection1D):
    """The Burgers solver on ``n`` points of [0, ``length``): ETDRK4 steps of ``dt``."""

    def __init__(self, n: int, length: float, dt: float, dealiasing: Dealiasing, viscosity: float):
        self.viscosity = viscosity
        super().__init__(n, length, dt, dealiasing)

    def symbol(self, k: np.ndarray) -> np.ndarray:
        return -self.viscosity * k**2


class Burgers(SpectralCoarseGrid):
    name: ClassVar[str] = "burgers"
    physical_params: ClassVar[Mapping[str, Physical]] = {
        "viscosity": Physical(0.005, 0.04, log=True, description="the kinematic viscosity"),
    }
    config_class: ClassVar[type[SystemConfig]] = BurgersConfig
    spectrum_weight: ClassVar[int | None] = 0  # u is the velocity
    flux_description: ClassVar[str] = "stress R(u^2) - (R u)^2"
    config: BurgersConfig

    def solver(self, n: int, dt: float, dealiasing: Dealiasing = "padded") -> SpectralBurgers:
        return SpectralBurgers(n, self.config.length, dt, dealiasing, self.config.viscosity)
