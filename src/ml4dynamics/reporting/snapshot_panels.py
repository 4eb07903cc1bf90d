"""The panels of a rollout's snapshot figure (``figures.snapshots``), one layout per kind of
state: images of a 2D field at a few times, space-time diagrams of a 1D field, lines of the
components of a state without space. Each returns the figure; colours come from the truth."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _image(frame: np.ndarray, axes: Mapping[str, np.ndarray]):
    """``frame`` arranged for ``imshow`` (rows x2, bottom to top; columns x1, left to right)
    and its extent in physical units (cells drawn around their positions)."""
    names = list(axes)
    if len(names) != 2 or set(names) != {"x1", "x2"}:  # no coordinates: index units
        return frame.T, None
    image = frame.T if names == ["x1", "x2"] else frame
    bounds = []
    for name in ("x1", "x2"):
        x = axes[name]
        h = float(x[1] - x[0]) if len(x) > 1 else 1.0
        bounds += [float(x[0]) - h / 2, float(x[-1]) + h / 2]
    return image, tuple(bounds)


def _space_time(frames: np.ndarray, times: Sequence[float], axes: Mapping[str, np.ndarray]):
    """Frames ``(T, field, x1)`` as a space-time image of the first field for ``imshow`` with
    ``origin="lower"`` (rows are times, upwards; columns x1, left to right) and its extent."""
    x = axes.get("x1", np.arange(frames.shape[-1], dtype=float))
    h = float(x[1] - x[0]) if len(x) > 1 else 1.0
    dt = float(times[1] - times[0]) if len(times) > 1 else 1.0
    extent = (x[0] - h / 2, x[-1] + h / 2, times[0] - dt / 2, times[-1] + dt / 2)
    return frames[:, 0], tuple(float(e) for e in extent)


def colour_limits(rows: Mapping[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """(vmin, vmax) per row of a snapshot figure, all from the truth's first field (the row
    ``truth``, else the first row): its range for the states, ± a quarter of it for
    ``difference`` (an error that large is plainly visible; larger ones saturate)."""
    reference = rows.get("truth", next(iter(rows.values())))[:, 0]
    finite = reference[np.isfinite(reference)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if high == low:
        low, high = low - 0.5, high + 0.5
    span = (high - low) / 4
    return {k: (-span, span) if k == "difference" else (low, high) for k in rows}


def _colour_map(label: str) -> str:
    """Diverging around zero for the difference, sequential for states."""
    return "RdBu_r" if label == "difference" else "viridis"


def space_time(
    times: Sequence[float],
    rows: Mapping[str, np.ndarray],
    title: str,
    name: str,
    axes: Mapping[str, np.ndarray],
):
    """Frames ``(T, field, x1)`` per row as space-time diagrams of field ``name``, side by
    side: x1 to the right in physical units (``axes``), time up."""
    limits = colour_limits(rows)
    fig, grid = plt.subplots(
        1, len(rows), figsize=(3.2 * len(rows) + 0.6, 4.2), squeeze=False, layout="constrained"
    )
    for c, (label, frames) in enumerate(rows.items()):
        ax = grid[0, c]
        vmin, vmax = limits[label]
        image, extent = _space_time(frames, times, axes)
        shown = ax.imshow(
            image,
            origin="lower",
            aspect="auto",
            cmap=_colour_map(label),
            vmin=vmin,
            vmax=vmax,
            extent=extent,
        )
        ax.set_title(f"{label} ({name})", fontsize=9)
        ax.set_xlabel("x1", fontsize=8)
        ax.tick_params(labelsize=7)
        if c == 0:
            ax.set_ylabel("time since the rollout's start", fontsize=8)
        fig.colorbar(shown, ax=ax, shrink=0.8, extend="both")
    fig.suptitle(title)
    return fig


def component_lines(times: Sequence[float], rows: Mapping[str, np.ndarray], title: str):
    """Frames ``(T, components)`` per row as a line per component against time (the truth
    solid, the others dashed), on a symmetric log scale."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, frames in rows.items():
        style = "--" if label != "truth" else "-"
        for c in range(frames.shape[1]):
            ax.plot(times, frames[:, c], style, label=f"{label} u{c + 1}")
    ax.set_xlabel("time since the rollout's start")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.legend(fontsize=7)
    ax.set_title(title)
    return fig


def image_grid(
    times: Sequence[float],
    rows: Mapping[str, np.ndarray],
    title: str,
    name: str,
    axes: Mapping[str, np.ndarray],
):
    """Frames ``(T, field, *grid)`` of a 2D grid: field ``name`` as images at four times (the
    columns), one row of panels per row, in physical units (``axes``) with the domain's aspect
    ratio, one colour bar per row."""
    first = next(iter(rows.values()))
    picks = np.unique(np.linspace(0, len(times) - 1, 4).round().astype(int))
    limits = colour_limits(rows)
    _, extent = _image(first[0, 0], axes)
    aspect = (extent[3] - extent[2]) / (extent[1] - extent[0]) if extent else 1.0
    width = 2.8
    fig, grid = plt.subplots(
        len(rows),
        len(picks),
        figsize=(width * len(picks) + 1.2, (width * aspect + 0.6) * len(rows) + 0.5),
        squeeze=False,
        layout="constrained",
    )
    for r, (label, frames) in enumerate(rows.items()):
        vmin, vmax = limits[label]
        for c, k in enumerate(picks):
            ax = grid[r, c]
            image, extent = _image(frames[k, 0], axes)
            shown = ax.imshow(
                image, origin="lower", cmap=_colour_map(label), vmin=vmin, vmax=vmax, extent=extent
            )
            ax.set_aspect("equal")
            ax.tick_params(labelsize=7)
            if r == 0:
                ax.set_title(f"t = {times[k]:g}", fontsize=9)
            if r == len(rows) - 1:
                ax.set_xlabel("x1" if extent else "index 1", fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{label} ({name})\nx2" if extent else label, fontsize=8)
        fig.colorbar(shown, ax=grid[r].tolist(), shrink=0.8, extend="both")
    fig.suptitle(title)
    return fig
