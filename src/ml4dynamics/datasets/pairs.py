"""From a stored dataset to what training needs: its system and (u, y, t) pairs."""

from __future__ import annotations

import typing

import jax.numpy as jnp
import numpy as np
import xarray as xr

from ml4dynamics.core.errors import DatasetError
from ml4dynamics.core.validation import coerce
from ml4dynamics.systems import System, system_class


def _varied(ds: xr.Dataset, cls) -> list[str]:
    hints = typing.get_type_hints(cls.config_class)
    return [name for name in hints if name in ds.coords and ds[name].dims == ("sample",)]


def _build(ds: xr.Dataset, cls, sample: int, static: bool = False) -> System:
    """The system of one sample; with ``static``, its sample parameters are those of sample 0
    (they reach the step through ``bind``, so they do not split a group)."""
    values = {}
    for name, tp in typing.get_type_hints(cls.config_class).items():
        if name in ds.coords and ds[name].dims == ("sample",):
            at = 0 if static and name in cls.sample_params else sample
            value = ds[name].values[at].item()
        else:
            value = ds.attrs[f"system.{name}"]
        values[name] = coerce(tp, value, f"attribute system.{name}")
    return cls(cls.config_class(**values))


def sample_params(ds: xr.Dataset, idx: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The sample parameters of the trajectories ``idx`` (all by default), name → values."""
    cls = system_class(ds.attrs["system"])
    missing = [name for name in cls.sample_params if name not in ds.coords]
    if missing:
        raise DatasetError(
            f"the {cls.name} dataset has no coordinate {', '.join(missing)} (a sample parameter "
            "of every trajectory); regenerate it with `ml4d generate`"
        )
    rows = slice(None) if idx is None else idx
    return {name: np.asarray(ds[name].values[rows], dtype=np.float64) for name in cls.sample_params}


def system_of(ds: xr.Dataset) -> System:
    """Rebuild the system that generated ``ds`` from its attributes.

    Training uses the step S of exactly the system in the data, never a second copy of the
    parameters. A split whose parameter combinations differ in more than sample parameters has
    no single system; sample parameters (``as_pairs``) ride along with every sample.
    """
    groups = system_groups(ds)
    if len(groups) > 1:
        cls = system_class(ds.attrs["system"])
        varied = [n for n in _varied(ds, cls) if n not in cls.sample_params]
        raise DatasetError(
            f"split {ds.attrs['split']!r} mixes several values of {', '.join(varied)}; "
            "train on a split with one parameter combination"
        )
    return groups[0][0]


def system_groups(ds: xr.Dataset) -> list[tuple[System, np.ndarray, dict[str, np.ndarray]]]:
    """The systems of a split, the sample indices of each and their sample parameters, in order
    of first appearance (an ood split may hold several parameter combinations, each rolled out
    with its own S; trajectories that differ only in sample parameters share one system)."""
    cls = system_class(ds.attrs["system"])
    groups: dict[System, list[int]] = {}
    for sample in range(ds.sizes["sample"]):
        groups.setdefault(_build(ds, cls, sample, static=True), []).append(sample)
    return [
        (system, np.asarray(idx), sample_params(ds, np.asarray(idx)))
        for system, idx in groups.items()
    ]


def steps_per_frame(ds: xr.Dataset) -> int:
    """Solver steps of S between two consecutive stored frames (the dataset's ``store_every``):
    a window's frames are ``steps_per_frame(ds)`` steps apart, so an unrolled loss rolls out that
    many steps from one frame to the next."""
    if "store_every" not in ds.attrs:
        raise DatasetError(
            f"split {ds.attrs.get('split')!r} has no attribute store_every (the solver steps "
            "between stored frames); regenerate it with `ml4d generate`"
        )
    return int(ds.attrs["store_every"])


def _windows(ds: xr.Dataset, k: int) -> dict[str, typing.Any]:
    """``as_windows`` in NumPy (views where possible)."""
    frames = ds.sizes["time"]
    if not 1 <= k <= frames:
        raise DatasetError(
            f"window length k={k} is outside 1..{frames} (the frames per trajectory of split "
            f"{ds.attrs.get('split')!r})"
        )

    def windows(a: np.ndarray) -> np.ndarray:  # (S, T, *rest) -> (S·(T-k+1), k, *rest)
        w = np.moveaxis(np.lib.stride_tricks.sliding_window_view(a, k, axis=1), -1, 2)
        return w.reshape(-1, k, *a.shape[2:])

    t = np.broadcast_to(ds.time.values, ds.u.shape[:2])
    starts = frames - k + 1
    q = {name: np.repeat(v, starts) for name, v in sample_params(ds).items()}
    return {"u": windows(ds.u.values), "y": windows(ds.y.values), "t": windows(t), "q": q}


def as_windows(ds: xr.Dataset, k: int) -> dict[str, typing.Any]:
    """Every run of ``k`` consecutive stored frames of every trajectory as one sample.

    ``u (N, k, *state)``, ``y (N, k, *closure)``, ``t (N, k)`` and ``q`` the sample parameters of
    each window's trajectory (name → (N,)), with N = samples × (frames − k + 1), ordered by
    sample, then start frame. Frame j + 1 of a window is ``steps_per_frame(ds)`` steps of S after
    frame j. ``1 <= k <= frames``, else ``DatasetError``. Windows overlap: each frame is held
    up to k times (k times the memory of ``as_pairs``).
    """
    w = _windows(ds, k)
    q = {name: jnp.asarray(v) for name, v in w.pop("q").items()}
    return {**{name: jnp.asarray(a) for name, a in w.items()}, "q": q}


def as_pairs(ds: xr.Dataset) -> dict[str, typing.Any]:
    """Every stored frame as one training sample: ``u (N, *state)``, ``y (N, *closure)``,
    ``t (N,)`` with N = samples × frames, and ``q`` the sample parameters of each (name → (N,);
    empty for systems without them). The windows of length 1, without their window axis."""
    w = _windows(ds, 1)
    q = {name: jnp.asarray(v) for name, v in w.pop("q").items()}
    return {**{name: jnp.asarray(a[:, 0]) for name, a in w.items()}, "q": q}
