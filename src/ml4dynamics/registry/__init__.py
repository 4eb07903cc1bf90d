"""The model registry: ``<system>-closure`` versions, aliases ``candidate`` and ``champion``.

Versions are MLflow models-from-code pyfuncs (``closure_model.py``) carrying the exported
closure directory as the artifact ``closure``. A version is identified by the closure's
``model_identity`` (its weights and description; tag ``closure_fingerprint``): submitting the same
closure twice, or a retraining that reproduces it, returns the version already registered.
Aliases are read with ``get_model_version_by_alias`` (on sqlite, ``search_model_versions`` returns
versions without their aliases).
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.models.checkpoints import DamagedModelError
from ml4dynamics.registry.packaging import load_closure_dir
from ml4dynamics.systems import System

CANDIDATE, CHAMPION = "candidate", "champion"
UNLOADABLE = "unloadable"  # version tag: its files or run are gone (promotion found it so)
MODEL_FILE = Path(__file__).with_name("closure_model.py")
_REQUIREMENTS = ("jax", "jaxlib", "flax", "orbax-checkpoint", "numpy", "mlflow", "ml4dynamics")


def registered_name(system: str) -> str:
    return f"{system}-closure"


def client():
    from mlflow import MlflowClient

    from ml4dynamics.core.tracking import configured_uri

    uri = configured_uri()
    # the registry too: MLflow's default registry URI is a process-wide setting that another
    # workspace used in the same process may have left behind
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


@contextlib.contextmanager
def exclusive() -> Iterator[None]:
    """Hold the store's registry lock (waiting for it): two promotions side by side (queued
    experiments) would otherwise race for version numbers and aliases. A tracking server
    serialises its own writes; a local sqlite store gets ``mlruns/.registry.lock``."""
    from ml4dynamics.core.mlflow_store import store_dir
    from ml4dynamics.core.tracking import configured_uri

    folder = store_dir(configured_uri())
    if folder is None:
        yield
        return
    with open(folder / ".registry.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the process ends, even by a kill
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def signature(system: System):
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    f64 = np.dtype("float64")
    return ModelSignature(
        inputs=Schema([TensorSpec(f64, (-1, *system.state_shape))]),
        outputs=Schema([TensorSpec(f64, (-1, *system.closure_shape))]),
    )


def requirements() -> list[str]:
    return [f"{name}=={importlib.metadata.version(name)}" for name in _REQUIREMENTS]


def version_with_fingerprint(name: str, fingerprint: str):
    """The registered version of ``name`` whose closure has ``fingerprint``, or None (versions
    marked ``unloadable``, whose files or run were deleted, do not count: it is registered
    anew)."""
    found = client().search_model_versions(
        f"name = '{name}' and tags.closure_fingerprint = '{fingerprint}'"
    )
    found = [v for v in found if v.tags.get(UNLOADABLE) != "true"]
    return max(found, key=lambda v: int(v.version)) if found else None


def version_by_alias(name: str, alias: str):
    """The version of ``name`` carrying ``alias``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def log_closure(closure_dir: Path, system: System, name: str) -> str:
    """Log ``closure_dir`` as a pyfunc into the active MLflow run and register it under
    ``name``; returns the new version number."""
    from ml4dynamics.core.tracking import configured_uri, use_store

    mlflow = use_store(configured_uri())  # the workspace's registry, not a stale global
    with warnings.catch_warnings():
        # MLflow advises an input example "to ensure the model signature functions correctly":
        # the signature is explicit and ``predict`` checks the state shape, so the advice is
        # noise in every promotion (matched after the colour code MLflow wraps it in)
        warnings.filterwarnings(
            "ignore",
            message=r"(\x1b\[[0-9;]*m)?An input example was not provided",
            category=UserWarning,
        )
        info = mlflow.pyfunc.log_model(
            name="closure",
            python_model=str(MODEL_FILE),
            artifacts={"closure": str(closure_dir)},
            registered_model_name=name,
            signature=signature(system),
            pip_requirements=requirements(),
        )
    return str(info.registered_model_version)


def set_tags(name: str, version: str | int, tags: dict[str, Any]) -> None:
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(name, str(version), key, str(value))


def record_champion_report(name: str, version: str | int, report: dict[str, Any]) -> None:
    """Keep the promotion report that made ``version`` champion with it: a JSON file among the
    artifacts of the run that registered it (the version page stays readable; the card and the
    gate tags are the human form)."""
    c = client()
    found = c.get_model_version(name, str(version))
    c.log_dict(found.run_id, report, f"promotion/{name}-v{version}.json")


def champion_report(found) -> dict[str, Any] | None:
    """The report recorded when the version ``found`` became champion (None where none was:
    a version registered before reports were kept reads its old ``champion.report`` tag)."""
    import json

    if found.tags.get("champion.report"):
        return json.loads(found.tags["champion.report"])
    c = client()
    path = f"promotion/{found.name}-v{found.version}.json"
    if path not in {item.path for item in c.list_artifacts(found.run_id, "promotion")}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(c.download_artifacts(found.run_id, path, tmp)).read_text())


def describe(name: str, version: str | int, text: str) -> None:
    """Set the version's description (its model card: ``registry.card``)."""
    client().update_model_version(name, str(version), description=text)


def description(model_uri: str) -> str:
    """The description (model card) of the version ``model_uri`` names; one line where there is
    none."""
    from ml4dynamics.core.tracking import configured_uri

    configured_uri(create=False)  # a reader: no store is one line, nothing created
    version = resolve(model_uri)
    if version is None:
        raise ML4DError(f"{model_uri} names no registered version; see `ml4d simulate --help`")
    if not version.description:
        raise ML4DError(
            f"{model_uri} (version {version.version}) has no model card yet; run `dvc repro` "
            "(promote writes one on every registered version)"
        )
    return version.description


def set_alias(name: str, version: str | int, alias: str) -> None:
    client().set_registered_model_alias(name, alias, str(version))


def delete_alias(name: str, alias: str) -> None:
    client().delete_registered_model_alias(name, alias)


def _closure_artifact(model_dir: Path, model_uri: str) -> Path:
    """The ``closure`` artifact of a downloaded pyfunc, located through its MLmodel file."""
    import yaml

    if not (model_dir / "MLmodel").is_file():
        raise ML4DError(
            f"the files of {model_uri} are gone from the artifact store (no MLmodel); "
            "re-register it with `dvc repro -f promote@<system>` or use another version"
        )
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    entry = mlmodel.get("flavors", {}).get("python_function", {}).get("artifacts", {})
    closure = model_dir / entry.get("closure", {}).get("path", "missing")
    if not (closure / "model.json").is_file():
        raise ML4DError(f"{model_uri} is not an ml4dynamics closure (no 'closure' artifact)")
    return closure


def load_registered(model_uri: str):
    """(network, system, metadata) of a registry URI (``models:/rd-closure@champion``,
    ``models:/rd-closure/3``), read from the store ``configured_uri()`` names. The metadata's
    ``registry`` entry says what the URI resolved to: name, version, MLflow run, gate outcome
    and the gates it failed."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from ml4dynamics.core.tracking import configured_uri, use_store

    if not model_uri.startswith("models:/"):
        raise ML4DError(
            f"{model_uri!r} is not a registry URI; use models:/<system>-closure@champion "
            "or models:/<system>-closure/<version>"
        )
    uri = configured_uri(create=False)  # a reader: no store is one line, nothing created
    use_store(uri)
    # a download bar on stderr would bury the one-line errors that follow the download
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    version = resolve(model_uri)
    with tempfile.TemporaryDirectory(prefix="ml4d-model-") as target:
        try:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=target, tracking_uri=uri
            )
        except MlflowException as err:
            raise ML4DError(
                f"cannot load {model_uri} from the registry at {uri}: "
                f"{err.message.splitlines()[0]}; check the name and alias (`dvc repro` "
                "registers models; MLFLOW_TRACKING_URI selects the store)"
            ) from None
        except OSError as err:  # the version is registered but its files are gone
            raise ML4DError(
                f"the artifacts of {model_uri} cannot be read ({type(err).__name__}: "
                f"{str(err).splitlines()[0] if str(err) else 'missing'}); re-register it with "
                "`dvc repro -f promote@<system>` or use another version"
            ) from None
        try:
            model, system, meta = load_closure_dir(_closure_artifact(Path(local), model_uri))
        except DamagedModelError as err:  # a registered version's files cannot be repaired
            raise ML4DError(
                f"{model_uri}: the registered closure's files are damaged ({err.reason}); "
                "use another version, or register the workspace's closure again with "
                "`dvc repro -f promote@<system>`"
            ) from None
    if version is not None:  # what the URI resolved to, for the records of whoever loads it
        meta = {
            **meta,
            "registry": {
                "name": version.name,
                "version": int(version.version),
                "run_id": version.run_id,
                "gates": version.tags.get("gates", "unknown"),
                "failed_gates": failed_gates(version),
            },
        }
    return model, system, meta


def _version_of(model_uri: str):
    """The registered version a ``models:/`` URI names, or None where the name, alias or number
    is unknown (the download then says so)."""
    from mlflow.exceptions import MlflowException

    name, sep, rest = model_uri.removeprefix("models:/").partition("@")
    try:
        if sep:
            return client().get_model_version_by_alias(name, rest)
        name, _, number = model_uri.removeprefix("models:/").partition("/")
        return client().get_model_version(name, number)
    except MlflowException:
        return None


def failed_gates(version) -> list[str]:
    """The gates a registered version failed (its ``gate.<name>`` tags)."""
    return sorted(
        k.removeprefix("gate.")
        for k, v in version.tags.items()
        if k.startswith("gate.") and v == "failed"
    )


def _no_alias(model_uri: str) -> ML4DError | None:
    """Why ``models:/<name>@<alias>`` names nothing: an unknown model, or (``champion``) every
    version failed its gates — which gates, and how to run one anyway. None otherwise."""
    name, sep, alias = model_uri.removeprefix("models:/").partition("@")
    if not sep:
        return None
    from mlflow.exceptions import MlflowException

    from ml4dynamics.core.tracking import configured_uri

    try:
        versions = client().search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    if not versions:
        return ML4DError(
            f"no registered model {name!r} in {configured_uri()}; `dvc repro` registers "
            "<system>-closure models (MLFLOW_TRACKING_URI selects the store)"
        )
    if alias != CHAMPION:
        return None
    refused = [v for v in versions if v.tags.get("gates") == "failed"]
    latest = max(versions, key=lambda v: int(v.version))
    reasons = "; ".join(
        f"v{v.version} ({v.tags.get('estimator', '?')}): {', '.join(failed_gates(v)) or '?'}"
        for v in sorted(refused, key=lambda v: int(v.version))
    )
    if len(refused) == len(versions):
        return ML4DError(
            f"{name} has no champion: all {len(versions)} versions failed their gates "
            f"({reasons}); to run one anyway, name its version, e.g. "
            f"models:/{name}/{latest.version}"
        )
    return ML4DError(
        f"{name} has no champion yet ({len(versions)} versions, {len(refused)} refused); run "
        f"`dvc repro` (promote) or name a version: --model models:/{name}/{latest.version}"
    )


def resolve(model_uri: str):
    """The registered version behind ``model_uri``; one line saying why where there is none,
    and a refusal where its MLflow run was deleted (``mlflow runs delete``: its record, the
    parameters and evaluation, is gone, so nothing says what the model is)."""
    version = _version_of(model_uri)
    if version is None:
        error = _no_alias(model_uri)
        if error is not None:
            raise error
        return None  # the download below reports an unknown version in one line
    from mlflow.exceptions import MlflowException

    try:
        run = client().get_run(version.run_id) if version.run_id else None
    except MlflowException:
        run = None
    if run is not None and run.info.lifecycle_stage == "deleted":
        raise ML4DError(
            f"{model_uri} is version {version.version}, whose MLflow run {version.run_id} was "
            "deleted; restore the run (`mlflow runs restore --run-id ...`) or use another version"
        )
    return version
