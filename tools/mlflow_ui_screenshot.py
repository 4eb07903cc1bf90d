"""Open MLflow's UI the way the README says, in a headless Chromium, and save what a user first
sees: `python tools/mlflow_ui_screenshot.py [OUT.png]` (default docs/images/mlflow_runs.png).

It makes a small store with two training runs in an experiment created by the library (so with
the library's experiment tags), starts `mlflow ui` on it, loads the README's address and writes
the screenshot; the rendered page is returned for tests/test_mlflow_ui.py to check.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

#: the address the README gives: the experiment list in MLflow's model-training view
VIEW = "#/experiments/{experiment}?workflowType=machine_learning"


def environment(root: Path) -> dict[str, str]:
    """The variables that point the library at a store under ``root``."""
    return {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        "DVC_ROOT": str(root),
    }


def _store(root: Path) -> str:
    """A store under ``root`` (``environment(root)`` set) with one experiment (``rd``) and two
    finished training runs."""
    from ml4dynamics.core.tracking import Run

    for estimator, error in (("ols", 0.03), ("tr-projector", 0.025)):
        run = Run("rd", "train", f"rd-{estimator}", {"estimator": estimator}, {"role": "closure"})
        run.log_metrics({"headline.test_t10": error, "headline.stable": 1.0})
        run.end()
    return os.environ["MLFLOW_TRACKING_URI"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(root: Path, png: Path, chromium: str) -> str:
    """The page's DOM after it rendered; its screenshot written to ``png``."""
    uri = _store(root)
    import mlflow

    experiment = mlflow.get_experiment_by_name("rd").experiment_id
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}/"
        for _ in range(240):  # the server takes a while on a loaded machine
            try:
                urllib.request.urlopen(base + "health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        url = base + VIEW.format(experiment=experiment)
        browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu"]
        browser += ["--window-size=1400,900", "--virtual-time-budget=20000"]
        dom = subprocess.run(
            [*browser, "--dump-dom", url], capture_output=True, text=True, timeout=180
        ).stdout
        png.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [*browser, f"--screenshot={png}", url], capture_output=True, timeout=180, check=True
        )
        return dom
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> int:
    import tempfile

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/images/mlflow_runs.png").resolve()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("mlflow_ui_screenshot: no chromium on PATH; install Debian's `chromium` package")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(environment(Path(tmp)))
        render(Path(tmp), out, chromium)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
