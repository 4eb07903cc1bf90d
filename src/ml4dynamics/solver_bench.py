"""Our solvers against the peers and the FFT floor, measured side by side in one process.

``ml4d bench solvers`` times one step of each solver inside a compiled loop (``jax.lax.fori_loop``
over ``steps`` steps: no Python dispatch per step, as a rollout runs), for a single trajectory
and for a ``jax.vmap`` batch, and reports the median over ``repeats`` and the ratios in the same
run (absolute times on a shared machine are for orientation only):

- the fine KS step (``systems/kuramoto_sivashinsky.py``: ETDRK4, 2/3 rule, float64) against
  exponax's ``KuramotoSivashinskyConservative`` at the same N, L, Δt, order, dealiasing, contour
  points and dtype;
- each against the *FFT floor*: the rfft+irfft pairs a step needs (an ETDRK4 step with a
  quadratic nonlinearity evaluates it 4 times, one pair each, plus one pair in and out of
  Fourier space: 5 pairs), timed as a loop of exactly those transforms.

The peers are the ``bench`` extra (``pip install -e '.[bench]'``), imported here only.
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from ml4dynamics.errors import ML4DError
from ml4dynamics.outputs import write_json
from ml4dynamics.systems.kuramoto_sivashinsky import KuramotoSivashinskyConfig, SpectralKS

#: rfft+irfft pairs of one ETDRK4 step of KS from and to physical space
KS_FFT_PAIRS = 5


def _exponax() -> Any:
    try:
        import exponax
    except ImportError as error:
        raise ML4DError(
            f"`ml4d bench solvers` measures against exponax, which is not installed ({error}); "
            "install the bench extra: pip install -e '.[bench]'"
        ) from None
    return exponax


def exponax_ks_step(n: int, length: float, dt: float) -> Callable[[jax.Array], jax.Array]:
    """exponax's KS step at our fine solver's settings (ETDRK4, 2/3 rule, 64 contour points as
    ``ETDRK4.build``, float64 as its input), on a field of shape ``(n,)`` like ours."""
    stepper = _exponax().stepper.KuramotoSivashinskyConservative(
        1, length, n, dt, order=4, num_circle_points=64, dealiasing_fraction=2 / 3
    )

    def step(u: jax.Array) -> jax.Array:  # exponax's states are (channels, n)
        return stepper(u[None])[0]

    return step


def timed(step: Callable[[jax.Array], jax.Array], u0: jax.Array, steps: int, repeats: int) -> float:
    """Median milliseconds per step of ``step`` iterated ``steps`` times in one compiled loop."""
    loop = jax.jit(lambda u: jax.lax.fori_loop(0, steps, lambda _, v: step(v), u))
    jax.block_until_ready(loop(u0))  # compile
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(loop(u0))
        samples.append((time.perf_counter() - start) / steps * 1e3)
    return statistics.median(samples)


def fft_floor(n: int, pairs: int) -> Callable[[jax.Array], jax.Array]:
    """``pairs`` rfft+irfft round trips of a real field of ``n`` points (the last axis)."""

    def step(u: jax.Array) -> jax.Array:
        for _ in range(pairs):
            u = jnp.fft.irfft(jnp.fft.rfft(u) * 1.0000001, n=n)  # (the scale keeps XLA honest)
        return u

    return step


def ks_solvers(config: KuramotoSivashinskyConfig, batch: int, steps: int, repeats: int) -> dict:
    """The fine KS step, ours and exponax's, and the FFT floor: ms per step and ratios."""
    n, length, dt = config.n_fine, config.length, config.dt / config.fine_substeps
    ours = SpectralKS(n, length, dt)  # the fine solver's step
    theirs = exponax_ks_step(n, length, dt)

    x = jnp.arange(n) * (length / n)
    u0 = jnp.cos(2 * jnp.pi * x / length) + 0.1 * jnp.sin(6 * jnp.pi * x / length)
    floor = fft_floor(n, KS_FFT_PAIRS)
    cases: dict[str, dict[str, float]] = {}
    for shape, label in (((), "single"), ((batch,), f"batch{batch}")):
        state = jnp.broadcast_to(u0, (*shape, n))

        def batched(f: Callable[[jax.Array], jax.Array], shape=shape) -> Callable:
            return jax.vmap(f) if shape else f

        cases[label] = {
            "ours": timed(batched(ours.step), state, steps, repeats),
            "exponax": timed(batched(theirs), state, steps, repeats),
            "fft_floor": timed(floor, state, steps, repeats),
        }
    return {
        "what": (
            f"one KS step on {n} points, L = {length:g}, dt = {dt:g}: ETDRK4, 2/3 rule, "
            f"float64; FFT floor = {KS_FFT_PAIRS} rfft+irfft pairs"
        ),
        "ms_per_step_median": cases,
        "ours_over_exponax": {k: v["ours"] / v["exponax"] for k, v in cases.items()},
        "ours_over_fft_floor": {k: v["ours"] / v["fft_floor"] for k, v in cases.items()},
        "exponax_over_fft_floor": {k: v["exponax"] / v["fft_floor"] for k, v in cases.items()},
    }


def run(out: Path, batch: int = 64, steps: int = 200, repeats: int = 5) -> dict:
    """Every solver benchmark, written to ``out`` (JSON)."""
    if batch < 1 or steps < 1 or repeats < 1:
        raise ML4DError(
            f"--batch, --steps and --repeats must be >= 1, got {batch}, {steps}, {repeats}"
        )
    report = {
        "ks": ks_solvers(KuramotoSivashinskyConfig(), batch, steps, repeats),
        "steps_per_repeat": steps,
        "repeats": repeats,
        "machine": f"{platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s)",
        "jax": jax.__version__,
    }
    write_json(out, report)
    return report
