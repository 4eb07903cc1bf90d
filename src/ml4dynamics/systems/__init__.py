"""Simulated systems: one module each, all following ``ml4dynamics.systems.base.System``.

The registry ``SYSTEMS`` holds every concrete ``System`` subclass defined in a module of this
package, by its ``name``: a new system is one new file here (plus its params.yaml sections).
What a system can do beyond the protocol is the interface it derives from, asked with
``isinstance``: ``ExactClosure`` (the closure of any state can be computed) or
``CoarseGridClosure`` (a coarse grid closed by a fine solver).
"""

from __future__ import annotations

from ml4dynamics.core.discovery import concrete_subclasses
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.systems.base import (
    CoarseGridClosure,
    ExactClosure,
    Physical,
    System,
    SystemConfig,
)
from ml4dynamics.systems.linear import Linear, LinearConfig
from ml4dynamics.systems.ns_channel import ChannelFlow, ChannelFlowConfig
from ml4dynamics.systems.reaction_diffusion import ReactionDiffusion, ReactionDiffusionConfig

#: every system by the name used in params.yaml and on the command line
SYSTEMS: dict[str, type[System]] = concrete_subclasses("ml4dynamics.systems", System, "name")


def system_class(name: str) -> type[System]:
    """The system class called ``name``, or a clear error listing the known ones."""
    try:
        return SYSTEMS[name]
    except KeyError:
        raise ML4DError(f"unknown system {name!r}; known systems: {', '.join(SYSTEMS)}") from None


def make_system(config: SystemConfig) -> System:
    """Build the system whose config class is ``type(config)``."""
    for cls in SYSTEMS.values():
        if type(config) is cls.config_class:
            return cls(config)
    raise TypeError(f"no system takes {type(config).__name__}")


__all__ = [
    "SYSTEMS",
    "ChannelFlow",
    "ChannelFlowConfig",
    "CoarseGridClosure",
    "ExactClosure",
    "Linear",
    "LinearConfig",
    "Physical",
    "ReactionDiffusion",
    "ReactionDiffusionConfig",
    "System",
    "SystemConfig",
    "make_system",
    "system_class",
]
