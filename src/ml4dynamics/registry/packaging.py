"""A closure directory as a self-describing package: the network and the system it closes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flax import nnx

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.validation import parse
from ml4dynamics.models.io import load_model, read_meta
from ml4dynamics.systems import System, system_class


def system_from_meta(meta: dict[str, Any], where: str) -> System:
    """The system recorded in a closure's ``model.json`` (``system`` and ``system_config``)."""
    if "system_config" not in meta:
        raise ML4DError(
            f"{where}: the closure does not record its system; retrain it (`dvc repro`)"
        )
    cls = system_class(meta["system"])
    return cls(parse(cls.config_class, meta["system_config"], f"{where}: system_config"))


def load_closure_dir(directory: str | Path) -> tuple[nnx.Module, System, dict[str, Any]]:
    """(network, system, metadata) of an exported closure directory."""
    directory = Path(directory)
    meta_path = directory / "model.json"
    if not meta_path.is_file():
        raise ML4DError(f"{directory} is not an exported closure (no model.json)")
    meta = read_meta(meta_path)
    system = system_from_meta(meta, str(meta_path))
    model, meta = load_model(directory, "closure", system.state_field, system.closure_field)
    return model, system, meta
