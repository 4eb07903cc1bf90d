"""Start a team's MLflow server: runs and registry in PostgreSQL, model files served by the server
itself, so every machine works through one address (`export MLFLOW_TRACKING_URI=http://...`).

``ml4d server --backend-store-uri postgresql://mlflow@dbhost/mlflow --artifacts-destination
s3://bucket/mlflow`` serves a database the team already runs; ``ml4d server --postgres-data DIR``
starts a PostgreSQL cluster of this machine's in DIR first (Debian's `postgresql` package) and
stops it again with the server. The experiments of every system are created before the address
is printed, so parallel writers never race to create them. Ctrl-C (or SIGTERM) stops it all.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from ml4dynamics.config import SYSTEMS
from ml4dynamics.core import tracking_server
from ml4dynamics.core.errors import ML4DError
from ml4dynamics.core.postgres import Cluster
from ml4dynamics.core.tracking import experiment_id


def configure(parser: argparse.ArgumentParser) -> None:
    store = parser.add_mutually_exclusive_group(required=True)
    store.add_argument(
        "--backend-store-uri",
        metavar="URI",
        help="the team's database, e.g. postgresql://mlflow@dbhost:5432/mlflow (the psycopg2 "
        "driver is filled in)",
    )
    store.add_argument(
        "--postgres-data",
        metavar="DIR",
        type=Path,
        help="start (creating it the first time) a PostgreSQL cluster of this machine in "
        "DIR/postgres; the model files go to DIR/artifacts",
    )
    parser.add_argument(
        "--postgres-port", type=int, default=5432, help="its port (default %(default)s)"
    )
    parser.add_argument(
        "--artifacts-destination",
        metavar="URI",
        help="where the server keeps model files: a folder, or s3://..., gs://... (default: "
        "DIR/artifacts with --postgres-data, else ./mlartifacts)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address (default %(default)s; 0.0.0.0 for the other machines of the network)",
    )
    parser.add_argument("--port", type=int, default=5000, help="port (default %(default)s)")
    parser.add_argument("--workers", type=int, default=4, help="web workers (default %(default)s)")
    parser.add_argument(
        "--allowed-hosts",
        metavar="HOSTS",
        help="host names clients use beyond localhost and private addresses (MLflow's check)",
    )


def _stop_on_sigterm(signum, frame) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    cluster = None
    if args.postgres_data is not None:
        cluster = Cluster(args.postgres_data.absolute() / "postgres", port=args.postgres_port)
        store = cluster.start()
        default_artifacts = args.postgres_data / "artifacts"
    else:
        store = tracking_server.store_uri(args.backend_store_uri)
        default_artifacts = Path("mlartifacts")
    server = None
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        tracking_server.check_database(store)
        artifacts = tracking_server.artifacts_uri(
            args.artifacts_destination or str(default_artifacts)
        )
        command = tracking_server.command(
            store, artifacts, args.host, args.port, args.workers, args.allowed_hosts
        )
        server = tracking_server.start(command)
        address = tracking_server.url(args.host, args.port)
        tracking_server.wait_ready(address, server)
        os.environ["MLFLOW_TRACKING_URI"] = address
        for system in SYSTEMS:  # made once, here: parallel writers would race to create them
            experiment_id(system)
        print(
            f"ml4d: MLflow server at {address} (runs and registry: {store}; files: {artifacts})"
            f"\nml4d: on each machine: export MLFLOW_TRACKING_URI={address}"
            f"\nml4d: its UI: {address}/#/experiments?workflowType=machine_learning",
            file=sys.stderr,
            flush=True,
        )
        code = server.wait()
        if code != 0:
            raise ML4DError(f"the MLflow server stopped with code {code}; its output says why")
    except KeyboardInterrupt:
        print("ml4d: stopping the MLflow server", file=sys.stderr)
    finally:
        if server is not None:
            tracking_server.stop(server)
        if cluster is not None:
            cluster.stop()
    return 0
