"""From a stored dataset to what training needs: its system and (u, y, t) pairs."""

from __future__ import annotations

import typing

import jax.numpy as jnp
import numpy as np
import xarray as xr

from ml4dynamics.errors import DatasetError
from ml4dynamics.systems import System, system_class
from ml4dynamics.validation import coerce


def _varied(ds: xr.Dataset, cls) -> list[str]:
    hints = typing.get_type_hints(cls.config_class)
    return [name for name in hints if name in ds.coords and ds[name].dims == ("sample",)]


def _build(ds: xr.Dataset, cls, sample: int) -> System:
    values = {}
    for name, tp in typing.get_type_hints(cls.config_class).items():
        if name in ds.coords and ds[name].dims == ("sample",):
            value = ds[name].values[sample].item()
        else:
            value = ds.attrs[f"system.{name}"]
        values[name] = coerce(tp, value, f"attribute system.{name}")
    return cls(cls.config_class(**values))


def system_of(ds: xr.Dataset) -> System:
    """Rebuild the system that generated ``ds`` from its attributes.

    Training uses the step S of exactly the system in the data, never a second copy of the
    parameters. A split with several parameter combinations has no single system.
    """
    groups = system_groups(ds)
    if len(groups) > 1:
        varied = _varied(ds, system_class(ds.attrs["system"]))
        raise DatasetError(
            f"split {ds.attrs['split']!r} mixes several values of {', '.join(varied)}; "
            "train on a split with one parameter combination"
        )
    return groups[0][0]


def system_groups(ds: xr.Dataset) -> list[tuple[System, np.ndarray]]:
    """The systems of a split and the sample indices of each, in order of first appearance
    (an ood split may hold several parameter combinations, each rolled out with its own S)."""
    cls = system_class(ds.attrs["system"])
    groups: dict[System, list[int]] = {}
    for sample in range(ds.sizes["sample"]):
        groups.setdefault(_build(ds, cls, sample), []).append(sample)
    return [(system, np.asarray(idx)) for system, idx in groups.items()]


def as_pairs(ds: xr.Dataset) -> dict[str, jnp.ndarray]:
    """Every stored frame as one training sample: ``u (N, *state)``, ``y (N, *closure)``,
    ``t (N,)`` with N = samples × frames."""
    n = ds.sizes["sample"] * ds.sizes["time"]
    u = ds.u.values.reshape(n, *ds.u.shape[2:])
    y = ds.y.values.reshape(n, *ds.y.shape[2:])
    t = np.broadcast_to(ds.time.values, ds.u.shape[:2]).reshape(n)
    return {"u": jnp.asarray(u), "y": jnp.asarray(y), "t": jnp.asarray(t)}
