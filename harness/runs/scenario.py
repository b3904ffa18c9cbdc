"""Scenario files (`scenarios/*.toml`) parsed into typed, validated models.

A scenario names a topology (with optional setting overrides), which reference processes run and
with what settings, `[[load]]` groups, `[[fault]]`s, `[expect]` thresholds, `duration`, `seed`
and `repeat`. A bad file raises ScenarioError with one line per problem, each naming the field
path and how to fix it.
"""

from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.errors import ScenarioError
from harness.runs.invariants import Invariant, database_problems, named
from harness.runs.process_spec import CommandProcess, placeholder_problems, ready_texts
from harness.tomlfile import key_text, read_toml
from reference.errors import SplitdbError, TopologyError
from reference.topology import BUILTIN_TOPOLOGIES, REFERENCE_ROLES, Topology, load_topology

ROLES = ("bot", "agent", "api")


# Strict: a TOML file has types, so `duration = true` or `"10"` is a mistake to name, not a
# number to guess; nan and inf are no setting (a fault at inf never comes, a limit of inf never
# fails). Lists are read as the tuples the fields hold: those fields alone are not strict.
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class BotSettings(_Model):
    """The tick bot's settings (see `python -m reference.bot --help`)."""

    enabled: bool = True
    symbols: Annotated[int, Field(ge=1, le=1000)] = 10
    rate: Annotated[float, Field(gt=0, le=1_000_000)] = 2000.0
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    max_delay_ms: Annotated[float, Field(ge=0, le=60_000)] = 50.0
    # Market seconds per wall second for the synthetic feed: 60 makes a 1m bar every second,
    # so short runs reach the indicators (they need 14 bars).
    speed: Annotated[float, Field(gt=0, le=3600)] = 1.0


class AgentSettings(_Model):
    """The analysis agent's settings."""

    enabled: bool = True
    interval: Annotated[float, Field(gt=0, le=60)] = 0.2


class ApiSettings(_Model):
    """The API server's settings."""

    enabled: bool = True


class Processes(_Model):
    bot: BotSettings = BotSettings()
    agent: AgentSettings = AgentSettings()
    api: ApiSettings = ApiSettings()


class TopologySettings(_Model):
    """Overrides applied to every database of the topology."""

    journal_mode: Literal["wal", "delete", "truncate", "persist"] | None = None
    synchronous: Literal["off", "normal", "full", "extra"] | None = None
    busy_timeout_ms: Annotated[int, Field(ge=0, le=600_000)] | None = None


class _LoadBase(_Model):
    # Names become file and status-board section names: keep them short and plain.
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,20}$")] | None = None
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    rate: Annotated[float, Field(ge=0, le=100_000)] = 0.0
    start: Annotated[float, Field(ge=0)] = 0.0
    duration: Annotated[float, Field(gt=0)] | None = None


class ReaderLoad(_LoadBase):
    """SQL readers on a database through the access manager, as `role`."""

    kind: Literal["reader"]
    role: Literal["bot", "agent", "api"] = "api"
    database: Literal["ticks", "analysis", "logs"] = "ticks"
    query: Literal["latest_tick", "tick_range", "count", "bars"] = "latest_tick"


class ApiLoad(_LoadBase):
    """HTTP clients of the API server."""

    kind: Literal["api"]
    endpoints: Annotated[
        tuple[Literal["health", "symbols", "latest", "ticks", "bars", "indicators"], ...],
        Field(strict=False),
    ] = ("latest", "ticks", "bars")


class WriterLoad(_LoadBase):
    """Extra writers: insert rows into a database as `role` (contention for shared layouts).

    role = "rotate": worker i writes as bot, agent, api in turn, each into its own database.
    """

    kind: Literal["writer"]
    role: Literal["bot", "agent", "api", "rotate"] = "api"
    database: Literal["ticks", "analysis", "logs"] = "logs"
    rows: Annotated[int, Field(ge=1, le=100_000)] = 10


class ViolatorLoad(_LoadBase):
    """Processes that try the forbidden-operation catalogue from `role` on `database`."""

    kind: Literal["violator"]
    role: Literal["bot", "agent", "api"] = "api"
    database: Literal["ticks", "analysis", "logs", "*"] = "*"


class BypassLoad(_LoadBase):
    """Processes that open the database files themselves with plain sqlite3 (no access manager)
    as `role`, and try the catalogue's writes on every database the role only reads: what a
    bug or a compromised process could do. Under enforcement = "os" each runs as the role's
    Unix user."""

    kind: Literal["bypass"]
    role: Literal["bot", "agent", "api"] = "api"


class StatusLoad(_LoadBase):
    """Processes racing on the status board, each updating its own section."""

    kind: Literal["status"]


class HttpLoad(_LoadBase):
    """HTTP GET clients of any server: each request goes to the next of `urls` in turn.

    URLs may use placeholders such as `{port.api}` (see harness/runs/process_spec.py). A
    response other than 2xx counts as an error.
    """

    kind: Literal["http"]
    urls: Annotated[
        tuple[Annotated[str, Field(pattern=r"^https?://")], ...], Field(min_length=1, strict=False)
    ]
    timeout: Annotated[float, Field(gt=0, le=120)] = 10.0


Load = Annotated[
    ReaderLoad | ApiLoad | WriterLoad | ViolatorLoad | BypassLoad | StatusLoad | HttpLoad,
    Field(discriminator="kind"),
]


class Fault(_Model):
    """Something done to a process during the run, at `at` seconds or after `after_acks` acks."""

    kind: Literal[
        "sigkill",
        "sigstop",
        "restart",
        "read_transaction",
        "write_transaction",
        "torn_wal",
        "status_garbage",
        "disk_full",
        "replace_file",
        "clock_jump",
        "terminate_backend",
        "kill_backend",
    ]
    # A process of the scenario (a reference role or a [processes.NAME] with a command); for
    # a *_transaction fault, the role whose connection holds the transaction.
    target: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")] = "bot"
    at: Annotated[float, Field(ge=0)] | None = None
    after_acks: Annotated[int, Field(ge=1)] | None = None
    hold: Annotated[float, Field(gt=0, le=600)] = 1.0
    restart: bool = True
    database: Literal["ticks", "analysis", "logs"] = "ticks"
    # clock_jump: how far the bot's clock steps, in seconds (negative: back).
    by: Annotated[float, Field(ge=-86_400, le=86_400, allow_inf_nan=False)] | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> Fault:
        if self.kind == "clock_jump" and not self.by:
            raise ValueError(
                "by: a clock_jump fault steps the bot's clock by this many seconds; give a "
                "non-zero number (negative: back)"
            )
        if self.kind.endswith("_transaction") and self.at is None:
            raise ValueError(
                f"at: a {self.kind} fault is started at a time; give 'at' (seconds into the run)"
            )
        if (self.at is None) == (self.after_acks is None):
            raise ValueError(
                "give exactly one trigger: 'at' (seconds into the run) or 'after_acks' "
                "(number of bot acks)"
            )
        return self


class Expect(_Model):
    """Thresholds; each one set becomes a check of the run."""

    max_busy_events: Annotated[int, Field(ge=0)] | None = None
    min_busy_events: Annotated[int, Field(ge=0)] | None = None
    min_ingest_ticks_per_s: Annotated[float, Field(ge=0)] | None = None
    max_commit_p99_ms: Annotated[float, Field(gt=0)] | None = None
    max_api_p99_ms: Annotated[float, Field(gt=0)] | None = None
    min_api_requests_per_s: Annotated[float, Field(ge=0)] | None = None
    max_analysis_lag_p99_s: Annotated[float, Field(gt=0)] | None = None
    max_reader_p99_ms: Annotated[float, Field(gt=0)] | None = None
    min_wal_bytes: Annotated[int, Field(ge=0)] | None = None
    max_load_errors: Annotated[int, Field(ge=0)] | None = None
    max_wal_bytes: Annotated[int, Field(ge=0)] | None = None
    # Stated against what the same run offered, so they hold on any machine that can run it.
    min_ingest_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    min_api_answered_fraction: Annotated[float, Field(gt=0, le=1)] | None = None
    min_rows_per_commit: Annotated[float, Field(gt=0)] | None = None
    # Open-loop API latency, from each request's scheduled send time.
    max_api_response_p99_ms: Annotated[float, Field(gt=0)] | None = None
    max_api_response_max_ms: Annotated[float, Field(gt=0)] | None = None
    # The longest time the API answered nothing while clients were sending: a stall.
    max_api_silence_ms: Annotated[float, Field(gt=0)] | None = None
    # Expectations that hold only on a machine fast enough for the scenario: when the run's
    # load generators could not keep their schedule, these become warnings, never failures.
    machine_dependent: list[str] = []

    @model_validator(mode="after")
    def _machine_dependent_names(self) -> Expect:
        for name in self.machine_dependent:
            if name == "machine_dependent" or name not in type(self).model_fields:
                raise ValueError(
                    f"machine_dependent: {name!r} is not an expectation; name fields of "
                    "[expect] such as 'min_ingest_ticks_per_s'"
                )
            if getattr(self, name) is None:
                raise ValueError(
                    f"machine_dependent: {name!r} is not set in [expect]; set it or remove it "
                    "from the list"
                )
        return self


class Migrate(_Model):
    """Start from a data set in another layout: the reference stack first runs for `duration`
    seconds on `from_topology` (a layout with one file, such as legacy), then that file is
    split into the scenario's topology (`splitdb split`, verified) and the run goes on there."""

    from_topology: str = "legacy"
    duration: Annotated[float, Field(gt=0, le=3600)] = 5.0


class Variant(_Model):
    """One arm of a paired run: the base scenario with these overrides, same load and machine."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_.-]{0,40}$")]
    topology: str | None = None
    settings: TopologySettings | None = None
    workers: dict[str, Annotated[int, Field(ge=1, le=64)]] = {}
    processes: dict[Literal["bot", "agent", "api"], dict[str, Any]] = {}
    expect: dict[str, Any] = {}


class Scenario(_Model):
    """A validated scenario; load with `load_scenario`."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    topology: str = "seed"
    settings: TopologySettings = TopologySettings()
    duration: Annotated[float, Field(gt=0, le=3600)] = 10.0
    # The bot's synthetic feed takes a seed >= 0; refused here, before any process starts.
    seed: Annotated[int, Field(ge=0)] = 1
    repeat: Annotated[int, Field(ge=1, le=100)] = 1
    processes: Processes = Processes()
    load: Annotated[tuple[Load, ...], Field(strict=False)] = ()
    fault: Annotated[tuple[Fault, ...], Field(strict=False)] = ()
    expect: Expect = Expect()
    variant: Annotated[tuple[Variant, ...], Field(strict=False)] = ()
    # The user's own correctness rules: SQL checked at the end (and every N seconds).
    invariant: Annotated[tuple[Invariant, ...], Field(strict=False)] = ()
    # Start from a data set made in another layout, split into this one before the run.
    migrate: Migrate | None = None
    # The user's own processes: the [processes.NAME] tables that have a `command`.
    commands: dict[Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,40}$")], CommandProcess] = {}

    @model_validator(mode="before")
    @classmethod
    def _split_processes(cls, raw: Any) -> Any:
        """[processes.NAME] tables with a `command` are the user's processes; the others are
        the reference processes' settings. With any user process, only the reference
        processes the scenario lists run."""
        if not isinstance(raw, dict) or not isinstance(raw.get("processes"), dict):
            return raw
        table = dict(raw["processes"])
        commands = {
            name: spec
            for name, spec in table.items()
            if name not in REFERENCE_ROLES or (isinstance(spec, dict) and "command" in spec)
        }
        if not commands:
            return raw
        reference = {n: s for n, s in table.items() if n not in commands}
        for role in REFERENCE_ROLES:
            if role not in reference:
                reference[role] = {"enabled": False}
        return {**raw, "processes": reference, "commands": commands}

    def reference_roles(self) -> tuple[str, ...]:
        """The reference processes this scenario runs, in start order."""
        return tuple(r for r in REFERENCE_ROLES if getattr(self.processes, r).enabled)

    def process_names(self) -> tuple[str, ...]:
        """Every process the scenario runs: reference ones first, then the user's."""
        return (*self.reference_roles(), *self.commands)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        names = [v.name for v in self.variant]
        if len(set(names)) != len(names):
            raise ValueError(f"variant: names must be unique, got {names}")
        groups = {g.name for g in self.load if g.name}
        for i, v in enumerate(self.variant):
            unknown = set(v.workers) - groups
            if unknown:
                raise ValueError(
                    f"variant[{i}].workers: unknown load groups {sorted(unknown)}; "
                    f"named groups are {sorted(groups) or 'none (give [[load]] a name)'}"
                )
        if self.processes.api.enabled is False and any(g.kind == "api" for g in self.load):
            raise ValueError(
                "processes.api.enabled: an 'api' load group needs the API; set it to true"
            )
        named(self.invariant)  # unique names (ValueError says which clash)
        if self.migrate is not None and self.commands:
            raise ValueError(
                "migrate: the data set is made by the reference stack; a scenario with your "
                "own [processes.NAME] commands cannot use it (split your file with `splitdb "
                "split` first)"
            )
        clash = set(self.commands) & set(self.reference_roles())
        if clash:
            raise ValueError(f"processes: {sorted(clash)} named twice")
        for i, fault in enumerate(self.fault):
            # A *_transaction fault opens its own connection as the target role.
            if not fault.kind.endswith("_transaction") and fault.target not in self.process_names():
                raise ValueError(
                    f"fault[{i}].target: {fault.target!r} is not a process of this scenario; "
                    f"its processes are {', '.join(self.process_names()) or 'none'}"
                )
        return self


def apply_variant(scenario: Scenario, variant: Variant) -> Scenario:
    """The scenario as this variant runs it (no variants of its own). Raises ScenarioError."""
    raw = scenario.model_dump(mode="json")
    raw["variant"] = ()
    raw["name"] = f"{scenario.name}.{variant.name}"
    if variant.topology is not None:
        raw["topology"] = variant.topology
    if variant.settings is not None:
        raw["settings"].update(variant.settings.model_dump(exclude_none=True))
    for group in raw["load"]:
        if group.get("name") in variant.workers:
            group["workers"] = variant.workers[group["name"]]
    for role, changes in variant.processes.items():
        raw["processes"][role].update(changes)
    raw["expect"].update(variant.expect)
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        index = scenario.variant.index(variant)
        raise ScenarioError(
            "<variant>", [f"variant[{index}]." + _format(e) for e in exc.errors()]
        ) from None


def variants_of(scenario: Scenario) -> list[tuple[str | None, Scenario]]:
    """(variant name, scenario to run) pairs: the scenario itself when it has no variants."""
    if not scenario.variant:
        return [(None, scenario)]
    return [(v.name, apply_variant(scenario, v)) for v in scenario.variant]


def resolve_topology(scenario: Scenario, base_dir: Path) -> Topology:
    """The scenario's topology with its settings applied; relative paths from `base_dir`."""
    ref: str | Path = scenario.topology
    if scenario.topology not in BUILTIN_TOPOLOGIES:
        try:
            ref = (base_dir / scenario.topology).resolve()
        except (OSError, ValueError):
            ref = base_dir / scenario.topology  # load_topology names what is wrong with it
    # A system of the user's own processes may name its roles as it likes; the reference
    # processes it runs need theirs.
    topology = load_topology(
        ref, roles=scenario.reference_roles() or None if scenario.commands else REFERENCE_ROLES
    )
    overrides = {k: v for k, v in scenario.settings.model_dump().items() if v is not None}
    return topology.with_settings(**overrides) if overrides else topology


_HINTS: dict[str, str] = {
    "extra_forbidden": "unknown key; remove it or check its spelling",
    "missing": "required; add it",
}


_FIELD_FIRST = re.compile(r"^[a-z_]+(\[\d+\])?(\.[a-z_]+)*: ")
_LOAD_KINDS = ("reader", "api", "writer", "violator", "status", "http")
_KINDS = "'reader', 'api', 'writer', 'violator', 'status' or 'http'"


def _format(error: Any) -> str:
    parts: list[str] = []
    for i, p in enumerate(error["loc"]):
        # pydantic puts the union member's tag in the path (load[0].reader.rate): drop it.
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif i > 1 and error["loc"][i - 2] == "load" and p in _LOAD_KINDS:
            continue
        else:
            parts.append(f".{key_text(p)}" if parts else key_text(p))
    loc = "".join(parts) or "<root>"
    # The user's processes are read from [processes.NAME] (see Scenario._split_processes).
    loc = re.sub(r"^commands\.", "processes.", loc)
    kind = error["type"]
    if kind == "union_tag_invalid":
        return f"{loc}.kind: must be {_KINDS} (got {error['ctx']['tag']!r})"
    if kind == "union_tag_not_found":
        return f"{loc}.kind: required; one of {_KINDS}"
    msg = str(_HINTS.get(kind, error["msg"].removeprefix("Value error, ")))
    if _FIELD_FIRST.match(msg):
        # A cross-field check that names its own field, relative to where it ran.
        return msg if loc == "<root>" else f"{loc}.{msg}"
    shown = "input" in error and not isinstance(error["input"], dict | list | tuple)
    if kind not in _HINTS and not kind.startswith("value_error") and shown:
        msg += f" (got {error['input']!r})"
    return f"{loc}: {msg}"


def parse_scenario(
    raw: Any, *, source: str = "<mapping>", base_dir: Path | None = None
) -> Scenario:
    """Validate a parsed TOML mapping into a Scenario (topology included)."""
    if isinstance(raw, dict) and "commands" in raw:
        raise ScenarioError(
            source,
            [
                "commands: unknown key; declare your processes as [processes.NAME] tables "
                "with a `command`"
            ],
        )
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(source, [_format(e) for e in exc.errors()]) from None
    try:
        for name, arm in variants_of(scenario):
            where = "topology" if name is None else f"variant[{name}].topology"
            try:
                topology = resolve_topology(arm, base_dir or Path.cwd())
            except TopologyError as exc:
                raise ScenarioError(source, [f"{where}: {p}" for p in exc.problems]) from None
            on_backend = backend_problems(arm, topology)
            if name is not None:
                on_backend = [f"variant[{name}].{p}" for p in on_backend]
            problems = _process_problems(arm, topology) + on_backend
            if problems:
                raise ScenarioError(source, problems)
    except ScenarioError as exc:
        raise ScenarioError(source, exc.problems) from None
    return scenario


# Faults on a process's server session: pg_terminate_backend, or SIGKILL of its backend (the
# server then restarts every backend, a crash and its recovery).
SERVER_FAULTS = ("terminate_backend", "kill_backend")
# What has no meaning on a server: faults on a SQLite file or a SQLite lock, raw file writers.
_SQLITE_ONLY_LOADS = {
    "writer": "extra writers write a table of their own in each SQLite file",
    "bypass": "a bypass opens the SQLite files without the access manager; on a server the "
    "grants hold for any client (`splitdb pg-attacks` tries them)",
}
_SQLITE_ONLY_FAULTS = {
    "read_transaction": "holds a SQLite snapshot",
    "write_transaction": "holds SQLite's write lock",
    "torn_wal": "tears a SQLite WAL file",
    "disk_full": "fills the file system under the SQLite files",
    "replace_file": "replaces a SQLite file",
}


def backend_problems(scenario: Scenario, topology: Topology) -> list[str]:
    """What of `scenario` the topology's backend cannot run, one line each naming the field.

    On PostgreSQL the reference processes run on the server; the faults and loads that act on
    SQLite files, the connection settings of SQLite, the user's own processes, invariants and
    migrations (SQL on files) do not (yet: docs/postgres.md). On SQLite a fault that ends a
    server backend has nothing to end.
    """
    problems: list[str] = []
    if topology.backend == "sqlite":
        for i, fault in enumerate(scenario.fault):
            if fault.kind in SERVER_FAULTS:
                problems.append(
                    f"fault[{i}].kind: {fault.kind!r} ends a process's PostgreSQL backend; "
                    'it needs a topology with backend = "postgres" (such as topology = '
                    '"postgres")'
                )
        return problems
    on = f'on backend = "{topology.backend}"'
    for i, group in enumerate(scenario.load):
        if group.kind in _SQLITE_ONLY_LOADS:
            problems.append(
                f"load[{i}].kind: {group.kind!r} has no meaning {on} "
                f"({_SQLITE_ONLY_LOADS[group.kind]}); remove it or run on a SQLite topology"
            )
    for i, fault in enumerate(scenario.fault):
        if fault.kind in _SQLITE_ONLY_FAULTS:
            problems.append(
                f"fault[{i}].kind: {fault.kind!r} {_SQLITE_ONLY_FAULTS[fault.kind]}: no "
                f"meaning {on}; use sigkill, sigstop, restart, terminate_backend or "
                "kill_backend"
            )
    if any(v is not None for v in scenario.settings.model_dump().values()):
        problems.append(
            f"settings: SQLite connection settings have no meaning {on} (the server's are "
            "its own); remove them"
        )
    if scenario.invariant:
        problems.append(
            f"invariant: invariants read the SQLite files; not yet {on}; remove them or run "
            "on a SQLite topology"
        )
    if scenario.migrate is not None:
        problems.append(
            f"migrate: a migration moves SQLite files; not {on}; remove it or run on a "
            "SQLite topology"
        )
    for name in scenario.commands:
        problems.append(
            f"processes.{name}: your own processes run on SQLite files; not yet {on} "
            "(the reference bot, agent and API do)"
        )
    return problems


def _process_problems(scenario: Scenario, topology: Topology) -> list[str]:
    """The user's processes against the topology: known roles, placeholders that resolve."""
    problems = database_problems(scenario.invariant, list(topology.databases))
    for name, spec in scenario.commands.items():
        where = f"processes.{name}"
        if spec.role not in topology.roles:
            problems.append(
                f"{where}.role: {spec.role!r} is not a role of topology {topology.name!r}; "
                f"its roles are {', '.join(topology.roles)}"
            )
        texts = [(f"{where}.command[{i}]", word) for i, word in enumerate(spec.command)]
        texts += [(f"{where}.env.{key}", value) for key, value in spec.env.items()]
        texts += [(f"{where}.cwd", spec.cwd)] if spec.cwd is not None else []
        texts += [(f"{where}.ready", text) for text in ready_texts(spec.ready)]
        for text_where, text in texts:
            problems += placeholder_problems(
                text, text_where, databases=topology.databases, processes=scenario.commands
            )
    for i, group in enumerate(scenario.load):
        if isinstance(group, HttpLoad):
            for j, url in enumerate(group.urls):
                problems += placeholder_problems(
                    url,
                    f"load[{i}].urls[{j}]",
                    databases=topology.databases,
                    processes=scenario.commands,
                    own_port=False,
                )
    return problems


# Keys only a step script has: a file with them is replayed, not run.
_SCRIPT_KEYS = ("step",)


def with_overrides(scenario: Scenario, overrides: dict[str, str]) -> Scenario:
    """The scenario with command-line values (as typed) for some fields; errors name the flag.

    Checked by the same model as the file, so `--duration -5` and `duration = -5` share limits.
    """
    values: dict[str, Any] = {}
    for field, text in overrides.items():
        kind = float if field == "duration" else int
        try:
            value = kind(text)
        except ValueError:
            raise SplitdbError(
                f"--{field} {text}: not a {'number' if kind is float else 'whole number'}"
            ) from None
        if kind is float and not math.isfinite(value):
            raise SplitdbError(f"--{field} {text}: must be a finite number")
        values[field] = value
    try:
        return Scenario.model_validate({**scenario.model_dump(), **values})
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])
        msg = str(error["msg"]).replace("Input should be", "must be")
        raise SplitdbError(f"--{field} {overrides[field]}: {msg}") from None


def is_topology(raw: Any) -> bool:
    """Whether a parsed TOML file is a topology (databases and roles), not a scenario."""
    return isinstance(raw, dict) and "databases" in raw and "roles" in raw


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    _, raw = read_toml(
        path, ScenarioError, missing_hint="list shipped ones with `splitdb scenarios`"
    )
    if not raw:
        raise ScenarioError(
            str(path),
            [
                "the file is empty; a scenario needs at least a [[load]] group or a duration "
                "(see scenarios/default.toml)"
            ],
        )
    if any(key in raw for key in _SCRIPT_KEYS):
        raise ScenarioError(
            str(path), [f"this is a step script, not a scenario; replay it: splitdb replay {path}"]
        )
    if is_topology(raw):
        raise ScenarioError(
            str(path),
            [
                f"this is a topology, not a scenario; name it in a scenario (topology = "
                f'"{path.name}") or check it with: splitdb topology {path}'
            ],
        )
    raw.setdefault("name", path.stem)
    return parse_scenario(raw, source=str(path), base_dir=path.parent)


def with_topology(scenario: Scenario, ref: str, *, source: str) -> Scenario:
    """The scenario on topology `ref` (`splitdb run --topology`): a built-in name, or a TOML
    file relative to the working directory. Checked as the file's own topology would be; an
    error names the flag. Variants that name a topology keep theirs."""
    given = ref
    if ref not in BUILTIN_TOPOLOGIES:
        with contextlib.suppress(OSError, ValueError):
            ref = str(Path(ref).resolve())
    try:
        load_topology(ref, roles=None)
    except TopologyError as exc:
        raise SplitdbError(f"--topology {given}: {'; '.join(exc.problems)}") from None
    raw = scenario.model_dump(mode="json")
    raw["topology"] = ref
    # The user's processes go back where a file declares them: [processes.NAME].
    raw["processes"].update(raw.pop("commands"))
    try:
        return parse_scenario(raw, source=source, base_dir=Path.cwd())
    except ScenarioError as exc:
        raise ScenarioError(f"{source} with --topology {given}", exc.problems) from None
