"""The figure of a validity envelope (``ml4d envelope``): every evaluated point of the parameter
space, coloured by the closure's error at the report time, untrusted points crossed out, the
training point starred. With one scanned parameter: the error against it, beside the plain
solver's, untrusted points marked."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ml4dynamics.reporting import figures

BLOWN_UP = "blew up"


def envelope_map(path: Path, envelope: Mapping[str, Any]) -> Path:
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    names = list(envelope["parameters"])
    points = envelope["points"]
    title = (
        f"{envelope['model']['name']} v{envelope['model']['version']} (trained at "
        f"{', '.join(f'{k} = {v:g}' for k, v in envelope['training'].items())}): validity "
        f"envelope, {len(points)} points, {sum(p['trusted'] for p in points)} trusted"
    )
    fig, ax = plt.subplots(figsize=(7.0, 5.2), constrained_layout=True)
    errors = np.array([np.nan if p["error"] is None else p["error"] for p in points])
    finite = errors[np.isfinite(errors) & (errors > 0)]
    norm = LogNorm(finite.min(), finite.max()) if len(finite) else None
    if len(names) == 1:
        _line(ax, envelope, names[0], errors)
    else:
        _map(fig, ax, envelope, names, errors, norm)
        if len(names) > 2:
            title += (
                f"\n(projected onto {names[0]}, {names[1]}; {', '.join(names[2:])} also scanned)"
            )
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.14), ncol=3, frameon=False)
    figures._save(fig, path, dpi=110)
    plt.close(fig)
    return path


def _line(ax, envelope: Mapping[str, Any], name: str, errors: np.ndarray) -> None:
    """One scanned parameter: the hybrid's and the plain solver's errors against it."""
    points, trained = envelope["points"], envelope["training"]
    order = np.argsort([p["params"][name] for p in points])
    xs = np.array([points[i]["params"][name] for i in order])
    ax.plot(xs, errors[order], "o-", color="C0", label="hybrid (closure + solver)")
    plain = np.array(
        [np.nan if points[i]["plain_error"] is None else points[i]["plain_error"] for i in order]
    )
    if np.isfinite(plain).any():
        ax.plot(xs, plain, "s--", color="C1", label="plain solver alone")
    bad = [i for i in order if not points[i]["trusted"]]
    ax.plot(
        [points[i]["params"][name] for i in bad],
        [errors[i] if np.isfinite(errors[i]) else np.nanmax(errors) for i in bad],
        "x",
        color="red",
        markersize=12,
        mew=2,
        label="untrusted",
    )
    ax.axvline(trained[name], color="k", lw=0.8, ls=":", label="training value")
    ax.axhline(envelope["settings"]["max_error"], color="grey", lw=0.8, label="error gate")
    ax.set_xlabel(f"{name} (non-dimensional)")
    ax.set_ylabel(f"relative L2 error at t = {envelope['settings']['report_time']:g}")
    ax.set_yscale("log")
    if envelope["parameters"][name]["log"]:
        _log_axis(ax.xaxis, ax.set_xscale, xs)


def _map(fig, ax, envelope: Mapping[str, Any], names: list[str], errors: np.ndarray, norm) -> None:
    """Two or more: every point in the plane of the first two, coloured by its error."""
    points, trained = envelope["points"], envelope["training"]
    x, y = names[0], names[1]
    xs = np.array([p["params"][x] for p in points])
    ys = np.array([p["params"][y] for p in points])
    ok = np.isfinite(errors)
    sc = ax.scatter(xs[ok], ys[ok], c=errors[ok], norm=norm, cmap="viridis", marker="s", s=90)
    when = envelope["settings"]["report_time"]
    fig.colorbar(sc, ax=ax, label=f"hybrid's relative L2 error at t = {when:g}")
    bad = np.array([not p["trusted"] for p in points])
    refined = np.array([p["stage"] == "refined" for p in points])
    for mask, style in (
        (~ok, {"c": "black", "marker": "s", "s": 90, "label": BLOWN_UP}),
        (bad, {"marker": "x", "c": "red", "s": 70, "linewidths": 2, "label": "untrusted"}),
        (refined, {"marker": "o", "facecolors": "none", "edgecolors": "magenta", "s": 30,
                   "label": "added by refinement"}),
    ):  # fmt: skip
        if mask.any():
            ax.scatter(xs[mask], ys[mask], **style)
    ax.scatter(
        [trained[x]], [trained[y]], marker="*", c="orange", s=160, edgecolors="k",
        label="training point",
    )  # fmt: skip
    ax.set_xlabel(f"{x} (non-dimensional)")
    ax.set_ylabel(f"{y} (non-dimensional)")
    for name, axis, set_scale, values in (
        (x, ax.xaxis, ax.set_xscale, xs),
        (y, ax.yaxis, ax.set_yscale, ys),
    ):
        if envelope["parameters"][name]["log"]:
            _log_axis(axis, set_scale, values)


def _log_axis(axis, set_scale, values: np.ndarray) -> None:
    """A log-scaled parameter axis labelled at the grid's values only (3 digits), no minor
    labels: the default labels every minor tick in powers of ten and they overlap."""
    import matplotlib.ticker as ticker

    set_scale("log")
    ticks = np.unique(values)
    if len(ticks) > 8:
        ticks = ticks[:: int(np.ceil(len(ticks) / 8))]
    axis.set_major_locator(ticker.FixedLocator(ticks))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_formatter(ticker.NullFormatter())
