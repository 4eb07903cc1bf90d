"""Exported models: a directory with ``params/`` (Orbax) and ``model.json`` (architecture).

``model.json`` records the model config and the field specifications the network was built for
(``"fields": {"state": ..., "closure": ...}``). Loading rebuilds the architecture from it and only
then reads the parameters, so a checkpoint is never read into a different network than the one
that wrote it. Exports made before the fields were recorded load with the specs their caller
passes (the system's).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.fields import FieldSpec
from ml4dynamics.core.validation import parse_tagged
from ml4dynamics.models import CLOSURE_KINDS, MANIFOLD_KINDS, build_closure, build_manifold
from ml4dynamics.models.checkpoints import load_params, save_params

# the fields each role's network is built from
_ROLE_FIELDS = {"closure": ("state", "closure"), "manifold": ("state",)}
_REEXPORT = "re-export it with `dvc repro`"


def export_model(
    directory: str | Path,
    role: str,
    model: nnx.Module,
    config: Any,
    extra: Mapping[str, Any],
    fields: Mapping[str, FieldSpec],
) -> Path:
    """Write parameters and architecture; ``role`` is ``closure`` or ``manifold``.

    ``fields`` are the specs ``model`` was built from: ``{"state": ..., "closure": ...}`` for a
    closure, ``{"state": ...}`` for a manifold.
    """
    if role not in _ROLE_FIELDS:
        raise ValueError(f"role must be one of {sorted(_ROLE_FIELDS)}, got {role!r}")
    missing = [name for name in _ROLE_FIELDS[role] if name not in fields]
    if missing:
        raise ValueError(f"export of a {role} needs the field specs {missing}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_params(directory / "params", model)
    meta = {
        "role": role,
        "model": dataclasses.asdict(config),
        **extra,
        "fields": {name: spec.as_dict() for name, spec in fields.items()},
    }
    (directory / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def read_meta(meta_path: Path) -> dict[str, Any]:
    """The parsed ``model.json``, or a one-line error saying it is unreadable."""
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as e:  # JSONDecodeError and UnicodeDecodeError
        problem = str(e).splitlines()[0]
        raise ML4DError(f"{meta_path} is not valid JSON ({problem}): {_REEXPORT}") from None
    if not isinstance(meta, dict) or "model" not in meta:
        raise ML4DError(f"{meta_path} is not a model description (no 'model'): {_REEXPORT}")
    return meta


def _fields(
    meta: Mapping[str, Any], meta_path: Path, role: str, passed: Mapping[str, FieldSpec | None]
) -> dict[str, FieldSpec]:
    """The specs recorded in ``model.json`` if any, else the ones passed, else a clear error."""
    names = _ROLE_FIELDS[role]
    if "fields" in meta:
        try:
            return {name: FieldSpec.from_dict(meta["fields"][name]) for name in names}
        except (KeyError, TypeError, ValueError) as e:
            raise ML4DError(
                f"{meta_path} has malformed 'fields' ({type(e).__name__}: {e}): {_REEXPORT}"
            ) from None
    missing = [name for name in names if passed[name] is None]
    if missing:
        args = ", ".join(f"{name}=" for name in missing)
        raise ML4DError(
            f"{meta_path} records no field specs (exported before they were recorded) and "
            f"load_model got no {args}: pass the system's FieldSpecs or {_REEXPORT}"
        )
    return {name: passed[name] for name in names}


def _with_defaults(kinds: Mapping[str, type], recorded: Any) -> Any:
    """A recorded model config with the defaults of keys added after it was exported (e.g.
    ``dtype``, float64 before networks could compute in float32): the default is what such an
    export was built with. params.yaml, unlike model.json, must spell out every key."""
    cls = kinds.get(recorded.get("kind")) if isinstance(recorded, Mapping) else None
    if cls is None:
        return recorded  # parse_tagged says what is wrong
    defaults = {
        f.name: f.default
        for f in dataclasses.fields(cls)
        if f.default is not dataclasses.MISSING and f.name not in recorded
    }
    return {**recorded, **defaults}


def load_model(
    directory: str | Path,
    role: str,
    state: FieldSpec | None = None,
    closure: FieldSpec | None = None,
) -> tuple[nnx.Module, dict]:
    """The exported ``role`` model in ``directory``, and its metadata.

    The network is built for the field specs recorded in ``model.json``; ``state`` and
    ``closure`` are used only for exports that predate them.
    """
    if role not in _ROLE_FIELDS:
        raise ValueError(f"role must be one of {sorted(_ROLE_FIELDS)}, got {role!r}")
    directory = Path(directory)
    meta_path = directory / "model.json"
    if not meta_path.is_file():
        raise ML4DError(
            f"no exported model at {directory} (missing model.json); run `dvc repro` to create it"
        )
    meta = read_meta(meta_path)
    if meta.get("role") != role:
        raise ML4DError(f"{directory} holds a {meta.get('role')!r} model, expected {role!r}")
    fields = _fields(meta, meta_path, role, {"state": state, "closure": closure})
    kinds = CLOSURE_KINDS if role == "closure" else MANIFOLD_KINDS
    recorded = _with_defaults(kinds, meta["model"])
    if role == "closure":
        config = parse_tagged(CLOSURE_KINDS, recorded, f"{meta_path}: model")

        def build() -> nnx.Module:
            return build_closure(config, fields["state"], fields["closure"], seed=0)
    else:
        config = parse_tagged(MANIFOLD_KINDS, recorded, f"{meta_path}: model")

        def build() -> nnx.Module:
            return build_manifold(config, fields["state"], seed=0)

    # build abstractly (shapes only): running the initialisers costs seconds per conv layer
    model = nnx.eval_shape(build)
    return load_params(directory / "params", model), meta


# what a model's description records about the run that produced it, not about the model
_PROVENANCE_KEYS = ("mlflow_run_id",)


def model_identity(model: nnx.Module, meta: Mapping[str, Any]) -> str:
    """sha256 of what an exported model *is*: its description (``model.json`` without the run
    that logged it) and its parameter values. The bytes of the export are no identity: Orbax
    writes timestamps and random file names, so the same weights saved twice differ."""
    described = {k: v for k, v in meta.items() if k not in _PROVENANCE_KEYS}
    h = hashlib.sha256(json.dumps(described, sort_keys=True, default=str).encode())
    for path, leaf in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param)):
        values = np.asarray(leaf)
        h.update(f"{jax.tree_util.keystr(path)} {values.dtype} {values.shape}".encode())
        h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()
