"""A PostgreSQL server for a run: a throwaway one (`initdb` + `pg_ctl` in a temporary directory,
removed after) or one the user names by URL.

- The throwaway server listens on 127.0.0.1 on a free port and on a Unix socket in its own
  directory, so two at once (pytest -n 2, two runs) never meet. A port taken between our probe
  and the server's bind is retried on another one.
- PostgreSQL refuses to run as root. As root the server runs as the system user `splitdb-pg`
  (created when missing); as anyone else it runs as that user, which PostgreSQL accepts.
- Authentication is scram-sha-256 everywhere, with a random superuser password held only by the
  harness: a role's process that has its own password only cannot connect as the superuser, so
  the grants are what stand between it and other roles' data (`reference/pg_access.py`).
- The directory is removed on every way out of the `with` block (an exception, Ctrl-C). A server
  that does not start raises with the last line of its log and where the whole log was kept.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow

from harness.errors import PostgresUnavailable, PostgresUrlError

SERVER_USER = "splitdb-pg"
ADMIN_USER = "splitdb_admin"
APT_PACKAGE = "postgresql-15"
# Where Debian's packages put the server binaries (they are not on PATH there).
DEBIAN_BIN_GLOB = "/usr/lib/postgresql/*/bin"
# A Unix socket's path must fit sockaddr_un (108 bytes with its NUL); `.s.PGSQL.65535` included.
SOCKET_PATH_MAX = 107
PORT_ATTEMPTS = 5

Via = Literal["tcp", "socket"]


@dataclass(frozen=True)
class PgServer:
    """A reachable server and the credentials of a user who may administer it.

    `socket_dir` is set for a throwaway server (its Unix socket's directory), None for a named
    one. `repr` hides the password: a server object in a log or an assertion stays safe.
    """

    host: str
    port: int
    user: str
    password: str | None = field(repr=False)
    dbname: str = "postgres"
    socket_dir: Path | None = None

    @property
    def postmaster_pid(self) -> int | None:
        """The throwaway server's postmaster pid (from its `postmaster.pid`); None for a named
        server or one not running."""
        if self.socket_dir is None:
            return None
        try:
            text = (self.socket_dir / "data" / "postmaster.pid").read_text(encoding="utf-8")
            return int(text.split()[0])
        except (OSError, ValueError, IndexError):
            return None

    @property
    def log_file(self) -> Path | None:
        """The throwaway server's log as it is being written; None for a named server."""
        return None if self.socket_dir is None else self.socket_dir / "server.log"

    def conninfo(
        self,
        *,
        user: str | None = None,
        password: str | None = None,
        dbname: str | None = None,
        via: Via = "tcp",
    ) -> str:
        """A libpq connection string for this server; the admin's credentials unless `user`
        (with its own `password`) is given, so a role never inherits the admin's password."""
        if via == "socket" and self.socket_dir is None:
            raise PostgresUnavailable(
                f"server {self.host}:{self.port} was named by URL: it has no Unix socket here; "
                'connect with via="tcp"'
            )
        host = str(self.socket_dir) if via == "socket" else self.host
        return make_conninfo(
            host=host,
            port=self.port,
            user=user or self.user,
            password=(password if user is not None else self.password) or None,
            dbname=dbname or self.dbname,
        )

    def connect(
        self,
        *,
        user: str | None = None,
        password: str | None = None,
        dbname: str | None = None,
        via: Via = "tcp",
        autocommit: bool = True,
    ) -> psycopg.Connection[TupleRow]:
        """A psycopg connection (autocommit unless told): see `conninfo`."""
        info = self.conninfo(user=user, password=password, dbname=dbname, via=via)
        return psycopg.connect(info, autocommit=autocommit)


def find_binaries(bin_dir: Path | None = None) -> Path:
    """The directory holding `initdb`, `pg_ctl` and `postgres`: `bin_dir`, else PATH, else the
    newest of Debian's versions; one line naming the package to install when none has them."""
    wanted = ("initdb", "pg_ctl", "postgres")
    candidates: list[Path] = []
    if bin_dir is not None:
        candidates.append(bin_dir)
    else:
        on_path = shutil.which("pg_ctl")
        if on_path is not None:
            candidates.append(Path(on_path).resolve().parent)
        # Newest first: /usr/lib/postgresql/16/bin before 15 (numeric, not text, order).
        found = Path("/").glob(DEBIAN_BIN_GLOB.lstrip("/"))
        candidates += sorted(found, key=lambda p: _version_key(p.parent.name), reverse=True)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in wanted):
            return directory
    where = str(bin_dir) if bin_dir is not None else f"PATH or {DEBIAN_BIN_GLOB}"
    raise PostgresUnavailable(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {where}; install "
        f"them with `apt-get install {APT_PACKAGE}`, or name a running server by URL"
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit()) or (0,)


@dataclass(frozen=True)
class _RunAs:
    """Who the server's programs run as: a uid/gid to switch to (as root), or None (ourselves)."""

    uid: int | None
    gid: int | None
    name: str


def server_user() -> _RunAs:
    """The user the throwaway server runs as: `splitdb-pg` (created when missing) when we are
    root, which PostgreSQL refuses to run as; ourselves otherwise."""
    if os.geteuid() != 0:
        return _RunAs(None, None, pwd.getpwuid(os.geteuid()).pw_name)
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        if shutil.which("useradd") is None:
            raise PostgresUnavailable(
                f"PostgreSQL refuses to run as root and there is no user {SERVER_USER} to run "
                "it as, nor useradd to create one; install the passwd package or run "
                f"`useradd --system --user-group {SERVER_USER}` yourself"
            ) from None
        done = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                SERVER_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        # Two servers starting at once may both try: the loser finds the user made.
        if done.returncode not in (0, 9):
            raise PostgresUnavailable(
                f"PostgreSQL refuses to run as root, and creating its user {SERVER_USER} failed: "
                f"{done.stderr.strip() or f'useradd exited {done.returncode}'}"
            ) from None
        entry = pwd.getpwnam(SERVER_USER)
    return _RunAs(entry.pw_uid, entry.pw_gid, SERVER_USER)


@contextlib.contextmanager
def throwaway_server(
    *,
    base: Path | None = None,
    log_path: Path | None = None,
    settings: Mapping[str, str] | None = None,
    start_timeout_s: float = 60.0,
    bin_dir: Path | None = None,
) -> Iterator[PgServer]:
    """Start a server of our own for the `with` block; stop it and remove its directory after.

    `base` is where its temporary directory goes (default: the system's temporary directory);
    the server's user must be able to pass through every directory above it. `log_path`, when
    given, receives the server's log when it stops (a run keeps it as evidence). `settings`
    are extra `postgresql.conf` lines (name -> value), such as `{"fsync": "off"}` for a test
    that does not measure durability.
    """
    binaries = find_binaries(bin_dir)
    run_as = server_user()
    root = Path(tempfile.mkdtemp(prefix="splitdb-pg-", dir=base))
    try:
        _check_reachable(root, run_as)
        if len(str(root / ".s.PGSQL.65535")) > SOCKET_PATH_MAX:
            raise PostgresUnavailable(
                f"{root}: too long a path for the server's Unix socket (at most "
                f"{SOCKET_PATH_MAX - 15} characters); give a shorter base directory"
            )
        if run_as.uid is not None:
            os.chown(root, run_as.uid, run_as.gid or -1)
        server = _start(root, binaries, run_as, dict(settings or {}), start_timeout_s, log_path)
        try:
            yield server
        finally:
            _stop(root, binaries, run_as, log_path)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _check_reachable(root: Path, run_as: _RunAs) -> None:
    """Name the first directory above `root` the server's user cannot pass, and the fix."""
    if run_as.uid is None:
        return
    for directory in reversed(root.parents):
        info = directory.stat()
        if info.st_uid == run_as.uid:
            ok = bool(info.st_mode & stat.S_IXUSR)
        else:
            ok = bool(info.st_mode & stat.S_IXOTH)
        if not ok:
            raise PostgresUnavailable(
                f"user {run_as.name} (the PostgreSQL server's) cannot reach {root}: {directory} "
                f"is {stat.filemode(info.st_mode)}; give a base directory it can pass through "
                f"(such as /tmp), or `chmod o+x {directory}`"
            )


def _start(
    root: Path,
    binaries: Path,
    run_as: _RunAs,
    settings: dict[str, str],
    timeout_s: float,
    log_path: Path | None,
) -> PgServer:
    data = root / "data"
    log = root / "server.log"
    password = secrets.token_urlsafe(24)
    pwfile = root / "pwfile"
    _write_as(pwfile, password + "\n", run_as, mode=0o600)
    _run(
        [
            str(binaries / "initdb"),
            "--pgdata",
            str(data),
            "--username",
            ADMIN_USER,
            "--pwfile",
            str(pwfile),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            # The data directory is thrown away: its fsyncs would only slow the start.
            "--no-sync",
        ],
        run_as,
        cwd=root,
        timeout_s=timeout_s,
        what="initdb",
    )
    pwfile.unlink()
    # Our settings live in a file of their own, included once, so a retry on another port
    # rewrites it whole instead of editing postgresql.conf.
    with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write("\ninclude 'splitdb.conf'\n")
    deadline = time.monotonic() + timeout_s
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = _free_port()
        lines = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{root}'",
            **settings,
        }
        _write_as(
            data / "splitdb.conf",
            "".join(f"{k} = {v}\n" for k, v in lines.items()),
            run_as,
            mode=0o600,
        )
        left = max(1.0, deadline - time.monotonic())
        done = _run(
            [
                str(binaries / "pg_ctl"),
                "start",
                "--pgdata",
                str(data),
                "--log",
                str(log),
                "--wait",
                "--timeout",
                str(max(1, int(left))),
            ],
            run_as,
            cwd=root,
            timeout_s=left + 10,
            what="pg_ctl start",
            check=False,
        )
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        if done.returncode == 0:
            server = PgServer("127.0.0.1", port, ADMIN_USER, password, socket_dir=root)
            _wait_connectable(server, deadline, log, log_path)
            return server
        # pg_ctl gave up: stop whatever half-started before retrying or raising.
        _stop(root, binaries, run_as, None)
        if "Address already in use" in text and attempt < PORT_ATTEMPTS:
            continue
        raise PostgresUnavailable(_not_started(log, log_path, done.stderr))
    raise AssertionError("unreachable: the last attempt raises")


def _wait_connectable(server: PgServer, deadline: float, log: Path, log_path: Path | None) -> None:
    """pg_ctl --wait saw the server up; wait until a client really gets in, by the deadline."""
    last = ""
    while True:
        try:
            with server.connect() as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError as exc:
            last = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if time.monotonic() > deadline:
            raise PostgresUnavailable(_not_started(log, log_path, f"connecting: {last}"))
        time.sleep(0.05)


def _not_started(log: Path, log_path: Path | None, detail: str) -> str:
    kept = _keep_log(log, log_path)
    text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    # Without the time and pid prefix ("2026-01-02 03:04:05.678 UTC [123] ").
    lines = [line.split("] ", 1)[-1].strip() for line in text.splitlines() if line.strip()]
    fatal = next((i for i, line in enumerate(lines) if line.startswith(("FATAL", "PANIC"))), None)
    if fatal is None:
        why = (lines or [detail.strip() or "no log written"])[-1]
    else:
        # The line before a FATAL usually says what was wrong ("invalid value for parameter
        # ..."), the FATAL what it stopped.
        why = " / ".join(lines[max(0, fatal - 1) : fatal + 1])
    return f"the PostgreSQL server did not start: {why}; its log: {kept}"


def _keep_log(log: Path, log_path: Path | None) -> Path:
    """Copy the server's log out of the directory about to be removed; where it went."""
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix="splitdb-pg-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log.exists():
        shutil.copyfile(log, log_path)
    else:
        log_path.write_text("", encoding="utf-8")
    return log_path


def _stop(root: Path, binaries: Path, run_as: _RunAs, log_path: Path | None) -> None:
    """Stop the server (fast: active transactions are rolled back, as a crash would leave them)
    and, if it does not stop in time, kill it outright; keep its log if asked."""
    data = root / "data"
    pidfile = data / "postmaster.pid"
    if pidfile.exists():
        done = _run(
            [str(binaries / "pg_ctl"), "stop", "--pgdata", str(data), "--mode", "fast", "--wait"],
            run_as,
            cwd=root,
            timeout_s=90,
            what="pg_ctl stop",
            check=False,
        )
        if done.returncode != 0:
            _kill_postmaster(pidfile)
    if log_path is not None and (root / "server.log").exists():
        _keep_log(root / "server.log", log_path)


def _kill_postmaster(pidfile: Path) -> None:
    """SIGQUIT (immediate shutdown: the postmaster takes its backends down), then SIGKILL."""
    try:
        pid = int(pidfile.read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        for _ in range(100):
            time.sleep(0.05)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _write_as(path: Path, text: str, run_as: _RunAs, *, mode: int) -> None:
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    if run_as.uid is not None:
        os.chown(path, run_as.uid, run_as.gid or -1)


def _run(
    argv: list[str],
    run_as: _RunAs,
    *,
    cwd: Path,
    timeout_s: float,
    what: str,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            user=run_as.uid,
            group=run_as.gid,
            # As root, drop root's supplementary groups too: the server is its user alone.
            extra_groups=[] if run_as.uid is not None else None,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            # The server must not get the terminal's Ctrl-C before we stop it ourselves.
            start_new_session=True,
        )
    except subprocess.TimeoutExpired:
        raise PostgresUnavailable(f"{what} did not finish in {timeout_s:.0f} s") from None
    if check and done.returncode != 0:
        last = done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}"
        raise PostgresUnavailable(f"{what} failed: {last.splitlines()[-1]}")
    return done


def server_from_url(url: str, *, connect_timeout_s: int = 5) -> PgServer:
    """A server the user runs, named by `postgresql://USER[:PASSWORD]@HOST[:PORT][/DB]`.

    Its user must be able to create databases and roles (a superuser, or CREATEDB and
    CREATEROLE): it sets up each run's database and its role per process. Bad URL: one line
    (PostgresUrlError); unreachable or not privileged enough: one line (PostgresUnavailable).
    """
    shown = _masked(url)
    if urlsplit(url).scheme not in ("postgresql", "postgres"):
        raise PostgresUrlError(
            shown, ["expected postgresql://USER[:PASSWORD]@HOST[:PORT][/DATABASE]"]
        )
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise PostgresUrlError(shown, [f"{str(exc).strip()}; fix the URL"]) from None
    host = str(params.get("host") or "")
    user = str(params.get("user") or "")
    if not host or not user or "/" in host:
        raise PostgresUrlError(
            shown, ["needs a user and a TCP host: postgresql://USER@HOST[:PORT][/DATABASE]"]
        )
    try:
        port = int(params.get("port") or 5432)
    except ValueError:
        raise PostgresUrlError(shown, ["the port must be a number"]) from None
    password = params.get("password")
    server = PgServer(
        host,
        port,
        user,
        str(password) if password is not None else None,
        dbname=str(params.get("dbname") or "postgres"),
    )
    try:
        with psycopg.connect(
            server.conninfo(), autocommit=True, connect_timeout=connect_timeout_s
        ) as conn:
            row = conn.execute(
                "SELECT rolsuper, rolcreatedb AND rolcreaterole FROM pg_roles "
                "WHERE rolname = current_user"
            ).fetchone()
    except psycopg.OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PostgresUnavailable(
            f"cannot connect to {shown}: {first}; check the URL, or leave it out for a "
            "throwaway server"
        ) from None
    if row is None or not (row[0] or row[1]):
        raise PostgresUnavailable(
            f"{shown}: user {user!r} may not create databases and roles; name a superuser, or "
            f"`ALTER ROLE {user} CREATEDB CREATEROLE`"
        )
    return server


def _masked(url: str) -> str:
    """The URL with its password replaced, fit for an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


@contextlib.contextmanager
def pg_server(
    url: str | None = None,
    *,
    base: Path | None = None,
    log_path: Path | None = None,
    settings: Mapping[str, str] | None = None,
) -> Iterator[PgServer]:
    """The server a run uses: the one named by `url`, else a throwaway one (the other options
    are `throwaway_server`'s)."""
    if url is not None:
        yield server_from_url(url)
        return
    with throwaway_server(base=base, log_path=log_path, settings=settings) as server:
        yield server
