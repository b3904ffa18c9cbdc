"""Topology: which database lives in which file, and which role may read or write it.

A topology is parsed once from TOML (or a mapping) into a frozen `Topology`; every problem in the
input is reported at once, each naming its field path and the fix. Two layouts ship with splitdb:
`seed` (one file per database, one writer each) and `legacy` (one file, every role writes it).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from reference.errors import SplitdbError, TopologyError

Mode = Literal["rw", "ro"]
Layout = Literal["separate", "shared"]
# Who enforces the grants: the access manager inside each process, or also the OS (each role
# its own Unix user, each file its writer's; harness/runs/os_identity.py).
Enforcement = Literal["process", "os"]
ENFORCEMENTS = ("process", "os")
# Where the databases live: SQLite files in the data directory, or schemas of one PostgreSQL
# database (reference/pg_access.py), each process on its role's login from SPLITDB_PG_CONNINFO.
Backend = Literal["sqlite", "postgres"]
BACKENDS = ("sqlite", "postgres")
# `splitdb-` + a role name must fit a Linux user name (32 characters).
OS_ROLE_MAX = 24

REFERENCE_ROLES: tuple[str, ...] = ("bot", "agent", "api")
BUILTIN_TOPOLOGIES: tuple[str, ...] = ("seed", "legacy", "postgres")

JOURNAL_MODES = ("wal", "delete", "truncate", "persist")
SYNCHRONOUS = ("off", "normal", "full", "extra")
LAYOUTS = ("separate", "shared")
MODES = ("rw", "ro")
SETTING_KEYS = ("journal_mode", "synchronous", "busy_timeout_ms")

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_DEFAULTS: dict[str, Any] = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout_ms": 5000,
}


@dataclass(frozen=True)
class DatabaseSpec:
    """One logical database: its file (relative to the data directory) and connection settings."""

    name: str
    path: PurePosixPath
    journal_mode: str = "wal"
    synchronous: str = "normal"
    busy_timeout_ms: int = 5000
    # The tables this database holds (its place for `splitdb split`/`merge`); empty: not said.
    tables: tuple[str, ...] = ()


@dataclass(frozen=True)
class Topology:
    """A validated topology; construct it with `load_topology` or `parse_topology`."""

    name: str
    layout: Layout
    databases: Mapping[str, DatabaseSpec]
    grants: Mapping[str, Mapping[str, Mode]]
    status: PurePosixPath
    source: str = field(default="<mapping>", compare=False)
    enforcement: Enforcement = "process"
    # On "postgres" the databases' paths and journal settings are not used (the server's are).
    backend: Backend = "sqlite"

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.grants)

    def mode(self, role: str, database: str) -> Mode | None:
        """The role's access to the database: 'rw', 'ro', or None for no access at all."""
        self._check_role(role)
        self._check_database(database)
        return self.grants[role].get(database)

    def writers(self, database: str) -> tuple[str, ...]:
        """Roles granted 'rw' on the database, in declaration order."""
        self._check_database(database)
        return tuple(r for r, g in self.grants.items() if g.get(database) == "rw")

    def owned_by(self, role: str) -> tuple[str, ...]:
        """Databases the role may write."""
        self._check_role(role)
        return tuple(db for db, mode in self.grants[role].items() if mode == "rw")

    def file_of(self, database: str, data_dir: Path) -> Path:
        """The database's file inside `data_dir`."""
        self._check_database(database)
        return data_dir / self.databases[database].path

    def with_settings(self, **settings: Any) -> Topology:
        """A copy with connection settings (journal_mode, synchronous, busy_timeout_ms) overridden
        on every database, validated like a file."""
        raw = self.to_mapping()
        for db in raw["databases"].values():
            db.update(settings)
        return parse_topology(raw, source=f"{self.source} with {settings}", roles=None)

    def to_mapping(self) -> dict[str, Any]:
        """A plain mapping that `parse_topology` turns back into an equal topology."""
        return {
            "name": self.name,
            "layout": self.layout,
            "status": str(self.status),
            **({"enforcement": self.enforcement} if self.enforcement != "process" else {}),
            **({"backend": self.backend} if self.backend != "sqlite" else {}),
            "databases": {
                n: {
                    "path": str(d.path),
                    "journal_mode": d.journal_mode,
                    "synchronous": d.synchronous,
                    "busy_timeout_ms": d.busy_timeout_ms,
                    **({"tables": list(d.tables)} if d.tables else {}),
                }
                for n, d in self.databases.items()
            },
            "roles": {r: dict(g) for r, g in self.grants.items()},
        }

    def to_toml(self) -> str:
        """The topology as a TOML document that `load_topology` reads back as an equal one."""
        raw = self.to_mapping()
        top = ("name", "layout", "status", "enforcement", "backend")
        lines = [f"{k} = {_toml_value(raw[k])}" for k in top if k in raw]
        for name, spec in raw["databases"].items():
            lines += ["", f"[databases.{name}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in spec.items()]
        for role, grants in raw["roles"].items():
            lines += ["", f"[roles.{role}]"]
            lines += [f"{db} = {_toml_value(mode)}" for db, mode in grants.items()]
        return "\n".join(lines) + "\n"

    def _check_role(self, role: str) -> None:
        if role not in self.grants:
            raise SplitdbError(
                f"unknown role {role!r} in topology {self.name!r}; "
                f"its roles are: {', '.join(self.grants)}"
            )

    def _check_database(self, database: str) -> None:
        if database not in self.databases:
            raise SplitdbError(
                f"unknown database {database!r} in topology {self.name!r}; "
                f"its databases are: {', '.join(self.databases)}"
            )


def load_topology(
    name_or_path: str | Path, *, roles: Collection[str] | None = REFERENCE_ROLES
) -> Topology:
    """Load a built-in topology by name ('seed', 'legacy', 'postgres') or a TOML file by path.

    Raises TopologyError listing every problem, each as 'field.path: what is wrong; how to fix'.
    """
    text: str
    source: str
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_TOPOLOGIES:
        source = f"builtin:{name_or_path}"
        text = (
            resources.files("reference")
            .joinpath("topologies", f"{name_or_path}.toml")
            .read_text(encoding="utf-8")
        )
    else:
        path = Path(name_or_path)
        source = str(path)
        if str(name_or_path) == "":
            raise TopologyError("''", ["empty name; give a TOML file or a built-in name"])
        try:
            is_dir, is_file = path.is_dir(), path.is_file()
        except (OSError, ValueError) as exc:
            # A name the file system cannot even look up (too long, a NUL byte).
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise TopologyError(
                source[:60] + ("..." if len(source) > 60 else ""),
                [f"cannot be looked up as a file ({why}); give a TOML file or a built-in name"],
            ) from None
        if is_dir:
            raise TopologyError(source, ["a directory, not a file; give a topology TOML file"])
        if not is_file:
            raise TopologyError(
                source,
                [
                    f"file not found; give a TOML file or a built-in name "
                    f"({', '.join(BUILTIN_TOPOLOGIES)})"
                ],
            )
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise TopologyError(source, ["not a text file; give a topology TOML file"]) from None
        except OSError as exc:
            raise TopologyError(source, [f"cannot be read ({exc.strerror})"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(source, [f"not valid TOML: {exc}"]) from None
    except RecursionError:
        # tomllib recurses into nested arrays and tables: thousands deep is no topology.
        raise TopologyError(
            source, ["not valid TOML: arrays or tables nested too deeply to read; flatten them"]
        ) from None
    return parse_topology(raw, source=source, roles=roles)


def parse_topology(
    raw: Mapping[str, Any],
    *,
    source: str = "<mapping>",
    roles: Collection[str] | None = REFERENCE_ROLES,
) -> Topology:
    """Validate a mapping (a parsed TOML document) into a Topology.

    `roles` is the set of roles the caller runs; None accepts any well-formed role name.
    """
    problems: list[str] = []
    if not isinstance(raw, Mapping):
        raise TopologyError(source, [f"<root>: expected a table, got {type(raw).__name__}"])

    allowed_top = {
        "name",
        "layout",
        "status",
        "enforcement",
        "backend",
        "defaults",
        "databases",
        "roles",
    }
    for key in raw:
        if key not in allowed_top:
            problems.append(
                f"{_key(key)}: unknown key; allowed top-level keys are "
                f"{', '.join(sorted(allowed_top))}"
            )

    name = raw.get("name", "custom")
    if not isinstance(name, str) or not name:
        problems.append(f"name: expected a non-empty string, got {name!r}")
        name = "custom"

    layout = raw.get("layout", "separate")
    if layout not in LAYOUTS:
        problems.append(
            f"layout: expected one of {', '.join(LAYOUTS)}, got {layout!r}; 'separate' gives each "
            "database its own file and one writer, 'shared' lets files and writers be shared"
        )
        layout = "separate"

    status = _relative_path(raw.get("status", "shared_memory.json"), "status", problems)

    defaults = dict(_DEFAULTS)
    raw_defaults = raw.get("defaults", {})
    if not isinstance(raw_defaults, Mapping):
        problems.append(f"defaults: expected a table, got {type(raw_defaults).__name__}")
    else:
        for key in raw_defaults:
            if key not in SETTING_KEYS:
                problems.append(
                    f"defaults.{_key(key)}: unknown key; allowed: {', '.join(SETTING_KEYS)}"
                )
        defaults.update(_settings(raw_defaults, "defaults", problems))

    databases: dict[str, DatabaseSpec] = {}
    raw_dbs = raw.get("databases")
    if not isinstance(raw_dbs, Mapping) or not raw_dbs:
        problems.append(
            "databases: expected a non-empty table of [databases.NAME] sections with a 'path'"
        )
        raw_dbs = {}
    for db_name, spec in raw_dbs.items():
        where = f"databases.{_key(db_name)}"
        if not isinstance(db_name, str) or not _NAME.fullmatch(db_name):
            problems.append(f"{where}: database names must match {_NAME.pattern}")
            continue
        if not isinstance(spec, Mapping):
            problems.append(f"{where}: expected a table with 'path', got {type(spec).__name__}")
            continue
        for key in spec:
            if key not in ("path", "tables") and key not in SETTING_KEYS:
                problems.append(
                    f"{where}.{_key(key)}: unknown key; allowed: path, tables, "
                    f"{', '.join(SETTING_KEYS)}"
                )
        tables = _tables(spec.get("tables", []), f"{where}.tables", problems)
        if "path" not in spec:
            problems.append(f"{where}.path: missing; give a file name such as '{db_name}.db'")
            continue
        path = _relative_path(spec["path"], f"{where}.path", problems)
        settings = {**defaults, **_settings(spec, where, problems)}
        if path is not None:
            databases[db_name] = DatabaseSpec(name=db_name, path=path, tables=tables, **settings)

    grants: dict[str, dict[str, Mode]] = {}
    raw_roles = raw.get("roles")
    if not isinstance(raw_roles, Mapping) or not raw_roles:
        problems.append(
            "roles: expected a non-empty table of [roles.NAME] sections "
            "mapping database -> 'rw' or 'ro'"
        )
        raw_roles = {}
    for role, table in raw_roles.items():
        where = f"roles.{_key(role)}"
        if not isinstance(role, str) or not _NAME.fullmatch(role):
            problems.append(f"{where}: role names must match {_NAME.pattern}")
            continue
        if roles is not None and role not in roles:
            problems.append(
                f"{where}: unknown role; the known roles are {', '.join(sorted(roles))}"
            )
            continue
        if not isinstance(table, Mapping):
            problems.append(
                f"{where}: expected a table mapping database -> 'rw' or 'ro', "
                f"got {type(table).__name__}"
            )
            continue
        grants[role] = {}
        for db_name, mode in table.items():
            if db_name not in raw_dbs:
                problems.append(
                    f"{where}.{_key(db_name)}: unknown database; declared databases are "
                    f"{', '.join(map(_key, raw_dbs)) or 'none'}"
                )
            elif mode not in MODES:
                problems.append(
                    f"{where}.{db_name}: expected 'rw' (owner) or 'ro' (reader), got {mode!r}"
                )
            else:
                grants[role][db_name] = mode
    if roles is not None:
        for role in roles:
            if role not in raw_roles:
                problems.append(
                    f"roles.{role}: missing; every topology must say what role {role!r} may access"
                )

    for db_name in databases:
        writers = [r for r, g in grants.items() if g.get(db_name) == "rw"]
        if not writers:
            problems.append(
                f"databases.{db_name}: no role writes it; grant 'rw' to exactly one role "
                f'(e.g. roles.<owner>.{db_name} = "rw")'
            )
        elif layout == "separate" and len(writers) > 1:
            problems.append(
                f"databases.{db_name}: {len(writers)} writers ({', '.join(writers)}) in a "
                "separate layout; keep 'rw' for one role and make the others 'ro', "
                'or set layout = "shared"'
            )

    if layout == "separate":
        by_path: dict[PurePosixPath, list[str]] = {}
        for db in databases.values():
            by_path.setdefault(db.path, []).append(db.name)
        if status is not None:
            by_path.setdefault(status, []).append("status")
        for path, names in by_path.items():
            if len(names) > 1:
                problems.append(
                    f"databases.{names[1]}.path: {path} is also used by {names[0]}; a separate "
                    'layout needs one file per database (or set layout = "shared")'
                )

    placed: dict[str, str] = {}
    for db in databases.values():
        for table in db.tables:
            if table in placed:
                problems.append(
                    f"databases.{db.name}.tables: {table!r} is also placed in "
                    f"databases.{placed[table]}.tables; list each table in one database"
                )
            placed.setdefault(table, db.name)

    enforcement = raw.get("enforcement", "process")
    if enforcement not in ENFORCEMENTS:
        problems.append(
            f"enforcement: expected 'process' (the access manager in each process) or 'os' "
            f"(also a Unix user per role, each file its writer's), got {enforcement!r}"
        )
    elif enforcement == "os":
        problems += _os_enforcement_problems(layout, status, grants)

    backend = raw.get("backend", "sqlite")
    if backend not in BACKENDS:
        problems.append(
            f"backend: expected 'sqlite' (a file per database in the data directory) or "
            f"'postgres' (a schema per database on a server, SPLITDB_PG_CONNINFO per process), "
            f"got {backend!r}"
        )
        backend = "sqlite"
    elif backend == "postgres" and enforcement == "os":
        problems.append(
            'enforcement: "os" gives each role its own files; on backend = "postgres" the '
            'server\'s grants enforce the matrix: use enforcement = "process" (the default)'
        )

    if problems:
        raise TopologyError(source, problems)
    assert status is not None
    return Topology(
        name=name,
        layout=layout,
        databases=databases,
        grants=grants,
        status=status,
        source=source,
        enforcement=enforcement,
        backend=backend,
    )


def _os_enforcement_problems(
    layout: str, status: PurePosixPath | None, grants: Mapping[str, Mapping[str, Mode]]
) -> list[str]:
    problems = []
    if layout != "separate":
        problems.append(
            'enforcement: "os" gives each file one writer (its owner); a shared layout has '
            'several: use layout = "separate" or enforcement = "process"'
        )
    if status is not None and len(status.parts) < 2:
        problems.append(
            f"status: {status} would sit among the database files, which no role may create or "
            'replace under enforcement = "os"; give it a directory of its own, such as '
            f'"status/{status}"'
        )
    for role in grants:
        if len(role) > OS_ROLE_MAX:
            problems.append(
                f'roles.{role}: under enforcement = "os" a role is the Unix user '
                f"splitdb-{role}, which must fit 32 characters: use at most {OS_ROLE_MAX}"
            )
    return problems


_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _key(key: object) -> str:
    """A key as TOML writes it: bare when it can be, else quoted (JSON's escapes are TOML's),
    so an error naming it stays on one line whatever it holds (a newline, a dot, a space)."""
    text = str(key)
    return text if _BARE_KEY.fullmatch(text) else json.dumps(text)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _tables(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    """A database's `tables`: a list of distinct, non-empty table names."""
    if not isinstance(value, list) or not all(isinstance(t, str) and t for t in value):
        problems.append(f"{where}: expected a list of table names, got {value!r}")
        return ()
    twice = sorted({t for t in value if value.count(t) > 1})
    if twice:
        problems.append(f"{where}: {', '.join(map(repr, twice))} listed twice; list it once")
    return tuple(dict.fromkeys(value))


def _relative_path(value: Any, where: str, problems: list[str]) -> PurePosixPath | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}: expected a file name (string), got {value!r}")
        return None
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or value.startswith("~"):
        problems.append(
            f"{where}: {value!r} escapes the data directory; use a path relative to it "
            "without '..', such as 'ticks.db'"
        )
        return None
    if value == ":memory:" or value.startswith("file:") or any(c in value for c in "?#\0"):
        problems.append(
            f"{where}: {value!r} is not a plain file name; in-memory databases and URIs cannot "
            "be shared between processes, use a file name such as 'ticks.db'"
        )
        return None
    return path


def _settings(table: Mapping[str, Any], where: str, problems: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "journal_mode" in table:
        value = table["journal_mode"]
        if isinstance(value, str) and value.lower() in JOURNAL_MODES:
            out["journal_mode"] = value.lower()
        else:
            problems.append(
                f"{where}.journal_mode: expected one of {', '.join(JOURNAL_MODES)}, got {value!r}"
            )
    if "synchronous" in table:
        value = table["synchronous"]
        if isinstance(value, str) and value.lower() in SYNCHRONOUS:
            out["synchronous"] = value.lower()
        else:
            problems.append(
                f"{where}.synchronous: expected one of {', '.join(SYNCHRONOUS)}, got {value!r}"
            )
    if "busy_timeout_ms" in table:
        value = table["busy_timeout_ms"]
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 600_000:
            out["busy_timeout_ms"] = value
        else:
            problems.append(
                f"{where}.busy_timeout_ms: expected an integer from 0 to 600000 "
                f"(milliseconds), got {value!r}"
            )
    return out
