"""Where the pipeline's files live: one layout shared by every stage and matching ``dvc.yaml``.

Stages take every path from here (never spelled out in a stage), and ``tests/test_layout.py``
checks that the outputs ``dvc.yaml`` declares for each stage are exactly ``outputs(...)`` of its
command, so a path cannot change in one place only.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ml4dynamics.core.errors import ML4DError


@dataclasses.dataclass(frozen=True)
class Layout:
    """Paths under ``root`` (the repository root; relative paths by default, as DVC runs)."""

    root: Path = Path()

    # -- data -------------------------------------------------------------------------------
    def data(self, system: str) -> Path:
        return self.root / "data" / system

    def split(self, system: str, split: str) -> Path:
        return self.data(system) / f"{split}.zarr"

    @property
    def benchmark(self) -> Path:
        """The frozen golden benchmark (tracked by the top-level ``data.dvc``)."""
        return self.root / "data" / "benchmark"

    # -- models -----------------------------------------------------------------------------
    def manifold(self, system: str) -> Path:
        return self.root / "models" / system / "manifold"

    def closures(self, system: str) -> Path:
        return self.root / "models" / system / "closures"

    def closure(self, system: str, estimator: str) -> Path:
        return self.closures(system) / estimator

    def checkpoints(self, system: str, estimator: str) -> Path:
        """Training checkpoints: a run's own scratch space for resuming, guarded by the training
        fingerprint. Not a DVC output: a fresh workspace (an experiment's) has none and must not
        count that as a change."""
        return self.root / "models" / system / "checkpoints" / estimator

    # -- locks ------------------------------------------------------------------------------
    def lock(self, system: str, what: str) -> Path:
        """The lock a writer holds while it writes ``what`` of ``system`` (``data``,
        ``manifold``, ``model-<estimator>`` for training and evaluation alike, ``promotion``):
        one writer at a time, a second stops at once (``core.outputs.exclusive``). Not a DVC
        output, and gitignored."""
        return self.root / ".ml4d" / "locks" / f"{system}.{what}.lock"

    # -- metrics and plots ------------------------------------------------------------------
    def manifold_metrics(self, system: str) -> Path:
        return self.root / "metrics" / system / "manifold.json"

    def train_metrics(self, system: str, estimator: str) -> Path:
        return self.root / "metrics" / system / "train" / f"{estimator}.json"

    def train_plots(self, system: str) -> Path:
        """The loss curves ``<estimator>.csv`` and ``<estimator>.png``."""
        return self.root / "plots" / system / "train"

    def evaluations(self, system: str) -> Path:
        return self.root / "metrics" / system / "evaluate"

    def evaluate_metrics(self, system: str, estimator: str) -> Path:
        return self.evaluations(system) / f"{estimator}.json"

    def _pipeline_models(self) -> dict | None:
        """``vars.models`` of ``dvc.yaml`` (the models the pipeline trains: name → system,
        estimator, weights), or None where there is no ``dvc.yaml``."""
        import yaml

        path = self.root / "dvc.yaml"
        if not path.is_file():
            return None
        pipeline = yaml.safe_load(path.read_text()) or {}
        models: dict = {}
        for entry in pipeline.get("vars", []):
            if isinstance(entry, dict) and isinstance(entry.get("models"), dict):
                models.update(entry["models"])
        return models

    def pipeline_estimators(self, system: str) -> set[str] | None:
        """The estimators of ``system`` that ``dvc.yaml`` lists under ``vars.models`` (the models
        the pipeline trains), or None where there is no ``dvc.yaml``."""
        models = self._pipeline_models()
        if models is None:
            return None
        return {m["estimator"] for m in models.values() if m.get("system") == system}

    def pipeline_systems(self) -> list[str]:
        """The systems with models in ``dvc.yaml``, in its order (what the report and the shift
        correlation cover by default: an opt-in system once it is listed)."""
        models = self._pipeline_models() or {}
        return list(dict.fromkeys(m["system"] for m in models.values() if "system" in m))

    def evaluation_files(self, system: str) -> tuple[list[Path], list[Path]]:
        """(evaluations of the models the pipeline lists, evaluations left over from models that
        were removed from ``dvc.yaml``: DVC leaves a removed stage's outputs behind, and they
        must not be promoted, tabulated or pooled as if current)."""
        found = sorted(self.evaluations(system).glob("*.json"))
        listed = self.pipeline_estimators(system)
        if listed is None:
            return found, []
        return [p for p in found if p.stem in listed], [p for p in found if p.stem not in listed]

    def current_evaluations(self, system: str) -> list[Path]:
        """The evaluations a stage reads for ``system``: one line on stderr names any left over
        from removed models (skipped); none at all is an error saying to run the pipeline."""
        current, stale = self.evaluation_files(system)
        if stale:
            print(
                f"ml4d: note: skipping {', '.join(str(p) for p in stale)}: "
                "no model in dvc.yaml's `models` produces it (delete it, or list the model again)",
                file=sys.stderr,
            )
        if not current:
            raise ML4DError(
                f"no evaluations of {system} in {self.evaluations(system)}; "
                "run `dvc repro` (stage evaluate) first"
            )
        return current

    def headline(self, system: str, estimator: str) -> Path:
        """The few rounded numbers of one model that ``dvc metrics``/``dvc exp show`` list."""
        return self.root / "metrics" / system / "headline" / f"{estimator}.json"

    def gates(self, system: str) -> Path:
        """Each model's gate outcome, one word (champion, passed, refused)."""
        return self.root / "metrics" / system / "gates.json"

    def evaluate_plots(self, system: str, estimator: str) -> Path:
        return self.root / "plots" / system / "evaluate" / estimator

    def promotion(self, system: str) -> Path:
        return self.root / "metrics" / system / "promotion.json"

    def envelope(self, system: str) -> Path:
        """The validity envelope of the system's champion (``ml4d envelope SYSTEM``)."""
        return self.root / "metrics" / system / "envelope.json"

    def envelope_plot(self, system: str) -> Path:
        return self.root / "plots" / system / "envelope.png"

    def envelope_table(self, system: str) -> Path:
        return self.root / "metrics" / system / "envelope.md"

    @property
    def shift_correlation(self) -> Path:
        return self.root / "metrics" / "shift_correlation.json"

    @property
    def linear_theory_metrics(self) -> Path:
        return self.root / "metrics" / "linear_theory.json"

    @property
    def plots(self) -> Path:
        """Top-level plots (``linear_theory.{csv,png}``)."""
        return self.root / "plots"

    @property
    def results_page(self) -> Path:
        """``docs/results.md``, generated by ``ml4d report``."""
        return self.root / "docs" / "results.md"

    @property
    def readme(self) -> Path:
        """``README.md``, whose tables ``ml4d report`` generates (its prose is written)."""
        return self.root / "README.md"

    @property
    def findings_page(self) -> Path:
        """``docs/findings.md``: the trials, its tables generated like the README's."""
        return self.root / "docs" / "findings.md"

    # -- trials (`ml4d sweep`: committed outputs of a command, not DVC stages) ------------------
    @property
    def trials(self) -> Path:
        """``sweep/``: each trial's ``NAME_table.{json,md}`` and ``NAME_curves.png``."""
        return self.root / "sweep"

    # -- what each pipeline command writes (dvc.yaml declares exactly these) ---------------------
    def outputs(self, command: str, system: str | None = None, estimator: str | None = None):
        """The files and folders the pipeline command writes, as DVC outputs."""
        s, e = system or "", estimator or ""
        table = {
            "generate": lambda: [self.data(s)],
            "fit-manifold": lambda: [self.manifold(s), self.manifold_metrics(s)],
            "train": lambda: [
                self.closure(s, e),  # (checkpoints are no output: they exist to resume)
                self.train_plots(s) / f"{e}.png",
                self.train_plots(s) / f"{e}.csv",
                self.train_metrics(s, e),
            ],
            "evaluate": lambda: [
                *(
                    self.evaluate_plots(s, e) / name
                    for name in (
                        "test_snapshots.png",
                        "ood_snapshots.png",
                        "error.png",
                        "shift.png",
                        "val.csv",
                        "test.csv",
                        "ood.csv",
                    )
                ),
                self.evaluate_metrics(s, e),
                self.headline(s, e),
            ],
            "promote": lambda: [self.promotion(s), self.gates(s)],
            "envelope": lambda: [self.envelope(s), self.envelope_plot(s), self.envelope_table(s)],
            "shift-correlation": lambda: [self.shift_correlation],
            "report": lambda: [self.results_page, self.readme, self.findings_page],
            "linear-theory": lambda: [
                self.plots / "linear_theory.png",
                self.plots / "linear_theory.csv",
                self.linear_theory_metrics,
            ],
        }
        if command not in table:
            raise KeyError(f"{command!r} is not a pipeline command")
        return table[command]()


def trial_curves(table: Path) -> Path:
    """The test-curve figure of the trial recorded in ``table`` (``NAME_table.json`` or its
    Markdown twin): ``NAME_curves.png`` beside it."""
    return table.with_name(table.stem.removesuffix("_table") + "_curves.png")
