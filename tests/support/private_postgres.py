"""A PostgreSQL cluster of a test's own, which it may stop and restart: the suite's shared server must never be.

initdb into a fresh folder, trust authentication, a free port on 127.0.0.1, the socket in the same folder; the
Debian binaries (/usr/lib/postgresql/<version>/bin) or those on PATH. PostgreSQL refuses to run as root, so as
root the cluster belongs to the `postgres` user and its commands run through runuser.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.stack import free_port

SERVER_OPTIONS = "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (the newest Debian version first), or None where none is installed."""
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: p.parent.name, reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found and shutil.which("pg_ctl") else None


def _owner() -> str | None:
    """The user the server runs as when we are root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_name
    except KeyError:
        return None


def usable() -> str | None:
    """Why a private cluster cannot be made here (None: it can)."""
    if binaries() is None:
        return "initdb/pg_ctl not found: install PostgreSQL's server (apt-get install postgresql)"
    if os.geteuid() == 0 and (_owner() is None or shutil.which("runuser") is None):
        return "running as root without a `postgres` user and runuser: PostgreSQL refuses to run as root"
    return None


@dataclass
class PrivatePostgres:
    """One throwaway cluster; `url` reaches its `postgres` database as the superuser `postgres`."""

    folder: Path
    port: int

    @classmethod
    def create(cls) -> PrivatePostgres:
        """initdb a cluster in a new folder (outside pytest's root-only tmp tree, so `postgres` can reach it)."""
        folder = Path(tempfile.mkdtemp(prefix="lorastudio-pg-"))
        owner = _owner()
        if owner:
            entry = pwd.getpwnam(owner)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        server = cls(folder, free_port())
        server._run("initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--locale=C", "--no-sync")
        return server

    @property
    def data(self) -> Path:
        """The cluster's data directory."""
        return self.folder / "data"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's `postgres` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._pg_ctl("start", "-l", str(self.folder / "server.log"),
                     "-o", f"-p {self.port} -k {self.folder} {SERVER_OPTIONS}")

    def stop(self, mode: str = "fast") -> None:
        """Stop it (fast: every session is cut at once, as a restart in production does)."""
        self._pg_ctl("stop", "-m", mode)

    def log(self) -> str:
        """The server's log so far."""
        path = self.folder / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self) -> None:
        """Stop it if it runs (immediately) and remove its folder."""
        subprocess.run(self._argv("pg_ctl", "-D", str(self.data), "stop", "-m", "immediate"), capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", *args)

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(self._argv(program, *args), capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"{program} {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
                               f"\n{self.log()[-2000:]}")

    def _argv(self, program: str, *args: str) -> list[str]:
        argv = [str(binaries() / program), *args]
        owner = _owner()
        return ["runuser", "-u", owner, "--", *argv] if owner else argv
