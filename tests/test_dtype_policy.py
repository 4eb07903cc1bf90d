"""The package's single dtype decision: float64 everywhere (docs/design.md §6)."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from ml4dynamics.systems import Linear, LinearConfig, ReactionDiffusion, ReactionDiffusionConfig


def test_importing_the_package_enables_x64():
    assert jax.config.jax_enable_x64
    assert jnp.zeros(3).dtype == jnp.float64  # without x64, JAX silently gives float32


@pytest.mark.parametrize(
    "imports", ["import ml4dynamics, jax.numpy as jnp", "import jax.numpy as jnp, ml4dynamics"]
)
def test_x64_holds_whichever_is_imported_first(imports):
    env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
    code = f"{imports}; print(jnp.zeros(1).dtype)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "float64", out.stderr


def test_every_system_steps_in_float64():
    key = jax.random.key(0)
    for system in (Linear(LinearConfig()), ReactionDiffusion(ReactionDiffusionConfig(n=16))):
        u = system.initial_state(key)
        y = system.closure(u, 0.0)
        out = system.step(u, y, 0.0)
        assert u.dtype == y.dtype == out.dtype == jnp.float64
        assert u.shape == out.shape == system.state_shape
        assert y.shape == system.closure_shape
