"""Networks built from field specs: the linear kinds on vectors, the autoencoder's bottleneck, the
clear errors for a kind that cannot serve a spec, and export / load in 1D and 2D.

Shapes, dtype and translation equivariance of the convolutional kinds on 1D and 2D grids are in
``test_models_nd.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.fields import FieldSpec
from ml4dynamics.models import (
    ConvAutoencoderConfig,
    LinearAutoencoderConfig,
    LinearClosureConfig,
    LocalClosureConfig,
    UNetConfig,
    build_closure,
    build_manifold,
)
from ml4dynamics.models.io import export_model, load_model

VECTOR = FieldSpec(2, (), False)  # the linear toy: state and closure in R^2
UNET = UNetConfig("unet", 2, 2)  # width 2, two levels (pooling by 4)
CONV = ConvAutoencoderConfig("conv", 2, 2, 2)  # width 2, two levels, 2 latent channels
BATCH = 3  # any batch size; 3 is not a channel or grid size


def closure_of(state: FieldSpec) -> FieldSpec:
    """One closure channel for two state channels, so channel axes cannot be confused."""
    return FieldSpec(1, state.grid, state.periodic)


def states(spec: FieldSpec, seed: int = 1) -> jax.Array:
    return jax.random.normal(jax.random.key(seed), (BATCH, *spec.shape), dtype=jnp.float64)


def test_conv_autoencoder_is_not_the_identity():
    """D∘E factors through the latent, so its Jacobian has rank <= the latent size (2 channels
    on 16 / 4 points: 8), below the state size (2 channels on 16 points: 32): it cannot be the
    identity, which a skip connection would allow."""
    state = FieldSpec(2, (16,), True)
    ae = build_manifold(CONV, state, seed=0)
    u = states(state)[0]
    # jit: one compilation of the whole Jacobian instead of one per operation (seconds)
    jac = jax.jit(jax.jacfwd(lambda v: ae(v[None])[0]))(u).reshape(u.size, u.size)
    assert np.linalg.matrix_rank(np.asarray(jac)) <= 8 < u.size


def test_vectors_get_the_linear_kinds():
    closure = build_closure(LinearClosureConfig("linear"), VECTOR, VECTOR, seed=0)
    ae = build_manifold(LinearAutoencoderConfig("linear", 1), VECTOR, seed=0)
    u = states(VECTOR)
    assert closure(u).shape == ae(u).shape == (BATCH, 2)
    assert closure(u).dtype == ae(u).dtype == ae.W_e[...].dtype == jnp.float64
    assert np.array_equal(closure(u), np.zeros((BATCH, 2)))  # Ĉ starts at zero (minimum norm)


FIELD_1D, FIELD_2D = FieldSpec(2, (16,), True), FieldSpec(2, (8, 16), False)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: build_closure(LinearClosureConfig("linear"), FIELD_2D, FIELD_2D, 0),
            r"closure kind 'linear' needs vector states and closures; the state has shape "
            r"\(2, 8, 16\) \(2 channels on a non-periodic 8 x 16 grid\): use 'local' or 'unet'",
        ),
        (
            lambda: build_closure(UNET, VECTOR, VECTOR, 0),
            r"closure kind 'unet' needs fields on a grid \(channels, n1, ...\); the state is a "
            r"vector of shape \(2,\): use 'linear'",
        ),
        (
            lambda: build_closure(LocalClosureConfig("local", 4, 1, 1), VECTOR, VECTOR, 0),
            r"closure kind 'local' needs fields on a grid .*: use 'linear'",
        ),
        (
            lambda: build_closure(UNET, FIELD_1D, FieldSpec(1, (8,), True), 0),
            r"closure kind 'unet' maps fields to fields on the same grid; the state has shape "
            r"\(2, 16\) .* but the closure has shape \(1, 8\)",
        ),
        (  # 12 is not divisible by 2**3 = 8
            lambda: build_closure(
                UNetConfig("unet", 2, 3), FieldSpec(2, (12,), True), FieldSpec(1, (12,), True), 0
            ),
            r"unet with 3 levels needs every grid side divisible by 8; the grid is 12: "
            r"use fewer levels",
        ),
        (  # 8 is divisible by 8, 12 is not
            lambda: build_closure(
                UNetConfig("unet", 2, 3),
                FieldSpec(2, (8, 12), False),
                FieldSpec(1, (8, 12), False),
                0,
            ),
            r"unet with 3 levels needs every grid side divisible by 8; the grid is 8 x 12",
        ),
        (
            lambda: build_manifold(CONV, VECTOR, 0),
            r"manifold kind 'conv' needs fields on a grid .*: use 'linear'",
        ),
        (
            lambda: build_manifold(LinearAutoencoderConfig("linear", 1), FIELD_1D, 0),
            r"manifold kind 'linear' needs vector states; the state has shape \(2, 16\) .*: "
            r"use 'conv'",
        ),
        (  # 18 is not divisible by 2**2 = 4
            lambda: build_manifold(CONV, FieldSpec(2, (18,), True), 0),
            r"conv autoencoder with 2 levels needs every grid side divisible by 4; the grid is 18",
        ),
        (  # 1D, one pooling: 4 latent channels on 8 points hold 32 numbers for 2 * 16 = 32
            lambda: build_manifold(ConvAutoencoderConfig("conv", 2, 1, 4), FIELD_1D, 0),
            r"conv autoencoder with levels=1, latent_channels=4 has no bottleneck for shape "
            r"\(2, 16\) \(2 channels on a periodic 16-point grid\): its latent holds 32 numbers "
            r"for 32; use fewer latent_channels or more levels",
        ),
        (  # a latent as large as the state (2 components)
            lambda: build_manifold(LinearAutoencoderConfig("linear", 2), VECTOR, 0),
            r"manifold kind 'linear' with latent 2 has no bottleneck for states of 2 "
            r"components: use latent < 2",
        ),
    ],
    ids=[
        "linear-on-field",
        "unet-on-vector",
        "local-on-vector",
        "closure-on-another-grid",
        "levels-1d",
        "levels-2d",
        "conv-on-vector",
        "linear-ae-on-field",
        "conv-levels",
        "conv-no-bottleneck",
        "linear-ae-no-bottleneck",
    ],
)
def test_a_kind_that_cannot_serve_the_spec_is_a_clear_error(build, message):
    with pytest.raises(ML4DError, match=message):
        build()


def test_models_do_not_depend_on_systems():
    """Networks know field specs only; importing them must not pull in any system."""
    code = (
        "import sys, ml4dynamics.models, ml4dynamics.models.io\n"
        "bad = [m for m in sys.modules if m.startswith('ml4dynamics.systems')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- export and load ------------------------------------------------------------------------


EXPORTS = [
    pytest.param("closure", LinearClosureConfig("linear"), VECTOR, id="closure-vector"),
    # 16 and 8 x 16: divisible by the 4 of two poolings; 8 x 16 is not square
    pytest.param(
        "closure", LocalClosureConfig("local", 4, 2, 3), FieldSpec(2, (16,), True), id="closure-1d"
    ),
    pytest.param("closure", LocalClosureConfig("local", 4, 2, 1), FIELD_2D, id="closure-2d"),
    pytest.param("manifold", CONV, FieldSpec(2, (16,), False), id="manifold-1d"),
    pytest.param("manifold", CONV, FieldSpec(2, (8, 16), True), id="manifold-2d"),
    # float32 networks load as float32 (model.json records the dtype)
    pytest.param("closure", UNetConfig("unet", 2, 2, "float32"), FIELD_2D, id="closure-2d-float32"),
]


def export(tmp_path, role, config, state, seed=4):
    """A model built from ``seed`` (4: not the seed 0 that loading builds with) and exported."""
    if role == "closure":
        closure = state if state.ndim == 0 else closure_of(state)
        model = build_closure(config, state, closure, seed)
        fields = {"state": state, "closure": closure}
    else:
        model, fields = build_manifold(config, state, seed), {"state": state}
    if isinstance(config, LinearClosureConfig):  # Ĉ starts at zero: make the check meaningful
        model.C[...] = jax.random.normal(jax.random.key(5), model.C[...].shape)
    directory = export_model(tmp_path / role, role, model, config, {"system": "toy"}, fields)
    return directory, model, fields


@pytest.mark.parametrize(("role", "config", "state"), EXPORTS)
def test_an_exported_model_loads_with_its_recorded_fields(tmp_path, role, config, state):
    directory, model, fields = export(tmp_path, role, config, state)
    loaded, meta = load_model(directory, role)  # no specs passed: model.json has them
    assert meta["fields"] == {name: spec.as_dict() for name, spec in fields.items()}
    assert meta["system"] == "toy"
    u = states(state)
    assert np.array_equal(loaded(u), model(u))
    dtypes = {p.dtype for p in jax.tree.leaves(nnx.state(loaded, nnx.Param))}
    assert dtypes == {jnp.dtype(getattr(config, "dtype", "float64"))}


def test_an_old_export_loads_with_the_specs_its_caller_passes(tmp_path):
    state = FieldSpec(2, (16,), True)
    directory, model, fields = export(
        tmp_path, "closure", LocalClosureConfig("local", 4, 2, 3), state
    )
    meta_path = directory / "model.json"
    old = json.loads(meta_path.read_text())
    del old["fields"]  # as written before the fields were recorded
    del old["model"]["dtype"]  # ... and before networks could compute in float32
    meta_path.write_text(json.dumps(old))

    loaded, _ = load_model(directory, "closure", state=state, closure=fields["closure"])
    u = states(state)
    assert np.array_equal(loaded(u), model(u))
    with pytest.raises(ML4DError) as error:
        load_model(directory, "closure", state=state)
    assert "\n" not in str(error.value)
    assert str(error.value) == (
        f"{meta_path} records no field specs (exported before they were recorded) and "
        "load_model got no closure=: pass the system's FieldSpecs or re-export it with "
        "`dvc repro`"
    )


def test_recorded_fields_win_over_the_ones_passed(tmp_path):
    state = FieldSpec(2, (8, 16), True)
    directory, model, _ = export(tmp_path, "manifold", CONV, state)
    # a 3-channel non-periodic state would build another network (and fail to load)
    loaded, _ = load_model(directory, "manifold", state=FieldSpec(3, (8, 16), False))
    u = states(state)
    assert np.array_equal(loaded(u), model(u))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"role": "closure", "model": ', r"model\.json is not valid JSON \(Expecting value"),
        ("\udcff", r"model\.json is not valid JSON"),  # not even UTF-8
        ("[1, 2]", r"model\.json is not a model description \(no 'model'\)"),
        (
            '{"role": "closure", "model": {"kind": "linear"}, "fields": {"state": {}}}',
            r"model\.json has malformed 'fields' \(KeyError: 'channels'\)",
        ),
    ],
    ids=["truncated", "binary", "not-a-mapping", "bad-fields"],
)
def test_a_corrupt_model_json_is_a_one_line_error(tmp_path, text, message):
    (tmp_path / "model.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ML4DError, match=message) as error:
        load_model(tmp_path, "closure", state=VECTOR, closure=VECTOR)
    assert "\n" not in str(error.value) and "dvc repro" in str(error.value)
