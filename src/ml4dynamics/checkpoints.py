"""Orbax checkpoints of a training run: model and optimizer state plus JSON metadata.

A checkpoint records where in the run it was taken (epoch, step within the epoch) and a
fingerprint of everything that determines the run (configuration and data). A run resumes only
from a checkpoint with its own fingerprint; any other is discarded, so a changed ``reg.lam``
never continues from the previous experiment's weights.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import nnx

logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO


def _state(model: nnx.Module, optimizer: nnx.Optimizer) -> dict[str, Any]:
    return {"model": nnx.state(model), "optimizer": nnx.state(optimizer)}


class RunCheckpoints:
    """Periodic checkpoints under ``directory`` (absolute; Orbax requires it)."""

    def __init__(self, directory: str | Path, fingerprint: str, keep: int = 2):
        self.directory = Path(directory).absolute()
        self.fingerprint = fingerprint
        self._keep = keep
        self._manager: ocp.CheckpointManager | None = None

    @property
    def manager(self) -> ocp.CheckpointManager:
        if self._manager is None:
            options = ocp.CheckpointManagerOptions(max_to_keep=self._keep, create=True)
            self._manager = ocp.CheckpointManager(self.directory, options=options)
        return self._manager

    def save(self, step: int, model: nnx.Module, optimizer: nnx.Optimizer, meta: dict) -> None:
        meta = {**meta, "fingerprint": self.fingerprint}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(_state(model, optimizer)), meta=ocp.args.JsonSave(meta)
        )
        self.manager.save(step, args=args, force=True)
        self.manager.wait_until_finished()

    def restore_latest(self, model: nnx.Module, optimizer: nnx.Optimizer) -> dict | None:
        """Load the newest checkpoint of this run into model and optimizer; return its metadata.

        Returns None (and clears the directory) when there is none or it belongs to another run.
        """
        if not self.directory.exists():
            return None
        step = self.manager.latest_step()
        if step is None:
            return None
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        if meta["meta"].get("fingerprint") != self.fingerprint:
            self.clear()
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state(model, optimizer))
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )
        nnx.update(model, restored["state"]["model"])
        nnx.update(optimizer, restored["state"]["optimizer"])
        return dict(meta["meta"])

    def clear(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None


def save_params(directory: str | Path, model: nnx.Module) -> None:
    """Export the final parameters (nnx.Param only) for later stages."""
    directory = Path(directory).absolute()
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(directory, nnx.state(model, nnx.Param), force=True)


def load_params(directory: str | Path, model: nnx.Module) -> nnx.Module:
    """Load parameters exported by ``save_params`` into ``model`` (same architecture)."""
    directory = Path(directory).absolute()
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.state(model, nnx.Param))
    with ocp.StandardCheckpointer() as ckpt:
        nnx.update(model, ckpt.restore(directory, abstract))
    return model
