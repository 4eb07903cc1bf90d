"""params.yaml → typed, frozen configuration, validated before any work starts.

Layout of params.yaml: one top-level section per system (``linear``, ``rd``), each with

    system: every parameter of the system's config class (no hidden defaults)
    data:   warm-up, storage stride, label noise and the four splits train / val / test / ood

and one section per later stage, keyed by system where the stage is per system:

    manifold.<system>: {model: {kind, ...}, optim: {...}}   the autoencoder for F
    train.<system>:    {model: {kind, ...}, optim: {...}}   the closure network
    estimators:        the estimators trained side by side, by name: {kind, and its own weight}
    reg:               the tangent-space penalty of the TR estimators (lam, eps), all systems
    evaluate:          hybrid-rollout metrics (bound of the stability check, report time)
    promote:           the thresholds of the registry's promotion gates
    linear_theory:     the λ sweep of the paper's linear experiment

Stage sections are optional here and required by the stage that reads them, so each DVC stage
depends on exactly the keys it uses.

A split may override system parameters with a list of values per parameter
(``ood: {system: {gamma_u: [0.25]}}``); it then holds trajectories for every combination.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from ml4dynamics.errors import ConfigError, ML4DError
from ml4dynamics.estimators import RegConfig
from ml4dynamics.models import CLOSURE_KINDS, MANIFOLD_KINDS, ClosureConfig, ManifoldConfig
from ml4dynamics.systems import SYSTEMS, SystemConfig
from ml4dynamics.training import OptimConfig
from ml4dynamics.validation import (
    coerce,
    parse,
    parse_tagged,
    require,
    require_non_negative,
    require_positive,
)

SPLITS = ("train", "val", "test", "ood")


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """``trajectories`` per parameter combination, each ``steps`` steps after the warm-up."""

    trajectories: int
    steps: int
    seed: int
    system: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        require(self.trajectories >= 1, "trajectories", "must be >= 1", "set a positive count")
        require(self.steps >= 1, "steps", "must be >= 1", "set a positive number of steps")
        require(self.seed >= 0, "seed", "must be >= 0", "set a non-negative integer seed")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """``label_noise`` a adds U[0, a) noise to stored labels (the paper's linear toy uses 1e-3);
    states are always generated with the exact closure."""

    warmup_steps: int
    store_every: int
    label_noise: float
    train: SplitConfig
    val: SplitConfig
    test: SplitConfig
    ood: SplitConfig

    def __post_init__(self) -> None:
        require_non_negative(self.warmup_steps, "warmup_steps", "steps run before recording")
        require(self.store_every >= 1, "store_every", "must be >= 1", "store every k-th step")
        require_non_negative(self.label_noise, "label_noise", "the width of the label noise")
        seeds: dict[int, str] = {}
        for name in SPLITS:
            split = getattr(self, name)
            require(
                split.steps % self.store_every == 0,
                f"{name}.steps",
                f"{split.steps} is not a multiple of store_every={self.store_every}",
                "make steps a multiple of store_every",
            )
            require(
                split.seed not in seeds,
                f"{name}.seed",
                f"equals the seed of split {seeds.get(split.seed)!r}, so the splits would overlap",
                "give every split its own seed",
            )
            seeds[split.seed] = name


@dataclasses.dataclass(frozen=True)
class SystemSetup:
    """Everything needed to generate one system's datasets."""

    name: str
    system: SystemConfig
    data: DataConfig

    def variants(self, split: str) -> list[tuple[dict[str, Any], SystemConfig]]:
        """(overrides, config) for every parameter combination of ``split``."""
        overrides = getattr(self.data, split).system
        return split_variants(self.system, overrides, f"{self.name}.data.{split}.system")


def split_variants(
    base: SystemConfig, overrides: Mapping[str, Any], key: str
) -> list[tuple[dict[str, Any], SystemConfig]]:
    hints = get_type_hints(type(base))
    names = [f.name for f in dataclasses.fields(base)]
    grids: dict[str, list[Any]] = {}
    for name, values in overrides.items():
        require(
            name in names,
            f"{key}.{name}",
            "not a parameter of this system",
            f"use one of: {', '.join(names)}",
        )
        require(
            isinstance(values, list) and len(values) > 0,
            f"{key}.{name}",
            f"must be a non-empty list of values, got {values!r}",
            f"write e.g. {name}: [{getattr(base, name)!r}]",
        )
        grids[name] = [coerce(hints[name], v, f"{key}.{name}[{i}]") for i, v in enumerate(values)]
    out = []
    for combo in itertools.product(*grids.values()):
        chosen = dict(zip(grids, combo, strict=True))
        try:
            out.append((chosen, dataclasses.replace(base, **chosen)))
        except ConfigError as err:
            raise ConfigError(f"{key}.{err.key}", err.problem, err.fix) from None
    return out


@dataclasses.dataclass(frozen=True)
class NetworkStage:
    """``manifold.<system>`` or ``train.<system>``: an architecture and its optimisation."""

    model: ClosureConfig | ManifoldConfig
    optim: OptimConfig


@dataclasses.dataclass(frozen=True)
class LinearTheoryConfig:
    """The paper's linear experiment: terminal error after ``horizon`` steps vs λ."""

    lams: tuple[float, ...]
    horizon: int
    samples: int

    def __post_init__(self) -> None:
        require(len(self.lams) > 0, "lams", "must list at least one λ", "e.g. [1, 2, 4]")
        for i, lam in enumerate(self.lams):
            require_positive(lam, f"lams[{i}]", "a regularisation weight")
        require(self.horizon >= 1, "horizon", "must be >= 1", "the paper uses 50 steps")
        require(self.samples >= 1, "samples", "must be >= 1", "the paper uses 5")


@dataclasses.dataclass(frozen=True)
class TangentConfig:
    """``reg``: the tangent-space penalty shared by the TR estimators (DVC: ``reg.lam``)."""

    lam: float
    eps: float

    def __post_init__(self) -> None:
        require_non_negative(self.lam, "lam", "the weight of the tangent-space penalty")
        require_positive(self.eps, "eps", "the regulariser of the normal's length")


# The keys an estimator entry has besides ``kind``: its own weight (TR's come from ``reg``).
ESTIMATOR_KEYS = {"ols": (), "mols": ("wd",), "aols": ("sigma",), "tr": ("normal",)}
# What a non-TR estimator reports as its (unused) TR settings: the penalty in projector form is
# logged for every estimator so runs compare on one scale.
_UNUSED = {"lam": 0.0, "normal": "projector", "sigma": 0.0, "wd": 0.0, "eps": 1e-8}


def _estimators(raw: Any, tangent: TangentConfig | None) -> dict[str, RegConfig]:
    require(
        isinstance(raw, Mapping) and len(raw) > 0,
        "estimators",
        "must map estimator names to settings",
        "e.g. {ols: {kind: ols}, tr-projector: {kind: tr, normal: projector}}",
    )
    out = {}
    for name, entry in raw.items():
        key = f"estimators.{name}"
        require(
            isinstance(entry, Mapping) and entry.get("kind") in ESTIMATOR_KEYS,
            f"{key}.kind",
            "missing or unknown",
            f"use one of: {', '.join(ESTIMATOR_KEYS)}",
        )
        wanted = {"kind", *ESTIMATOR_KEYS[entry["kind"]]}
        require(
            set(entry) == wanted,
            key,
            f"an estimator of kind {entry['kind']!r} has exactly the keys {sorted(wanted)}",
            "remove the others (the TR weight lam lives in `reg`)",
        )
        values = {**_UNUSED, **entry}
        if entry["kind"] == "tr":
            require(tangent is not None, "reg", "missing", "add reg: {lam: ..., eps: ...}")
            values.update(lam=tangent.lam, eps=tangent.eps)
        out[str(name)] = parse(RegConfig, values, key)
    return out


@dataclasses.dataclass(frozen=True)
class EvaluateConfig:
    """``evaluate``: how hybrid rollouts are scored (DESIGN §6)."""

    bound: float  # a frame with max|û| > bound · max|u| of its true trajectory has blown up
    report_time: float  # the error is also reported this long after the rollout starts

    def __post_init__(self) -> None:
        require(self.bound > 1, "bound", "must be > 1", "e.g. 10 (ten times the true maximum)")
        require_positive(self.report_time, "report_time", "a time after the rollout's start")


@dataclasses.dataclass(frozen=True)
class PromoteConfig:
    """``promote``: thresholds of the registry's gates (DESIGN §5)."""

    max_error: float  # relative L2 error at the horizon, mean over the trajectories of a split
    max_shift: float  # excess log10 F of the hybrid over the truth's, worst frame and trajectory

    def __post_init__(self) -> None:
        require_positive(self.max_error, "max_error", "a relative error, e.g. 0.5")
        require_positive(self.max_shift, "max_shift", "decades of F, e.g. 2")


STAGE_SECTIONS = (
    "manifold",
    "train",
    "estimators",
    "reg",
    "evaluate",
    "promote",
    "linear_theory",
)


@dataclasses.dataclass(frozen=True)
class Params:
    """The whole of params.yaml."""

    systems: Mapping[str, SystemSetup]
    manifold: Mapping[str, NetworkStage] = dataclasses.field(default_factory=dict)
    train: Mapping[str, NetworkStage] = dataclasses.field(default_factory=dict)
    estimators: Mapping[str, RegConfig] = dataclasses.field(default_factory=dict)
    reg: TangentConfig | None = None
    evaluate: EvaluateConfig | None = None
    promote: PromoteConfig | None = None
    linear_theory: LinearTheoryConfig | None = None

    def setup(self, name: str) -> SystemSetup:
        _known_system(name)
        if name not in self.systems:
            raise ML4DError(
                f"params.yaml has no section {name!r}; add one with 'system' and 'data' keys"
            )
        return self.systems[name]

    def stage(self, section: str, name: str) -> NetworkStage:
        _known_system(name)
        found = getattr(self, section).get(name)
        if found is None:
            raise ML4DError(
                f"params.yaml has no section '{section}.{name}'; add one with "
                "'model' and 'optim' keys"
            )
        return found

    def estimator(self, name: str) -> RegConfig:
        if name not in self.estimators:
            known = ", ".join(self.estimators) or "none"
            raise ML4DError(
                f"params.yaml has no estimator {name!r} under 'estimators' (known: {known}); "
                "add it or use a known name"
            )
        return self.estimators[name]

    def require(self, section: str) -> Any:
        found = getattr(self, section)
        if found is None:
            raise ML4DError(f"params.yaml has no section {section!r}; add it (see README.md)")
        return found


def _known_system(name: str) -> None:
    if name not in SYSTEMS:
        raise ML4DError(f"unknown system {name!r}; known systems: {', '.join(SYSTEMS)}")


def _network_stages(raw: Any, section: str, kinds: Mapping[str, type]) -> dict[str, NetworkStage]:
    require(
        isinstance(raw, Mapping),
        section,
        "must be a mapping from system to settings",
        "see params.yaml in the repository",
    )
    out = {}
    for name, entry in raw.items():
        key = f"{section}.{name}"
        require(name in SYSTEMS, key, "not a known system", f"use one of: {', '.join(SYSTEMS)}")
        require(
            isinstance(entry, Mapping) and set(entry) == {"model", "optim"},
            key,
            "must have exactly the keys 'model' and 'optim'",
            "see params.yaml",
        )
        out[name] = NetworkStage(
            model=parse_tagged(kinds, entry["model"], f"{key}.model"),
            optim=parse(OptimConfig, entry["optim"], f"{key}.optim"),
        )
    return out


def _optional(cls: type, stages: Mapping[str, Any], section: str) -> Any:
    return parse(cls, stages[section], section) if section in stages else None


def parse_params(raw: Any) -> Params:
    """Validate a mapping read from params.yaml; raise ``ConfigError`` naming the first problem."""
    if not isinstance(raw, Mapping):
        raise ConfigError("(top level)", "must be a mapping of sections", "see README.md")
    systems: dict[str, SystemSetup] = {}
    stages: dict[str, Any] = {}
    for name, section in raw.items():
        if name in STAGE_SECTIONS:
            stages[name] = section
            continue
        require(
            name in SYSTEMS,
            str(name),
            "unknown section",
            f"use one of: {', '.join([*SYSTEMS, *STAGE_SECTIONS])}",
        )
        require(
            isinstance(section, Mapping) and set(section) == {"system", "data"},
            name,
            f"must have exactly the keys 'system' and 'data', got {sorted(section or {})}",
            "see params.yaml in the repository for the layout",
        )
        config = parse(SYSTEMS[name].config_class, section["system"], f"{name}.system")
        data = parse(DataConfig, section["data"], f"{name}.data")
        setup = SystemSetup(name=name, system=config, data=data)
        for split in SPLITS:
            setup.variants(split)  # validates every override combination now, not mid-run
        systems[name] = setup
    tangent = _optional(TangentConfig, stages, "reg")
    return Params(
        systems=systems,
        manifold=_network_stages(stages.get("manifold", {}), "manifold", MANIFOLD_KINDS),
        train=_network_stages(stages.get("train", {}), "train", CLOSURE_KINDS),
        estimators=_estimators(stages["estimators"], tangent) if "estimators" in stages else {},
        reg=tangent,
        evaluate=_optional(EvaluateConfig, stages, "evaluate"),
        promote=_optional(PromoteConfig, stages, "promote"),
        linear_theory=_optional(LinearTheoryConfig, stages, "linear_theory"),
    )


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ML4DError(
            f"no parameter file at {path}; run from the repository root or pass --params"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ML4DError(f"{path} is not valid YAML{where}; fix the syntax") from None
    try:
        return parse_params(raw if raw is not None else {})
    except ConfigError as err:
        err.args = (f"{path}: {err.args[0]}",)  # name the file as well as the key
        raise


def jsonable(value: Any) -> Any:
    """A value as it can be written into zarr attributes (tuples become lists)."""
    return json.loads(json.dumps(value, default=list))
