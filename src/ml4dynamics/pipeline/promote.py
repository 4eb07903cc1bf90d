"""For every metrics/SYSTEM/evaluate/ESTIMATOR.json: register the closure as a version of
SYSTEM-closure (once per model: same weights and description, same version), run the gates of
params.yaml `promote` and move `champion` to it only if all pass. Inside `dvc exp run` the
champion never moves: candidates are registered and their gates recorded. Writes
metrics/SYSTEM/promotion.json; gate results become version tags.

``ml4d promote`` (stage ``promote``): submit every evaluated closure of a system to the registry.
For each ``metrics/<system>/evaluate/<estimator>.json`` (sorted by name): register the closure as a
version of ``<system>-closure`` logged into the closure's own MLflow run, unless a version with the
same identity (``model_identity``: weights and description, not file bytes) exists; run every
registered gate (``ml4dynamics.registry.gates``). On the workspace the version gets alias
``candidate`` and ``champion`` moves to it only when all gates pass. In a DVC experiment
(``$DVC_EXP_NAME``) no alias moves: the experiment's gate results are recorded, and the champion
moves when the pipeline runs on the workspace (``dvc exp apply`` then ``dvc repro``: the stage
always runs, as the registry lives outside DVC). Gate results and the reason for a refusal become
version tags and ``metrics/<system>/promotion.json``; a summary run of the stage is logged to
MLflow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

from ml4dynamics import registry
from ml4dynamics.config import load_params
from ml4dynamics.core import store_backup
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.faults import kill_point
from ml4dynamics.core.layout import Layout
from ml4dynamics.core.outputs import exclusive, write_json
from ml4dynamics.core.tracking import Run, configured_uri
from ml4dynamics.evaluation.config import evaluate_config
from ml4dynamics.evaluation.result import EvaluationResult
from ml4dynamics.models.io import model_identity
from ml4dynamics.registry import gates
from ml4dynamics.registry.card import model_card
from ml4dynamics.registry.gates import Champion
from ml4dynamics.registry.packaging import load_closure_dir
from ml4dynamics.registry.promotion import champion_score

ARGUMENTS = ("system", "params")


def main(args: argparse.Namespace) -> int:
    # one promotion per workspace (a second stops at once), and one at a time per store
    # (queued experiments, each in its own workspace, run promote side by side: they wait)
    lock = Layout().lock(args.system, "promotion")
    with exclusive(lock, f"`ml4d promote {args.system}`"), registry.exclusive():
        return _promote(args)


def _promote(args: argparse.Namespace) -> int:
    layout, system_name = Layout(), args.system
    params = load_params(args.params)
    thresholds = gates.configured(params)
    evaluate = evaluate_config(params, system_name)
    experiment = os.environ.get("DVC_EXP_NAME")  # set by `dvc exp run` (workspace, temp, queue)
    data_dir = layout.data(system_name)
    metrics_path = layout.promotion(system_name)
    name = registry.registered_name(system_name)
    results = layout.current_evaluations(system_name)
    lost = None
    if experiment is None:  # the workspace's promotion changes aliases: back the store up first
        store_backup.backup(configured_uri())
        lost = _unloadable_champion(name)  # (before registering: its closure registers anew)
    submitted = {
        path.stem: _register(layout, system_name, path, name, experiment) for path in results
    }
    kill_point("promote-registered")
    scores: dict[str, Champion] = {}  # a champion's score, computed once per run

    def gate(submission: Submission, champion) -> list[gates.Gate]:
        key = "none" if champion is None else str(champion.version)
        if key not in scores:
            scores[key] = champion_score(
                champion, submission.result, data_dir, evaluate, submission.system
            )
        return gates.check(submission.result, thresholds, scores[key])

    if experiment is None:  # decide: the workspace's pipeline moves the aliases
        _move_champion(name, submitted.values(), gate)
        if lost is not None:
            now = registry.version_by_alias(name, registry.CHAMPION)
            fallback = f"v{now.version} is champion now" if now else "no version is champion now"
            print(f"ml4d: warning: {lost}; {fallback}", file=sys.stderr)
    # report every candidate against the champion as it now stands: the same state gives the
    # same report, so a repeated run leaves promotion.json (and dvc.lock) unchanged
    champion = registry.version_by_alias(name, registry.CHAMPION)
    report: dict[str, Any] = {"registered_model": name, "candidates": {}, "experiment": experiment}
    for estimator, submission in submitted.items():
        entry = _candidate(name, submission, champion, gate, experiment)
        report["candidates"][estimator] = entry
        line = f"{name} v{submission.version} ({estimator}): {entry['decision']} {entry['reason']}"
        print(line.rstrip())
    report["champion"] = (
        None
        if champion is None
        else {"version": int(champion.version), "estimator": champion.tags.get("estimator")}
    )
    write_json(metrics_path, report)
    for estimator, submission in submitted.items():  # each version's model card
        entry = report["candidates"][estimator]
        registry.describe(
            name, submission.version, _card(layout, name, estimator, submission, entry)
        )
    # one word per model for `dvc exp show` (champion, passed, refused): the detail is above
    outcomes = {e: entry["decision"].split(" ")[0] for e, entry in report["candidates"].items()}
    write_json(layout.gates(system_name), {e: o.rstrip(";") for e, o in outcomes.items()})
    _log_summary(system_name, thresholds, report, metrics_path)
    if experiment is None:
        store_backup.backup(configured_uri())  # and the state this promotion left
    print(json.dumps(report["champion"]))
    return 0


#: the gates of a submission against a champion (the champion's score computed once per run)
Gating = Callable[["Submission", Any], list[gates.Gate]]


def _unloadable_champion(name: str) -> str | None:
    """Drop the ``champion`` alias from a version that can no longer be loaded (its files or
    its run deleted): the gates then choose again among the candidates. Says what was dropped."""
    champion = registry.version_by_alias(name, registry.CHAMPION)
    if champion is None:
        return None
    try:
        registry.load_registered(f"models:/{name}/{champion.version}")
    except ML4DError as err:
        registry.delete_alias(name, registry.CHAMPION)
        registry.set_tags(name, champion.version, {registry.UNLOADABLE: "true"})
        return f"champion v{champion.version} of {name} cannot be loaded ({err}); alias removed"
    return None


def _move_champion(name: str, submitted: Iterable[Submission], gate: Gating) -> None:
    """On the workspace: every submission becomes ``candidate``, and ``champion`` moves to each
    in turn that passes every gate against the champion of the moment."""
    for submission in submitted:
        registry.set_alias(name, submission.version, registry.CANDIDATE)
        champion = registry.version_by_alias(name, registry.CHAMPION)
        if champion is not None and int(champion.version) == submission.version:
            continue
        checks = gate(submission, champion)
        if all(g.passed for g in checks):
            # the report that made it champion stays with it (promotion.json repeats it)
            entry = _entry(submission, checks, "champion")
            tags = _gate_tags(submission, entry, checks, "workspace")
            registry.set_tags(name, submission.version, tags)
            registry.record_champion_report(name, submission.version, entry)
            registry.set_alias(name, submission.version, registry.CHAMPION)


def _candidate(
    name: str, submission: Submission, champion, gate: Gating, experiment: str | None
) -> dict[str, Any]:
    """One candidate's entry of promotion.json against ``champion`` (the champion's own: the
    report that made it champion); the gate results become its version's tags."""
    if champion is not None and int(champion.version) == submission.version:
        recorded = registry.champion_report(champion)
        return recorded if recorded is not None else _entry(submission, [], "champion")
    checks = gate(submission, champion)
    if not all(g.passed for g in checks):
        decision = "refused"
    elif experiment is None:
        decision = "passed; the champion was chosen earlier in this run"
    else:  # an experiment never moves the champion; applying it and `dvc repro` does
        decision = f"passed (experiment {experiment}: champion not moved)"
    entry = _entry(submission, checks, decision)
    tags = _gate_tags(submission, entry, checks, experiment or "workspace")
    registry.set_tags(name, submission.version, tags)
    return entry


def _log_summary(system_name: str, thresholds, report: dict[str, Any], metrics_path) -> None:
    """The stage's summary run: which candidates passed, the champion's version."""
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


@dataclasses.dataclass(frozen=True)
class Submission:
    version: int
    result: EvaluationResult
    system: Any
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # the closure's model.json


def _card(
    layout: Layout, name: str, estimator: str, submission: Submission, entry: dict[str, Any]
) -> str:
    """The model card of a candidate, from what the workspace has: its training metrics, the
    DVC hash of its data (dvc.lock), its speed-up where `ml4d speedup` measured this version,
    its validity envelope where `ml4d envelope` measured it (the version's tags)."""
    system = submission.result.system
    train = layout.train_metrics(system, estimator)
    speedup_file = layout.root / "bench" / f"{system}_speedup.json"
    speedup = None
    if speedup_file.is_file():
        hybrid = (json.loads(speedup_file.read_text()).get("hybrids") or {}).get(
            f"{estimator} v{submission.version}"
        )
        speedup = ((hybrid or {}).get("equivalent") or {}).get("0.8")
    return model_card(
        name=name,
        version=submission.version,
        meta=submission.meta,
        result=submission.result,
        checks=entry["gates"].values(),
        decision=entry["decision"],
        training=json.loads(train.read_text()) if train.is_file() else None,
        data_hash=_data_hash(layout, system),
        speedup=speedup,
        tags=registry.client().get_model_version(name, str(submission.version)).tags,
    )


def _data_hash(layout: Layout, system: str) -> str | None:
    """The DVC hash of ``data/<system>`` as dvc.lock records it (None without one)."""
    import yaml

    lock = layout.root / "dvc.lock"
    if not lock.is_file():
        return None
    stage = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).get(f"generate@{system}")
    for out in (stage or {}).get("outs", []):
        if out.get("path") == f"data/{system}":
            return out.get("md5") or out.get("hash")
    return None


def _entry(submission: Submission, checks: list[gates.Gate], decision: str) -> dict[str, Any]:
    """One candidate's line of promotion.json."""
    return {
        "version": int(submission.version),
        "score": submission.result.score,
        "passed": all(g.passed for g in checks),
        "decision": decision,
        "reason": gates.refusal(checks),
        "gates": {g.name: dataclasses.asdict(g) for g in checks},
    }


def _gate_tags(
    submission: Submission, entry: dict[str, Any], checks: list[gates.Gate], where: str
) -> dict[str, Any]:
    """What the gates found, as version tags (which version is champion only the alias says)."""
    tags = {
        "data_fingerprint": submission.result.data_fingerprint,
        "score": submission.result.score,
        "score_metric": submission.result.score_metric,
        "gates": "passed" if entry["passed"] else "failed",
        "gates.decided_in": where,
        "refusal_reason": entry["reason"] or "-",
    }
    for g in checks:  # (each gate's numbers are in the version's description, its model card)
        tags[f"gate.{g.name}"] = "passed" if g.passed else "failed"
    return tags


def _register(
    layout: Layout, system_name: str, path, name: str, experiment: str | None
) -> Submission:
    """The registered version of the closure evaluated in ``path``: the existing one with the
    same identity, else a new one logged into the closure's training run."""
    estimator = path.stem
    result = EvaluationResult.read(path)
    closure_dir = layout.closure(system_name, estimator)
    if not (closure_dir / "model.json").is_file():
        raise ML4DError(f"{path} has no closure at {closure_dir}; run `dvc repro`")
    model, system, meta = load_closure_dir(closure_dir)
    identity = model_identity(model, meta)
    if identity != result.closure_fingerprint:
        raise ML4DError(
            f"{path} evaluated another closure than {closure_dir}; run `dvc repro` "
            "to re-evaluate it"
        )
    found = registry.version_with_fingerprint(name, identity)
    if found is not None:
        return Submission(int(found.version), result, system, meta)
    model_run = Run(
        system_name, "promote", f"{system_name}-{estimator}", {}, run_id=meta.get("mlflow_run_id")
    )
    version = registry.log_closure(closure_dir, system, name)
    model_run.end()
    registry.set_tags(
        name,
        version,
        {
            "closure_fingerprint": identity,
            "estimator": estimator,
            "registered_in": experiment or "workspace",
        },
    )
    return Submission(int(version), result, system, meta)
