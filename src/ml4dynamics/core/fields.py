"""What a network needs to know about the arrays it maps: a field specification.

A state or closure of a system is ``(channels, *grid)``: ``channels`` fields sampled on a grid of
``len(grid)`` spatial dimensions (``grid == ()`` for a plain vector, e.g. the linear toy), on a
periodic domain or not. Networks are built from these specifications alone, never from a system,
so the same U-Net serves a 1D Kuramoto-Sivashinsky state and a 2D channel flow.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """``channels`` fields on ``grid`` (spatial sizes, possibly empty), periodic or not."""

    channels: int
    grid: tuple[int, ...]
    periodic: bool

    def __post_init__(self) -> None:
        if self.channels < 1 or any(n < 1 for n in self.grid):
            raise ValueError(f"a field needs >= 1 channel and positive sizes, got {self}")
        object.__setattr__(self, "grid", tuple(int(n) for n in self.grid))

    @classmethod
    def from_shape(cls, shape: Sequence[int], periodic: bool) -> FieldSpec:
        """``(channels, *grid)`` → spec (a 1-tuple is a vector of ``channels`` components)."""
        return cls(int(shape[0]), tuple(int(n) for n in shape[1:]), bool(periodic))

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.channels, *self.grid)

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (0 for a vector)."""
        return len(self.grid)

    def as_dict(self) -> dict[str, Any]:
        return {"channels": self.channels, "grid": list(self.grid), "periodic": self.periodic}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldSpec:
        return cls(int(data["channels"]), tuple(data["grid"]), bool(data["periodic"]))
