"""A validity envelope kept with the registered version it measured: the JSON and the figure
among the artifacts of the version's run, a summary in its tags (``envelope.*``: the trusted
range per parameter, the points, the untrusted ones, the holes) and, through the tags, a section
of its model card. ``ml4d simulate`` reads it back to warn outside the trusted region."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PREFIX = "envelope."


def artifact_path(name: str, version: int | str) -> str:
    return f"envelope/{name}-v{version}.json"


def summary_tags(envelope: Mapping[str, Any]) -> dict[str, str]:
    """The version tags that summarise ``envelope``."""
    points = envelope["points"]
    tags = {
        f"{PREFIX}points": str(len(points)),
        f"{PREFIX}untrusted": str(sum(not p["trusted"] for p in points)),
        f"{PREFIX}holes": "; ".join(_point(h) for h in envelope["holes"]) or "none",
        f"{PREFIX}report_time": f"{envelope['settings']['report_time']:g}",
        f"{PREFIX}key": envelope["key"],
    }
    for name, span in envelope["trusted_range"].items():
        tags[f"{PREFIX}trusted.{name}"] = "none" if span is None else f"{span[0]:g}..{span[1]:g}"
    return tags


def _point(params: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in params.items())


def record(name: str, version: int | str, envelope: Mapping[str, Any], figure: Path) -> None:
    """Log ``envelope`` and its figure on the run of version ``version`` and tag the version."""
    from ml4dynamics import registry

    c = registry.client()
    found = c.get_model_version(name, str(version))
    c.log_dict(found.run_id, dict(envelope), artifact_path(name, version))
    c.log_artifact(found.run_id, str(figure), "envelope")
    stale = [k for k in found.tags if k.startswith(f"{PREFIX}trusted.")]
    for key in stale:  # a parameter no longer scanned
        c.delete_model_version_tag(name, str(version), key)
    registry.set_tags(name, version, summary_tags(envelope))


def recorded(name: str, version: int | str, run_id: str) -> dict[str, Any] | None:
    """The envelope recorded on version ``version`` (None where none was measured)."""
    from ml4dynamics import registry

    c = registry.client()
    path = artifact_path(name, version)
    if path not in {item.path for item in c.list_artifacts(run_id, "envelope")}:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return json.loads(Path(c.download_artifacts(run_id, path, tmp)).read_text())


def card_lines(tags: Mapping[str, str]) -> list[str]:
    """The model card's section on the envelope, from the version's tags (none: not measured)."""
    if f"{PREFIX}points" not in tags:
        return [
            "**Validity envelope**: not measured yet (`ml4d envelope MODEL_URI`; the pipeline "
            "measures the champion's)."
        ]
    ranges = ", ".join(
        f"{k.removeprefix(PREFIX + 'trusted.')} {v}"
        for k, v in sorted(tags.items())
        if k.startswith(f"{PREFIX}trusted.")
    )
    when = tags.get(PREFIX + "report_time")
    return [
        f"**Validity envelope** ({tags[PREFIX + 'points']} points, "
        f"{tags[PREFIX + 'untrusted']} untrusted, scored at t = {when}): "
        f"trusted along each parameter through the training point: {ranges}; holes inside the "
        f"trusted region: {tags.get(PREFIX + 'holes', 'none')}. The points and the figure are "
        "artifacts of this version's run (`envelope/`)."
    ]


def with_envelope(card: str, tags: Mapping[str, str]) -> str:
    """A model card with its envelope paragraph replaced by the one ``tags`` give (appended
    where the card has none: a card written before envelopes existed)."""
    paragraphs = card.rstrip("\n").split("\n\n")
    new = "\n".join(card_lines(tags))
    at = [i for i, p in enumerate(paragraphs) if p.startswith("**Validity envelope**")]
    if at:
        paragraphs[at[0]] = new
    else:
        paragraphs.append(new)
    return "\n\n".join(paragraphs) + "\n"
