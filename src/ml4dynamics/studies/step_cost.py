"""The cost of one training step of each estimator, measured side by side in one process.

Every estimator of ``params.yaml`` is timed on the same data and the same network (the closure of
``params.yaml`` with its ``dtype`` replaced, in float32 and in float64), so the ratios (to OLS,
float64 ÷ float32) are comparable even on a noisy shared machine; absolute times are for
orientation only. An unrolled estimator is timed on windows of its curriculum's longest length
(``window`` in the report), the same batch size; without a curriculum for the system
(``train.<system>.unroll``) it is left out and named under ``skipped``. Beside the times, the
memory of that window's gradient as XLA compiles it, with and without rematerialisation.
``ml4d timing`` writes the result to ``bench/<system>_train_step.json``.
"""

from __future__ import annotations

import dataclasses
import platform
import statistics
import time
from pathlib import Path

import jax
import optax
from flax import nnx

from ml4dynamics.config import load_params
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.outputs import write_json
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import as_pairs, steps_per_frame, system_of
from ml4dynamics.learning import estimators
from ml4dynamics.learning.closure_training import frozen, objective, stage_windows
from ml4dynamics.learning.estimators.unrolled import hybrid_window
from ml4dynamics.learning.network_config import network_stage
from ml4dynamics.learning.training import make_step
from ml4dynamics.models import build_closure
from ml4dynamics.models.io import load_model


def time_steps(
    system_name: str,
    params_path: str,
    data_dir: Path,
    manifold_dir: Path,
    out: Path,
    repeats: int = 5,
    steps: int = 20,
    dtypes: tuple[str, ...] = ("float32", "float64"),
) -> dict:
    params = load_params(params_path)
    stage = network_stage(params, "train", system_name)
    configured = estimators.configured(params, system_name)
    if "ols" not in configured:
        raise ML4DError("`ml4d timing` reports ratios to OLS: add `ols: {kind: ols}` to estimators")
    ds = open_dataset(data_dir / "train.zarr")
    system = system_of(ds)
    reconstruct = frozen(load_model(manifold_dir, "manifold", system.state_field)[0])
    data = as_pairs(ds)
    batch = stage.optim.batch_size or data["u"].shape[0]
    if not hasattr(stage.model, "dtype"):
        dtypes = ("float64",)  # the linear closure computes in float64 only
    idx = jax.numpy.arange(batch)
    key = jax.random.key(0)
    skipped = [n for n, e in configured.items() if e.unrolled and stage.unroll is None]
    configured = {n: e for n, e in configured.items() if n not in skipped}
    window = stage.unroll.windows[-1] if stage.unroll is not None else None
    cases = {}  # (dtype, label) -> a compiled step with its model, optimiser and data
    for label, estimator in configured.items():  # every estimator of params.yaml
        loss, regulariser = objective(estimator, system, reconstruct, steps_per_frame(ds))
        local = estimator.prepare(data, reconstruct)
        if estimator.unrolled:
            local = stage_windows(ds, window)
        for dtype in dtypes:
            cases[dtype, label] = _compiled(
                stage, system, dtype, len(dtypes) > 1, loss, regulariser, local, idx, key
            )
    if not any(e.unrolled for e in configured.values()):
        window = None
    # round-robin: every repeat times each case once, so a drift of the machine's speed (a
    # shared host) reaches every estimator alike instead of whichever ran during it
    samples: dict[tuple[str, str], list[float]] = {case: [] for case in cases}
    for _ in range(repeats):
        for case, (step, model, opt, local) in cases.items():
            start = time.perf_counter()
            for _ in range(steps):
                out_ = step(model, opt, local, idx, key)
            jax.block_until_ready(out_)
            samples[case].append((time.perf_counter() - start) / steps * 1e3)
    results: dict[str, dict[str, float]] = {dtype: {} for dtype in dtypes}
    for (dtype, label), times in samples.items():
        results[dtype][label] = statistics.median(times)
    report = {
        "what": f"one optimisation step of the {system_name} closure, batch {batch}"
        + (f" (the unrolled estimators: windows of {window} frames)" if window else ""),
        "model": dataclasses.asdict(stage.model),
        "ms_per_step_median": results,
        "ratio_to_ols": {
            dtype: {k: v / times["ols"] for k, v in times.items()}
            for dtype, times in results.items()
        },
        "float64_over_float32": (
            {k: results["float64"][k] / results["float32"][k] for k in configured}
            if {"float32", "float64"} <= set(results)
            else None
        ),
        "window": window,
        "window_memory_mib": (
            None
            if window is None
            else window_memory(system, stage.model, batch, window, steps_per_frame(ds))
        ),
        "skipped": skipped,
        "repeats": repeats,
        "steps_per_repeat": steps,
        "machine": f"{platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s)",
        "jax": jax.__version__,
    }
    write_json(out, report)
    return report


def _compiled(stage, system, dtype, replace_dtype, loss, regulariser, local, idx, key):
    """One case of the bench: a compiled step, its model, optimiser and data (the network in
    ``dtype`` where ``replace_dtype``: a grid network timed in each precision)."""
    config = dataclasses.replace(stage.model, dtype=dtype) if replace_dtype else stage.model
    model = build_closure(config, system.state_field, system.closure_field, seed=0)
    opt = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)
    step = make_step(loss, regulariser)
    jax.block_until_ready(step(model, opt, local, idx, key))  # compile
    return step, model, opt, local


def window_memory(system, config, batch: int, k: int, steps: int) -> dict[str, float]:
    """XLA's temporary memory (MiB) of the gradient of a ``k``-frame window's state misfit for
    the closure network ``config`` at ``batch`` samples: as trained (each solver step
    rematerialised) and with every step's intermediates stored. From the compiled program, so
    it is the same on every run of one JAX version and backend."""
    model = build_closure(config, system.state_field, system.closure_field, seed=0)
    graphdef, state = nnx.split(model)
    windows = {
        "u": jax.numpy.zeros((batch, k + 1, *system.state_shape)),
        "t": jax.numpy.zeros((batch, k + 1)),
        "q": {},
    }

    def mib(remat: bool) -> float:
        def loss(p):
            m = nnx.merge(graphdef, p)
            frames, _ = hybrid_window(system, m, windows, steps, remat=remat)
            return jax.numpy.sum((frames - windows["u"][:, 1:]) ** 2)

        compiled = jax.jit(jax.grad(loss)).lower(state).compile()
        return round(compiled.memory_analysis().temp_size_in_bytes / 2**20, 2)

    return {"rematerialised": mib(True), "stored": mib(False)}
