"""Zarr (v3) storage of datasets, written atomically and read back only when valid.

Schema (docs/design.md §3): variables ``u`` (sample, time, *state dims) and ``y`` (sample, time,
*closure dims), both float64 and finite; coordinate ``time``; attribute ``system`` naming the
system plus every parameter as ``system.<name>``. ``open_dataset`` refuses anything else and says
what is wrong, so a half-written or hand-edited store never reaches training.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ml4dynamics.core.atomic import replacing
from ml4dynamics.core.errors import DatasetError

REQUIRED_VARIABLES = ("u", "y")
REQUIRED_ATTRS = ("system", "split", "seed", "scheme", "ml4dynamics_version", "git_revision")


def _encoding(ds: xr.Dataset) -> dict[str, dict]:
    """One chunk per trajectory; fixed codec so bytes do not depend on library defaults. (zarr
    is imported where a store is written or read: the numerics import without it, as on GPU
    images that lack it.)"""
    import zarr

    compressor = zarr.codecs.ZstdCodec(level=3)
    enc = {}
    for name, var in ds.data_vars.items():
        chunks = tuple(1 if d == "sample" else n for d, n in zip(var.dims, var.shape, strict=True))
        enc[name] = {"chunks": chunks, "compressors": [compressor]}
    return enc


#: how long a failed write waits for zarr's writes still in flight before its temporary goes
SETTLE_SECONDS = 60.0


def settle_zarr_writes(timeout: float = SETTLE_SECONDS) -> None:
    """Wait until zarr's IO loop has no write in flight. When one chunk write fails (a full
    disk), zarr raises at once while the writes gathered with it go on in its IO thread; one that
    lands after the temporary directory was removed creates it again (a leftover beside the old
    data). Returns at once when zarr has not started its loop."""
    from zarr.core import sync as zarr_sync

    loop = zarr_sync.loop[0]
    if loop is None or loop.is_closed():
        return

    async def drained() -> None:
        me = asyncio.current_task()
        while others := [t for t in asyncio.all_tasks() if t is not me and not t.done()]:
            await asyncio.wait(others)

    with contextlib.suppress(TimeoutError):  # then atomic's retries are the last resort
        asyncio.run_coroutine_threadsafe(drained(), loop).result(timeout)


@contextlib.contextmanager
def _settled_on_failure() -> Iterator[None]:
    """Let zarr's writes in flight finish before a failure leaves the block (and ``replacing``
    removes the temporary directory they write into)."""
    try:
        yield
    except BaseException:
        settle_zarr_writes()
        raise


def write_datasets(datasets: Mapping[str, xr.Dataset], out_dir: str | Path) -> list[Path]:
    """Write ``{split: Dataset}`` as ``out_dir/<split>.zarr``, all or nothing.

    Everything goes to a temporary sibling directory first and is swapped in only when every
    split has been written and re-validated (``ml4dynamics.core.atomic``): a failure or a kill
    at any instant leaves the old stores or the new ones, never a mixture.
    """
    out_dir = Path(out_dir)
    with replacing(out_dir) as tmp, _settled_on_failure():
        for split, ds in datasets.items():
            validate_dataset(ds, f"{split} (before writing)")
            ds.to_zarr(
                tmp / f"{split}.zarr",
                mode="w",
                zarr_format=3,
                consolidated=False,
                encoding=_encoding(ds),
            )
            open_dataset(tmp / f"{split}.zarr")  # read back through the validating reader
    return [out_dir / f"{split}.zarr" for split in datasets]


def write_store(ds: xr.Dataset, path: str | Path) -> Path:
    """Write one dataset to the store ``path`` (replacing it), all or nothing."""
    path = Path(path)
    validate_dataset(ds, f"{path} (before writing)")
    with replacing(path) as tmp, _settled_on_failure():
        ds.to_zarr(tmp, mode="w", zarr_format=3, consolidated=False, encoding=_encoding(ds))
        open_dataset(tmp)  # read back through the validating reader
    return path


def open_splits(data_dir: str | Path, splits: Sequence[str]) -> dict[str, xr.Dataset]:
    """The validated stores ``data_dir/<split>.zarr``, by split."""
    return {split: open_dataset(Path(data_dir) / f"{split}.zarr") for split in splits}


def open_dataset(path: str | Path) -> xr.Dataset:
    """Open and validate a store; raise ``DatasetError`` naming the first problem."""
    path = Path(path)
    if not (path / "zarr.json").is_file():
        hint = "run `dvc repro` (or `ml4d generate SYSTEM`) to create it"
        what = "is not a zarr store" if path.exists() else "does not exist"
        raise DatasetError(f"{path} {what}; {hint}")
    try:
        ds = xr.open_zarr(path, consolidated=False, zarr_format=3).load()
    except Exception as err:  # corrupt metadata or chunks: report, do not trace back
        raise DatasetError(
            f"{path} cannot be read ({type(err).__name__}: {err}); regenerate it"
        ) from None
    validate_dataset(ds, str(path))
    return ds


def validate_dataset(ds: xr.Dataset, where: str) -> None:
    """Check variables, dims, dtypes, finiteness and attributes of a dataset."""
    for name in REQUIRED_VARIABLES:
        if name not in ds.data_vars:
            raise DatasetError(f"{where}: missing variable {name!r}; regenerate the dataset")
        var = ds[name]
        if var.dims[:2] != ("sample", "time"):
            raise DatasetError(
                f"{where}: variable {name!r} has dims {var.dims}, expected ('sample', 'time', ...)"
            )
        if var.dtype != np.float64:
            raise DatasetError(
                f"{where}: variable {name!r} has dtype {var.dtype}, expected float64"
            )
        finite = np.isfinite(var.values)
        if not finite.all():
            first = tuple(int(i[0]) for i in np.nonzero(~finite))
            at = ", ".join(f"{d}={i}" for d, i in zip(var.dims, first, strict=True))
            raise DatasetError(
                f"{where}: variable {name!r} has {int((~finite).sum())} non-finite values "
                f"(first at {at}); regenerate the dataset"
            )
    if "time" not in ds.coords:
        raise DatasetError(f"{where}: missing coordinate 'time'; regenerate the dataset")
    for name, coord in ds.coords.items():
        _validate_coordinate(ds, str(name), coord, where)
    time = ds.time.values
    if time.dtype.kind not in "fiu" or (len(time) > 1 and not (np.diff(time) > 0).all()):
        raise DatasetError(f"{where}: coordinate 'time' is not increasing; regenerate the dataset")
    for key in REQUIRED_ATTRS:
        if key not in ds.attrs:
            raise DatasetError(f"{where}: missing attribute {key!r}; regenerate the dataset")


def _regenerate(ds: xr.Dataset) -> str:
    """How to get a good copy of the store ``ds`` was read from."""
    if ds.attrs.get("split") == "simulate":
        return "regenerate the dataset (run `ml4d simulate` again)"
    system = ds.attrs.get("system", "SYSTEM")
    return f"regenerate the dataset (`dvc repro -s generate@{system}`, or `dvc pull`)"


def _shown(values: np.ndarray, most: int = 6) -> str:
    items = [repr(v) for v in values[:most].tolist()]
    return ", ".join(items) + (", ..." if len(values) > most else "")


def _validate_coordinate(ds: xr.Dataset, name: str, coord: xr.DataArray, where: str) -> None:
    """Refuse a coordinate no writer of ours makes. A chunk of a coordinate lost from a store
    reads back as the array's fill value (zarr writes no chunk that holds only it, so a missing
    chunk file alone proves nothing): NaN for numbers, 0 for integers, '' for strings. So
    numbers must be finite, strings non-empty, and an index (a coordinate along its own
    dimension: ``sample``, ``field``, ``component``, ...) distinct, non-negative if integer."""
    values = np.asarray(coord.values).ravel()
    kind = values.dtype.kind
    problem = None
    if kind in "fc" and not np.isfinite(values).all():
        problem = f"has {int((~np.isfinite(values)).sum())} non-finite values"
    elif kind in "OUST" and not all(isinstance(v, str | bytes) and v for v in values.tolist()):
        problem = f"has empty or non-string names ({_shown(values)})"
    elif kind in "iu" and coord.dims == (name,) and (values < 0).any():
        problem = f"has negative values ({_shown(values)}), but an index counts from 0"
    elif kind in "iuOUST" and coord.dims == (name,) and len(set(values.tolist())) < len(values):
        problem = f"has duplicate values ({_shown(values)}), but an index holds each once"
    if problem is not None:
        raise DatasetError(
            f"{where}: coordinate {name!r} {problem} (is a chunk of it lost?); {_regenerate(ds)}"
        )
