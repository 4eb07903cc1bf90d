"""MLflow's UI as a user first opens it, in a headless browser: the experiment's training runs,
not MLflow 3's GenAI overview. Needs Chromium (Debian's `chromium` package); skipped without it.
`python tools/mlflow_ui_screenshot.py` takes the same page as a PNG for a person to look at."""

from __future__ import annotations

import shutil
import sys

import pytest

from tests.conftest import REPO

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs a headless Chromium")
def test_the_ui_opens_an_experiment_on_its_training_runs(tmp_path, monkeypatch):
    """Started the way the README says, the page the README links shows the runs table with our
    runs in it and without the GenAI overview (its "Traces" and "Detect issues" panels)."""
    sys.path.insert(0, str(REPO / "tools"))
    from mlflow_ui_screenshot import environment, render

    for name, value in environment(tmp_path).items():
        monkeypatch.setenv(name, value)

    dom = render(tmp_path, tmp_path / "ui.png", CHROMIUM)
    assert "rd-ols" in dom and "rd-tr-projector" in dom  # the runs of the store
    assert "Detect Issues" not in dom and "Tool calls" not in dom  # not the GenAI overview
    assert (tmp_path / "ui.png").stat().st_size > 10_000
