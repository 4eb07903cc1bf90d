"""Stage ``linear_theory``: terminal error vs λ for OLS, mOLS and TR on the linear toy.

The paper (its code: 50 steps, mean over 5 samples, λ = 2048) reports OLS 27.9, mOLS 0.035,
TR 0.014, with TR's error falling like 1/λ while mOLS levels off. We compute the closed-form
estimators from our training data for every λ, roll each hybrid out with the system's own step,
and check the closed forms against gradient-trained closures (our real training code) at the
λ where plain gradient descent converges quickly.
"""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import matplotlib
import numpy as np

from ml4dynamics import linear_theory as lt
from ml4dynamics.config import load_params
from ml4dynamics.datasets import open_dataset
from ml4dynamics.datasets.pairs import as_pairs, system_of
from ml4dynamics.errors import ML4DError
from ml4dynamics.estimators import RegConfig
from ml4dynamics.models import LinearAutoencoder, LinearClosure
from ml4dynamics.pipeline.outputs import write_csv, write_json
from ml4dynamics.pipeline.train import train_closure
from ml4dynamics.systems import Linear
from ml4dynamics.training import OptimConfig

matplotlib.use("Agg")

TRAINED_CHECK_LAMS = (4.0,)  # plain gradient descent converges in a few hundred steps here


def trained_closure(
    system: Linear, kind: str, lam: float, data: dict, basis: np.ndarray, epochs: int = 1000
) -> np.ndarray:
    """Ĉ from our training loop: full-batch gradient descent from zero, step 1/L."""
    from flax import nnx

    sigma, _ = lt.moments(np.asarray(data["u"]), np.asarray(data["y"]))
    s_max = np.linalg.eigvalsh(sigma).max()
    b2 = np.linalg.norm(np.asarray(system.B), 2) ** 2
    curvature = 2 * s_max * (1 + (lam * b2 / system.dt**2 if kind == "tr" else 0)) + (
        2 * lam if kind == "mols" else 0
    )
    reg = RegConfig(
        kind=kind,
        lam=lam if kind == "tr" else 0.0,
        normal="projector",
        sigma=0.0,
        wd=lam if kind == "mols" else 0.0,
        eps=1e-12,
    )
    optim = OptimConfig(
        optimizer="sgd",
        lr=1.0 / curvature,
        epochs=epochs,
        batch_size=0,
        seed=0,
        checkpoint_every=epochs,
    )
    model = LinearClosure(system.state_shape[0], system.closure_shape[0], rngs=nnx.Rngs(0))
    ae = LinearAutoencoder.exact_projector(jnp.asarray(basis))
    train_closure(
        system,
        model,
        reg,
        optim,
        data,
        reconstruct=(lambda u: ae(u[None])[0]) if kind == "tr" else None,
        progress=False,
    )
    return np.asarray(model.C[...])


def figure(rows: list[dict], path: Path, horizon: int) -> None:
    import matplotlib.pyplot as plt

    lams = [r["lam"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("ols", "OLS"), ("mols", "mOLS (wd = λ)"), ("tr", "TR (projector, P_V)")):
        ax.loglog(lams, [r[key] for r in rows], marker="o", label=label)
    ax.loglog(lams, [rows[0]["tr"] * lams[0] / lam for lam in lams], "k:", label="∝ 1/λ")
    ax.set_xlabel("λ")
    ax.set_ylabel(f"mean ‖u_T − û_T‖, T = {horizon}")
    ax.set_title("linear toy: terminal error of the hybrid")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(params_path: str, data_dir: Path, metrics: Path, plots: Path) -> dict:
    cfg = load_params(params_path).require("linear_theory")
    train_ds, test_ds = open_dataset(data_dir / "train.zarr"), open_dataset(data_dir / "test.zarr")
    system = system_of(train_ds)
    if not isinstance(system, Linear):
        raise ML4DError(f"linear_theory needs the linear system, the data are {system.name!r}")
    u_test = test_ds.u.values[: cfg.samples]
    if u_test.shape[0] < cfg.samples or u_test.shape[1] <= cfg.horizon:
        raise ML4DError(
            f"linear_theory needs {cfg.samples} test trajectories of at least "
            f"{cfg.horizon} steps; the test split has {u_test.shape[0]} of "
            f"{u_test.shape[1] - 1}: raise linear.data.test"
        )
    data = as_pairs(train_ds)
    sigma, gamma = lt.moments(np.asarray(data["u"]), np.asarray(data["y"]))
    basis = np.asarray(system.direction)[None]
    p_v = lt.subspace_projector(basis)

    def err(c):
        return float(lt.terminal_errors(system, c, u_test, cfg.horizon).mean())

    c_ols = lt.ols(sigma, gamma)
    rows = [
        {
            "lam": lam,
            "ols": err(c_ols),
            "mols": err(lt.mols(sigma, gamma, lam)),
            "tr": err(lt.tr_projector(system, sigma, gamma, p_v, lam)),
        }
        for lam in cfg.lams
    ]
    check = {}
    for lam in TRAINED_CHECK_LAMS:
        closed = {
            "ols": c_ols,
            "mols": lt.mols(sigma, gamma, lam),
            "tr": lt.tr_projector(system, sigma, gamma, p_v, lam),
        }
        for kind, c in closed.items():
            trained = trained_closure(system, kind, lam, data, basis)
            check[f"{kind}_lam{lam:g}"] = float(np.abs(trained - c).max())
    slope = np.polyfit(np.log([r["lam"] for r in rows]), np.log([r["tr"] for r in rows]), 1)[0]
    result = {
        "horizon": cfg.horizon,
        "samples": cfg.samples,
        "at_max_lam": {"lam": rows[-1]["lam"], **{k: rows[-1][k] for k in ("ols", "mols", "tr")}},
        "tr_loglog_slope": float(slope),
        "mols_over_tr_at_max_lam": rows[-1]["mols"] / rows[-1]["tr"],
        "trained_vs_closed_form_max_abs": max(check.values()),
        "trained_vs_closed_form": check,
        "c_ols": c_ols.tolist(),
    }
    write_json(metrics, result)
    plots.mkdir(parents=True, exist_ok=True)
    write_csv(plots / "linear_theory.csv", rows)
    figure(rows, plots / "linear_theory.png", cfg.horizon)
    return result
