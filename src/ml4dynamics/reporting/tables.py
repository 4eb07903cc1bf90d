"""Markdown tables of metrics: numbers rounded the same way everywhere, a missing one as '—'."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def number(value: Any, digits: int = 3) -> str:
    """A metric for a table: 3 significant digits; a missing or non-finite value (a blow-up,
    a split not evaluated) as '—'."""
    if value is None or isinstance(value, bool):
        return "—" if value is None else str(value).lower()
    if isinstance(value, int | float) and math.isfinite(value):
        return f"{value:.{digits}g}"
    return "—"


def markdown_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
