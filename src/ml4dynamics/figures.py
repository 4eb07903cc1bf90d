"""PNG figures: rollout snapshots (truth / hybrid / difference), per-frame curves, training
curves and the linear experiment."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ml4dynamics.outputs import atomic_file  # noqa: E402


def _save(fig, path: Path, dpi: int) -> None:
    """Save atomically: the old figure or the new one, never half a PNG."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")


def snapshots(
    path: Path,
    times: Sequence[float],
    rows: Mapping[str, np.ndarray],
    title: str,
    field_names: Sequence[str] = (),
) -> Path:
    """One row per entry of ``rows`` (frames ``(T, *state)`` at ``times``), first field only.

    Field states ``(field, x1, x2)`` are drawn as images at four times; states without space
    (``(components,)``) as lines against time.
    """
    first = next(iter(rows.values()))
    if first.ndim == 2:  # (T, components): a line per component
        fig, ax = plt.subplots(figsize=(6, 4))
        for label, frames in rows.items():
            style = "--" if label != "truth" else "-"
            for c in range(frames.shape[1]):
                ax.plot(times, frames[:, c], style, label=f"{label} u{c + 1}")
        ax.set_xlabel("time since the rollout's start")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend(fontsize=7)
        ax.set_title(title)
    else:
        picks = np.unique(np.linspace(0, len(times) - 1, 4).round().astype(int))
        fig, axes = plt.subplots(
            len(rows), len(picks), figsize=(2.6 * len(picks), 2.4 * len(rows)), squeeze=False
        )
        name = field_names[0] if field_names else "field 0"
        # one colour scale for all state rows (truth and hybrid compare by eye), a symmetric
        # one for the difference
        states = [f[:, 0][np.isfinite(f[:, 0])] for k, f in rows.items() if k != "difference"]
        values = np.concatenate(states) if states else np.zeros(1)
        low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        for r, (label, frames) in enumerate(rows.items()):
            finite = frames[:, 0][np.isfinite(frames[:, 0])]
            limit = float(np.abs(finite).max()) if finite.size else 1.0
            cmap = "RdBu_r" if label == "difference" else "viridis"
            vmin, vmax = (-limit, limit) if label == "difference" else (low, high)
            for c, k in enumerate(picks):
                ax = axes[r, c]
                image = ax.imshow(frames[k, 0].T, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"t = {times[k]:g}", fontsize=9)
                if c == 0:
                    ax.set_ylabel(f"{label} ({name})", fontsize=9)
            fig.colorbar(image, ax=axes[r].tolist(), shrink=0.8)
        fig.suptitle(title)
    _save(fig, path, dpi=90)
    plt.close(fig)
    return path


def curves(
    path: Path,
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ylabel: str,
    title: str,
    log: bool = True,
) -> Path:
    """Curves ``{label: (time, values)}`` on one axis (non-finite points are gaps)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, (t, values) in series.items():
        style = ":" if "truth" in label else "-"
        ax.plot(t, values, style, label=label)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("time since the rollout's start")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path, dpi=100)
    plt.close(fig)
    return path


def loss_curves(epochs: Sequence[Mapping[str, float]], path: Path, title: str) -> Path:
    """Per-epoch training curves (train loss, validation loss, validation tangent penalty)."""
    x = [h["epoch"] for h in epochs]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in ("train_loss", "val_loss", "val_tr_penalty"):
        if key in epochs[0]:
            ax.semilogy(x, [h[key] for h in epochs], label=key)
    return _finish(fig, ax, path, "epoch", "loss (per sample)", title)


def terminal_error_vs_lambda(rows: Sequence[Mapping[str, float]], path: Path, horizon: int) -> Path:
    """The linear experiment: mean terminal error of the OLS, mOLS and TR hybrids against λ."""
    lams = [r["lam"] for r in rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (key, label) in enumerate(
        (("ols", "OLS"), ("mols", "mOLS (wd = λ)"), ("tr", "TR (projector, P_V)"))
    ):
        colour = f"C{i}"
        ax.loglog(lams, [r[key] for r in rows], marker="o", color=colour, label=label)
        if f"{key}_centred" in rows[0]:
            centred = [r[f"{key}_centred"] for r in rows]
            ax.loglog(
                lams, centred, "--", marker=".", color=colour, label=f"{label}, zero-mean noise"
            )
    if "no_closure" in rows[0]:
        ax.axhline(rows[0]["no_closure"], color="grey", lw=1, label="no closure (y = 0)")
    ax.loglog(lams, [rows[0]["tr"] * lams[0] / lam for lam in lams], "k:", label="∝ 1/λ")
    ylabel = f"mean ‖u_T − û_T‖, T = {horizon}"
    return _finish(fig, ax, path, "λ", ylabel, "linear toy: terminal error of the hybrid")


def _finish(fig, ax, path: Path, xlabel: str, ylabel: str, title: str) -> Path:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    _save(fig, path, dpi=100)
    plt.close(fig)
    return path
