"""ns_channel through the stages a user runs (the real CLI, small settings): generated data that
obeys the scheme, a Reynolds sweep trained with per-sample systems, the registry, and a downstream
simulation pulled by alias."""

from __future__ import annotations

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import sample_params, system_groups, system_of
from ml4dynamics.systems.rollout import rollout
from tests.conftest import promote_thresholds, run_cli, small_params, write_params


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ns")
    params = small_params()
    params["promote"] = promote_thresholds(scale=10)  # tiny training: loose gates
    write_params(root / "params.yaml", params)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    result = run_cli(["generate", "ns_channel"], cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    return root, env


def test_generated_data_obey_the_scheme(workdir):
    """Every trajectory carries its own Re and y0; the oracle rollout from the first frame with
    those sample parameters reproduces every stored frame to round-off; the walls, the inflow and
    incompressibility hold on every stored frame."""
    root, _ = workdir
    ds = open_dataset(root / "data/ns_channel/train.zarr")
    q = sample_params(ds)
    assert list(q["re"]) == [100.0, 300.0]
    assert len(set(q["y0"])) == 2 and all(0.3 <= y <= 0.7 for y in q["y0"])
    groups = system_groups(ds)
    assert len(groups) == 1  # a Reynolds sweep is one compiled system, not one per Re
    system = system_of(ds)
    stride = round((ds.time.values[1] - ds.time.values[0]) / system.dt)
    for k in range(ds.sizes["sample"]):
        qk = {name: jnp.asarray(v[k]) for name, v in q.items()}
        u = ds.u.values[k]
        frames = rollout(
            system, None, jnp.asarray(u[0]), ds.time.values[0], (len(u) - 1) * stride, stride, q=qk
        )
        assert float(jnp.max(jnp.abs(frames - u)) / np.abs(u).max()) <= 1e-12
        bound = system.bind(qk)
        for j, frame in enumerate(u):
            assert np.all(frame[1, 0] == 0.0)  # bottom wall v
            uf, _ = bound.faces(jnp.asarray(frame))
            profile = np.exp(-50.0 * (ds.x2.values - q["y0"][k]) ** 2)
            np.testing.assert_allclose(np.asarray(uf[:, 0]), profile, rtol=0, atol=1e-14)
            assert float(jnp.max(jnp.abs(bound.divergence(jnp.asarray(frame))))) <= 1e-10
            # the stored label is the exact pressure of the stored state at its time
            p = bound.closure(jnp.asarray(frame), ds.time.values[j])
            np.testing.assert_allclose(np.asarray(p), ds.y.values[k, j], rtol=0, atol=1e-12)


def test_train_evaluate_promote_and_simulate(workdir, tmp_path):
    root, env = workdir
    for args in (
        ["fit-manifold", "ns_channel"],
        ["train", "ns_channel", "--estimator", "ols"],
        ["evaluate", "ns_channel", "--estimator", "ols"],
        ["promote", "ns_channel"],
    ):
        result = run_cli(args, cwd=root, env=env)
        assert result.returncode == 0, f"{args}: {result.stderr}"
    scores = json.loads((root / "metrics/ns_channel/evaluate/ols.json").read_text())
    by_re = scores["test"]["by_re"]  # every metric per Reynolds number of the sweep
    assert set(by_re) == {"100", "300"}
    assert "by_re" not in scores["ood"]  # one Re value is not a sweep
    assert all(g["trajectories"] == 1 for g in by_re.values())
    out = tmp_path / "run.zarr"
    result = run_cli(
        [
            "simulate",
            "--model",
            "models:/ns_channel-closure@champion",
            "--steps",
            "20",
            "--store-every",
            "5",
            "--param",
            "re=250",
            "--out",
            str(out),
        ],
        cwd=tmp_path,  # another directory: the registry comes from MLFLOW_TRACKING_URI
        env=env,
    )
    assert result.returncode == 0, result.stderr
    ds = open_dataset(out)
    assert ds.attrs["system"] == "ns_channel"
    assert float(ds.re.values[0]) == 250.0 and 0.3 <= float(ds.y0.values[0]) <= 0.7
    assert ds.attrs["system.re"] == 250.0  # a physical parameter: the solver's own Re too
    # the envelope over Re, a parameter that is also drawn per trajectory in the data
    args = ["envelope", "models:/ns_channel-closure@champion", "--points", "re=2"]
    args += ["--refinements", "0", "--trajectories", "1", "--out", str(tmp_path / "env.json")]
    result = run_cli(args, cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    envelope = json.loads((tmp_path / "env.json").read_text())
    scanned = {p["params"]["re"] for p in envelope["points"]}
    assert scanned == {50.0, 1000.0, envelope["training"]["re"]}
    assert all(p["plain_error"] is None for p in envelope["points"])  # its reference is exact
    assert ds.u.shape == (1, 5, 2, 8, 32) and ds.y.shape == (1, 5, 1, 8, 32)
    assert np.all(ds.u.values[0, :, 1, 0] == 0.0)  # the wall holds in the hybrid too

    bad = run_cli(
        ["simulate", "--model", "models:/ns_channel-closure@champion", "--steps", "5"]
        + ["--param", "gamma=1", "--out", str(tmp_path / "bad.zarr")],
        cwd=tmp_path,
        env=env,
    )
    assert bad.returncode != 0
    assert bad.stderr.count("\n") == 1
    assert (
        "--param gamma: ns_channel has no such parameter; its parameters are: re, y0" in bad.stderr
    )
    assert not (tmp_path / "bad.zarr").exists()
