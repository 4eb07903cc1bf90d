"""Where a downstream simulation may write: never over something the user already has.

``ml4d simulate --out PATH`` writes a zarr store and a PNG beside it. It writes only to a new
path, or — with ``--overwrite`` — over a store an earlier ``ml4d simulate`` wrote (the marker
``created_by`` in the store's attributes) and that store's PNG. Anything else (a user's folder or
file, a dataset the pipeline generated, any path DVC tracks, even with ``--overwrite``) is refused
in one line before anything is computed or touched.
"""

from __future__ import annotations

import json
from pathlib import Path

from ml4dynamics.core.errors import ML4DError

SIMULATE_MARKER = "ml4d simulate"


def written_by_simulate(store: Path) -> bool:
    """Whether ``store`` is a zarr store an ``ml4d simulate`` wrote (a real folder, not a link;
    stores written before the marker existed carry ``split: simulate`` and their model URI)."""
    meta = store / "zarr.json"
    if store.is_symlink() or not store.is_dir() or not meta.is_file():
        return False
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return False
    if attrs.get("created_by") == SIMULATE_MARKER:
        return True
    return attrs.get("split") == "simulate" and "model_uri" in attrs


def dvc_tracked(path: Path) -> Path | None:
    """The DVC-tracked output that ``path`` is, lies in or contains, if ``path`` is inside a DVC
    repository (None where it is not, or where DVC is not installed)."""
    target = path.resolve()
    root = next(
        (d for d in (target, *target.parents) if (d / ".dvc").is_dir() and d != target), None
    )
    if root is None:
        return None
    try:
        from dvc.repo import Repo
    except ImportError:  # a library install without DVC: no pipeline to protect
        return None
    with Repo(str(root)) as repo:
        for out in repo.index.outs:
            tracked = Path(out.fs_path).resolve()
            if tracked == target or tracked in target.parents or target in tracked.parents:
                return tracked
    return None


def safe_out(out: Path, overwrite: bool) -> None:
    """Refuse ``--out`` (one line, nothing touched) where writing it could destroy something
    the user has; see the module docstring for the rule."""
    tracked = dvc_tracked(out)
    if tracked is not None:
        raise ML4DError(
            f"--out {out}: DVC tracks {tracked} (a pipeline output); `ml4d simulate` never "
            "writes there: choose a path outside the pipeline's outputs"
        )
    png = out.with_suffix(".png")
    existing = [p for p in (out, png) if p.exists() or p.is_symlink()]
    if not existing:
        return
    if not overwrite:
        raise ML4DError(
            f"--out {out}: {existing[0]} already exists; choose another --out, or pass "
            "--overwrite to replace a store an earlier `ml4d simulate` wrote"
        )
    if not written_by_simulate(out):
        what = "is not a store `ml4d simulate` wrote" if out in existing else "does not exist"
        raise ML4DError(
            f"--out {out} {what}, so {existing[0]} is not replaced even with --overwrite: "
            "choose another --out"
        )
    if png in existing and (png.is_symlink() or not png.is_file()):
        raise ML4DError(f"--out {out}: {png} is not a figure `ml4d simulate` wrote; move it away")
