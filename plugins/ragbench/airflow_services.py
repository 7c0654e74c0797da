"""Airflow as a team runs it, on this machine: the api-server (UI and REST API), scheduler,
dag-processor and triggerer as managed background processes (`ragbench airflow up|down|status`).

- Everything listens on 127.0.0.1: the api-server on its port, nothing else (the scheduler and
  triggerer would open log servers on 0.0.0.0; they run with --skip-serve-logs and the UI reads
  task logs from the shared log folder).
- LocalExecutor with a few workers; the metadata database is `airflow_meta` in the project's
  PostgreSQL (the embedded server unless RAGBENCH_DATABASE_URL names another one), or
  RAGBENCH_AIRFLOW_DATABASE_URL.
- Its home is <state>/airflow-services, logs go to <state>/logs/airflow, PID files to <state>/run.
- The secrets every component shares (JWT secret, Fernet key, API secret key) and the admin
  password are generated once into <state>/airflow-services/secrets.json (mode 0600), never in the
  repository.
- `up` is idempotent: it starts only what is not running. `down` stops each process group it
  started (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ragbench import paths
from ragbench.errors import RagbenchError
from ragbench.steps import measure_pool_command

COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
DEFAULT_PORT = 8080
META_DATABASE = "airflow_meta"
ADMIN_USER = "admin"
START_TIMEOUT_S = 240  # a cold start on a busy 2-core machine: db migrate, 4 processes, first heartbeats
STOP_GRACE_S = 20
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"

# Settings a user may override through the environment (AIRFLOW__SECTION__KEY); the rest below is
# what makes the components agree with each other, and is always ours.
TUNABLE = {
    "AIRFLOW__CORE__DAGS_FOLDER": str(paths.PROJECT_ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(paths.PROJECT_ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__CORE__PARALLELISM": "4",  # LocalExecutor workers (~50 MB each); the default 32 is for big hosts
    "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "60",
    "AIRFLOW__API__WORKERS": "1",
    # Find new and changed DAG files within seconds, not the default 5 minutes.
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "20",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "20",
}


@dataclass(frozen=True)
class Login:
    url: str
    username: str
    password: str


def _airflow_exe() -> str:
    return str(Path(sys.executable).parent / "airflow")


class AirflowServices:
    def __init__(self, state: Path | None = None) -> None:
        self.state = Path(state or paths.state_dir())
        self.home = self.state / "airflow-services"
        self.log_dir = self.state / "logs" / "airflow"
        self.run_dir = self.state / "run"
        self.secrets_file = self.home / "secrets.json"
        self.settings_file = self.home / "services.json"  # the port the running services use

    # --- state ----------------------------------------------------------------------------------
    def pid_file(self, component: str) -> Path:
        return self.run_dir / f"airflow-{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    def pid(self, component: str) -> int | None:
        """The PID of a running component that this project started (a recycled PID is not ours)."""
        import psutil

        try:
            pid = int(self.pid_file(component).read_text().strip())
            proc = psutil.Process(pid)
            # Airflow retitles some processes ("airflow api_server -- host:..."): match the text.
            cmdline = " ".join(proc.cmdline()).replace("_", "-")
            zombie = proc.status() == psutil.STATUS_ZOMBIE
        except (OSError, ValueError, psutil.Error):
            return None
        if zombie or "airflow" not in cmdline or component not in cmdline:
            return None
        return pid

    def port(self) -> int:
        try:
            return int(json.loads(self.settings_file.read_text())["port"])
        except (OSError, ValueError, KeyError):
            return int(os.environ.get("RAGBENCH_AIRFLOW_PORT") or DEFAULT_PORT)

    def url(self, port: int | None = None) -> str:
        return f"http://127.0.0.1:{port or self.port()}"

    def _secrets(self) -> dict:
        """Generated once, kept in the state folder (mode 0600)."""
        if self.secrets_file.exists():
            return json.loads(self.secrets_file.read_text())
        from cryptography.fernet import Fernet

        values = {"fernet_key": Fernet.generate_key().decode(), "jwt_secret": secrets.token_urlsafe(32),
                  "api_secret_key": secrets.token_urlsafe(32), "admin_password": secrets.token_urlsafe(12)}
        self.home.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(values, f)
        return values

    def login(self) -> Login:
        return Login(self.url(), ADMIN_USER, self._secrets()["admin_password"])

    # --- environment ----------------------------------------------------------------------------
    def meta_database_url(self) -> str:
        """RAGBENCH_AIRFLOW_DATABASE_URL, else the database `airflow_meta` on the results database's
        server (created when missing)."""
        url = os.environ.get("RAGBENCH_AIRFLOW_DATABASE_URL")
        if url:
            return _psycopg(url)
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url

        from ragbench import db

        results = make_url(_psycopg(db.database_url()))  # starts the embedded server when needed
        admin = sa.create_engine(results.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                exists = conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                      {"n": META_DATABASE}).scalar()
                if not exists:
                    conn.execute(sa.text(f'CREATE DATABASE "{META_DATABASE}"'))
        except sa.exc.OperationalError as exc:
            raise RagbenchError(f"cannot create the Airflow metadata database: {str(exc.orig).strip()}") from None
        finally:
            admin.dispose()
        return results.set(database=META_DATABASE).render_as_string(hide_password=False)

    def environment(self, port: int, meta_url: str) -> dict[str, str]:
        s = self._secrets()
        passwords = self.home / "simple_auth_manager_passwords.json"
        if not passwords.exists():
            fd = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({ADMIN_USER: s["admin_password"]}, f)
        base = f"http://127.0.0.1:{port}"
        fixed = {
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": meta_url,
            "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(port),
            # Tasks report to the api-server's execution API (its default is localhost:8080).
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/",
            "AIRFLOW__CORE__FERNET_KEY": s["fernet_key"],
            "AIRFLOW__API_AUTH__JWT_SECRET": s["jwt_secret"],
            "AIRFLOW__API__SECRET_KEY": s["api_secret_key"],
            "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.log_dir / "tasks"),
            "AIRFLOW__LOGGING__DAG_PROCESSOR_CHILD_PROCESS_LOG_DIRECTORY": str(self.log_dir / "dag-processor"),
            "RAGBENCH_STATE_DIR": str(self.state),
            # The tasks import the project from this checkout.
            "PYTHONPATH": os.pathsep.join([str(paths.PROJECT_ROOT / "plugins"), str(paths.PROJECT_ROOT)]),
        }
        env = {**TUNABLE, **os.environ, **fixed}
        env.setdefault("RAGBENCH_WORKLOAD_PYTHON", paths.workload_python())
        if "RAGBENCH_DATABASE_URL" not in os.environ:
            from ragbench import db

            env["RAGBENCH_DATABASE_URL"] = db.database_url(start_embedded=False)
        return env

    # --- commands -------------------------------------------------------------------------------
    def status(self) -> dict[str, int | None]:
        return {c: self.pid(c) for c in COMPONENTS}

    def up(self, port: int | None = None, progress=print) -> Login:
        """Start what is not running, wait until every component is healthy; return the login."""
        running = self.status()
        if all(running.values()):
            self._wait_healthy(self.port())
            return self.login()
        if any(running.values()):
            port = self.port()  # some are up: the rest must join them on the same port
        else:
            port = int(port or os.environ.get("RAGBENCH_AIRFLOW_PORT") or DEFAULT_PORT)
            _check_port_free(port)
        for folder in (self.home, self.log_dir, self.run_dir):
            folder.mkdir(parents=True, exist_ok=True)
        env = self.environment(port, self.meta_database_url())
        self.settings_file.write_text(json.dumps({"port": port}))
        progress("airflow: migrating the metadata database")
        self._airflow_command(["db", "migrate"], env, "db-migrate")
        self._airflow_command(measure_pool_command(), env, "pools")
        argv = {"api-server": ["api-server", "--host", "127.0.0.1", "--port", str(port)],
                "scheduler": ["scheduler", "--skip-serve-logs"],
                "dag-processor": ["dag-processor"],
                "triggerer": ["triggerer", "--skip-serve-logs"]}
        for component in COMPONENTS:
            if running[component]:
                continue
            with open(self.log_file(component), "ab") as log:
                proc = subprocess.Popen([_airflow_exe(), *argv[component]], stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, env=env, cwd=paths.PROJECT_ROOT,
                                        start_new_session=True)
            self.pid_file(component).write_text(f"{proc.pid}\n")
            progress(f"airflow: started {component} (pid {proc.pid}, log {self.log_file(component)})")
        try:
            self._wait_healthy(port)
        except RagbenchError:
            self.down()
            raise
        return self.login()

    def down(self) -> list[str]:
        """Stop every component this project started; returns the ones stopped."""
        import psutil

        stopped = []
        pids = {c: p for c, p in self.status().items() if p}
        for pid in pids.values():
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for component, pid in pids.items():
            try:
                psutil.Process(pid).wait(timeout=max(0.1, deadline - time.monotonic()))
            except psutil.TimeoutExpired:
                _signal_group(pid, signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
            stopped.append(component)
        # Children that outlived their leader (LocalExecutor workers, api-server workers) share its group.
        for pid in pids.values():
            _signal_group(pid, signal.SIGKILL)
        for component in COMPONENTS:
            self.pid_file(component).unlink(missing_ok=True)
        return stopped

    # --- helpers --------------------------------------------------------------------------------
    def _airflow_command(self, args: list[str], env: dict, name: str) -> None:
        with open(self.log_dir / f"{name}.log", "ab") as log:
            rc = subprocess.call([_airflow_exe(), *args], stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, env=env, cwd=paths.PROJECT_ROOT, timeout=300)
        if rc != 0:
            raise RagbenchError(f"airflow {' '.join(args[:2])} failed (exit {rc}); see {self.log_dir / name}.log")

    def _wait_healthy(self, port: int) -> None:
        """Until the api-server answers and reports the metadatabase, scheduler, triggerer and
        dag-processor healthy; a component that exits meanwhile is an error naming its log."""
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            for component in COMPONENTS:
                if self.pid(component) is None:
                    raise RagbenchError(f"airflow {component} exited; see {self.log_file(component)}")
            try:
                health = httpx.get(f"{self.url(port)}/api/v2/monitor/health", timeout=5).json()
                unhealthy = [k for k, v in health.items() if isinstance(v, dict) and v.get("status") != "healthy"]
                if not unhealthy:
                    return
                last = f"not healthy yet: {', '.join(unhealthy)}"
            except (httpx.HTTPError, ValueError) as exc:
                last = str(exc) or type(exc).__name__
            time.sleep(1)
        raise RagbenchError(f"Airflow did not become healthy within {START_TIMEOUT_S} s ({last}); "
                            f"logs in {self.log_dir}")


def _psycopg(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # started with start_new_session: the group id is the leader's PID
    except (ProcessLookupError, PermissionError):
        pass


def _check_port_free(port: int) -> None:
    from ragbench.pgserver import _port_taken

    if _port_taken(port):
        raise RagbenchError(f"port {port} on 127.0.0.1 is in use by another program; "
                            f"use --port or RAGBENCH_AIRFLOW_PORT")
