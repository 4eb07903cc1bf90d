"""Networks: closures φ_θ and manifold autoencoders, built from validated configs.

Each model kind has its own frozen config class, selected in params.yaml by ``kind``. A network
is built from the field specifications of what it maps (``FieldSpec``: channels, grid,
periodic), never from a system: vectors (grid ``()``) get the linear kinds, fields on a 1D or
2D grid the convolutional ones.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Literal

import jax
from flax import nnx

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.fields import FieldSpec
from ml4dynamics.core.validation import require
from ml4dynamics.models.autoencoders import ConvAutoencoder, LinearAutoencoder, PCAManifold
from ml4dynamics.models.closures import LinearClosure, LocalClosure, UNet
from ml4dynamics.models.layers import DTYPES

#: what a grid network computes in; fields enter and leave as float64 either way
Dtype = Literal["float32", "float64"]


@dataclasses.dataclass(frozen=True)
class LinearClosureConfig:
    kind: Literal["linear"]


@dataclasses.dataclass(frozen=True)
class LocalClosureConfig:
    kind: Literal["local"]
    hidden: int
    depth: int
    stencil: int
    dtype: Dtype = "float64"

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
    dtype: Dtype = "float64"

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
    #: train on each state at a random periodic translation (periodic grids only)
    shift_augment: bool = False
    dtype: Dtype = "float64"

    def __post_init__(self) -> None:
        require(self.width >= 1, "width", "must be >= 1", "set the channels of the first level")
        require(self.levels >= 1, "levels", "must be >= 1", "set the number of poolings")
        require(self.latent_channels >= 1, "latent_channels", "must be >= 1", "set it to e.g. 4")


@dataclasses.dataclass(frozen=True)
class PCAManifoldConfig:
    """Principal modes of the training states: at most ``rank`` of them, as many as explain a
    fraction ``energy`` of the variance; on a periodic grid each training state also enters with
    ``shifts`` random periodic translations (0: none), so that the modes span translated
    patterns too."""

    kind: Literal["pca"]
    rank: int
    energy: float
    shifts: int

    def __post_init__(self) -> None:
        require(self.rank >= 1, "rank", "must be >= 1", "set the largest number of modes")
        require(
            0.0 < self.energy <= 1.0,
            "energy",
            f"must be in (0, 1], got {self.energy}",
            "use e.g. 0.9999 (the fraction of the variance the modes explain)",
        )
        require(self.shifts >= 0, "shifts", "must be >= 0", "use 0 for no augmentation")


ClosureConfig = LinearClosureConfig | LocalClosureConfig | UNetConfig
ManifoldConfig = LinearAutoencoderConfig | ConvAutoencoderConfig | PCAManifoldConfig
CLOSURE_KINDS = {"linear": LinearClosureConfig, "local": LocalClosureConfig, "unet": UNetConfig}
MANIFOLD_KINDS = {
    "linear": LinearAutoencoderConfig,
    "conv": ConvAutoencoderConfig,
    "pca": PCAManifoldConfig,
}


def _initialised(make: Callable[[], nnx.Module]) -> nnx.Module:
    """``make()`` run as one compiled program: eagerly, every layer's random initialiser compiles
    on its own; the values are the same. ``make`` creates its own random state (``_rngs``: it
    cannot cross into the compiled program)."""
    return nnx.jit(make)()


def _rngs(seed: int) -> nnx.Rngs:
    """The random state initial weights are drawn from: XLA's RngBitGenerator (``rbg``) rather
    than the default threefry, whose 20 unrolled rounds per draw took 11 of the 15 s a small
    U-Net's initialisation compiled for on 2 CPU cores (``rbg``: 3.6 s in all). Same seed, same
    weights on one platform; the data and everything else keep the default generator."""
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def _describe(spec: FieldSpec) -> str:
    if spec.ndim == 0:
        return f"a vector of shape {spec.shape}"
    side = f"{spec.grid[0]}-point" if spec.ndim == 1 else " x ".join(map(str, spec.grid))
    kind = "periodic" if spec.periodic else "non-periodic"
    return f"shape {spec.shape} ({spec.channels} channels on a {kind} {side} grid)"


def _require_grid(spec: FieldSpec, what: str, role: str, fix: str) -> None:
    if spec.ndim == 0:
        raise ML4DError(
            f"{what} needs fields on a grid (channels, n1, ...); the {role} is "
            f"{_describe(spec)}: {fix}"
        )


def _check_levels(grid: tuple[int, ...], levels: int, what: str) -> None:
    if any(n % 2**levels for n in grid):
        raise ML4DError(
            f"{what} with {levels} levels needs every grid side divisible by {2**levels}; "
            f"the grid is {' x '.join(map(str, grid))}: use fewer levels"
        )


def build_closure(
    config: ClosureConfig, state: FieldSpec, closure: FieldSpec, seed: int
) -> nnx.Module:
    """The closure network of ``config`` mapping ``(B, *state.shape)`` → ``(B, *closure.shape)``.

    Padding follows ``state.periodic``; parameters are initialised from ``seed``.
    """
    if isinstance(config, LinearClosureConfig):
        for role, spec in (("state", state), ("closure", closure)):
            if spec.ndim != 0:
                raise ML4DError(
                    f"closure kind 'linear' needs vector states and closures; the {role} has "
                    f"{_describe(spec)}: use 'local' or 'unet'"
                )
        d_state, d_closure = state.channels, closure.channels
        return _initialised(lambda: LinearClosure(d_state, d_closure, rngs=_rngs(seed)))
    what = f"closure kind {config.kind!r}"
    _require_grid(state, what, "state", "use 'linear'")
    if closure.grid != state.grid:
        raise ML4DError(
            f"{what} maps fields to fields on the same grid; the state has {_describe(state)} "
            f"but the closure has {_describe(closure)}: give the closure the state's grid"
        )
    ndim, periodic, out = state.ndim, state.periodic, closure.channels
    # what every grid closure is built with (its rngs are made inside the compiled init)
    grid = {"ndim": ndim, "periodic": periodic, "dtype": DTYPES[config.dtype]}
    if isinstance(config, LocalClosureConfig):
        hidden, depth, stencil = config.hidden, config.depth, config.stencil
        return _initialised(
            lambda: LocalClosure(
                state.channels, out, hidden, depth, stencil, rngs=_rngs(seed), **grid
            )
        )
    _check_levels(state.grid, config.levels, "unet")
    width, levels = config.width, config.levels
    return _initialised(lambda: UNet(state.channels, out, width, levels, rngs=_rngs(seed), **grid))


def build_manifold(config: ManifoldConfig, state: FieldSpec, seed: int) -> nnx.Module:
    """The autoencoder of ``config`` for states ``(B, *state.shape)``, with a bottleneck."""
    size = math.prod(state.shape)
    if isinstance(config, LinearAutoencoderConfig):
        if state.ndim != 0:
            raise ML4DError(
                f"manifold kind 'linear' needs vector states; the state has "
                f"{_describe(state)}: use 'conv'"
            )
        if config.latent >= size:
            raise ML4DError(
                f"manifold kind 'linear' with latent {config.latent} has no bottleneck for "
                f"states of {size} components: use latent < {size}"
            )
        d, latent = state.channels, config.latent
        return _initialised(lambda: LinearAutoencoder(d, latent, rngs=_rngs(seed)))
    if isinstance(config, PCAManifoldConfig):
        if config.rank >= size:
            raise ML4DError(
                f"manifold kind 'pca' with rank {config.rank} has no bottleneck for states of "
                f"{size} components: use rank < {size}"
            )
        if config.shifts and not (state.ndim and state.periodic):
            raise ML4DError(
                f"manifold kind 'pca' with shifts={config.shifts} needs a periodic grid; the "
                f"state has {_describe(state)}: use shifts: 0"
            )
        return _initialised(lambda: PCAManifold(state.shape, config.rank))
    _require_grid(state, "manifold kind 'conv'", "state", "use 'linear'")
    _check_levels(state.grid, config.levels, "conv autoencoder")
    if config.shift_augment and not state.periodic:
        raise ML4DError(
            f"conv autoencoder with shift_augment needs a periodic grid; the state has "
            f"{_describe(state)}: use shift_augment: false"
        )
    latent = config.latent_channels * size // (state.channels * 2 ** (config.levels * state.ndim))
    if latent >= size:
        raise ML4DError(
            f"conv autoencoder with levels={config.levels}, latent_channels="
            f"{config.latent_channels} has no bottleneck for {_describe(state)}: its latent "
            f"holds {latent} numbers for {size}; use fewer latent_channels or more levels"
        )
    return _initialised(
        lambda: ConvAutoencoder(
            state.channels,
            config.width,
            config.levels,
            config.latent_channels,
            ndim=state.ndim,
            periodic=state.periodic,
            rngs=_rngs(seed),
            dtype=DTYPES[config.dtype],
        )
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
    "PCAManifold",
    "PCAManifoldConfig",
    "UNet",
    "build_closure",
    "build_manifold",
]
