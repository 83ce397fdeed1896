"""A throw-away PostgreSQL server for tests: initdb in a temporary folder, TCP on 127.0.0.1,
password authentication (so that password redaction is tested for real)."""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PASSWORD = "s3cret-pw-do-not-print"
USER = "nasscale"


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """Start with ``start()``; ``url`` is a SQLAlchemy URL with the password; ``stop()``."""

    def __init__(self):
        self.dir = None
        self.port = None
        self.url = None
        self._as_user: list[str] = []

    def unavailable(self) -> str | None:
        if not _bin("initdb") or not _bin("pg_ctl"):
            return ("PostgreSQL server binaries (initdb, pg_ctl) not found: "
                    "apt-get install postgresql")
        try:
            import psycopg2  # noqa: F401
        except ImportError:
            return "psycopg2 not installed (pip install 'nasscale[postgres]')"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no 'postgres' user to run the server"
            runuser = shutil.which("runuser")
            if not runuser:
                return "running as root and runuser is missing"
        return None

    def _run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([*self._as_user, *args], check=True, capture_output=True,
                              text=True, timeout=120, **kw)

    def start(self) -> str:
        self.dir = Path(tempfile.mkdtemp(prefix="nasscale-pg-"))
        data, pwfile = self.dir / "data", self.dir / "pw"
        pwfile.write_text(PASSWORD + "\n")
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            self._as_user = ["runuser", "-u", "postgres", "--"]
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o755)
        self._run(_bin("initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256",
                  f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync")
        self.port = _free_port()
        self._run(_bin("pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w", "-t", "60",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c max_connections=50", "start")
        self.url = self.database_url("postgres")
        return self.url

    def database_url(self, name: str) -> str:
        """The README's form: ``postgresql://`` with no driver named."""
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database (no Optuna tables yet); its URL."""
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=self.port, user=USER,
                                password=PASSWORD, dbname="postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()
        return self.database_url(name)

    def pause(self) -> None:
        """Stop the server, keeping its data (an outage)."""
        self._run(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")

    def resume(self) -> None:
        self._run(_bin("pg_ctl"), "-D", str(self.dir / "data"), "-l", str(self.dir / "log"),
                  "-w", "-t", "60", "-o", f"-p {self.port} -k {self.dir} "
                  "-c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50", "start")

    def stop(self) -> None:
        if self.dir and (self.dir / "data" / "postmaster.pid").exists():
            subprocess.run([*self._as_user, _bin("pg_ctl"), "-D", str(self.dir / "data"),
                            "-m", "immediate", "stop"], capture_output=True, timeout=60)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
