"""Comparing a candidate closure with the registry's champion on the same data
(docs/design.md §4)."""

from __future__ import annotations

from pathlib import Path

from ml4dynamics import registry
from ml4dynamics.config import SCORED_SPLITS
from ml4dynamics.datasets import open_splits
from ml4dynamics.evaluation.config import EvaluateConfig
from ml4dynamics.evaluation.result import HORIZON, EvaluationResult
from ml4dynamics.evaluation.rollouts import evaluate_closure
from ml4dynamics.registry.gates import Champion


def champion_score(
    champion, result: EvaluationResult, data_dir: Path, evaluate: EvaluateConfig, system
) -> Champion:
    """The champion's score on the data ``result`` was computed on, and how it was obtained:
    its recorded score when it was scored on the same data (same fingerprint) by the same
    metric, else a fresh evaluation of the registered model on ``data_dir`` (scored as every
    evaluation is: ``evaluate_closure``)."""
    if champion is None:
        return Champion()
    label = f"v{champion.version} ({champion.tags.get('estimator', '?')})"
    same_score = champion.tags.get("score_metric", HORIZON) == result.score_metric
    if champion.tags.get("data_fingerprint") == result.data_fingerprint and same_score:
        score = champion.tags.get("score")
        return Champion(None if score in (None, "None") else float(score), label)
    model, champ_system, _ = registry.load_registered(f"models:/{champion.name}/{champion.version}")
    if champ_system != system:
        return Champion(
            None, f"champion {label} closes another system configuration: not comparable"
        )
    rescored, *_ = evaluate_closure(
        open_splits(data_dir, SCORED_SPLITS),
        model,
        evaluate,
        with_ablation=False,  # only the score is compared
    )
    return Champion(rescored.score, f"{label}, re-evaluated on the current data")
