"""What the project found, in one list: the README's "What we found", each bullet a sentence
filled in from the committed output behind it (a trial's JSON, a pipeline run's promotion, the
linear experiment, the speed-up measurement) and linking to the table a reader checks it against.
The comparisons in the sentences ("within the seeds' spread", "below") are computed from the same
numbers, so a rerun that changes a verdict changes the sentence. ``ml4d report`` writes the list
into every generated block whose source is ``findings``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.studies.trial_records import recorded
from ml4dynamics.studies.trial_tables import choice_label, choose, picked

#: the name a generated block gives to be filled with the list
SOURCE = "findings"


class Trial:
    """A committed ``ml4d sweep`` trial, each estimator's runs at its chosen λ / window."""

    def __init__(self, root: Path, path: str):
        self.path = path
        result = recorded(root / path)
        self.settings = result["settings"]
        column = self.settings["parameter"] or "setting"
        runs = result["runs"]
        self.chosen = choose(runs, column)
        self.runs = picked(runs, self.chosen, column)
        self.report_time = self.settings["report_time"]

    def rows(self, estimator: str) -> list[dict[str, Any]]:
        rows = [r for r in self.runs if r["estimator"] == estimator]
        if not rows:
            raise ML4DError(f"{self.path} has no runs of {estimator}; rerun its `ml4d sweep`")
        return rows

    def values(self, estimator: str, key: str) -> np.ndarray:
        """Per seed; a blow-up (None) is infinite."""
        return np.array([np.inf if r[key] is None else r[key] for r in self.rows(estimator)])

    def error(self, estimator: str) -> Stat:
        return Stat(self.values(estimator, "error"))

    def named(self, estimator: str) -> str:
        """``tr-projector at λ = 1`` (with what validation chose for it, if anything)."""
        label = choice_label(*self.chosen.get((None, estimator), (None, None)))
        return f"{estimator} at {label}" if label else estimator

    def coarse_alone(self) -> float:
        """The plain solver alone's test error at the report time (the same for every seed)."""
        key = f"error_t{self.report_time:g}"
        rows = [r["coarse_alone"] for r in self.runs if r.get("coarse_alone")]
        if not rows:
            raise ML4DError(f"{self.path} has no coarse solver alone: not a coarse-grid trial")
        return float(rows[0][key])

    def stable(self, estimator: str) -> tuple[int, int]:
        """Test rollouts still stable at the horizon, and in all, over every seed."""
        rows = self.rows(estimator)
        total = self.settings["test_samples"] * len(rows)
        return round(sum(r["stable_fraction"] for r in rows) * self.settings["test_samples"]), total

    def link(self) -> str:
        md = self.path.removesuffix(".json") + ".md"
        return f"[{md}]({md})"


class Stat:
    """Mean ± std over seeds of a per-seed number (infinite where a run blew up)."""

    def __init__(self, values: np.ndarray):
        self.values = values
        self.finite = bool(np.isfinite(values).all())
        self.mean = float(np.mean(values)) if self.finite else np.inf
        self.std = float(np.std(values)) if self.finite else np.inf

    def __str__(self) -> str:
        if not self.finite:
            return f"blew up in {int(np.sum(~np.isfinite(self.values)))}/{len(self.values)} seeds"
        return f"{self.mean:.3g} ± {self.std:.2g}"

    def compare(self, other: Stat) -> int:
        """-1 where this is lower than ``other`` by more than the seeds' spread (the larger std),
        1 where higher, 0 within it (or where a run blew up)."""
        if not (self.finite and other.finite):
            return 0
        if abs(self.mean - other.mean) <= max(self.std, other.std):
            return 0
        return -1 if self.mean < other.mean else 1

    def against(self, other: Stat) -> str:
        """How this compares with ``other``, in words."""
        if not (self.finite and other.finite):
            return "not comparable (a run blew up)"
        order = self.compare(other)
        if order == 0:
            return "the same within the seeds' spread"
        ratio = other.mean / self.mean
        return f"{ratio:.2g}× lower" if order < 0 else f"{1 / ratio:.2g}× higher"


def _rd(root: Path) -> str:
    trial = Trial(root, "sweep/rd_120_epochs_table.json")
    ols, tr = trial.error("ols"), trial.error("tr-projector")
    # compare: 0 within the spread, -1 lower, 1 higher
    verdict = {0: "tangency does not pay", -1: "tangency pays", 1: "tangency costs accuracy"}[
        tr.compare(ols)
    ]
    text = (
        f"**rd (the paper's reaction–diffusion): {verdict}.** Trained {trial.settings['epochs']} "
        f"epochs (to a plateau), {trial.named('tr-projector')} errs {tr} at "
        f"t = {trial.report_time:g} against OLS's {ols}: {tr.against(ols)} ({trial.link()})."
    )
    if (root / "sweep/rd_dagger_table.json").is_file():
        dagger = Trial(root, "sweep/rd_dagger_table.json").error("dagger")
        shift = "not" if dagger.compare(ols) == 0 else "in part"
        text += (
            f" DAgger, which trains on the hybrid's own states and so removes the shift, errs "
            f"{dagger}, {dagger.against(ols)} as OLS: rd's error is {shift} distribution shift."
        )
    return text


def _best(trial: Trial) -> str:
    return min(trial.settings["names"], key=lambda name: trial.error(name).mean)


def _ks(root: Path) -> str:
    trial = Trial(root, "sweep/ks_table.json")
    base, best = trial.coarse_alone(), _best(trial)
    err = trial.error(best)
    verdict = "a closure is worth having" if err.mean < base else "no closure beats the solver"
    return (
        f"**ks on a coarse grid: {verdict}.** The best closure ({trial.named(best)}) errs {err} "
        f"at t = {trial.report_time:g}, {err.mean / base:.2g}× the alias-free solver alone on "
        f"the same grid ({base:.3g}); {trial.named('tr-projector')} errs "
        f"{trial.error('tr-projector')}, OLS {trial.error('ols')} ({trial.link()})."
    )


def _unrolled(root: Path) -> str:
    trial = Trial(root, "sweep/ks_table.json")
    control = Trial(root, "sweep/ks_ols_60_epochs_table.json")
    unrolled, long_ols = trial.error("unrolled"), control.error("ols")
    verdict = {
        0: "the gain is training budget",
        -1: "it pays beyond budget",
        1: "it costs accuracy",
    }[unrolled.compare(long_ols)]
    return (
        f"**Training through the solver on ks: {verdict}.** The closure trained through "
        f"windows of the solver ({trial.named('unrolled')}) errs {unrolled}; OLS "
        f"{trial.error('ols')} at {trial.settings['epochs']} epochs and {long_ols} at "
        f"{control.settings['epochs']}, {unrolled.against(long_ols)} as unrolled; without the "
        f"solver's gradient {trial.error('unrolled-nog')}, with tangency on top "
        f"({trial.named('unrolled-tr')}) {trial.error('unrolled-tr')} "
        f"({trial.link()}, {control.link()})."
    )


def _kolmogorov(root: Path) -> str:
    trial = Trial(root, "sweep/kolmogorov_table.json")
    base, best = trial.coarse_alone(), _best(trial)
    err = trial.error(best)
    verdict = "gain little" if err.mean / base > 0.5 else "halve the error"
    return (
        f"**kolmogorov (2D turbulence, 16² closed by 128², opt-in): the closures {verdict}.** "
        f"The best ({trial.named(best)}) errs {err} at t = {trial.report_time:g}, "
        f"{err.mean / base:.2g}× the alias-free solver alone ({base:.3g}); OLS "
        f"{trial.error('ols')} ({trial.link()})."
    )


def _ns_channel(root: Path) -> str:
    trial = Trial(root, "sweep/ns_channel_924_epochs_table.json")
    kept = {n: trial.stable(n) for n in ("tr-projector", "ols-field", "field-ols", "ols")}
    tr, control, ols = (kept[n][0] for n in ("tr-projector", "ols-field", "ols"))
    verdict = "TR keeps more rollouts stable than OLS" if tr > ols else "TR is no more stable"
    if tr > ols:
        verdict += (
            ", most of it without tangency" if control - ols >= (tr - ols) / 2 else ", by tangency"
        )
    counts = ", ".join(f"{trial.named(n)} {k} of {total}" for n, (k, total) in kept.items())
    return (
        f"**ns_channel (a learned pressure, opt-in): {verdict}.** Test rollouts still stable at "
        f"t = {trial.settings['horizon']:g} ({trial.settings['epochs']} epochs, "
        f"{len(trial.rows('ols'))} seeds): {counts} ({trial.link()}; ols-field is TR's loss "
        "without the projection, field-ols OLS measured through the solver)."
    )


def _registry(root: Path) -> str:
    path = "bench/ns_channel_tr_924_epochs_pipeline/promotion.json"
    promotion = json.loads((root / path).read_text())
    (name, candidate), *_ = promotion["candidates"].items()
    refused = [g for g, gate in candidate["gates"].items() if not gate["passed"]]
    detail = candidate["gates"].get("finite_and_bounded", {}).get("detail", "")
    verdict = (
        "No ns_channel closure reaches the registry"
        if promotion["champion"] is None
        else "An ns_channel closure is champion"
    )
    return (
        f"**{verdict}.** Its best ({name}, at the budget validation chose) is "
        f"{'refused by ' + ', '.join(refused) if refused else 'accepted'}: {detail} "
        f"([{path}]({path}))."
    )


def _linear(root: Path) -> str:
    path = "metrics/linear_theory.json"
    linear = json.loads((root / path).read_text())
    top = linear["at_max_lam"]
    holds = linear["tr_loglog_slope"] < -0.5 and top["tr"] < top["ols"]
    return (
        f"**The paper's linear experiment {'reproduces' if holds else 'does not reproduce'}.** "
        f"TR's {linear['horizon']}-step error falls like λ^{linear['tr_loglog_slope']:.2f} to "
        f"{top['tr']:.2g} at λ = {top['lam']:g}, against OLS's {top['ols']:.3g} and mOLS's "
        f"{top['mols']:.4g}; the trained closures match the closed forms to "
        f"{linear['trained_vs_closed_form_max_abs']:.0e} ([{path}]({path}))."
    )


def _speedup(root: Path) -> str:
    path = "bench/ks_speedup.json"
    speedup = json.loads((root / path).read_text())
    at = [h["equivalent"]["0.8"]["speedup"] for h in speedup["hybrids"].values()]
    verdict = "not yet cheaper" if max(at) < 1 else "cheaper"
    return (
        f"**The hybrid is {verdict}.** On ks the closures run at a speed-up of "
        f"{min(at):.2g}–{max(at):.2g}× against the plain solver of the same accuracy (ρ ≥ 0.8): "
        f"in 1D the fine solver's FFTs are cheaper than the network ([{path}]({path}))."
    )


def _arrow(values: list[float]) -> str:
    return " → ".join(f"{v:.2g}" for v in values)


def _convergence(root: Path) -> str:
    path = "bench/ks_convergence.md"
    study = json.loads((root / path).with_suffix(".json").read_text())
    sizes = sorted(study["sizes"], key=int)
    ((name, _),) = list(study["sizes"][sizes[0]]["hybrids"].items())[:1]
    hybrid = [study["sizes"][n]["hybrids"][name]["error_mean"] for n in sizes]
    plain = [study["sizes"][n]["plain"]["error_at_report"] for n in sizes]
    falls = all(b < a for a, b in zip(hybrid, hybrid[1:], strict=False))
    loses = [n for n, h, p in zip(sizes, hybrid, plain, strict=True) if h >= p]
    verdict = "the closure converges" if falls else "the closure does not converge"
    if loses:
        verdict += f", but the plain solver overtakes it at n = {', '.join(loses)}"
    return (
        f"**ks with resolution: {verdict}.** At n = {', '.join(sizes)} points the {name} "
        f"hybrid errs {_arrow(hybrid)} at t = {study['report_time']:g} (mean of "
        f"{len(study['sizes'][sizes[0]]['hybrids'][name]['seeds'])} seeds), the alias-free "
        f"solver alone {_arrow(plain)}, the exact correction round-off ([{path}]({path}), "
        f"[figure]({path.replace('.md', '.png')}))."
    )


def _envelope(root: Path) -> str:
    path = "metrics/rd/envelope.json"
    envelope = json.loads((root / path).read_text())
    if not envelope.get("points"):
        return f"**rd has no champion, so no validity envelope** ([{path}]({path}))."
    points = envelope["points"]
    untrusted = [p for p in points if not p["trusted"]]
    ranges = ", ".join(
        f"{name} {'nowhere' if span is None else f'{span[0]:.3g}–{span[1]:.3g}'}"
        for name, span in envelope["trusted_range"].items()
    )
    trained = ", ".join(f"{k} = {v:g}" for k, v in envelope["training"].items())
    words = {"error": "error above the gate", "blew": "blow-up", "shift": "shift"}
    reasons = sorted({words.get(p["why"].split(" ")[0], "the plain solver") for p in untrusted})
    holes = "; ".join(", ".join(f"{k} = {v:g}" for k, v in h.items()) for h in envelope["holes"])
    return (
        f"**Where rd's champion can be trusted: {ranges}** along each parameter through its "
        f"training point ({trained}). {len(untrusted)} of {len(points)} scanned points are "
        f"untrusted ({', '.join(reasons) or 'none'}); holes inside the trusted region: "
        f"{holes or 'none'} ([{path}]({path}), "
        f"[figure](plots/rd/envelope.png))."
    )


FINDINGS: tuple[Callable[[Path], str], ...] = (
    _rd,
    _ks,
    _unrolled,
    _convergence,
    _kolmogorov,
    _ns_channel,
    _registry,
    _envelope,
    _linear,
    _speedup,
)


def findings(root: Path = Path(".")) -> str:
    """The list, one Markdown bullet per finding."""
    return "\n".join(f"- {finding(root)}" for finding in FINDINGS)
