"""params.yaml → typed, frozen configuration, validated before any work starts.

Layout of params.yaml: one top-level section per system (``linear``, ``rd``, ...), each with

    system: every parameter of the system's config class (no hidden defaults)
    data:   warm-up, storage stride, label noise and the four splits train / val / test / ood

and one section per later stage, keyed by system where the stage is per system:

    manifold.<system>: {model: {kind, ...}, optim: {...}}   the autoencoder for F
    train.<system>:    {model: {kind, ...}, optim: {...}}   the closure network
    estimators:        the estimators trained side by side, by name: {kind, and its own weight}
    reg.<system>:      the tangent-space penalty of that system's TR estimators (lam, eps)
    reg.lam:           the factor on every system's lam (1: each system's own)
    evaluate:          hybrid-rollout metrics (bound of the stability check, report time)
    promote:           the thresholds of the registry's promotion gates
    linear_theory:     the λ sweep of the paper's linear experiment

Stage sections are optional here and required, parsed and validated by the stage that reads them
(each by the library module that owns it), so each DVC stage depends on exactly the keys and the
code it uses; ``ml4d params`` validates the whole file.

A split may override system parameters with a list of values per parameter
(``ood: {system: {gamma_u: [0.25]}}``); it then holds trajectories for every combination.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import yaml

from ml4dynamics.core.errors import ConfigError, ML4DError
from ml4dynamics.core.validation import coerce, parse, require, require_non_negative
from ml4dynamics.systems import SYSTEMS, SystemConfig

T = TypeVar("T")

SPLITS = ("train", "val", "test", "ood")
#: the splits a closure's rollouts are scored on for promotion (val is for choosing λ and the like)
SCORED_SPLITS = ("test", "ood")
#: the splits ``ml4d evaluate`` rolls out: validation first, for hyperparameter choices
ROLLED_OUT_SPLITS = ("val", *SCORED_SPLITS)


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


#: the stage sections that hold one entry per system: with its own section, what a system needs
SYSTEM_STAGE_SECTIONS = ("manifold", "train", "reg")

#: top-level sections that belong to a stage, not a system; each is parsed by the module that
#: owns it (``training.network_stage``, ``estimators.estimator_config``, ``gates.configured``,
#: ``evaluation.evaluate_config``, ``linear_theory.theory_config``) when its stage runs, so a
#: stage imports and depends on exactly the configuration it reads. ``ml4d params`` checks all.
STAGE_SECTIONS = (
    "manifold",
    "train",
    "estimators",
    "reg",
    "evaluate",
    "envelope",
    "promote",
    "linear_theory",
)


@dataclasses.dataclass(frozen=True)
class Params:
    """params.yaml: the system sections parsed and validated, the stage sections kept raw until
    their stage asks for them (``section`` / ``parse``), errors naming the file."""

    systems: Mapping[str, SystemSetup]
    raw: Mapping[str, Any]
    path: str = "params.yaml"

    def setup(self, name: str) -> SystemSetup:
        known_system(name)
        if name not in self.systems:
            raise self.missing_sections(name)
        return self.systems[name]

    def missing_sections(self, name: str) -> ML4DError:
        """One line naming every section of system ``name`` the file lacks (its own, with
        ``system`` and ``data``, and its entries under ``SYSTEM_STAGE_SECTIONS``)."""
        missing = [] if name in self.systems else [f"'{name}' (with 'system' and 'data')"]
        for section in SYSTEM_STAGE_SECTIONS:
            entries = self.raw.get(section)
            if not (isinstance(entries, Mapping) and name in entries):
                missing.append(f"'{section}.{name}'")
        return ML4DError(
            f"{self.path} lacks the sections of system {name!r}: {', '.join(missing)}; add them "
            "as the other systems have theirs (see the repository's params.yaml)"
        )

    def has(self, section: str) -> bool:
        return section in self.raw

    def section(self, section: str) -> Any:
        """The raw mapping of a stage section, or a clear error if the file lacks it."""
        if section not in self.raw:
            raise ML4DError(
                f"params.yaml has no section {section!r}; add it (see the repository's params.yaml)"
            )
        return self.raw[section]

    def parse(self, parser: Callable[[Any, str], T], section: str, key: str | None = None) -> T:
        """``parser(raw, dotted_key)`` on ``section`` (or its entry ``key``), with the file's
        name in front of any ``ConfigError``."""
        raw = self.section(section)
        dotted = section
        if key is not None:
            if not isinstance(raw, Mapping) or key not in raw:
                raise ML4DError(
                    f"params.yaml has no section '{section}.{key}'; add it "
                    "(see the repository's params.yaml)"
                )
            raw, dotted = raw[key], f"{section}.{key}"
        try:
            return parser(raw, dotted)
        except ConfigError as err:
            err.args = (f"{self.path}: {err.args[0]}",)
            raise


def known_system(name: str) -> None:
    if name not in SYSTEMS:
        raise ML4DError(f"unknown system {name!r}; known systems: {', '.join(SYSTEMS)}")


def parse_params(raw: Any, path: str = "params.yaml") -> Params:
    """Validate the layout and every system section of a mapping read from params.yaml; raise
    ``ConfigError`` naming the first problem. Stage sections are checked by their owners."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            "(top level)", "must be a mapping of sections", "see the repository's params.yaml"
        )
    systems: dict[str, SystemSetup] = {}
    for name, section in raw.items():
        if name in STAGE_SECTIONS:
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
    return Params(systems=systems, raw=dict(raw), path=path)


class DuplicateKeyError(ConfigError):
    """A key given twice in one mapping of a YAML file (plain YAML keeps the last one, silently)."""

    def __init__(self, key: str, first: int, second: int):
        super().__init__(key, f"is given twice (lines {first} and {second})", "keep one")
        self.args = (f"key {key!r} is given twice (lines {first} and {second}); keep one",)


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose mappings refuse a key given twice, at any depth, with
    ``DuplicateKeyError`` naming the key's dotted path and both lines. A key merged in with
    ``<<: *anchor`` may still be overridden, as YAML intends."""

    def construct_document(self, node: yaml.Node) -> Any:
        self._root, self._checked = node, set()
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> Any:
        self._check_unique(node)  # before flattening, which puts the merged keys in front
        return super().construct_mapping(node, deep=deep)

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        self._check_unique(node)  # a merged-in mapping too, before its own merges are flattened
        super().flatten_mapping(node)

    def _check_unique(self, node: yaml.MappingNode) -> None:
        if id(node) in self._checked:
            return
        self._checked.add(id(node))
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = self.construct_object(key_node, deep=True), key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeConstructor refuses it with its own error
                continue
            if first is not None:
                where = _key_path(self._root, node)
                raise DuplicateKeyError(f"{where}.{key}" if where else str(key), first, line)
            seen[key] = line


def _key_path(root: yaml.Node, target: yaml.Node, path: str = "", seen=None) -> str | None:
    """The dotted path from ``root`` to the node ``target`` (``a.b[2].c``), None if not below."""
    seen = set() if seen is None else seen
    if root is target:
        return path
    if id(root) in seen:  # an alias back to a node above (``&a [*a]``)
        return None
    seen.add(id(root))
    if isinstance(root, yaml.MappingNode):
        children = [(f"{path}.{k.value}" if path else str(k.value), v) for k, v in root.value]
    elif isinstance(root, yaml.SequenceNode):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(root.value)]
    else:
        return None
    for sub, child in children:
        if (found := _key_path(child, target, sub, seen)) is not None:
            return found
    return None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read, check and parse ``path``: a key given twice, an empty file or bad YAML is one error."""
    path = Path(path)
    if not path.is_file():
        raise ML4DError(
            f"no parameter file at {path}; run from the repository root or pass --params"
        )
    try:
        raw = yaml.load(path.read_text(), Loader=StrictLoader)  # a SafeLoader
        if raw is None or raw == {}:
            raise ML4DError(
                f"{path} is empty: it configures nothing; restore it with `git checkout {path}` "
                "or write its sections (see the repository's params.yaml)"
            )
        return parse_params(raw, str(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ML4DError(f"{path} is not valid YAML{where}; fix the syntax") from None
    except ConfigError as err:
        err.args = (f"{path}: {err.args[0]}",)  # name the file as well as the key
        raise


def jsonable(value: Any) -> Any:
    """A value as it can be written into zarr attributes (tuples become lists)."""
    return json.loads(json.dumps(value, default=list))
