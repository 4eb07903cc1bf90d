"""Start MLflow's web UI on this workspace's store (`mlflow ui` with the store's address), after
pointing a copied or moved store at its own artifacts.

``ml4d ui``: MLflow's UI on the workspace's runs and registry. Plain `mlflow ui` works as well on
a workspace that never moved; in a copy or a moved workspace run `ml4d ui` (or any `ml4d`
command) first, which rewrites the store's artifact paths to its own folder.
"""

from __future__ import annotations

import argparse
import os
import sys

from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.tracking import configured_uri

VIEW = "#/experiments?workflowType=machine_learning"  # MLflow 3 opens on its GenAI view otherwise


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=5000, help="port (default %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="address (default %(default)s)")


def main(args: argparse.Namespace) -> int:
    uri = configured_uri(create=False)  # a reader: no store is one line; a moved one is fixed
    if not uri.startswith("sqlite:"):
        raise ML4DError(f"the store is a server ({uri}): open it in a browser, it has its own UI")
    print(f"ml4d: MLflow UI at http://{args.host}:{args.port}/{VIEW}", file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri]
    os.execv(sys.executable, [*command, "--host", args.host, "--port", str(args.port)])
    return 0  # (not reached: the process is MLflow's UI now)
