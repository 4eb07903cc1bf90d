"""Stage ``promote``: submit every evaluated closure of a system to the registry.

For each ``metrics/<system>/evaluate/<estimator>.json`` (sorted by name): register the closure
(once per closure fingerprint) as a version of ``<system>-closure`` logged into the closure's own
MLflow run, give it alias ``candidate``, run the gates and move ``champion`` to it only when every
gate passes. Gate results and the reason for a refusal become version tags and
``metrics/<system>/promotion.json``; a summary run of the stage is logged to MLflow.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from ml4dynamics import gates as gate_checks
from ml4dynamics import registry
from ml4dynamics.config import EvaluateConfig, PromoteConfig, load_params
from ml4dynamics.errors import ML4DError
from ml4dynamics.evaluation import split_score
from ml4dynamics.pipeline.outputs import fingerprint, write_json
from ml4dynamics.registry.packaging import load_closure_dir
from ml4dynamics.tracking import Run


def champion_score(
    champion, result: dict[str, Any], data_dir: Path, evaluate: EvaluateConfig, system
) -> tuple[float | None, str | None]:
    """The champion's score on the data ``result`` was computed on, and how it was obtained."""
    if champion is None:
        return None, None
    label = f"v{champion.version} ({champion.tags.get('estimator', '?')})"
    if champion.tags.get("data_fingerprint") == result["data_fingerprint"]:
        score = champion.tags.get("score")
        return (None if score in (None, "None") else float(score)), label
    from ml4dynamics.evaluation import evaluate_splits
    from ml4dynamics.pipeline.evaluate import open_splits

    model, champ_system, _ = registry.load_registered(f"models:/{champion.name}/{champion.version}")
    if champ_system != system:
        return None, f"champion {label} closes another system configuration: not comparable"
    summaries, *_ = evaluate_splits(
        open_splits(data_dir), model, None, evaluate.bound, evaluate.report_time
    )
    return split_score(list(summaries.values())), f"{label}, re-evaluated on the current data"


def run(
    system_name: str,
    params_path: str,
    data_dir: Path,
    closures_dir: Path,
    evaluations_dir: Path,
    metrics_path: Path,
) -> dict:
    params = load_params(params_path)
    config: PromoteConfig = params.require("promote")
    evaluate: EvaluateConfig = params.require("evaluate")
    name = registry.registered_name(system_name)
    results = sorted(evaluations_dir.glob("*.json"))
    if not results:
        raise ML4DError(
            f"no evaluations in {evaluations_dir}; run `dvc repro` (stage evaluate) first"
        )
    report: dict[str, Any] = {"registered_model": name, "candidates": {}}
    for path in results:
        estimator = path.stem
        result = json.loads(path.read_text())
        closure_dir = closures_dir / estimator
        if not (closure_dir / "model.json").is_file():
            raise ML4DError(f"{path} has no closure at {closure_dir}; run `dvc repro`")
        fp = fingerprint({}, [closure_dir])
        if fp != result["closure_fingerprint"]:
            raise ML4DError(
                f"{path} evaluated another closure than {closure_dir}; run `dvc repro` "
                "to re-evaluate it"
            )
        _, system, meta = load_closure_dir(closure_dir)
        found = registry.version_with_fingerprint(name, fp)
        if found is None:
            model_run = Run(
                system_name,
                "promote",
                f"{system_name}-{estimator}",
                {},
                run_id=meta.get("mlflow_run_id"),
            )
            version = registry.log_closure(closure_dir, system, name)
            model_run.end()
            registry.set_tags(name, version, {"closure_fingerprint": fp, "estimator": estimator})
        else:
            version = found.version
        registry.set_alias(name, version, registry.CANDIDATE)
        champion = registry.version_by_alias(name, registry.CHAMPION)
        entry: dict[str, Any] = {"version": int(version), "score": result["score"]}
        if champion is not None and champion.version == version:
            entry.update(passed=True, decision="champion (unchanged)")
            report["candidates"][estimator] = entry
            continue
        score, label = champion_score(champion, result, data_dir, evaluate, system)
        checks = gate_checks.check(result, config, score, label)
        passed = all(g.passed for g in checks)
        reason = gate_checks.refusal(checks)
        tags = {
            "data_fingerprint": result["data_fingerprint"],
            "score": result["score"],
            "promotion": "champion" if passed else "refused",
            "refusal_reason": reason or "-",
        }
        for g in checks:
            tags[f"gate.{g.name}"] = "passed" if g.passed else "failed"
            tags[f"gate.{g.name}.detail"] = g.detail
        registry.set_tags(name, version, tags)
        if passed:
            registry.set_alias(name, version, registry.CHAMPION)
        entry.update(
            passed=passed,
            decision="champion" if passed else "refused",
            reason=reason,
            gates={g.name: dataclasses.asdict(g) for g in checks},
        )
        report["candidates"][estimator] = entry
        print(f"{name} v{version} ({estimator}): {entry['decision']} {reason}".rstrip())
    champion = registry.version_by_alias(name, registry.CHAMPION)
    report["champion"] = (
        None
        if champion is None
        else {"version": int(champion.version), "estimator": champion.tags.get("estimator")}
    )
    write_json(metrics_path, report)
    summary = Run(
        system_name,
        "promote",
        f"{system_name}-promote",
        {"promote": dataclasses.asdict(config)},
        tags={"role": "promotion", "champion": str(report["champion"])},
    )
    summary.log_metrics(
        {f"passed.{est}": float(entry["passed"]) for est, entry in report["candidates"].items()}
        | ({"champion_version": report["champion"]["version"]} if report["champion"] else {})
    )
    summary.log_artifact(metrics_path, "promotion")
    summary.end()
    return report
