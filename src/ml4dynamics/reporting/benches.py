"""The results page's sections on cost: a training step per estimator (``ml4d timing``), our
solvers against the peers (``ml4d timing solvers``) and the hybrids' speed-up at matched accuracy
(``ml4d speedup``), each from its committed record under ``bench/``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ml4dynamics.reporting.tables import markdown_table, number


def bench_section(name: str, record: Mapping[str, Any]) -> str:
    """The cost of one training step of each estimator (``ml4d timing``), both precisions."""
    times = record["ms_per_step_median"]
    dtypes = [d for d in ("float32", "float64") if d in times]
    names = list(times[dtypes[0]])
    head = [
        "estimator",
        *(f"ms per step ({d})" for d in dtypes),
        *(f"÷ OLS ({d})" for d in dtypes),
        *(["float64 ÷ float32"] if record.get("float64_over_float32") else []),
    ]
    rows = [
        [
            est,
            *(number(times[d][est]) for d in dtypes),
            *(number(record["ratio_to_ols"][d][est]) for d in dtypes),
            *(
                [number(record["float64_over_float32"][est])]
                if record.get("float64_over_float32")
                else []
            ),
        ]
        for est in names
    ]
    return "\n\n".join(
        [
            f"### {name}: cost of a training step (`ml4d timing {name}`, committed "
            f"`bench/{name}_train_step.json`)",
            f"{record['what']}, model {record['model']}; medians of {record['repeats']} × "
            f"{record['steps_per_repeat']} steps, all in one run on {record['machine']}.",
            markdown_table(head, rows),
        ]
    )


def solver_bench_section(record: Mapping[str, Any]) -> str:
    """Our solver steps against the peers and the FFT floor (``ml4d timing solvers``)."""
    parts = [
        "### Solvers against the peers (`ml4d timing solvers`, committed `bench/solvers.json`)",
        f"Medians of {record['repeats']} × {record['steps_per_repeat']} steps in one compiled "
        f"loop, all in one run on {record['machine']} (jax {record['jax']}); a ratio below 1 "
        "means ours is faster.",
    ]
    for system in ("ks", "kolmogorov"):
        entry = record.get(system)
        if not entry:
            continue
        times = entry["ms_per_step_median"]
        peers = [k for k in next(iter(times.values())) if k not in ("ours", "fft_floor")]
        head = [
            "case",
            "ours (ms/step)",
            *(f"{p} (ms/step)" for p in peers),
            "FFT floor (ms/step)",
            *(f"ours ÷ {p}" for p in peers),
            "ours ÷ FFT floor",
        ]
        rows = [
            [
                case,
                number(row["ours"]),
                *(number(row[p]) for p in peers),
                number(row["fft_floor"]),
                *(number(row["ours"] / row[p]) for p in peers),
                number(row["ours"] / row["fft_floor"]),
            ]
            for case, row in times.items()
        ]
        parts += [f"**{system}**: {entry['what']}.", markdown_table(head, rows)]
    return "\n\n".join(parts)


def speedup_section(name: str, record: Mapping[str, Any], image: str | None = None) -> str:
    """The hybrids on their plain solver's accuracy–cost ladder (``ml4d speedup``)."""
    settings = record["settings"]
    levels = list(next(iter(record["hybrids"].values()))["accuracy"])

    def accuracy(entry: Mapping[str, Any], level: str) -> str:
        acc = entry["accuracy"][level]
        lo, hi = acc["interval"]
        censored = f", {acc['censored']} censored" if acc["censored"] else ""
        return f"{number(acc['mean'])} [{number(lo)}, {number(hi)}]{censored}"

    head = ["run", "cost (ms per time unit)", *(f"time to ρ < {c}" for c in levels)]
    ladder = [(k, v) for k, v in record["solvers"].items() if "accuracy" in v]
    rows = [
        [solver, number(entry["cost_ms_per_time_unit"]), *(accuracy(entry, c) for c in levels)]
        for solver, entry in sorted(ladder, key=lambda item: item[1].get("resolution", 0))
    ]
    uris = {label: model.get("uri") for label, model in record.get("models", {}).items()}
    rows += [
        [
            f"hybrid {label}" + (f" (`{uris[label]}`)" if uris.get(label) else ""),
            number(entry["cost_ms_per_time_unit"]),
            *(accuracy(entry, c) for c in levels),
        ]
        for label, entry in record["hybrids"].items()
    ]
    fine = next(k for k in record["solvers"] if "reference" in k)
    place_head = ["hybrid", "ρ threshold", "equivalent resolution", "speed-up", "on the ladder"]
    place_rows = []
    for label, entry in record["hybrids"].items():
        for level, eq in entry["equivalent"].items():
            n_lo, n_hi = eq["resolution_interval"]
            lo, hi = eq["speedup_interval"]
            place_rows.append(
                [
                    label,
                    level,
                    f"{eq['resolution']:.0f} [{n_lo:.0f}, {n_hi:.0f}]",
                    f"{number(eq['speedup'])} [{number(lo)}, {number(hi)}]",
                    eq["where"],
                ]
            )
    parts = [
        f"### {name}: speed-up at matched accuracy (`ml4d speedup`, committed "
        f"`bench/{name}_speedup.json`)",
        f"{settings['trajectories']} reference trajectories of the fine solver ({fine}: "
        f"{number(record['solvers'][fine]['cost_ms_per_time_unit'])} ms per time unit) after "
        f"{settings['warmup_steps']} warm-up steps, compared every {settings['spacing']:g} time "
        f"units to t = {settings['horizon']:g} on the coarse grid ({settings['coarse']} points); "
        f"costs: {settings['timing']} on {settings['backend']}. Accuracy is the mean time until "
        "the correlation with the reference drops below the threshold (censored at the horizon), "
        "with a 95 % bootstrap interval over the trajectories.",
        markdown_table(head, rows),
        "Each hybrid placed on the plain solver's ladder: the resolution that is as accurate "
        "(interpolated), and the speed-up = that solver's cost ÷ the hybrid's (intervals "
        "resample trajectories; costs are one run's medians). `below`: less accurate than the "
        "coarsest solver, the numbers are bounds.",
        markdown_table(place_head, place_rows),
    ]
    if image:
        parts.append(f"![{name}: cost against accuracy]({image})")
    return "\n\n".join(parts)
