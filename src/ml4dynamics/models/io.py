"""Exported models: a directory with ``params/`` (Orbax) and ``model.json`` (architecture).

Loading rebuilds the architecture from ``model.json`` and only then reads the parameters, so a
checkpoint is never read into a different network than the one that wrote it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flax import nnx

from ml4dynamics.checkpoints import load_params, save_params
from ml4dynamics.errors import ML4DError
from ml4dynamics.models import CLOSURE_KINDS, MANIFOLD_KINDS, build_closure, build_manifold
from ml4dynamics.systems import System
from ml4dynamics.validation import parse_tagged


def export_model(
    directory: str | Path, role: str, model: nnx.Module, config: Any, extra: Mapping[str, Any]
) -> Path:
    """Write parameters and architecture; ``role`` is ``closure`` or ``manifold``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_params(directory / "params", model)
    meta = {"role": role, "model": dataclasses.asdict(config), **extra}
    (directory / "model.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def load_model(directory: str | Path, role: str, system: System) -> tuple[nnx.Module, dict]:
    """The exported ``role`` model in ``directory``, built for ``system``; and its metadata."""
    directory = Path(directory)
    meta_path = directory / "model.json"
    if not meta_path.is_file():
        raise ML4DError(
            f"no exported model at {directory} (missing model.json); run `dvc repro` to create it"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("role") != role:
        raise ML4DError(f"{directory} holds a {meta.get('role')!r} model, expected {role!r}")
    kinds, build = (
        (CLOSURE_KINDS, build_closure) if role == "closure" else (MANIFOLD_KINDS, build_manifold)
    )
    config = parse_tagged(kinds, meta["model"], f"{meta_path}: model")
    # build abstractly (shapes only): running the initialisers costs seconds per conv layer
    model = nnx.eval_shape(lambda: build(config, system, seed=0))
    return load_params(directory / "params", model), meta
