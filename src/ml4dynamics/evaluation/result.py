"""The evaluation result: one closure's scores on every split it was rolled out on, typed.

``EvaluationResult`` is what ``ml4d evaluate`` writes to
``metrics/<system>/evaluate/<estimator>.json`` and what the gates, promotion, the golden
benchmark, the sweep, the shift correlation and the results page read. It holds one
``SplitSummary`` per split; a summary holds the closure's own numbers (definitions:
``ml4dynamics.evaluation.metrics``) and, where they were measured, the ``Ablation`` (the exact
closure plus noise of the closure's misfit) and ``CoarseAlone`` (the solver without a closure)
beside them, and the summaries of every value of a swept parameter (``by``, written
``by_<name>``).

JSON, exactly as the files hold it (``to_json`` and ``from_json`` are inverse to the byte): the
fields in their order, named as the field, except the error at the report time T, written
``error_t<T>`` and ``error_t<T>_sq`` (``report_key``). A value that was measured and is not finite
(a blow-up) is ``None`` (JSON ``null``); a quantity this evaluation did not measure at all (no
spectrum for the system, no autoencoder for the shift, no ablation asked for) is ``UNMEASURED``
and has no key.

The score, defined here once: a split is scored by its error at the horizon, or at the report
time for a chaotic system, whose hybrids have all decorrelated from the truth by the horizon
(``scored_error``, named by ``score_metric``); a closure's score is the mean over the scored
splits, ``None`` if any is not finite (``split_score``). ``EvaluationResult.build`` is the one
constructor of a fresh result and computes it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from ml4dynamics.core.errors import ML4DError

HORIZON = "error_horizon"  # the score metric of a system that is not chaotic


class Unmeasured(enum.Enum):
    """A quantity an evaluation did not measure (no key in its JSON), unlike one it measured
    and found not finite (``None``)."""

    UNMEASURED = "unmeasured"

    def __repr__(self) -> str:
        return "UNMEASURED"


UNMEASURED = Unmeasured.UNMEASURED
Maybe = float | None | Unmeasured


def report_key(report_time: float) -> str:
    """The JSON key of the error at the report time: ``error_t10`` for t = 10."""
    return f"error_t{report_time:g}"


def score_metric(report_time: float, chaotic: bool) -> str:
    """The name of the error a closure is scored by (``scored_error``)."""
    return report_key(report_time) if chaotic else HORIZON


def scored_error(summary: SplitSummary | CoarseAlone, chaotic: bool) -> float | None:
    """The error a split is scored by: at the report time for a chaotic system (whose hybrids
    have all decorrelated from the truth by the horizon), at the horizon otherwise."""
    return summary.error_report if chaotic else summary.error_horizon


def split_score(summaries: Sequence[SplitSummary], chaotic: bool) -> float | None:
    """The single number promotion compares: the mean over ``summaries`` of their scored errors
    (``None`` if any is not finite — a blown-up closure has no score — or there is none)."""
    values = [scored_error(s, chaotic) for s in summaries]
    if not values or any(v is None for v in values):
        return None
    return float(np.mean(values))


def or_none(value: Any) -> Any:
    """``value``, with ``UNMEASURED`` as ``None`` (for a reader that tells neither apart)."""
    return None if value is UNMEASURED else value


_REPORT_KEY = re.compile(r"error_t(?P<time>[^_]+)")
_NOT_JSON = ("report_time", "by")  # named by the report-time keys; written ``by_<name>``
T = TypeVar("T", bound="_Scores")


class _Scores:
    """JSON of a dataclass of scores: its fields in order, the report time's error named by it,
    ``UNMEASURED`` left out."""

    report_time: float
    _GROUPED: ClassVar[bool] = False  # keys ``by_<name>``: the groups of a swept parameter

    @staticmethod
    def _key(name: str, report_time: float) -> str:
        if name == "error_report":
            return report_key(report_time)
        if name == "error_report_sq":
            return f"{report_key(report_time)}_sq"
        return name

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.name in _NOT_JSON or value is UNMEASURED:
                continue
            if isinstance(value, _Scores):
                value = value.to_json()
            elif isinstance(value, tuple):
                value = list(value)
            out[self._key(f.name, self.report_time)] = value
        return out

    @classmethod
    def _values(cls, data: Any, where: str) -> dict[str, Any]:
        """The constructor's arguments from ``data`` (the JSON), checked: every required key
        present, no key unknown."""
        if not isinstance(data, Mapping):
            raise ML4DError(f"{where} is not a summary of scores (a JSON object)")
        times = [m["time"] for k in data if (m := _REPORT_KEY.fullmatch(k))]
        if len(times) != 1:
            raise ML4DError(f"{where} has no single error at the report time (error_t<T>)")
        values: dict[str, Any] = {"report_time": float(times[0])}
        known = set()
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            if f.name in _NOT_JSON:
                continue
            key = cls._key(f.name, values["report_time"])
            known.add(key)
            if key in data:
                values[f.name] = data[key]
            elif f.default is not UNMEASURED:
                raise ML4DError(f"{where} has no {key!r}; evaluate again (`dvc repro`)")
        unknown = sorted(
            k for k in data if k not in known and not (cls._GROUPED and k.startswith("by_"))
        )
        if unknown:
            raise ML4DError(f"{where} has keys this version does not know: {unknown}")
        return values

    @classmethod
    def from_json(cls: type[T], data: Any, where: str = "summary") -> T:
        return cls(**cls._values(data, where))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ablation(_Scores):
    """The paper's ablation: the exact closure plus noise of the closure's misfit σ."""

    misfit_std: float  # σ: the closure's a-priori error on the split, per element
    error_horizon: float | None
    stable_fraction: float
    corr_time_95: float
    report_time: float
    error_report: float | None
    spectrum_error: Maybe = UNMEASURED


@dataclasses.dataclass(frozen=True, kw_only=True)
class CoarseAlone(_Scores):
    """The solver the closure corrects, rolled out without a closure (``y = 0``)."""

    error_horizon: float | None
    stable_fraction: float
    corr_time_80: float
    corr_time_95: float
    corr_censored_80: int
    spectrum_error: Maybe = UNMEASURED
    report_time: float
    error_report: float | None
    excess_shift: Maybe = UNMEASURED
    excess_shift_same_frame: Maybe = UNMEASURED


@dataclasses.dataclass(frozen=True, kw_only=True)
class SplitSummary(_Scores):
    """One split's scores: means over its trajectories (``None`` where not finite), each
    trajectory's blow-up time (``None``: stable to the horizon), the correlation times at
    ρ = 0.8, 0.9, 0.95 (and how many trajectories never dropped: censored at the horizon)."""

    trajectories: int
    horizon: float
    stable_fraction: float
    stability_horizon: float
    error_horizon: float | None
    error_sq_horizon: float | None
    report_time: float
    error_report: float | None
    error_report_sq: float | None
    corr_time_80: float
    corr_censored_80: int
    corr_time_90: float
    corr_censored_90: int
    corr_time_95: float
    corr_censored_95: int
    blowup_times: tuple[float | None, ...]
    spectrum_error: Maybe = UNMEASURED  # systems with an energy spectrum
    log10_f_hybrid_final: Maybe = UNMEASURED  # the shift: with the frozen autoencoder
    log10_f_true_final: Maybe = UNMEASURED
    excess_shift: Maybe = UNMEASURED
    excess_shift_same_frame: Maybe = UNMEASURED  # chaotic systems
    coarse_alone: CoarseAlone | Unmeasured = UNMEASURED  # systems without an exact closure
    ablation: Ablation | None | Unmeasured = UNMEASURED  # None: the system has none
    error_vs_ablation: Maybe = UNMEASURED  # the error at the horizon ÷ the ablation's
    #: per swept parameter (``re``), per value as written (``"300"``), that group's summary
    by: Mapping[str, Mapping[str, SplitSummary]] = dataclasses.field(default_factory=dict)
    _GROUPED: ClassVar[bool] = True

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        for name, groups in self.by.items():
            out[f"by_{name}"] = {value: s.to_json() for value, s in groups.items()}
        return out

    @classmethod
    def from_json(cls, data: Any, where: str = "summary") -> SplitSummary:
        values = cls._values(data, where)
        values["blowup_times"] = tuple(values["blowup_times"])
        if "coarse_alone" in values:
            values["coarse_alone"] = CoarseAlone.from_json(
                values["coarse_alone"], f"{where}.coarse_alone"
            )
        if values.get("ablation") is not None:
            values["ablation"] = Ablation.from_json(values["ablation"], f"{where}.ablation")
        values["by"] = {
            key[3:]: {
                value: cls.from_json(s, f"{where}.{key}.{value}") for value, s in groups.items()
            }
            for key, groups in data.items()
            if key.startswith("by_")
        }
        return cls(**values)


#: the fields before the splits, in the JSON's order
_HEAD = (
    "system",
    "estimator",
    "closure_fingerprint",
    "data_fingerprint",
    "score",
    "score_metric",
    "chaotic",
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class EvaluationResult:
    """One closure evaluated: what it closes, which closure and data (fingerprints; ``None``
    where the evaluation is not recorded as a file), its score and by what, and the summary of
    every split rolled out (in the JSON, each under its own name)."""

    system: str
    estimator: str | None
    closure_fingerprint: str | None
    data_fingerprint: str | None
    score: float | None
    score_metric: str
    chaotic: bool
    splits: Mapping[str, SplitSummary]

    @classmethod
    def build(
        cls,
        *,
        system: str,
        chaotic: bool,
        splits: Mapping[str, SplitSummary],
        scored: Iterable[str],
        estimator: str | None = None,
        closure_fingerprint: str | None = None,
        data_fingerprint: str | None = None,
    ) -> EvaluationResult:
        """A fresh evaluation, scored by ``split_score`` over the ``scored`` splits it has."""
        first = next(iter(splits.values()))
        return cls(
            system=system,
            estimator=estimator,
            closure_fingerprint=closure_fingerprint,
            data_fingerprint=data_fingerprint,
            score=split_score([splits[s] for s in scored if s in splits], chaotic),
            score_metric=score_metric(first.report_time, chaotic),
            chaotic=chaotic,
            splits=dict(splits),
        )

    @property
    def report_time(self) -> float:
        return next(iter(self.splits.values())).report_time

    def scored_error(self, split: str) -> float | None:
        """The error ``split`` is scored by (``scored_error``)."""
        return scored_error(self.splits[split], self.chaotic)

    def to_json(self) -> dict[str, Any]:
        head = {name: getattr(self, name) for name in _HEAD}
        return head | {name: s.to_json() for name, s in self.splits.items()}

    @classmethod
    def from_json(cls, data: Any, where: str = "evaluation") -> EvaluationResult:
        if not isinstance(data, Mapping) or not set(_HEAD) <= set(data):
            missing = sorted(set(_HEAD) - set(data)) if isinstance(data, Mapping) else _HEAD
            raise ML4DError(
                f"{where} is not an evaluation (no {', '.join(missing)}); evaluate the closure "
                "again (`dvc repro`)"
            )
        splits = {
            k: SplitSummary.from_json(v, f"{where}: {k}") for k, v in data.items() if k not in _HEAD
        }
        return cls(**{name: data[name] for name in _HEAD}, splits=splits)

    @classmethod
    def read(cls, path: str | Path) -> EvaluationResult:
        """The evaluation ``ml4d evaluate`` wrote to ``path``."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as err:
            raise ML4DError(f"cannot read the evaluation {path}: {err}") from None
        return cls.from_json(data, str(path))

    def metrics(self, prefix: str) -> dict[str, float]:
        """Every finite number of the splits' summaries as ``{prefix.split.name: value}``, for
        MLflow (``eval.test.by_re.300.error_horizon``)."""
        return numeric_metrics({name: s.to_json() for name, s in self.splits.items()}, prefix)


def numeric_metrics(summaries: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """``{prefix.key.name: value}`` for every finite number of the (nested) mapping."""
    out = {}
    for key, value in summaries.items():
        if isinstance(value, Mapping):
            out.update(numeric_metrics(value, f"{prefix}.{key}"))
        elif isinstance(value, int | float) and math.isfinite(value):
            out[f"{prefix}.{key}"] = float(value)
    return out


def _significant(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else float(f"{value:.{digits}g}")


def time_key(split: str, time: float) -> str:
    """``test_t10``: a split's error at a time, named so that the time shows (a dot would nest
    the key in DVC's tables: ``t0_4`` for t = 0.4)."""
    return f"{split}_t{time:g}".replace(".", "_")


def headline(result: EvaluationResult) -> dict[str, Any]:
    """The few numbers a person compares across experiments (``dvc metrics show``, ``dvc exp
    show``), rounded to three digits, each error named with its time: the validation score λ is
    chosen by (at the horizon, or at the report time for a chaotic system), the test error at the
    report time and — where it is predictable, i.e. not for a chaotic system — at the horizon, the
    ood error at the report time, the smaller stable fraction of test and ood, and — not for a
    chaotic system, whose decorrelated rollout's furthest excursion from the manifold differs
    from one CPU to another — the ood distribution shift (``null``: not defined, e.g. after a
    blow-up). The rest — the ood horizon,
    the spectrum error, every other time — stays in the evaluation file."""
    test, ood = result.splits["test"], result.splits["ood"]
    report = result.report_time
    out: dict[str, Any] = {}
    if "val" in result.splits:
        val = result.splits["val"]
        out[time_key("val", report if result.chaotic else val.horizon)] = _significant(
            result.scored_error("val")
        )
    out[time_key("test", report)] = _significant(test.error_report)
    if not result.chaotic and test.horizon != report:
        out[time_key("test", test.horizon)] = _significant(test.error_horizon)
    out[time_key("ood", report)] = _significant(ood.error_report)
    out["stable"] = _significant(min(test.stable_fraction, ood.stable_fraction))
    if not result.chaotic:  # a chaotic rollout's furthest excursion is decided by round-off
        out["shift"] = _significant(or_none(ood.excess_shift))
    return out
