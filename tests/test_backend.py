"""The library on a machine that has JAX but not the pipeline's tools (a GPU image: JAX with CUDA,
no MLflow, DVC or zarr): every module but the MLflow model imports, a hybrid step runs the solver
in float64 with the closure network in its own dtype, and its gradient is finite. Each
MLflow run records the backend it computed on (tests/test_team.py checks it on a server)."""

from __future__ import annotations

import os
import subprocess
import sys

from ml4dynamics.core.tracking import backend_tags

WITHOUT_TOOLS = """
import importlib, pkgutil, sys

class Absent:  # as if mlflow, dvc and zarr were not installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlflow", "dvc", "zarr"):
            raise ModuleNotFoundError(f"No module named {name!r}")

sys.meta_path.insert(0, Absent())
import ml4dynamics

failed = []
for info in pkgutil.walk_packages(ml4dynamics.__path__, "ml4dynamics."):
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as err:
        failed.append(f"{info.name}: {err}")
print("FAILED", "; ".join(failed))

import jax, jax.numpy as jnp
from flax import nnx
from ml4dynamics.systems import ReactionDiffusion, ReactionDiffusionConfig
from ml4dynamics.models import UNetConfig, build_closure

system = ReactionDiffusion(ReactionDiffusionConfig(n=16))
net = build_closure(
    UNetConfig("unet", 2, 1, "float32"), system.state_field, system.closure_field, seed=0
)
u = system.initial_state(jax.random.key(0))
y = net(u[None])[0]
weights = {str(w.dtype) for w in jax.tree.leaves(nnx.state(net, nnx.Param))}
print("DTYPES", u.dtype, ",".join(sorted(weights)), system.step(u, y, 0.0).dtype)

def misfit(model):  # one hybrid step's error, differentiated through solver and network
    nxt = system.step(u, model(u[None])[0].astype(u.dtype), 0.0)
    return jnp.mean((nxt - u) ** 2)

grads = nnx.grad(misfit)(net)
print("GRADS", all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads)))
"""


def test_the_numerics_run_without_mlflow_dvc_or_zarr():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_TOOLS], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    # only the MLflow model (the registry's pyfunc, MLflow's by nature) needs MLflow
    assert lines["FAILED"] == "ml4dynamics.registry.closure_model: No module named 'mlflow'"
    # the solver's state and step in float64; the network's weights in its configured float32
    assert lines["DTYPES"].split() == ["float64", "float32", "float64"]
    assert lines["GRADS"] == "True"  # a training step's gradient through solver and network


def test_every_run_records_the_backend_it_computed_on():
    import jax

    tags = backend_tags()
    assert tags["jax.backend"] == jax.default_backend() == "cpu"  # (this machine has no GPU)
    count, kind = tags["jax.devices"].split(" x ")
    assert int(count) == len(jax.devices()) and kind
    assert tags["jax.version"] == jax.__version__
