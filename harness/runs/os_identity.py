"""OS-level enforcement (`enforcement = "os"` in a topology): each role a Unix user, each file
its writer's, so the kernel stops a process that bypasses the access manager.

- Each role runs as the user `splitdb-<role>` (primary group of the same name), created when
  missing. Readers of a database get its writer's group as a supplementary group, so they can
  read its file, and nothing else of it: database files are `0640`, owned by their writer.
- The data directory belongs to root (`0755`): no role can create, delete or rename a file in
  it, so none can replace another's database either.
- SQLite readers of a WAL database need its `-wal` and `-shm` files to exist (a read-only
  connection cannot create them), and the last read-write connection to close deletes them: a
  reader would fail with "attempt to write a readonly database" whenever the writer is down.
  The harness keeps one read-only connection to each file open while the system runs (the
  *WAL keeper*, no transaction, so checkpoints are not held back): the writer is never the last
  to close, and the files stay. Opened by root, SQLite gives them the database file's owner
  and mode, so readers get no write access to them either.
- The status board is shared by design: it lives in a directory of its own (the topology
  requires one), group `splitdb-status` (setgid, `2770`), which every role joins.
- Switching users needs root; without it the harness refuses with that reason. Every role user
  must be able to reach the Python interpreter, the installed packages and the run directory:
  checked before anything starts, naming the directory to open up (`chmod o+x`).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import sqlite3
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from reference.errors import SplitdbError
from reference.topology import Topology

USER_PREFIX = "splitdb-"
STATUS_GROUP = "splitdb-status"
FILE_MODE = 0o640
UMASK = 0o027


class EnforcementUnavailable(SplitdbError):
    """OS-level enforcement cannot be set up here (not root, no useradd, a path not reachable)."""


@dataclass(frozen=True)
class Identity:
    """Who a role's processes run as."""

    role: str
    user: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary: the writers' groups it reads, and the status group


def can_switch_users() -> bool:
    return os.geteuid() == 0


def identities(topology: Topology) -> dict[str, Identity]:
    """The role users of `topology`, created (with their groups) when missing."""
    if not can_switch_users():
        raise EnforcementUnavailable(
            f'topology {topology.name!r}: enforcement = "os" runs each role as its own Unix '
            'user, which needs root; run as root, or use enforcement = "process"'
        )
    status_gid = _ensure_group(STATUS_GROUP)
    users = {role: _ensure_user(USER_PREFIX + role) for role in topology.roles}
    found = {}
    for role, (uid, gid) in users.items():
        read_groups = {
            users[topology.writers(db)[0]][1]
            for db, mode in topology.grants[role].items()
            if mode == "ro"
        }
        found[role] = Identity(
            role, USER_PREFIX + role, uid, gid, tuple(sorted(read_groups | {status_gid}))
        )
    return found


def _ensure_group(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        _run_tool(["groupadd", "--system", name])
        return grp.getgrnam(name).gr_gid


def _ensure_user(name: str) -> tuple[int, int]:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        _run_tool(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ]
        )
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def _run_tool(argv: list[str]) -> None:
    if shutil.which(argv[0]) is None:
        raise EnforcementUnavailable(
            f'enforcement = "os" needs {argv[0]} to create {argv[-1]}; install the passwd '
            "package or create the user yourself"
        )
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise EnforcementUnavailable(
            f"{' '.join(argv)} failed: {done.stderr.strip() or done.returncode}"
        )


def prepare_files(
    topology: Topology,
    data_dir: Path,
    who: dict[str, Identity],
    own_files: dict[str, list[Path]],
) -> None:
    """Give every file its owner and mode (see the module's docstring).

    `own_files` maps a role to files it must write outside the data directory (its event
    log): created empty here, owned by the role's user.
    """
    os.chown(data_dir, 0, 0)
    os.chmod(data_dir, 0o755)
    for database, spec in topology.databases.items():
        path = data_dir / spec.path
        writer = who[topology.writers(database)[0]]
        for directory in _dirs_between(data_dir, path.parent):
            os.chown(directory, 0, 0)
            os.chmod(directory, 0o755)
        os.chown(path, writer.uid, writer.gid)
        os.chmod(path, FILE_MODE)
        for side in ("-wal", "-shm"):
            side_path = Path(str(path) + side)
            if side_path.exists():
                os.chown(side_path, writer.uid, writer.gid)
                os.chmod(side_path, FILE_MODE)
    status_gid = grp.getgrnam(STATUS_GROUP).gr_gid
    board = data_dir / topology.status
    for directory in _dirs_between(data_dir, board.parent):
        directory.mkdir(exist_ok=True)
        os.chown(directory, 0, status_gid)
        os.chmod(directory, 0o2770)
    lock = board.with_name(board.name + ".lock")
    lock.touch()
    os.chown(lock, 0, status_gid)
    os.chmod(lock, 0o660)
    sections = board.with_name(board.name + ".sections")  # reference/status.py's copies
    sections.mkdir(exist_ok=True)
    os.chown(sections, 0, status_gid)
    os.chmod(sections, 0o2770)
    for role, paths in own_files.items():
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
            os.chown(path, who[role].uid, who[role].gid)
            os.chmod(path, FILE_MODE)


def _dirs_between(top: Path, bottom: Path) -> list[Path]:
    """The directories from `top` (excluded) down to `bottom` (included)."""
    found = []
    while bottom != top and top in bottom.parents:
        found.append(bottom)
        bottom = bottom.parent
    return list(reversed(found))


def check_reachable(identity: Identity, paths: list[Path]) -> None:
    """Raise naming the first directory the role's user cannot pass on the way to the Python
    interpreter, the installed packages or `paths`, and the fix."""
    import harness
    import reference

    wanted = [
        Path(sys.executable),
        Path(sys.executable).resolve(),  # a venv's python is a link to the base interpreter
        Path(reference.__file__).parent,
        Path(harness.__file__).parent,
        *paths,
    ]
    for path in wanted:
        for directory in reversed([p for p in path.parents]):
            info = directory.stat()
            if not _may_enter(info, identity):
                raise EnforcementUnavailable(
                    f"user {identity.user} cannot reach {path}: {directory} is "
                    f"{stat.filemode(info.st_mode)} ({_owner(info)}); let other users pass "
                    f"with `chmod o+x {directory}`, or keep the installation and the run "
                    'directory where they can, or use enforcement = "process"'
                )


def _may_enter(info: os.stat_result, identity: Identity) -> bool:
    if info.st_uid == identity.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid == identity.gid or info.st_gid in identity.groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def _owner(info: os.stat_result) -> str:
    try:
        user = pwd.getpwuid(info.st_uid).pw_name
    except KeyError:
        user = str(info.st_uid)
    return f"owner {user}"


class WalKeeper:
    """One read-only connection per database file, held while the system runs, so its `-wal`
    and `-shm` files outlive a writer that stops (see the module's docstring)."""

    def __init__(self, files: list[Path]) -> None:
        self._conns: list[sqlite3.Connection] = []
        for path in files:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            conn.execute("PRAGMA schema_version").fetchone()  # opens the WAL and shm files
            self._conns.append(conn)

    def close(self) -> None:
        for conn in self._conns:
            conn.close()
        self._conns.clear()
