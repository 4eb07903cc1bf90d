"""Write docs/results.md from the pipeline's metrics (and sweep/SYSTEM_table.md,
bench/SYSTEM_train_step.json, bench/solvers.json, bench/SYSTEM_speedup.json and
bench/SYSTEM_pipeline/ when committed), and the generated blocks of README.md ("What we found")
and docs/findings.md (the trials' tables).

``ml4d report`` (stage ``report``): the results page, generated — every table in it is built from
the files ``dvc repro`` and ``ml4d sweep`` wrote.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ml4dynamics.core.layout import Layout, trial_curves
from ml4dynamics.core.outputs import atomic_file
from ml4dynamics.evaluation.result import EvaluationResult
from ml4dynamics.reporting import report
from ml4dynamics.studies import findings

ARGUMENTS = ()


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--system",
        action="append",
        help="systems with trained closures (default: those with models in dvc.yaml)",
    )


def _read(path: Path):
    return json.loads(path.read_text()) if path.is_file() else None


def main(args: argparse.Namespace) -> int:
    layout = Layout()
    sections = [
        *_system_sections(layout, args.system or layout.pipeline_systems()),
        *_opt_in_sections(),
        *_trial_sections(layout),
        *_study_sections(layout),
    ]

    # the generated blocks of README.md and docs/findings.md, from the same files (each block
    # names its own); every file is composed before any is written, so a bad block leaves them
    # all as they were
    def render(source: str) -> str:
        if source == findings.SOURCE:
            return findings.findings(layout.root)
        return report.generated_text(source, layout.root)

    filled = {
        page: report.fill_readme(page.read_text(), render, page.name)
        for page in (layout.readme, layout.findings_page)
        if page.is_file()
    }
    with atomic_file(layout.results_page) as tmp:
        Path(tmp).write_text(report.page(sections))
    print(f"wrote {layout.results_page}")
    for page, text in filled.items():
        with atomic_file(page) as tmp:
            Path(tmp).write_text(text)
        print(f"wrote the generated blocks of {page}")
    return 0


def _system_sections(layout: Layout, systems: list[str]) -> list[str]:
    """A section per system of the pipeline: its evaluations, trainings, manifold, promotion."""
    sections = []
    for name in systems:
        files = layout.current_evaluations(name)
        evaluations = {f.stem: EvaluationResult.read(f) for f in files}
        trainings = {e: _read(layout.train_metrics(name, e)) or {} for e in evaluations}
        sections.append(
            report.system_section(
                name,
                evaluations,
                trainings,
                _read(layout.manifold_metrics(name)),
                _read(layout.promotion(name)),
            )
        )
    return sections


def _opt_in_sections() -> list[str]:
    """A section per opt-in system's pipeline, run once with it listed in dvc.yaml: its
    metrics/SYSTEM/ folder committed as bench/SYSTEM_pipeline/ (the default pipeline does not
    rerun it)."""
    sections = []
    for snapshot in sorted(p for p in Path("bench").glob("*_pipeline") if p.is_dir()):
        name = snapshot.name.removesuffix("_pipeline")
        evaluations = {
            f.stem: EvaluationResult.read(f) for f in sorted((snapshot / "evaluate").glob("*.json"))
        }
        if not evaluations:
            continue
        sections.append(
            report.system_section(
                name,
                evaluations,
                {e: _read(snapshot / "train" / f"{e}.json") or {} for e in evaluations},
                _read(snapshot / "manifold.json"),
                _read(snapshot / "promotion.json"),
                f"opt-in: one run of its pipeline, committed output `{snapshot.as_posix()}/`",
            )
        )
    return sections


def _trial_sections(layout: Layout) -> list[str]:
    """A section per committed trial over seeds (``ml4d sweep``), then per comparison of
    trials side by side (``ml4d sweep --compare``), each with its figure."""
    sections = []
    for sweep in sorted(layout.trials.glob("*_table.md")):
        name = sweep.name.removesuffix("_table.md")  # rd, rd_gamma_u, …: one trial each
        figure = _figure(trial_curves(sweep), f"{name}: the test rollouts of every seed")
        sections.append(
            f"## {name} trial over seeds (`ml4d sweep`, committed output `{sweep.as_posix()}`)\n\n"
            + report.generated_text(sweep)
            + figure
        )
    for comparison in sorted(layout.trials.glob("*_comparison.md")):
        name = comparison.name.removesuffix("_comparison.md")  # (`ml4d sweep --compare`)
        # its runs' validation loss curves
        figure = _figure(
            comparison.with_suffix(".png"), f"{name}: the validation loss over the epochs"
        )
        sections.append(
            f"## {name}: trials side by side (committed output `{comparison.as_posix()}`)\n\n"
            + comparison.read_text().strip()
            + figure
        )
    return sections


def _study_sections(layout: Layout) -> list[str]:
    """The committed benchmarks (training step per dtype, solvers, where a closure is needed,
    speed-up at matched accuracy) and the linear experiment, each where its file is there."""
    sections = []
    for bench in sorted(Path("bench").glob("*_train_step.json")):
        record = json.loads(bench.read_text())
        if isinstance(record.get("ms_per_step_median", {}).get("float32"), dict):  # per dtype
            name = bench.name.removesuffix("_train_step.json")
            sections.append(report.bench_section(name, record))
    solvers = _read(Path("bench/solvers.json"))
    if solvers:
        sections.append(report.solver_bench_section(solvers))
    for table in sorted(Path("bench").glob("*_resolution*.md")):
        name = table.name.split("_resolution")[0]
        sections.append(
            f"## {name}: where a closure is needed (`ml4d resolution`, committed output "
            f"`{table.as_posix()}`)\n\n" + table.read_text().strip()
        )
    for record_path in sorted(Path("bench").glob("*_speedup.json")):
        name = record_path.name.removesuffix("_speedup.json")
        png = record_path.with_suffix(".png")
        image = f"../{png.as_posix()}" if png.is_file() else None  # (the page is in docs/)
        sections.append(report.speedup_section(name, _read(record_path), image))
    linear = _read(layout.linear_theory_metrics)
    if linear:
        sections.append(report.linear_section(linear))
    return sections


def _figure(path: Path, caption: str) -> str:
    """A committed figure under a section of docs/results.md (linked from docs/), or nothing
    if it is not there."""
    return f"\n\n![{caption}](../{path.as_posix()})" if path.is_file() else ""
