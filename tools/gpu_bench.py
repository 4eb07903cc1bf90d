"""What a GPU buys on our systems: the same measurements on the accelerator JAX sees and on this
machine's CPU, in one process, written to ``bench/gpu.json`` with the backend and devices named.

    PYTHONPATH=src python tools/gpu_bench.py             # on a machine with a GPU (a few minutes)
    PYTHONPATH=src python tools/gpu_bench.py --quick     # a smoke run at tiny sizes, any machine

For each device (the default backend, then the CPU), at params.yaml's ``kolmogorov`` settings:

- **hybrid and plain solvers**: ms per simulated time unit of the hybrid (the coarse solver plus
  the closure network of ``train.kolmogorov``; untrained, its cost is a trained one's), of every
  plain solver of ``ml4d speedup``'s ladder and of the fine reference, at batch 8 and 128, every
  solver timed in turn within each repeat (``solver_bench.timed_together``);
- **a training step** of OLS and TR (batch of ``train.kolmogorov.optim``), the manifold model
  fitted as the pipeline fits it, to the same training data;
- **data generation** of one training trajectory (warm-up and steps of params.yaml): the first
  call (with compilation) and the second.

Needs JAX only (no MLflow, DVC or zarr). Absolute times are for orientation; the ratios GPU/CPU
come from one run of one process.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path

import jax

from ml4dynamics.config import load_params
from ml4dynamics.datasets.generation import generate_split
from ml4dynamics.datasets.pairs import as_pairs, steps_per_frame, system_of
from ml4dynamics.learning import estimators
from ml4dynamics.learning.closure_training import frozen, objective
from ml4dynamics.learning.manifold_fitting import fit_manifold
from ml4dynamics.learning.network_config import network_stage
from ml4dynamics.models import build_closure
from ml4dynamics.simulation.hybrid import network_closure
from ml4dynamics.studies.solver_bench import timed_together
from ml4dynamics.studies.speedup import default_ladder, reference_states
from ml4dynamics.studies.step_cost import _compiled

SYSTEM = "kolmogorov"
REPO = Path(__file__).resolve().parents[1]


def _setup(params, quick: bool):
    """params.yaml's kolmogorov, its training split cut to what one measurement needs."""
    setup = params.setup(SYSTEM)
    train = setup.data.train
    steps = 20 if quick else train.steps
    data = dataclasses.replace(
        setup.data,
        train=dataclasses.replace(
            train, trajectories=2 if quick else train.trajectories, steps=steps
        ),
        warmup_steps=10 if quick else setup.data.warmup_steps,
    )
    return dataclasses.replace(setup, data=data)


def generation(setup) -> dict[str, float]:
    """Seconds to generate one training trajectory: first call, then again (compiled)."""
    one = dataclasses.replace(
        setup,
        data=dataclasses.replace(
            setup.data, train=dataclasses.replace(setup.data.train, trajectories=1)
        ),
    )
    seconds = []
    for _ in range(2):
        start = time.perf_counter()
        generate_split(one, "train", {"ml4dynamics_version": "bench", "git_revision": "bench"})
        seconds.append(time.perf_counter() - start)
    return {"first_s": seconds[0], "second_s": seconds[1]}


def solvers(params, system, batch: int, steps: int, repeats: int) -> dict[str, float]:
    """ms per simulated time unit of the hybrid, the ladder's plain solvers and the fine one."""
    stage = network_stage(params, "train", SYSTEM)
    model = build_closure(stage.model, system.state_field, system.closure_field, seed=0)
    closure = network_closure(model)
    u0 = reference_states(system, seed=0, trajectories=batch, warmup=0)
    batched, starts = {}, {}
    for n in default_ladder(system):
        batched[f"solver {n}"], starts[f"solver {n}"] = (
            jax.vmap(system.plain_step(n)),
            system.resample(u0, n),
        )
    batched["fine"], starts["fine"] = jax.vmap(system.fine_step), u0

    def hybrid(u):
        return system.step(u, closure(u, 0.0), 0.0)

    batched["hybrid"], starts["hybrid"] = jax.vmap(hybrid), jax.vmap(system.restrict)(u0)
    per_unit = 1.0 / system.dt
    ms = timed_together(batched, starts, steps, repeats)
    return {name: value * per_unit for name, value in ms.items()}


def training(params, ds, steps: int, repeats: int) -> dict[str, float]:
    """ms per optimisation step of OLS and TR on ``ds`` (the manifold fitted to it)."""
    system = system_of(ds)
    data = as_pairs(ds)
    manifold_stage = network_stage(params, "manifold", SYSTEM)
    manifold, _ = fit_manifold(system.state_field, manifold_stage, data["u"], data["u"])
    reconstruct = frozen(manifold)
    stage = network_stage(params, "train", SYSTEM)
    batch = min(stage.optim.batch_size or data["u"].shape[0], data["u"].shape[0])
    idx, key = jax.numpy.arange(batch), jax.random.key(0)
    configured = estimators.configured(params, SYSTEM)
    out = {}
    for label in ("ols", "tr-projector"):
        estimator = configured[label]
        loss, regulariser = objective(estimator, system, reconstruct, steps_per_frame(ds))
        local = estimator.prepare(data, reconstruct)
        step, model, opt, local = _compiled(
            stage, system, "float32", False, loss, regulariser, local, idx, key
        )
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(steps):
                result = step(model, opt, local, idx, key)
            jax.block_until_ready(result)
            samples.append((time.perf_counter() - start) / steps * 1e3)
        out[label] = statistics.median(samples)
    return out


def measure(params, setup, device, quick: bool) -> dict:
    steps, repeats = (5, 2) if quick else (10, 3)  # the CPU's fine solver at batch 128: ~2 min
    batches = (2, 4) if quick else (8, 128)
    with jax.default_device(device):
        generated = generation(setup)
        ds = generate_split(
            setup, "train", {"ml4dynamics_version": "bench", "git_revision": "bench"}
        )
        system = system_of(ds)
        return {
            "device": f"{device.platform}: {device.device_kind}",
            "hybrid_and_solvers_ms_per_time_unit": {
                f"batch{b}": solvers(params, system, b, steps, repeats) for b in batches
            },
            "training_step_ms": training(params, ds, 5 if quick else 50, repeats),
            "generate_one_trajectory": generated,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "gpu.json")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    args = parser.parse_args()
    params = load_params(args.params)
    setup = _setup(params, args.quick)
    devices = [jax.devices()[0]]
    if devices[0].platform != "cpu":
        devices.append(jax.devices("cpu")[0])
    report = {
        "what": "tools/gpu_bench.py: kolmogorov at params.yaml's settings, each device in turn",
        "backend": jax.default_backend(),
        "jax": jax.__version__,
        "machine": f"{platform.machine()}, {platform.node()}",
        "quick": args.quick,
        "by_device": {d.platform: measure(params, setup, d, args.quick) for d in devices},
    }
    if len(devices) == 2:
        gpu, cpu = (report["by_device"][d.platform] for d in devices)
        report["cpu_over_gpu"] = {
            "training_step": {
                k: cpu["training_step_ms"][k] / v for k, v in gpu["training_step_ms"].items()
            },
            "hybrid_batch128": cpu["hybrid_and_solvers_ms_per_time_unit"]["batch128"]["hybrid"]
            / gpu["hybrid_and_solvers_ms_per_time_unit"]["batch128"]["hybrid"],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
