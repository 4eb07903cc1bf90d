"""Orbax checkpoints of a training run: model and optimizer state plus JSON metadata.

A checkpoint records where in the run it was taken (epoch, step within the epoch) and a
fingerprint of everything that determines the run (configuration and data). A run resumes only
from a checkpoint with its own fingerprint; any other is discarded, so a changed ``reg.rd.lam``
never continues from the previous experiment's weights.

A run whose training set grows between rounds (DAgger) saves the samples it has added so far with
every checkpoint, as one more Orbax item (``grown``) of the same atomic save, and their shapes and
dtypes in the metadata; a resumed run restores them instead of generating them again.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from ml4dynamics.core.errors import ML4DError, warn

logging.getLogger("absl").setLevel(logging.WARNING)  # orbax logs every save at INFO


def _state(model: nnx.Module, optimizer: nnx.Optimizer) -> dict[str, Any]:
    return {"model": nnx.state(model), "optimizer": nnx.state(optimizer)}


def _grown_key(index: int, leaf: int) -> str:
    """The name of array ``leaf`` of the ``index``-th grown batch (round ``index + 1``)."""
    return f"round_{index + 1}_array_{leaf}"


def _describe(grown: Sequence[Sequence[jax.Array]]) -> list[list[dict[str, Any]]]:
    """Shapes and dtypes of the grown arrays, for the JSON metadata (the restore target)."""
    return [
        [{"shape": list(a.shape), "dtype": jnp.dtype(a.dtype).name} for a in arrays]
        for arrays in grown
    ]


def _stored(grown: Sequence[Sequence[jax.Array]]) -> dict[str, jax.Array]:
    """The arrays of the ``grown`` item, flat by name; Orbax saves no empty array (a round may
    add none), so those are rebuilt from their description."""
    return {
        _grown_key(r, i): a
        for r, arrays in enumerate(grown)
        for i, a in enumerate(arrays)
        if a.size
    }


def _target(described: list[list[dict[str, Any]]]) -> dict[str, jax.ShapeDtypeStruct]:
    """The restore target of the stored grown arrays, from their recorded shapes."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return {
        _grown_key(r, i): jax.ShapeDtypeStruct(tuple(a["shape"]), a["dtype"], sharding=device)
        for r, arrays in enumerate(described)
        for i, a in enumerate(arrays)
        if math.prod(a["shape"])
    }


def _rebuilt(described: list[list[dict[str, Any]]], stored: dict) -> list[list[jax.Array]]:
    """The grown arrays, one list per round: those stored, and the empty ones made anew."""
    return [
        [
            stored[_grown_key(r, i)] if math.prod(a["shape"]) else jnp.zeros(a["shape"], a["dtype"])
            for i, a in enumerate(arrays)
        ]
        for r, arrays in enumerate(described)
    ]


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

    def save(
        self,
        step: int,
        model: nnx.Module,
        optimizer: nnx.Optimizer,
        meta: dict,
        grown: Sequence[Sequence[jax.Array]] = (),
    ) -> None:
        """Save at ``step`` (a checkpoint already there is replaced: an interrupt after the last
        step of an epoch and the end of that epoch are one position). ``grown``: the arrays added
        to the training set, one list per round, restored by ``restore_latest``."""
        meta = {**meta, "fingerprint": self.fingerprint}
        items = {
            "state": ocp.args.StandardSave(_state(model, optimizer)),
        }
        if grown:
            meta["grown"] = _describe(grown)
        if _stored(grown):
            items["grown"] = ocp.args.StandardSave(_stored(grown))
        items["meta"] = ocp.args.JsonSave(meta)
        if step in self.manager.all_steps():
            self.manager.delete(step)
        self.manager.save(step, args=ocp.args.Composite(**items), force=True)
        self.manager.wait_until_finished()

    def restore_latest(self, model: nnx.Module, optimizer: nnx.Optimizer) -> dict | None:
        """Load the newest readable checkpoint of this run into model and optimizer; return its
        metadata.

        Where the checkpoint holds grown samples, ``meta["grown"]`` is their arrays, one list per
        round as given to ``save``; otherwise the key is absent. A checkpoint that cannot be read
        (a truncated or deleted file) is reported in one line on stderr and removed, and the next
        older one is tried; with none left, training starts over (and says so). Returns None (and
        clears the directory) when there is no checkpoint or it belongs to another run.
        """
        if not self.directory.exists():
            return None
        try:
            steps = sorted(self.manager.all_steps(), reverse=True)
        except Exception as err:  # an unreadable directory listing: start over
            warn(f"checkpoints in {self.directory} cannot be listed ({_brief(err)})")
            steps = []
        for step in steps:
            try:
                meta = self._restore(step, model, optimizer)
            except Exception as err:
                warn(
                    f"checkpoint {step} in {self.directory} cannot be read ({_brief(err)}); "
                    "removed, trying an older one"
                )
                shutil.rmtree(self.directory / str(step), ignore_errors=True)
                self.close()  # the manager caches the steps it has seen
                continue
            if meta is None:  # another run's checkpoints
                self.clear()
            return meta
        if steps:
            warn(f"no readable checkpoint in {self.directory}: training starts over")
            self.clear()
        return None

    def _restore(self, step: int, model: nnx.Module, optimizer: nnx.Optimizer) -> dict | None:
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        meta = dict(meta["meta"])
        if meta.get("fingerprint") != self.fingerprint:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _state(model, optimizer))
        items = {"state": ocp.args.StandardRestore(abstract)}
        described = meta.get("grown", [])
        target = _target(described)
        if target:
            items["grown"] = ocp.args.StandardRestore(target)
        restored = self.manager.restore(step, args=ocp.args.Composite(**items))
        nnx.update(model, restored["state"]["model"])
        nnx.update(optimizer, restored["state"]["optimizer"])
        if described:
            meta["grown"] = _rebuilt(described, restored["grown"] if target else {})
        return meta

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
    failure = None
    with _muted_stderr():
        try:
            with ocp.StandardCheckpointer() as ckpt:
                restored = ckpt.restore(directory, abstract)
        except Exception as err:  # Orbax and TensorStore raise plain Exceptions for damage
            failure = _brief(err)
            # the reads still in flight finish after Orbax's event loop closed, each printing a
            # traceback from TensorStore's threads: let them finish while stderr is muted
            time.sleep(_SETTLE_SECONDS)
    if failure is not None:
        raise DamagedModelError(directory, failure)
    nnx.update(model, restored)
    return model


_SETTLE_SECONDS = 1.0


@contextlib.contextmanager
def _muted_stderr() -> Iterator[None]:
    """Send what is written to file descriptor 2 (C++ threads included) to /dev/null."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class DamagedModelError(ML4DError):
    """An exported model whose parameter files cannot be read (``reason``: the reader's
    complaint, one line)."""

    def __init__(self, directory: Path, reason: str):
        self.directory, self.reason = directory, reason
        super().__init__(
            f"the parameters in {directory} cannot be read ({reason}): the files are damaged or "
            "incomplete; restore them with `dvc checkout` (DVC's cached copy) or recreate them "
            "with `dvc repro`"
        )


def _brief(err: BaseException) -> str:
    """An exception as one short line."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:160]}" if text else type(err).__name__
