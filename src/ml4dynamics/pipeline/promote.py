"""For every metrics/SYSTEM/evaluate/ESTIMATOR.json: register the closure as a version of
SYSTEM-closure (MLflow models-from-code pyfunc, once per closure), alias it `candidate`, run the
gates of params.yaml `promote` and move `champion` to it only if all pass. Writes
metrics/SYSTEM/promotion.json; gate results become version tags.

``ml4d promote`` (stage ``promote``): submit every evaluated closure of a system to the registry.

For each ``metrics/<system>/evaluate/<estimator>.json`` (sorted by name): register the closure
(once per closure fingerprint) as a version of ``<system>-closure`` logged into the closure's own
MLflow run, give it alias ``candidate``, run every registered gate (``ml4dynamics.gates``) and move
``champion`` to it only when all pass. Gate results and the reason for a refusal become version
tags and ``metrics/<system>/promotion.json``; a summary run of the stage is logged to MLflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from ml4dynamics import gates, registry
from ml4dynamics.config import load_params
from ml4dynamics.errors import ML4DError
from ml4dynamics.evaluation import evaluate_config
from ml4dynamics.layout import Layout
from ml4dynamics.outputs import fingerprint, write_json
from ml4dynamics.promotion import champion_score
from ml4dynamics.registry.packaging import load_closure_dir
from ml4dynamics.tracking import Run

ARGUMENTS = ("system", "params")


def main(args: argparse.Namespace) -> int:
    layout, system_name = Layout(), args.system
    params = load_params(args.params)
    thresholds = gates.configured(params)
    evaluate = evaluate_config(params)
    data_dir, closures_dir = layout.data(system_name), layout.closures(system_name)
    evaluations_dir, metrics_path = layout.evaluations(system_name), layout.promotion(system_name)
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
        checks = gates.check(
            result, thresholds, champion_score(champion, result, data_dir, evaluate, system)
        )
        passed = all(g.passed for g in checks)
        reason = gates.refusal(checks)
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
        {"promote": thresholds},
        tags={"role": "promotion", "champion": str(report["champion"])},
    )
    summary.log_metrics(
        {f"passed.{est}": float(entry["passed"]) for est, entry in report["candidates"].items()}
        | ({"champion_version": report["champion"]["version"]} if report["champion"] else {})
    )
    summary.log_artifact(metrics_path, "promotion")
    summary.end()
    print(json.dumps(report["champion"]))
    return 0
