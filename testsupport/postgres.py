"""A real PostgreSQL server from Debian's `postgresql` package, in a temporary folder on a free loopback port.

One server serves a whole test session; each test gets a database of its own (`fresh_database`). PostgreSQL
refuses to run as root, so as root the cluster is made and run by the `postgres` user the package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from testsupport.broker import free_port

INSTALL_HINT = "PostgreSQL is not installed: `apt-get install postgresql` (make test does this)"


def server_binaries() -> Path | None:
    """The folder of Debian's newest PostgreSQL server programs (initdb, pg_ctl), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@dataclass
class PostgresServer:
    """`start()` makes a cluster with trust authentication on 127.0.0.1 and starts it; `stop()` removes it.
    `durable`: every commit is flushed to disk (PostgreSQL's default, for benchmarks); tests run without."""

    durable: bool = False
    port: int = field(default_factory=free_port)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hemowatch-pg-")))
    _user: str | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Make the cluster (the first time) and start the server; return once it answers."""
        binaries = server_binaries()
        if binaries is None:
            raise RuntimeError(INSTALL_HINT)
        data = self.workdir / "data"
        if not data.exists():
            if os.geteuid() == 0:
                self._user = "postgres"
                entry = pwd.getpwnam(self._user)
                os.chmod(self.workdir, 0o755)
                data.mkdir()
                os.chown(data, entry.pw_uid, entry.pw_gid)
            self._run(binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {data} -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off"
        self._run(binaries / "pg_ctl", "-D", data, "-o", options, "-l", data / "server.log", "-w", "start")
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(self.admin_url, connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def halt(self) -> None:
        """Stop at once, as a crash would (every connection is cut), keeping the data for `start()`."""
        binaries = server_binaries()
        data = self.workdir / "data"
        if binaries is not None and (data / "postmaster.pid").exists():
            self._run(binaries / "pg_ctl", "-D", data, "-m", "immediate", "-w", "stop")

    def stop(self) -> None:
        """Halt the server and remove its data."""
        self.halt()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def fresh_database(self) -> str:
        """The URL of a new empty database."""
        name = f"hw_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"create database {name}")
        return self.url(name)

    def _run(self, *command: object) -> None:
        argv = [str(part) for part in command]
        if self._user is not None:
            argv = ["runuser", "-u", self._user, "--", *argv]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.workdir)
