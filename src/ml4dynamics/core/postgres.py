"""A PostgreSQL cluster in a folder of this machine, run with the server programs of Debian's
``postgresql`` package (``/usr/lib/postgresql/<version>/bin``, or ``pg_ctl`` on PATH): the
database a team's MLflow server keeps its runs and registry in when no database server is at
hand (``ml4d server --postgres-data DIR``), and what the tests start on loopback.

The cluster listens on one address and port only, its socket lives in its own folder, and
connections from this machine are trusted (the ``mlflow`` role has no password): put a real
server with passwords in front of anything reachable from outside. PostgreSQL refuses to run
as root; as root, the cluster is run by the ``postgres`` user the Debian package creates, and
its folder is handed to that user.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from ml4dynamics.core.errors import ML4DError

HINT = "install Debian's `postgresql` package (apt-get install postgresql) or put pg_ctl on PATH"


def programs() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` (PATH first, then the newest
    Debian installation)."""
    found = shutil.which("pg_ctl")
    if found:
        folder = Path(found).resolve().parent
        if (folder / "initdb").is_file():
            return folder
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if versions:
        return versions[-1].parent
    raise ML4DError(f"no PostgreSQL server programs on this machine: {HINT}")


def _owner() -> str | None:
    """The user the cluster runs as: None (this one) unless this is root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError as err:
        raise ML4DError(
            "PostgreSQL does not run as root and there is no `postgres` user to run it: "
            f"run as another user, or {HINT} (it creates that user)"
        ) from err
    return "postgres"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A cluster whose files are under ``folder`` (created by ``start`` when missing)."""

    folder: Path
    port: int = 5432
    host: str = "127.0.0.1"
    database: str = "mlflow"
    role: str = "mlflow"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "postgres.log"

    def uri(self) -> str:
        """The store URI MLflow takes (SQLAlchemy 2.1 needs the driver named: psycopg2)."""
        return f"postgresql+psycopg2://{self.role}@{self.host}:{self.port}/{self.database}"

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(programs() / program), *args],
            capture_output=True,
            text=True,
            user=_owner(),
            cwd="/",
            timeout=120,
        )
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["(no output)"]
            log = self.log.read_text().strip().splitlines()[-1:] if self.log.is_file() else []
            raise ML4DError(
                f"PostgreSQL's {program} failed in {self.folder}: {tail[0]}"
                + (f" (log: {log[0]})" if log else "")
            )
        return result

    def initialised(self) -> bool:
        return (self.data / "PG_VERSION").is_file()

    def start(self) -> str:
        """Create the cluster (first time), start it and make the database; returns ``uri()``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        owner = _owner()
        if owner is not None:  # the folder must be the postgres user's, and reachable by it
            ids = pwd.getpwnam(owner)
            for parent in self.folder.absolute().parents:
                info = parent.stat()
                if info.st_uid != ids.pw_uid and not info.st_mode & 0o001:
                    raise ML4DError(
                        f"the `postgres` user cannot reach {self.folder}: {parent} is closed to "
                        f"others (mode {info.st_mode & 0o777:o}); choose a folder elsewhere or "
                        f"`chmod o+x {parent}`"
                    )
            for path in (self.folder, *self.folder.rglob("*")):
                os.chown(path, ids.pw_uid, ids.pw_gid)
            self.folder.chmod(0o700)
        if not self.initialised():
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                self.role,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            )
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={self.host}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")
        self._create_database()
        return self.uri()

    def _create_database(self) -> None:
        import psycopg2

        con = psycopg2.connect(host=self.host, port=self.port, user=self.role, dbname="postgres")
        try:
            con.autocommit = True  # CREATE DATABASE runs outside a transaction
            with con.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            con.close()

    def stop(self) -> None:
        """Stop the cluster (its files stay: ``start`` again resumes it)."""
        if self.initialised() and (self.data / "postmaster.pid").is_file():
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
