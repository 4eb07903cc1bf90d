"""A team's MLflow tracking server: ``mlflow server`` on a database (PostgreSQL), serving the
artifacts itself (``--artifacts-destination``: a folder or an object store), so that every
machine reaches runs, registry and model files through one ``http://`` address and needs no
shared folder.

``start`` runs the server as a child process and ``wait_ready`` waits until it answers;
``store_uri`` names the database driver MLflow's SQLAlchemy needs; ``require_answer`` is what a
client checks first (one line at once instead of MLflow's minutes of retries).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from ml4dynamics.core.errors import ML4DError

#: SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg (version 3); the lock pins psycopg2
_DRIVERS = {"postgresql://": "postgresql+psycopg2://", "postgres://": "postgresql+psycopg2://"}


_answered: set[str] = set()


def require_answer(uri: str) -> None:
    """One line, at once, when no server answers at ``uri`` (MLflow itself would retry for
    minutes, then print a traceback); checked once per process."""
    if uri in _answered:
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10):
            _answered.add(uri)
    except urllib.error.HTTPError:
        _answered.add(uri)  # something answers (behind a proxy, say): MLflow reports the rest
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ML4DError(
            f"no MLflow server answers at MLFLOW_TRACKING_URI={uri} ({reason}): start it "
            "(`ml4d server --help`) or unset MLFLOW_TRACKING_URI to use the workspace's own store"
        ) from err


def store_uri(uri: str) -> str:
    """``uri`` with the PostgreSQL driver named (``postgresql+psycopg2://``); others as given."""
    for bare, named in _DRIVERS.items():
        if uri.startswith(bare):
            return named + uri.removeprefix(bare)
    return uri


def check_database(uri: str) -> None:
    """One line, before the server starts, when a PostgreSQL store cannot be reached."""
    if not uri.startswith("postgresql+psycopg2://"):
        return
    import psycopg2

    try:
        psycopg2.connect(uri.replace("postgresql+psycopg2://", "postgresql://", 1)).close()
    except psycopg2.OperationalError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ML4DError(
            f"cannot reach the database {uri}: {first}; start it (or check host, port, role and "
            "database name) and run again"
        ) from err


def artifacts_uri(destination: str) -> str:
    """An artifact destination as a URI: a local folder (created) becomes ``file://…``."""
    if "://" in destination:
        return destination
    folder = Path(destination).absolute()
    folder.mkdir(parents=True, exist_ok=True)
    return folder.as_uri()


def command(
    store: str,
    artifacts: str,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 4,
    allowed_hosts: str | None = None,
) -> list[str]:
    """The ``mlflow server`` command line (artifacts proxied through the server)."""
    args = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        store,
        "--serve-artifacts",
        "--artifacts-destination",
        artifacts,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return args + (["--allowed-hosts", allowed_hosts] if allowed_hosts else [])


def start(args: list[str]) -> subprocess.Popen:
    """Start the server (``command``) in a process group of its own (``mlflow server`` runs
    its web workers as child processes: ``stop`` ends them all), writing to this process's
    output."""
    return subprocess.Popen(args, start_new_session=True)


def url(host: str, port: int) -> str:
    """The address clients use (a server bound to every interface is reached on loopback here)."""
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"


def wait_ready(address: str, server: subprocess.Popen, timeout: float = 180.0) -> None:
    """Wait until ``address`` answers ``/health`` (the first start on a new database also
    creates MLflow's tables); one line when the server exits or does not answer in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ML4DError(
                f"the MLflow server exited with code {server.returncode} before it answered at "
                f"{address}; its output above says why (a port in use, the database refused)"
            )
        try:
            with urllib.request.urlopen(f"{address}/health", timeout=5) as reply:
                if reply.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise ML4DError(f"the MLflow server did not answer at {address} within {timeout:.0f} s")


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to process group ``pgid``; False when no process of it is left."""
    try:
        os.killpg(pgid, signum)
        return True
    except ProcessLookupError:
        return False


def stop(server: subprocess.Popen, grace: float = 20.0) -> None:
    """Stop the server and its workers (SIGTERM to its group, SIGKILL after ``grace`` s)."""
    deadline = time.monotonic() + grace
    _signal_group(server.pid, signal.SIGTERM)
    while _signal_group(server.pid, 0) and time.monotonic() < deadline + 5:
        server.poll()  # reap the leader, or the group never empties
        if time.monotonic() > deadline:
            _signal_group(server.pid, signal.SIGKILL)
        time.sleep(0.2)
    server.wait()  # (a worker's zombie left to an init that does not reap is not waited for)
