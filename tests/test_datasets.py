"""Dataset schema, provenance, determinism, and the validating reader."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from zarr.storage import LocalStore

from ml4dynamics import __version__
from ml4dynamics.config import parse_params
from ml4dynamics.core.errors import DatasetError
from ml4dynamics.datasets import open_dataset, write_datasets
from ml4dynamics.datasets.store import write_store
from tests.conftest import run_cli, small_params, write_params


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_schema_of_the_generated_stores(generated):
    setup = parse_params(small_params()).setup("rd")
    for split, traj, steps in (("train", 2, 300), ("ood", 2, 600)):
        ds = open_dataset(generated / "rd" / f"{split}.zarr")
        n = setup.system.n
        frames = steps // setup.data.store_every + 1
        assert ds.u.dims == ("sample", "time", "field", "x1", "x2")
        assert ds.u.shape == ds.y.shape == (traj, frames, 2, n, n)
        assert ds.u.dtype == ds.y.dtype == np.float64
        assert list(ds.field.values) == ["u", "v"]
        np.testing.assert_allclose(ds.x1.values, np.arange(n) * 6.4 / n)
        # first stored frame is the end of the warm-up; frames every store_every steps
        np.testing.assert_allclose(ds.time.values, (50 + 10 * np.arange(frames)) * 0.01)


def test_attributes_record_every_parameter_and_the_provenance(generated):
    ds = open_dataset(generated / "rd" / "ood.zarr")
    params = small_params()["rd"]
    for key, value in params["system"].items():
        if key != "gamma_u":
            assert ds.attrs[f"system.{key}"] == value, key
    # the overridden parameter: all values in the attrs, the value of each sample as a coordinate
    assert ds.attrs["system.gamma_u"] == [0.1, 0.2]
    assert list(ds.gamma_u.values) == [0.1, 0.2]
    assert ds.attrs["system"] == "rd" and ds.attrs["boundary"] == "periodic"
    assert "Crank-Nicolson" in ds.attrs["scheme"]
    assert (ds.attrs["split"], ds.attrs["seed"], ds.attrs["steps"]) == ("ood", 4, 600)
    assert (ds.attrs["warmup_steps"], ds.attrs["store_every"]) == (50, 10)
    assert ds.attrs["ml4dynamics_version"] == __version__
    assert ds.attrs["git_revision"]  # a sha (possibly -dirty) inside a checkout, else "unknown"


def test_splits_hold_different_trajectories(generated):
    first = {
        s: open_dataset(generated / "rd" / f"{s}.zarr").u.values[:, 0]
        for s in ("train", "val", "test")
    }
    assert not np.allclose(first["train"][0], first["test"][0])
    assert not np.allclose(first["train"][0], first["val"][0])
    assert not np.allclose(first["train"][0], first["train"][1])


def test_generation_is_byte_deterministic(generated, tmp_path):
    """A second run in a fresh process writes byte-identical stores (DVC hashes reproduce)."""
    params = write_params(tmp_path / "params.yaml", small_params())
    # same working directory as the fixture's run, so provenance is the same checkout
    result = run_cli(
        ["generate", "rd", "--params", str(params), "--out", str(tmp_path / "rd")],
        cwd=generated.parent,
    )
    assert result.returncode == 0, result.stderr
    first, second = tree_digest(generated / "rd"), tree_digest(tmp_path / "rd")
    assert len(first) > 10 and first == second


def test_another_seed_gives_other_data(generated, tmp_path):
    params = small_params()
    params["rd"]["data"]["train"]["seed"] = 99
    result = run_cli(
        [
            "generate",
            "rd",
            "--params",
            str(write_params(tmp_path / "p.yaml", params)),
            "--out",
            str(tmp_path / "rd"),
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    a = open_dataset(generated / "rd" / "train.zarr").u.values
    b = open_dataset(tmp_path / "rd" / "train.zarr").u.values
    assert np.abs(a - b).max() > 0.1


@pytest.fixture
def store(generated, tmp_path) -> Path:
    path = tmp_path / "train.zarr"
    shutil.copytree(generated / "rd" / "train.zarr", path)
    return path


def rewrite(path: Path, ds: xr.Dataset) -> None:
    """Write a modified dataset with plain xarray, bypassing our validating writer."""
    ds = ds.load()
    shutil.rmtree(path)
    ds.to_zarr(path, zarr_format=3, consolidated=False)


def test_reader_refuses_a_missing_variable(store):
    shutil.rmtree(store / "y")
    with pytest.raises(DatasetError, match=r"train.zarr: missing variable 'y'; regenerate"):
        open_dataset(store)


def test_reader_refuses_a_wrong_dtype(store):
    ds = xr.open_zarr(store, consolidated=False)
    rewrite(store, ds.assign(u=ds.u.astype(np.float32)))
    with pytest.raises(DatasetError, match=r"variable 'u' has dtype float32, expected float64"):
        open_dataset(store)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_reader_refuses_non_finite_values(store, bad):
    ds = xr.open_zarr(store, consolidated=False).load()
    y = ds.y.values.copy()
    y[1, 7, 0, 3, 4] = bad
    rewrite(store, ds.assign(y=(ds.y.dims, y)))
    with pytest.raises(
        DatasetError,
        match=r"variable 'y' has 1 non-finite values \(first at sample=1, time=7, field=0, x1=3, x2=4\)",
    ):
        open_dataset(store)


def test_reader_refuses_missing_provenance(store):
    ds = xr.open_zarr(store, consolidated=False).load()
    del ds.attrs["git_revision"]
    rewrite(store, ds)
    with pytest.raises(DatasetError, match="missing attribute 'git_revision'"):
        open_dataset(store)


def test_reader_refuses_missing_and_foreign_paths(tmp_path):
    with pytest.raises(DatasetError, match="does not exist; run `dvc repro`"):
        open_dataset(tmp_path / "absent.zarr")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DatasetError, match="is not a zarr store"):
        open_dataset(tmp_path / "plain")


def test_a_failed_write_leaves_nothing_behind(generated, tmp_path):
    good = open_dataset(generated / "rd" / "val.zarr")
    bad = good.copy(deep=True)
    bad["u"].values[0, 1, 0, 0, 0] = np.nan
    out = tmp_path / "rd"
    with pytest.raises(DatasetError, match="non-finite"):
        write_datasets({"train": good, "val": bad}, out)
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temporary directory


def chunk_files(store: Path, name: str) -> list[Path]:
    """The chunk files of array ``name`` in a zarr v3 store."""
    return [p for p in (store / name).rglob("*") if p.is_file() and p.name != "zarr.json"]


@pytest.mark.parametrize("coordinate", ["time", "gamma_u"])
def test_a_lost_coordinate_chunk_is_refused_naming_it(generated, tmp_path, coordinate):
    """Deleting a coordinate's chunk makes zarr read its fill value (NaN): refused, one line."""
    store = tmp_path / "ood.zarr"
    shutil.copytree(generated / "rd" / "ood.zarr", store)
    chunks = chunk_files(store, coordinate)
    assert chunks, f"no chunk files for {coordinate}"
    for chunk in chunks:
        chunk.unlink()
    result = run_cli(["inspect", str(store)], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert f"coordinate '{coordinate}' has" in result.stderr and "non-finite" in result.stderr


@pytest.mark.parametrize(("coordinate", "fill"), [("sample", "0, 0"), ("field", "'', ''")])
def test_a_lost_index_coordinate_chunk_is_refused_naming_it(store, tmp_path, coordinate, fill):
    """The integer ``sample`` and the string ``field`` read back as 0 0 and '' '' without their
    chunks (their fill values, not NaN): refused all the same, in one line naming the store and
    the coordinate, with the way to a good copy."""
    chunks = chunk_files(store, coordinate)
    assert chunks, f"no chunk files for {coordinate}"
    for chunk in chunks:
        chunk.unlink()
    with pytest.raises(DatasetError) as refused:
        open_dataset(store)
    assert str(refused.value).startswith(f"{store}: coordinate '{coordinate}' has "), refused.value
    assert f"({fill})" in str(refused.value)
    assert str(refused.value).endswith("(`dvc repro -s generate@rd`, or `dvc pull`)")
    result = run_cli(["inspect", str(store)], cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"ml4d: error: {store}: coordinate '{coordinate}' has ")


BAD_COORDINATES = [
    ("field", ["u", "u"], "coordinate 'field' has duplicate values ('u', 'u')"),
    ("field", ["u", ""], "coordinate 'field' has empty or non-string names ('u', '')"),
    ("sample", [1, 1], "coordinate 'sample' has duplicate values (1, 1)"),
    ("sample", [-1, 0], "coordinate 'sample' has negative values (-1, 0)"),
]


@pytest.mark.parametrize(
    ("coordinate", "values", "message"),
    BAD_COORDINATES,
    ids=[f"{c}={v}" for c, v, _ in BAD_COORDINATES],
)
def test_duplicate_empty_or_negative_index_values_are_refused(store, coordinate, values, message):
    ds = xr.open_zarr(store, consolidated=False).load()
    dtype = object if coordinate == "field" else np.int64
    bad = ds.assign_coords({coordinate: np.array(values, dtype=dtype)})
    rewrite(store, bad)
    with pytest.raises(DatasetError, match=re.escape(f"{store}: {message}")):
        open_dataset(store)
    with pytest.raises(DatasetError, match=re.escape(f"(before writing): {message}")):
        write_store(bad, store.with_name("again.zarr"))  # nor is it written
    assert not store.with_name("again.zarr").exists()


def test_a_write_killed_between_its_renames_is_recovered(generated, tmp_path):
    """A kill between moving the old output aside and the new one in leaves the old one aside;
    the next write puts it back first and cleans the temporaries of killed writes."""
    from ml4dynamics.core.atomic import recover

    out = tmp_path / "rd"
    shutil.copytree(generated / "rd", out)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    out.rename(tmp_path / ".rd.old")  # the first rename happened, the second never did
    (tmp_path / ".rd.new.x1y2").mkdir()  # and a killed write's temporary
    recover(out)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rd"]


def test_a_failed_write_waits_for_zarrs_writes_in_flight_and_leaves_no_temporary(
    generated, tmp_path, monkeypatch
):
    """When one chunk write fails (a full disk), zarr raises at once while the chunk writes
    gathered with it go on in its IO thread; the store writer waits for them before the
    temporary directory is removed, else a late one creates it again beside the old data (seen
    once in CI as `data/.rd.new.*` after `test_a_full_disk_is_one_line_and_leaves_the_old_data`)."""
    ds = open_dataset(generated / "rd" / "train.zarr").load()
    target = tmp_path / "train.zarr"
    write_store(ds, target)
    before = tree_digest(target)
    original = LocalStore.set
    failed = []

    async def flaky_set(self, key, value):
        if key.startswith("u/c/") and not failed:
            failed.append(key)
            raise OSError(errno.EFBIG, "File too large")
        if "/c/" in key:
            await asyncio.sleep(0.3)  # the other chunks land after the failure
        return await original(self, key, value)

    monkeypatch.setattr(LocalStore, "set", flaky_set)
    with pytest.raises(OSError, match="File too large"):
        write_store(ds.assign(u=ds.u + 1.0), target)
    monkeypatch.setattr(LocalStore, "set", original)
    time.sleep(0.6)  # any write still in flight would have landed by now
    assert failed and tree_digest(target) == before
    assert not [p.name for p in tmp_path.iterdir() if ".new." in p.name or p.name.endswith(".old")]


def test_outputs_get_the_mode_of_any_new_file_not_the_temporarys(tmp_path):
    """Written beside the target and swapped in, an output still gets 0644 / 0755 under the
    usual umask (tempfile makes its files 0600 and folders 0700)."""
    import os
    import stat

    from ml4dynamics.core.atomic import replacing
    from ml4dynamics.core.outputs import write_json

    before = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        with replacing(tmp_path / "store") as tmp:
            (tmp / "x").write_text("x")
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "m.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "store").stat().st_mode) == 0o755
