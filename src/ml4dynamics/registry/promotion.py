"""Comparing a candidate closure with the registry's champion on the same data
(docs/design.md §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ml4dynamics import registry
from ml4dynamics.config import SCORED_SPLITS
from ml4dynamics.datasets import open_splits
from ml4dynamics.evaluation import EvaluateConfig, evaluate_splits, score_key, split_score
from ml4dynamics.registry.gates import Champion


def champion_score(
    champion, result: dict[str, Any], data_dir: Path, evaluate: EvaluateConfig, system
) -> Champion:
    """The champion's score on the data ``result`` was computed on, and how it was obtained:
    its recorded score when it was scored on the same data (same fingerprint), else a fresh
    evaluation of the registered model on ``data_dir``."""
    if champion is None:
        return Champion()
    label = f"v{champion.version} ({champion.tags.get('estimator', '?')})"
    key = score_key(system, evaluate.report_time)
    same_score = champion.tags.get("score_metric", "error_horizon") == key
    if champion.tags.get("data_fingerprint") == result["data_fingerprint"] and same_score:
        score = champion.tags.get("score")
        return Champion(None if score in (None, "None") else float(score), label)
    model, champ_system, _ = registry.load_registered(f"models:/{champion.name}/{champion.version}")
    if champ_system != system:
        return Champion(
            None, f"champion {label} closes another system configuration: not comparable"
        )
    summaries, *_ = evaluate_splits(
        open_splits(data_dir, SCORED_SPLITS),
        model,
        None,
        evaluate.bound,
        evaluate.report_time,
        with_ablation=False,  # only the score is compared
    )
    return Champion(
        split_score(list(summaries.values()), key), f"{label}, re-evaluated on the current data"
    )
