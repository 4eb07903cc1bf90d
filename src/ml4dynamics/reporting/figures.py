"""PNG figures, one function each: rollout snapshots (truth / hybrid / difference; their panels
are drawn by ``snapshot_panels``), per-frame curves, training curves, the linear experiment, the
speed-up at matched accuracy and the curves of multi-seed trials."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

from ml4dynamics.core.outputs import atomic_file  # noqa: E402
from ml4dynamics.reporting import snapshot_panels  # noqa: E402

#: one colour per estimator in every figure that compares estimators (the linear experiment,
#: the speed-up); a name not listed (a new estimator) gets a grey
ESTIMATOR_COLOURS = {
    "ols": "#1f77b4",
    "mols": "#ff7f0e",
    "aols": "#8c564b",
    "field-ols": "#9467bd",
    "ols-field": "#e377c2",
    "tr-gradient": "#d62728",
    "tr-projector": "#2ca02c",
    "unrolled": "#17becf",
    "unrolled-nog": "#bcbd22",
    "unrolled-tr": "#393b79",
}


#: every time axis: the systems are solved in their own (non-dimensional) units
TIME_LABEL = "time since the rollout's start (non-dimensional)"


#: line styles of the kinds of curve in ``curves``
_STYLES = {"closure": "-", "ablation": "--", "reference": ":"}


def _kind_class(kind: str) -> str:
    if "ablation" in kind:
        return "ablation"
    if "alone" in kind or "truth" in kind:
        return "reference"
    return "closure"


def _group_and_kind(label: str) -> tuple[str, str]:
    """``("val", "the alias-free coarse solver alone")`` of ``"val: the alias-free coarse solver
    alone"`` (``"test hybrid"``: ``("test", "hybrid")``)."""
    group, _, kind = label.replace(": ", " ", 1).partition(" ")
    return group, kind.strip()


def estimator_colour(name: str) -> str:
    """The colour of estimator ``name`` (``"ols"``, ``"tr-projector"``, …) in every figure."""
    return ESTIMATOR_COLOURS.get(name, "0.5")


def _save(fig, path: Path, dpi: int) -> None:
    """Save atomically: the old figure or the new one, never half a PNG."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")


def spatial_axes(ds) -> dict[str, np.ndarray]:
    """The spatial axes of a dataset's frames in storage order, ``{name: cell positions}``
    (``x1`` along the first coordinate direction: along the channel, left to right)."""
    names = [d for d in ds.u.dims[2:] if d != "field"]
    return {d: np.asarray(ds.coords[d].values, dtype=float) for d in names if d in ds.coords}


def snapshots(
    path: Path,
    times: Sequence[float],
    rows: Mapping[str, np.ndarray],
    title: str,
    field_names: Sequence[str] = (),
    axes: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """One row per entry of ``rows`` (frames ``(T, *state)`` at ``times``), first field only.

    Field states ``(field, *grid)`` are drawn as images at four times, in physical units
    (``axes``: the grid's coordinates in storage order, ``spatial_axes``) with x1 to the right,
    x2 up and the domain's aspect ratio. Colour limits come from the truth (the row ``truth``,
    else the first row): a blown-up hybrid saturates the scale instead of flattening the
    truth's (``snapshot_panels.colour_limits``). States on a 1D grid (``(field, x1)``) are
    drawn as space-time diagrams, one panel per row: x1 to the right, time up. States without
    space (``(components,)``) are drawn as lines against time.
    """
    first = next(iter(rows.values()))
    name = field_names[0] if field_names else "field 0"
    if first.ndim == 3:  # (T, field, x1): space-time diagrams side by side
        fig = snapshot_panels.space_time(times, rows, title, name, axes or {})
    elif first.ndim == 2:  # (T, components): a line per component
        fig = snapshot_panels.component_lines(times, rows, title)
    else:
        fig = snapshot_panels.image_grid(times, rows, title, name, axes or {})
    _save(fig, path, dpi=90)
    plt.close(fig)
    return path


def curves(
    path: Path,
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ylabel: str,
    title: str,
    log: bool = True,
    stable: Mapping[str, tuple[np.ndarray, np.ndarray, Sequence[float | None]]] | None = None,
) -> Path:
    """Curves ``{label: (time, values)}`` on one axis (non-finite points are gaps). With
    ``stable`` (``{label: (time, fraction still stable, blow-up time per trajectory)}``) a lower
    panel shows how many trajectories each curve still describes, with every blow-up marked
    (an ×, explained in the legend), so no curve can look better than it is because the worst
    runs left it; where nothing blew up the panel would be a flat line, and a note says so
    instead. Times and values are non-dimensional (the system's own units)."""
    if stable and all(np.all(np.asarray(fraction) >= 1) for _, fraction, _ in stable.values()):
        stable, every_stable = None, True
    else:
        every_stable = False
    if stable:
        fig, (ax, below) = plt.subplots(2, 1, figsize=(6, 5.2), sharex=True, height_ratios=(3, 1.2))
    else:
        fig, ax = plt.subplots(figsize=(6, 4))
    # one colour per split, one line style per kind of curve (the closure's, the ablation's, the
    # solver alone's or the truth's), and a legend for each: nine curves stay readable
    groups: dict[str, str] = {}
    kinds: dict[str, str] = {}
    colours: dict[str, str] = {}
    for label, (t, values) in series.items():
        group, kind = _group_and_kind(label)
        colour = groups.setdefault(group, f"C{len(groups)}")
        style = kinds.setdefault(kind, _STYLES.get(_kind_class(kind), "-"))
        ax.plot(t, values, style, color=colour)
        colours[label] = colour
    if log:
        ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    from matplotlib.lines import Line2D

    first = ax.legend(
        [Line2D([], [], color=c) for c in groups.values()], list(groups), fontsize=8, loc=1
    )
    if len(kinds) > 1:
        ax.add_artist(first)
        ax.legend(
            [Line2D([], [], color="0.3", ls=s) for s in kinds.values()],
            [k or "the hybrid" for k in kinds],
            fontsize=7,
            loc=4,
        )
    if stable:
        for i, (label, (t, fraction, blowups)) in enumerate(stable.items()):
            colour = colours.get(label, f"C{i}")
            below.step(t, fraction, where="post", color=colour, label=label)
            times = [b for b in blowups if b is not None]
            if times:
                at = np.interp(times, t, fraction)
                below.plot(times, at, "x", color=colour, ms=7, mew=2)
                below.plot([], [], "x", color="0.3", ms=7, mew=2, label="a trajectory blows up")
        below.set_ylim(-0.05, 1.05)
        below.set_ylabel("still stable")
        below.set_xlabel(TIME_LABEL)
        handles, labels = below.get_legend_handles_labels()
        marker = [(h, lab) for h, lab in zip(handles, labels, strict=True) if "blows up" in lab]
        if marker:
            below.legend(*zip(*marker[:1], strict=True), fontsize=7, loc="lower left")
        note = "median over all trajectories; a blown-up one counts as infinite"
    else:
        ax.set_xlabel(TIME_LABEL)
        note = "median over all trajectories"
        note += "; every one stayed stable" if every_stable else ""
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.text(0.01, 0.01, note, fontsize=7, color="0.3")
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
    for key, label, estimator in (
        ("ols", "OLS", "ols"),
        ("mols", "mOLS (wd = λ)", "mols"),
        ("tr", "TR (projector, P_V)", "tr-projector"),
    ):
        colour = estimator_colour(estimator)
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


def speedup(path: Path, result: Mapping[str, Any]) -> Path:
    """The hybrids on the plain solver's accuracy–cost curve (``ml4dynamics.studies.speedup``): one
    panel per correlation threshold, cost per simulated time unit (log) to the right, mean time
    until the correlation drops below the threshold up, with bootstrap intervals over the
    trajectories; each rung labelled with its resolution; the horizon (where times are
    censored) dashed."""
    solvers = {k: v for k, v in result["solvers"].items() if "accuracy" in v}
    levels = list(next(iter(solvers.values()))["accuracy"])
    horizon = result["settings"]["horizon"]
    fig, axes = plt.subplots(1, len(levels), figsize=(5.2 * len(levels), 4.2), squeeze=False)
    for ax, level in zip(axes[0], levels, strict=True):

        def point(entry, level=level):
            acc = entry["accuracy"][level]
            lo, hi = acc["interval"]
            return entry["cost_ms_per_time_unit"], acc["mean"], acc["mean"] - lo, hi - acc["mean"]

        rungs = [point(e) for e in solvers.values()]
        x, y, lo, hi = (np.asarray(v) for v in zip(*rungs, strict=True))
        ax.errorbar(
            x,
            y,
            yerr=[lo, hi],
            fmt="o-",
            color="0.35",
            label="plain solver (alias-free)",
            capsize=2,
        )
        for i, ((name, _), xi, yi) in enumerate(zip(solvers.items(), x, y, strict=True)):
            ax.annotate(
                name.split()[-1],
                (xi, yi),
                textcoords="offset points",
                xytext=(4, -10 if i % 2 == 0 else 5),  # alternate, so neighbours do not overlap
                fontsize=7,
                color="0.35",
            )
        for name, entry in result["hybrids"].items():  # "ESTIMATOR vN"
            xi, yi, loi, hii = point(entry)
            eq = entry["equivalent"][level]
            ax.errorbar(
                [xi],
                [yi],
                yerr=[[loi], [hii]],
                fmt="s",
                color=estimator_colour(name.split()[0]),
                capsize=3,
                label=f"{name}: {eq['speedup']:.2f}x ({eq['where']})",
            )
        ax.axhline(horizon, ls="--", color="0.6", lw=1, label="horizon (censored)")
        for name, entry in result["solvers"].items():
            if "accuracy" not in entry:  # the reference: its cost only
                ax.axvline(entry["cost_ms_per_time_unit"], ls=":", color="0.3", lw=1, label=name)
        ax.set_xscale("log")
        # ticks at 1, 2 and 5 of every decade, written plainly: a span under a decade still gets
        # several
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("wall time per simulated time unit, batch (ms)")
        ax.set_ylabel(f"mean time until correlation < {level} (non-dimensional)")
        ax.set_title(f"{result['system']}: correlation >= {level}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path, dpi=100)
    plt.close(fig)
    return path
