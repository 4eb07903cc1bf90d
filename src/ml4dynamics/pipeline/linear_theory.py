"""Closed-form OLS, mOLS and TR estimators on data/linear for every λ in params.yaml
`linear_theory`, rolled out with the system's step; writes metrics/linear_theory.json and
plots/linear_theory.{csv,png}.

``ml4d linear-theory`` (stage ``linear_theory``): terminal error vs λ for OLS, mOLS and TR on
the linear toy.

The paper (its code: 50 steps, mean over 5 samples, λ = 2048) reports OLS 27.9, mOLS 0.035,
TR 0.014, with TR's error falling like 1/λ while mOLS levels off. We compute the closed-form
estimators from our training data for every λ, roll each hybrid out with the system's own step,
and check the closed forms against gradient-trained closures (our real training code) at the
λ where plain gradient descent converges quickly.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ml4dynamics.config import load_params
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.layout import Layout
from ml4dynamics.core.outputs import write_csv, write_json
from ml4dynamics.datasets import open_splits
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.pipeline import print_json
from ml4dynamics.reporting.figures import terminal_error_vs_lambda
from ml4dynamics.studies import linear_theory as lt
from ml4dynamics.systems.linear import Linear

TRAINED_CHECK_LAMS = (4.0,)  # plain gradient descent converges in a few hundred steps here


ARGUMENTS = ("params",)


def main(args: argparse.Namespace) -> int:
    layout = Layout()
    cfg = lt.theory_config(load_params(args.params))
    splits = open_splits(layout.data("linear"), ("train", "test"))
    train_ds, test_ds = splits["train"], splits["test"]
    system = system_of(train_ds)
    if not isinstance(system, Linear):
        raise ML4DError(f"linear_theory needs the linear system, the data are {system.name!r}")
    u_test = _test_states(test_ds, cfg)
    data = as_pairs(train_ds)
    basis = np.asarray(system.direction)[None]
    p_v = lt.subspace_projector(basis)
    width = float(train_ds.attrs.get("label_noise", 0.0))
    # the stored labels carry the paper's U[0, a) noise; the same draws minus their mean a/2 are
    # zero-mean noise of the same width, U[-a/2, a/2): OLS's error from the noise's mean shows
    # as the difference between the two
    labels = {"uniform": np.asarray(data["y"]), "centred": np.asarray(data["y"]) - width / 2}

    def err(c):
        return float(lt.terminal_errors(system, c, u_test, cfg.horizon).mean())

    u = np.asarray(data["u"])
    no_closure = err(np.zeros((system.closure_shape[0], system.state_shape[0])))
    rows, c_ols = _errors_vs_lambda(system, cfg.lams, u, labels, p_v, err)
    for row in rows:
        row["no_closure"] = no_closure
    check = _trained_vs_closed_form(system, data, basis, p_v, labels["uniform"], c_ols["uniform"])
    result = _summary(cfg, system, p_v, width, no_closure, rows, check, c_ols)
    write_json(layout.linear_theory_metrics, result)
    layout.plots.mkdir(parents=True, exist_ok=True)
    write_csv(layout.plots / "linear_theory.csv", rows)
    terminal_error_vs_lambda(rows, layout.plots / "linear_theory.png", cfg.horizon)
    print_json(result)
    return 0


def _test_states(test_ds, cfg: lt.LinearTheoryConfig) -> np.ndarray:
    """The test trajectories the hybrids are scored on, ``(samples, frames, 2)``; one clear error
    when the split has too few or too short ones."""
    u_test = test_ds.u.values[: cfg.samples]
    if u_test.shape[0] < cfg.samples or u_test.shape[1] <= cfg.horizon:
        raise ML4DError(
            f"linear_theory needs {cfg.samples} test trajectories of at least "
            f"{cfg.horizon} steps; the test split has {u_test.shape[0]} of "
            f"{u_test.shape[1] - 1}: raise linear.data.test"
        )
    return u_test


def _errors_vs_lambda(
    system: Linear,
    lams: Sequence[float],
    u: np.ndarray,
    labels: dict[str, np.ndarray],
    p_v: np.ndarray,
    err: Callable[[np.ndarray], float],
) -> tuple[list[dict[str, float]], dict[str, np.ndarray]]:
    """(one row per λ: the terminal error ``err`` of the OLS, mOLS and TR closed forms fitted to
    each kind of ``labels`` (columns suffixed ``_centred`` for the zero-mean noise), Ĉ_OLS per
    kind of labels)."""
    rows = [{"lam": lam} for lam in lams]
    c_ols = {}
    for noise, y in labels.items():
        sigma, gamma = lt.moments(u, y)
        c_ols[noise] = lt.ols(sigma, gamma)
        suffix = "" if noise == "uniform" else "_centred"
        for row in rows:
            lam = row["lam"]
            row["ols" + suffix] = err(c_ols[noise])
            row["mols" + suffix] = err(lt.mols(sigma, gamma, lam))
            row["tr" + suffix] = err(lt.tr_projector(system, sigma, gamma, p_v, lam))
    return rows, c_ols


def _trained_vs_closed_form(
    system: Linear, data, basis: np.ndarray, p_v: np.ndarray, y: np.ndarray, c_ols: np.ndarray
) -> dict[str, float]:
    """max |Ĉ_trained − Ĉ_closed| per estimator at each of ``TRAINED_CHECK_LAMS``: our
    gradient training (labels ``y``) against the closed forms."""
    sigma, gamma = lt.moments(np.asarray(data["u"]), y)
    check = {}
    for lam in TRAINED_CHECK_LAMS:
        closed = {
            "ols": c_ols,
            "mols": lt.mols(sigma, gamma, lam),
            "tr": lt.tr_projector(system, sigma, gamma, p_v, lam),
        }
        for kind, c in closed.items():
            trained = lt.trained_closure(system, kind, lam, data, basis)
            check[f"{kind}_lam{lam:g}"] = float(np.abs(trained - c).max())
    return check


def _summary(
    cfg: lt.LinearTheoryConfig,
    system: Linear,
    p_v: np.ndarray,
    width: float,
    no_closure: float,
    rows: list[dict[str, float]],
    check: dict[str, float],
    c_ols: dict[str, np.ndarray],
) -> dict[str, Any]:
    """metrics/linear_theory.json: the errors at the largest λ, TR's log-log slope in λ, the
    check against trained closures and Ĉ_OLS."""
    slope = np.polyfit(np.log([r["lam"] for r in rows]), np.log([r["tr"] for r in rows]), 1)[0]
    last = rows[-1]
    p_perp = np.eye(p_v.shape[0]) - p_v
    return {
        "horizon": cfg.horizon,
        "samples": cfg.samples,
        # ‖P⊥ A P_V‖: zero makes TR exactly OLS/(1 + λ) and mOLS's plateau the no-closure hybrid
        "coupling": float(np.linalg.norm(p_perp @ np.asarray(system.A) @ p_v, 2)),
        "label_noise": width,
        "no_closure": no_closure,
        "at_max_lam": {"lam": last["lam"], **{k: last[k] for k in ("ols", "mols", "tr")}},
        "at_max_lam_centred": {
            "lam": last["lam"],
            **{k: last[f"{k}_centred"] for k in ("ols", "mols", "tr")},
        },
        "tr_loglog_slope": float(slope),
        "mols_over_tr_at_max_lam": last["mols"] / last["tr"],
        "trained_vs_closed_form_max_abs": max(check.values()),
        "trained_vs_closed_form": check,
        "c_ols": c_ols["uniform"].tolist(),
        "c_ols_centred": c_ols["centred"].tolist(),
    }
