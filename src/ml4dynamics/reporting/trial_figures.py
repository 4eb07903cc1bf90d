"""The figures of multi-seed trials (``ml4d sweep``): every seed's test rollouts side by side
(``trial_curves``) and the validation loss of trials compared (``budget_curves``), with
estimators coloured as in every other figure (``figures.estimator_colour``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ml4dynamics.reporting import figures

plt = figures.plt  # pyplot on the backend figures chose (no display needed)


def _curve(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def trial_curves(
    path: Path,
    settings: Mapping[str, Mapping[str, Mapping[str, Any]]],
    title: str,
) -> Path:
    """The test rollouts of a multi-seed trial (``ml4d sweep``): one row of panels per setting
    (``{setting: {estimator: {"label": its legend, "runs": [curves of each seed]}}}``, curves
    as ``sweep.kept_curves`` keeps them). Left: the relative error, one line per seed (the
    median over the trajectories, a blown-up one counting as infinite, so a line ends when half
    have blown up), with the ablation of the first estimator dashed and the coarse solver alone
    dotted (on a coarse grid); middle: the shift, median
    log10 F of the hybrid minus the truth's (0: as close to the manifold as the truth); right:
    the fraction of all rollouts (seeds × trajectories) still stable."""
    rows = list(settings.items())
    with_shift = any(
        "shift" in c for _, groups in rows for group in groups.values() for c in group["runs"]
    )
    ncols = 3 if with_shift else 2
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(4.2 * ncols, 3.4 * len(rows)), squeeze=False, sharex=True
    )
    for (setting, groups), (err_ax, *others) in zip(rows, axes, strict=True):
        shift_ax = others[0] if with_shift else None
        stable_ax = others[-1]
        for i, (name, group) in enumerate(groups.items()):
            label, runs = group["label"], group["runs"]
            colour = figures.estimator_colour(name)
            for k, c in enumerate(runs):
                t = _curve(c["time"])
                seed_label = label if k == 0 else None
                err_ax.plot(t, _curve(c["rel_error"]), color=colour, lw=1, label=seed_label)
                if i == 0 and "ablation_rel_error" in c:
                    ablation_label = f"ablation of {name}" if k == 0 else None
                    err_ax.plot(
                        t,
                        _curve(c["ablation_rel_error"]),
                        "--",
                        color="0.4",
                        lw=1,
                        label=ablation_label,
                    )
                if i == 0 and k == 0 and "coarse_alone_rel_error" in c:
                    err_ax.plot(
                        t,
                        _curve(c["coarse_alone_rel_error"]),
                        ":",
                        color="k",
                        lw=1.2,
                        label="coarse solver alone (alias-free)",
                    )
                if shift_ax is not None and "shift" in c:
                    shift_ax.plot(t, _curve(c["shift"]), color=colour, lw=1)
            fraction = np.mean([_curve(c["stable_fraction"]) for c in runs], axis=0)
            stable_ax.step(
                _curve(runs[0]["time"]),
                fraction,
                where="post",
                color=colour,
                lw=max(1.0, 3.5 - 1.2 * i),  # wider first, so equal fractions stay visible
                label=label,
            )
        err_ax.set_yscale("log")
        err_ax.set_ylabel("relative L2 error (median)")
        err_ax.set_title(f"{setting}: error, one line per seed", fontsize=9)
        err_ax.legend(fontsize=7)
        if shift_ax is not None:
            shift_ax.axhline(0.0, color="0.6", lw=0.8)
            shift_ax.set_ylabel("log10 F(hybrid) − log10 F(truth)")
            shift_ax.set_title("distribution shift (median)", fontsize=9)
        stable_ax.set_ylim(-0.05, 1.05)
        stable_ax.legend(fontsize=7, loc="lower left")
        stable_ax.set_ylabel("fraction still stable")
        stable_ax.set_title("of all seeds × trajectories", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel(figures.TIME_LABEL)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    figures._save(fig, path, dpi=100)
    plt.close(fig)
    return path


def trial_labels(trials: Sequence[str]) -> dict[str, str]:
    """Legends for trials named like ``ns_channel_462_epochs`` (a trial id, possibly with its
    setting after a comma): the part the names do not share, in words ("462 epochs"); the
    trial named after the system alone is "the defaults"."""
    stems = [t.split(",")[0] for t in trials]
    prefix = os.path.commonprefix([s + "_" for s in stems])
    prefix = prefix[: prefix.rfind("_") + 1] if len(stems) > 1 else ""
    out = {}
    for trial, stem in zip(trials, stems, strict=True):
        rest = stem[len(prefix) :].replace("_", " ").strip() or "the defaults"
        setting = trial.partition(",")[2].strip()
        out[trial] = f"{rest}, {setting}" if setting else rest
    return out


def budget_curves(
    path: Path, trials: Mapping[str, Mapping[str, Sequence[Sequence[float]]]], title: str
) -> Path:
    """The validation loss over the epochs of recorded trials side by side (``ml4d sweep
    --compare``): one panel per estimator, one colour per trial (``{trial: {estimator: [the
    curve of each seed]}}``), one line per seed, log scale — whether a budget reached a
    plateau, and how the next budget continued it."""
    names = list(dict.fromkeys(name for curves in trials.values() for name in curves))
    fig, axes = plt.subplots(
        1, len(names), figsize=(5.0 * len(names), 3.6), squeeze=False, sharey=True
    )
    # distinct colours (a sequential map makes neighbouring trials look alike), and each trial
    # named by what sets it apart from the others, not by its file name
    colours = [plt.get_cmap("tab10")(i % 10) for i in range(len(trials))]
    labels = trial_labels(list(trials))
    for ax, name in zip(axes[0], names, strict=True):
        for colour, (trial, curves) in zip(colours, trials.items(), strict=True):
            for k, curve in enumerate(curves.get(name, [])):
                epochs = np.arange(1, len(curve) + 1)
                label = labels[trial] if k == 0 else None
                ax.plot(epochs, _curve(curve), color=colour, lw=1, label=label)
        ax.set_yscale("log")
        ax.set_title(f"{name}: one line per seed", fontsize=9)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("validation loss")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    figures._save(fig, path, dpi=100)
    plt.close(fig)
    return path
