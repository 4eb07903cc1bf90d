"""Networks: closures φ_θ and manifold autoencoders, built from validated configs.

Each model kind has its own frozen config class, selected in params.yaml by ``kind``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from flax import nnx

from ml4dynamics.errors import ML4DError
from ml4dynamics.models.autoencoders import ConvAutoencoder, LinearAutoencoder
from ml4dynamics.models.closures import LinearClosure, LocalClosure, UNet
from ml4dynamics.systems import System
from ml4dynamics.validation import require


@dataclasses.dataclass(frozen=True)
class LinearClosureConfig:
    kind: Literal["linear"]


@dataclasses.dataclass(frozen=True)
class LocalClosureConfig:
    kind: Literal["local"]
    hidden: int
    depth: int
    stencil: int

    def __post_init__(self) -> None:
        require(self.hidden >= 1, "hidden", "must be >= 1", "set the width of the MLP")
        require(self.depth >= 1, "depth", "must be >= 1", "set the number of hidden layers")
        require(
            self.stencil >= 1 and self.stencil % 2 == 1,
            "stencil",
            f"must be an odd number >= 1, got {self.stencil}",
            "use 1 (pointwise) or 3",
        )


@dataclasses.dataclass(frozen=True)
class UNetConfig:
    kind: Literal["unet"]
    width: int
    levels: int

    def __post_init__(self) -> None:
        require(self.width >= 1, "width", "must be >= 1", "set the channels of the first level")
        require(self.levels >= 1, "levels", "must be >= 1", "set the number of poolings")


@dataclasses.dataclass(frozen=True)
class LinearAutoencoderConfig:
    kind: Literal["linear"]
    latent: int

    def __post_init__(self) -> None:
        require(self.latent >= 1, "latent", "must be >= 1", "set the latent dimension")


@dataclasses.dataclass(frozen=True)
class ConvAutoencoderConfig:
    kind: Literal["conv"]
    width: int
    levels: int
    latent_channels: int

    def __post_init__(self) -> None:
        require(self.width >= 1, "width", "must be >= 1", "set the channels of the first level")
        require(self.levels >= 1, "levels", "must be >= 1", "set the number of poolings")
        require(self.latent_channels >= 1, "latent_channels", "must be >= 1", "set it to e.g. 4")


ClosureConfig = LinearClosureConfig | LocalClosureConfig | UNetConfig
ManifoldConfig = LinearAutoencoderConfig | ConvAutoencoderConfig
CLOSURE_KINDS = {"linear": LinearClosureConfig, "local": LocalClosureConfig, "unet": UNetConfig}
MANIFOLD_KINDS = {"linear": LinearAutoencoderConfig, "conv": ConvAutoencoderConfig}


def _grid(system: System, what: str) -> tuple[int, tuple[int, int], bool]:
    """(channels, (n1, n2), periodic) of a 2D field state, or a clear error."""
    shape = system.state_shape
    if len(shape) != 3:
        raise ML4DError(
            f"a {what} needs 2D fields (channels, n1, n2); "
            f"system {system.name!r} has states of shape {shape}"
        )
    return shape[0], (shape[1], shape[2]), system.boundary == "periodic"


def _check_levels(grid: tuple[int, int], levels: int, what: str) -> None:
    if any(n % 2**levels for n in grid):
        raise ML4DError(
            f"{what} with {levels} levels needs both grid sides divisible by {2**levels}; "
            f"the grid is {grid[0]} x {grid[1]}: use fewer levels"
        )


def build_closure(config: ClosureConfig, system: System, seed: int) -> nnx.Module:
    rngs = nnx.Rngs(seed)
    if isinstance(config, LinearClosureConfig):
        if len(system.state_shape) != 1:
            raise ML4DError(
                f"closure kind 'linear' needs vector states; system {system.name!r} "
                f"has {system.state_shape}: use 'local' or 'unet'"
            )
        return LinearClosure(system.state_shape[0], system.closure_shape[0], rngs=rngs)
    channels, n, periodic = _grid(system, f"closure of kind {config.kind!r}")
    out = system.closure_shape[0]
    if isinstance(config, LocalClosureConfig):
        return LocalClosure(
            channels, out, config.hidden, config.depth, config.stencil, periodic=periodic, rngs=rngs
        )
    _check_levels(n, config.levels, "unet")
    return UNet(channels, out, config.width, config.levels, periodic=periodic, rngs=rngs)


def build_manifold(config: ManifoldConfig, system: System, seed: int) -> nnx.Module:
    rngs = nnx.Rngs(seed)
    if isinstance(config, LinearAutoencoderConfig):
        if len(system.state_shape) != 1:
            raise ML4DError(
                f"manifold kind 'linear' needs vector states; system "
                f"{system.name!r} has {system.state_shape}: use 'conv'"
            )
        return LinearAutoencoder(system.state_shape[0], config.latent, rngs=rngs)
    channels, n, periodic = _grid(system, "conv autoencoder")
    _check_levels(n, config.levels, "conv autoencoder")
    return ConvAutoencoder(
        channels, config.width, config.levels, config.latent_channels, periodic=periodic, rngs=rngs
    )


__all__ = [
    "CLOSURE_KINDS",
    "MANIFOLD_KINDS",
    "ClosureConfig",
    "ConvAutoencoder",
    "LinearAutoencoder",
    "LinearClosure",
    "LocalClosure",
    "ManifoldConfig",
    "UNet",
    "build_closure",
    "build_manifold",
]
