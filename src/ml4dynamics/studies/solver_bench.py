"""Our solvers against the peers and the FFT floor, measured side by side in one process.

``ml4d timing solvers`` times one step of each solver inside a compiled loop (``jax.lax.fori_loop``
over ``steps`` steps: no Python dispatch per step, as a rollout runs), for a single trajectory
and for a ``jax.vmap`` batch, the solvers of one case in turn within each repeat, and reports the
median over ``repeats`` and the ratios in the same run (absolute times on a shared machine are
for orientation only):

- the fine KS step (``systems/kuramoto_sivashinsky.py``: ETDRK4, float64; here with the 2/3
  rule, exponax's, where the solvers default to products zero-padded to 3/2) against
  exponax's ``KuramotoSivashinskyConservative`` at the same N, L, Δt, order, dealiasing, contour
  points and dtype;
- the fine 2D Kolmogorov step (``systems/kolmogorov.py``: vorticity form, ETDRK4, the 2/3 rule
  as for KS, float64) against exponax's ``KolmogorovFlowVorticity`` (the same scheme: ETDRK4, 64
  contour points) and jax-cfd's spectral ``ForcedNavierStokes2D`` stepped by ``crank_nicolson_rk4``
  (another scheme: Crank–Nicolson viscosity and a 5-stage low-storage RK; its own 2/3 filter),
  at the same grid, Δt, viscosity, drag, forcing and dtype: a comparison of the cost per step;
- each against the *FFT floor*: the transforms a step needs, timed as a loop of exactly those
  transforms. An ETDRK4 step evaluates its nonlinear term 4 times, plus one transform in and one
  out of Fourier space: for KS one rfft+irfft pair per evaluation (u² from u), 5 pairs; for the
  vorticity equation 3 irfft2 (u1, u2, ω) and 2 rfft2 (the flux u ω) per evaluation, 9 rfft2
  and 13 irfft2 in all.

The peers are the ``bench`` extra (``pip install -e '.[bench]'``), imported here only.
"""

from __future__ import annotations

import math
import platform
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.outputs import write_json
from ml4dynamics.systems.kolmogorov import KolmogorovConfig, SpectralKolmogorov
from ml4dynamics.systems.kuramoto_sivashinsky import KuramotoSivashinskyConfig, SpectralKS

#: rfft+irfft pairs of one ETDRK4 step of KS from and to physical space
KS_FFT_PAIRS = 5
#: (rfft2, irfft2) of our ETDRK4 step of the vorticity equation from and to physical space:
#: 4 evaluations of 2 forward (the flux) and 3 inverse (u1, u2, ω) transforms, plus one each way;
#: exponax's advective form (1 forward, 4 inverse per evaluation) needs (5, 17), as many in all
KOLMOGOROV_FFTS = (9, 13)
#: (rfft2, irfft2) of one jax-cfd CN-RK4 step: 5 evaluations of 1 forward and 4 inverse
#: transforms (advective form), plus one each way; each evaluation also transforms the
#: constant forcing (2 rfft2), not counted
JAX_CFD_FFTS = (6, 21)


def _exponax() -> Any:
    try:
        import exponax
    except ImportError as error:
        raise ML4DError(
            f"`ml4d timing solvers` measures against exponax, which is not installed ({error}); "
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


def exponax_kolmogorov_step(
    n: int, dt: float, viscosity: float, drag: float, forcing_wavenumber: int
) -> Callable[[jax.Array], jax.Array]:
    """exponax's Kolmogorov-flow step at our solver's settings (ETDRK4, 2/3 rule, 64 contour
    points, float64 as its input), on a vorticity field ``(n, n)`` like ours.

    exponax advects its vorticity with the velocity (∂₂ψ, −∂₁ψ) of ψ = Δ⁻¹ω, whose curl is −ω:
    its field is the vorticity of our convention (ω = −Δψ, ``systems/vorticity.py``) with the
    opposite sign. Its forcing −γ k_f cos(k_f x2) is added to its own field, so we step −ω with
    γ = −1 and negate back. Its 2/3 rule keeps |k| ≤ (2/3)(n/2) − 1, ours |k| < n/3: the same
    modes when 3 divides n."""
    stepper = _exponax().stepper.KolmogorovFlowVorticity(
        2,
        2 * math.pi,
        n,
        dt,
        diffusivity=viscosity,
        drag=-drag,
        injection_mode=forcing_wavenumber,
        injection_scale=-1.0,
        order=4,
        dealiasing_fraction=2 / 3,
        num_circle_points=64,
    )

    def step(omega: jax.Array) -> jax.Array:  # exponax's states are (channels, n, n)
        return -stepper(-omega[None])[0]

    return step


def jax_cfd_kolmogorov_step(
    n: int, dt: float, viscosity: float, drag: float, forcing_wavenumber: int
) -> Callable[[jax.Array], jax.Array]:
    """jax-cfd's spectral ``ForcedNavierStokes2D`` (Kochkov et al. 2021: drag 0.1, forcing
    sin(4 x2) along x1, its 2/3 filter) stepped by ``crank_nicolson_rk4``, on a vorticity field
    ``(n, n)`` of [0, 2π)², through its ``rfftn`` coefficients."""
    if (drag, forcing_wavenumber) != (0.1, 4):
        raise ML4DError(
            "jax-cfd's ForcedNavierStokes2D has drag 0.1 and forcing wavenumber 4, got "
            f"{drag} and {forcing_wavenumber}"
        )
    try:
        from jax_cfd.base import grids
        from jax_cfd.spectral import equations, time_stepping
    except ImportError as error:
        raise ML4DError(
            f"`ml4d timing solvers` measures against jax-cfd, which is not installed ({error}); "
            "install the bench extra: pip install -e '.[bench]'"
        ) from None
    grid = grids.Grid((n, n), domain=((0, 2 * math.pi), (0, 2 * math.pi)))
    equation = equations.ForcedNavierStokes2D(viscosity, grid, smooth=True)
    advance = time_stepping.crank_nicolson_rk4(equation, dt)

    def step(omega: jax.Array) -> jax.Array:
        return jnp.fft.irfftn(advance(jnp.fft.rfftn(omega)), s=(n, n))

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


def timed_together(
    steps_by_name: Mapping[str, Callable[[jax.Array], jax.Array]],
    u0: jax.Array | Mapping[str, jax.Array],
    steps: int,
    repeats: int,
) -> dict[str, float]:
    """``timed`` for several steps side by side: every loop compiled first, then each repeat
    times each step in turn, so that a change in the machine's load (a shared machine) falls on
    all of them alike; the median milliseconds per step of each. ``u0``: one start for all, or
    each step's own (by name: solvers on different grids)."""
    starts = u0 if isinstance(u0, Mapping) else dict.fromkeys(steps_by_name, u0)
    loops = {
        name: jax.jit(lambda u, step=step: jax.lax.fori_loop(0, steps, lambda _, v: step(v), u))
        for name, step in steps_by_name.items()
    }
    for name, loop in loops.items():
        jax.block_until_ready(loop(starts[name]))  # compile
    samples: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items():
            start = time.perf_counter()
            jax.block_until_ready(loop(starts[name]))
            samples[name].append((time.perf_counter() - start) / steps * 1e3)
    return {name: statistics.median(values) for name, values in samples.items()}


def fft_floor(
    shape: int | tuple[int, ...], forward: int, inverse: int | None = None
) -> Callable[[jax.Array], jax.Array]:
    """``forward`` real FFTs and ``inverse`` (default: as many) inverse ones of a real field of
    ``shape`` (the last axes: ``n`` in 1D, ``(n, n)`` in 2D): ``forward`` rfft+irfft round trips,
    then the extra inverse transforms of the last spectrum, added to the field (as the velocity
    components of one vorticity spectrum)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    axes = tuple(range(-len(shape), 0))
    inverse = forward if inverse is None else inverse
    if not 1 <= forward <= inverse:
        raise ValueError(f"need 1 <= forward <= inverse transforms, got {forward}, {inverse}")

    def step(u: jax.Array) -> jax.Array:
        for _ in range(forward):
            v = jnp.fft.rfftn(u, axes=axes) * 1.0000001  # (the scale keeps XLA honest)
            u = jnp.fft.irfftn(v, s=shape, axes=axes)
        for i in range(inverse - forward):  # distinct scales: no common subexpression
            u = u + jnp.fft.irfftn(v * (1e-7 * (i + 1)), s=shape, axes=axes)
        return u

    return step


def ks_solvers(config: KuramotoSivashinskyConfig, batch: int, steps: int, repeats: int) -> dict:
    """The fine KS step, ours and exponax's, and the FFT floor: ms per step and ratios."""
    n, length, dt = config.n_fine, config.length, config.dt / config.fine_substeps
    # the fine solver's step under exponax's 2/3 rule, so both do the same work (the default,
    # zero-padded step takes its products on 3n/2 points)
    ours = SpectralKS(n, length, dt, "two_thirds")
    theirs = exponax_ks_step(n, length, dt)

    x = jnp.arange(n) * (length / n)
    u0 = jnp.cos(2 * jnp.pi * x / length) + 0.1 * jnp.sin(6 * jnp.pi * x / length)
    floor = fft_floor(n, KS_FFT_PAIRS)
    cases: dict[str, dict[str, float]] = {}
    for shape, label in (((), "single"), ((batch,), f"batch{batch}")):
        state = jnp.broadcast_to(u0, (*shape, n))

        def batched(f: Callable[[jax.Array], jax.Array], shape=shape) -> Callable:
            return jax.vmap(f) if shape else f

        cases[label] = timed_together(
            {"ours": batched(ours.step), "exponax": batched(theirs), "fft_floor": floor},
            state,
            steps,
            repeats,
        )
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


def kolmogorov_solvers(
    config: KolmogorovConfig, n: int, batch: int, steps: int, repeats: int
) -> dict:
    """The fine 2D Kolmogorov step on ``n²`` points, ours, exponax's and jax-cfd's, and the FFT
    floor: ms per step and ratios."""
    dt = config.dt / config.fine_substeps
    physics = (dt, config.viscosity, config.drag, config.forcing_wavenumber)
    solvers = {
        "ours": SpectralKolmogorov(n, *physics, "two_thirds").step,  # exponax's rule, as KS
        "exponax": exponax_kolmogorov_step(n, *physics),
        "jax_cfd": jax_cfd_kolmogorov_step(n, *physics),
        "fft_floor": fft_floor((n, n), *KOLMOGOROV_FFTS),
    }
    x = jnp.arange(n) * (2 * math.pi / n)
    x1, x2 = x[:, None], x[None, :]  # a smooth field of the attractor's size (std 2.6)
    omega0 = 3 * jnp.cos(x1 + 2 * x2) + 2 * jnp.sin(3 * x1 - x2) + jnp.cos(4 * x2)
    cases: dict[str, dict[str, float]] = {}
    for shape, label in (((), "single"), ((batch,), f"batch{batch}")):
        state = jnp.broadcast_to(omega0, (*shape, n, n))
        batched = {k: jax.vmap(f) if shape and k != "fft_floor" else f for k, f in solvers.items()}
        cases[label] = timed_together(batched, state, steps, repeats)
    forward, inverse = KOLMOGOROV_FFTS
    return {
        "what": (
            f"one step of 2D Kolmogorov flow (vorticity) on {n}^2 points of [0, 2pi)^2, "
            f"dt = {dt:g}, viscosity {config.viscosity:g}, drag {config.drag:g}, forcing "
            f"sin({config.forcing_wavenumber} x2), float64; ours and exponax: ETDRK4, 2/3 rule; "
            "jax-cfd: Crank-Nicolson + 5-stage RK (another scheme: the cost per step is "
            f"compared); FFT floor = {forward} rfft2 + {inverse} irfft2, our step's transforms "
            f"(exponax's also needs {sum(KOLMOGOROV_FFTS)}, jax-cfd's {sum(JAX_CFD_FFTS)}); "
            f"{steps} steps per repeat"
        ),
        "ms_per_step_median": cases,
        "steps_per_repeat": steps,
        "transforms_per_step": {
            "ours": sum(KOLMOGOROV_FFTS),
            "exponax": sum(KOLMOGOROV_FFTS),
            "jax_cfd": sum(JAX_CFD_FFTS),
        },
        **{
            f"{a}_over_{b}": {k: v[a] / v[b] for k, v in cases.items()}
            for a, b in (
                ("ours", "exponax"),
                ("ours", "jax_cfd"),
                ("ours", "fft_floor"),
                ("exponax", "fft_floor"),
                ("jax_cfd", "fft_floor"),
            )
        },
    }


def run(
    out: Path,
    batch: int = 64,
    steps: int = 200,
    repeats: int = 5,
    kolmogorov_n: int = 256,
    kolmogorov_batch: int = 8,
    kolmogorov_steps: int = 20,
) -> dict:
    """Every solver benchmark, written to ``out`` (JSON). The 2D step costs ~100× the 1D one, so
    it has its own grid, batch and step counts (``kolmogorov_*``)."""
    counts = (batch, steps, repeats, kolmogorov_n, kolmogorov_batch, kolmogorov_steps)
    if min(counts) < 1:
        raise ML4DError(
            "--batch, --steps, --repeats and the --kolmogorov-* counts must be >= 1, got "
            + ", ".join(map(str, counts))
        )
    if kolmogorov_n % 2 or kolmogorov_n < 16:
        raise ML4DError(f"--kolmogorov-n must be an even number >= 16, got {kolmogorov_n}")
    report = {
        "ks": ks_solvers(KuramotoSivashinskyConfig(), batch, steps, repeats),
        "kolmogorov": kolmogorov_solvers(
            KolmogorovConfig(), kolmogorov_n, kolmogorov_batch, kolmogorov_steps, repeats
        ),
        "steps_per_repeat": steps,
        "repeats": repeats,
        "machine": f"{platform.machine()}, {jax.device_count()} {jax.default_backend()} device(s)",
        "jax": jax.__version__,
    }
    write_json(out, report)
    return report
