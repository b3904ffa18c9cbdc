"""Step scripts (`scenarios/interleavings/*.toml`): one exact interleaving of named processes.

A script names a topology (with optional setting overrides), declares named processes (each runs
as one role) and lists `[[step]]`s that a coordinator (`harness.interleavings.interleave`) runs
strictly in order, each by one named process. Each step may say what it expects: an outcome
(`expect`), an SQLite error code, a duration range, a row count, a value. The format, with an
example, is in docs/interleavings.md.

`load_script` / `parse_script` validate a file once into a `ScriptFile`; a bad one raises
ScriptError with one line per problem, each naming the field path (`step[3].expect: ...`) and the
fix. `dump_script` writes a script back as TOML (the search writes what it found this way).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from harness.errors import ScriptError
from harness.runs.scenario import TopologySettings
from harness.tomlfile import key_text, read_toml
from reference.errors import TopologyError
from reference.topology import BUILTIN_TOPOLOGIES, Topology, load_topology

OUTCOMES: tuple[str, ...] = (
    "ok",
    "busy",
    "busy_snapshot",
    "locked",
    "denied",
    "error",
    "exited",
    "timeout",
)
Expected = Literal[
    "ok", "busy", "busy_snapshot", "locked", "denied", "error", "exited", "timeout", "any"
]
CheckpointState = Literal["complete", "partial", "busy"]
TxnAction = Literal["begin", "begin_immediate", "begin_exclusive", "commit", "rollback"]

# The database a role's steps use when neither the step nor the process names one: the role's
# own database in the seed's design (docs/design.md, "The system under test").
HOME_DATABASE: dict[str, str] = {"bot": "ticks", "agent": "analysis", "api": "logs"}

_NAME = r"^[a-z][a-z0-9_-]{0,31}$"
Name = Annotated[str, Field(pattern=_NAME)]
Label = Annotated[str, Field(min_length=1, max_length=64)]
Scalar = bool | int | float | str
Timeout = Annotated[float, Field(gt=0, le=600)]
Ms = Annotated[float, Field(ge=0)]


# Strict: a TOML file has types, so `duration = true` or `"10"` is a mistake to name, not a
# number to guess; nan and inf are no setting (a fault at inf never comes, a limit of inf never
# fails). Lists are read as the tuples the fields hold: those fields alone are not strict.
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class _Step(_Model):
    """Fields every step has: who runs it, how long to wait for it, what outcome to expect."""

    process: Name | None = None
    name: Label | None = None
    note: str = ""
    background: bool = False
    timeout: Timeout | None = None
    expect: Expected = "ok"
    expect_code: int | None = None
    expect_min_ms: Ms | None = None
    expect_max_ms: Ms | None = None


class ValueStep(_Step):
    """Steps that produce a value (and rows): expectations about them."""

    expect_rows: Annotated[int, Field(ge=0)] | None = None
    expect_value: Scalar | None = None
    expect_row: Annotated[tuple[Scalar, ...] | None, Field(strict=False)] = None
    expect_min: float | None = None
    expect_max: float | None = None
    expect_greater_than: Label | None = None
    expect_less_than: Label | None = None


class SqlStep(ValueStep):
    """One SQL statement on the process's connection to `db`; value: first column of row one."""

    do: Literal["sql"]
    db: Name | None = None
    sql: Annotated[str, Field(min_length=1)]


class TxnStep(_Step):
    """BEGIN [IMMEDIATE|EXCLUSIVE], COMMIT or ROLLBACK on the process's connection to `db`."""

    do: TxnAction
    db: Name | None = None


class CheckpointStep(ValueStep):
    """`PRAGMA wal_checkpoint(MODE)` on `db`; row (busy, log, checkpointed); value: checkpointed.

    `expect_checkpoint`: 'busy' (the busy flag is set), 'partial' (frames left in the WAL) or
    'complete' (every frame copied; also what a database not in WAL mode reports).
    """

    do: Literal["checkpoint"]
    db: Name | None = None
    mode: Literal["passive", "full", "restart", "truncate"] = "passive"
    expect_checkpoint: CheckpointState | None = None


class WalSizeStep(ValueStep):
    """Measure the size in bytes of `db`'s WAL file (0 when there is none)."""

    do: Literal["wal_size"]
    db: Name | None = None


class InsertTicksStep(ValueStep):
    """The bot's write path, `reference.tickstore.insert_ticks`, of `count` ticks; value: new."""

    do: Literal["insert_ticks"]
    count: Annotated[int, Field(ge=1, le=100_000)] = 10
    symbol: Annotated[str, Field(min_length=1, max_length=32)] = "EURUSD"


class AgentCycleStep(ValueStep):
    """One `reference.agent.run_cycle` (ticks -> bars, indicators); value: ticks folded."""

    do: Literal["agent_cycle"]
    max_ticks: Annotated[int, Field(ge=1, le=1_000_000)] = 50_000


class SleepStep(_Step):
    """Wait `seconds`: in the named process (it stays busy), or in the coordinator if none."""

    do: Literal["sleep"]
    seconds: Annotated[float, Field(ge=0, le=600)]


class JoinStep(_Step):
    """Wait for the process's background step to finish; that step's result is judged then."""

    do: Literal["join"]


class ExitStep(_Step):
    """The process exits at once with `code`, like a crash: nothing is rolled back or closed."""

    do: Literal["exit"]
    code: Annotated[int, Field(ge=0, le=255)] = 1
    expect: Expected = "exited"


Step = Annotated[
    SqlStep
    | TxnStep
    | CheckpointStep
    | WalSizeStep
    | InsertTicksStep
    | AgentCycleStep
    | SleepStep
    | JoinStep
    | ExitStep,
    Field(discriminator="do"),
]
STEP: TypeAdapter[Step] = TypeAdapter(Step)
ACTIONS: tuple[str, ...] = (
    "sql",
    "begin",
    "begin_immediate",
    "begin_exclusive",
    "commit",
    "rollback",
    "checkpoint",
    "wal_size",
    "insert_ticks",
    "agent_cycle",
    "sleep",
    "join",
    "exit",
)
# Steps that use one database connection of their process.
_WITH_DB = (SqlStep, TxnStep, CheckpointStep, WalSizeStep)


class ProcessSpec(_Model):
    """A named process of a script: the role it connects as, and its default database."""

    role: Literal["bot", "agent", "api"]
    db: Name | None = None


class Script(_Model):
    """A validated script; load one with `load_script` or `parse_script`."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    topology: Annotated[str, Field(min_length=1)] = "seed"
    settings: TopologySettings = TopologySettings()
    timeout: Timeout = 30.0
    processes: Annotated[dict[Name, ProcessSpec], Field(min_length=1)]
    step: Annotated[tuple[Step, ...], Field(min_length=1, strict=False)]

    def database_of(self, step: Step) -> str | None:
        """The database a step uses: its own `db`, else its process's, else the role's own.

        `insert_ticks` uses ticks and `agent_cycle` writes analysis (and reads ticks).
        """
        if isinstance(step, InsertTicksStep):
            return "ticks"
        if isinstance(step, AgentCycleStep):
            return "analysis"
        if not isinstance(step, _WITH_DB) or step.process is None:
            return None
        if step.db is not None:
            return step.db
        spec = self.processes[step.process]
        return spec.db or HOME_DATABASE[spec.role]

    def databases_of(self, process: str) -> tuple[str, ...]:
        """Every database `process` uses in this script, in first-use order."""
        found: dict[str, None] = {}
        for step in self.step:
            if step.process != process:
                continue
            if isinstance(step, InsertTicksStep):
                found["ticks"] = None
            elif isinstance(step, AgentCycleStep):
                found["ticks"] = None
                found["analysis"] = None
            else:
                db = self.database_of(step)
                if db is not None:
                    found[db] = None
        return tuple(found)


@dataclass(frozen=True)
class ScriptFile:
    """A validated script with its resolved topology, where it came from and its text."""

    script: Script
    topology: Topology
    source: str
    text: str | None = None


# Keys only a scenario has: a file with them and no steps is run, not replayed.
_SCENARIO_KEYS = ("load", "fault", "expect", "duration", "repeat", "variant")


def load_script(path: Path) -> ScriptFile:
    """Read and validate a script file; its topology path is relative to the file."""
    path = Path(path)
    text, raw = read_toml(
        path, ScriptError, missing_hint="library scripts live in scenarios/interleavings/"
    )
    if "step" not in raw and any(key in raw for key in _SCENARIO_KEYS):
        raise ScriptError(
            str(path), [f"this is a scenario, not a step script; run it: splitdb run {path}"]
        )
    # The name defaults to the file's, made valid: a file name is not the user's typo to fix.
    raw.setdefault("name", re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem) or "script")
    return parse_script(raw, source=str(path), base_dir=path.parent, text=text)


def parse_script(
    raw: Any,
    *,
    source: str = "<mapping>",
    base_dir: Path | None = None,
    topology: Topology | None = None,
    text: str | None = None,
) -> ScriptFile:
    """Validate a parsed TOML mapping into a ScriptFile.

    `topology`, when given, is used as is instead of resolving `raw["topology"]` (a replay of a
    stored trace uses the topology it recorded: the file it named may be gone).
    """
    try:
        script = Script.model_validate(raw)
    except ValidationError as exc:
        raise ScriptError(source, _unique(_format(e) for e in _root_causes(exc))) from None
    if topology is None:
        topology = _resolve(script, base_dir or Path.cwd(), source)
    problems = _check(script, topology)
    if problems:
        raise ScriptError(source, problems)
    return ScriptFile(script=script, topology=topology, source=source, text=text)


def _resolve(script: Script, base_dir: Path, source: str) -> Topology:
    ref: str | Path = script.topology
    if script.topology not in BUILTIN_TOPOLOGIES:
        ref = base_dir / script.topology
    try:
        topology = load_topology(ref)
        overrides = {k: v for k, v in script.settings.model_dump().items() if v is not None}
        return topology.with_settings(**overrides) if overrides else topology
    except TopologyError as exc:
        raise ScriptError(source, [f"topology: {p}" for p in exc.problems]) from None
    except (OSError, ValueError) as exc:
        # A name the file system cannot even look up (a NUL byte, too long): same fix.
        raise ScriptError(
            source,
            [
                f"topology: cannot read {script.topology!r} ({exc}); give a built-in name "
                f"({', '.join(BUILTIN_TOPOLOGIES)}) or a TOML file relative to the script"
            ],
        ) from None


def _check(script: Script, topology: Topology) -> list[str]:
    """Problems a model cannot see alone: names, databases, background steps and their joins."""
    problems: list[str] = []
    databases = ", ".join(topology.databases)
    for name, spec in script.processes.items():
        if spec.db is not None and spec.db not in topology.databases:
            problems.append(
                f"processes.{name}.db: unknown database {spec.db!r}; "
                f"topology {topology.name!r} has {databases}"
            )
    pending: dict[str, int] = {}
    exited: dict[str, int] = {}
    labels: dict[str, int] = {}
    for i, step in enumerate(script.step):
        where = f"step[{i}]"
        proc = step.process
        if proc is None:
            if not isinstance(step, SleepStep):
                problems.append(
                    f"{where}.process: required for do = {step.do!r}; name one of "
                    f"{', '.join(script.processes)}"
                )
            elif step.background:
                problems.append(
                    f"{where}.background: a coordinator sleep cannot run in the background; "
                    "remove background or give the sleep a process"
                )
        elif proc not in script.processes:
            problems.append(
                f"{where}.process: unknown process {proc!r}; declare [processes.{proc}] with a "
                f"role, or use one of {', '.join(script.processes)}"
            )
            proc = None
        if proc is not None:
            joins_the_exit = isinstance(step, JoinStep) and pending.get(proc) == exited.get(proc)
            if proc in exited and not joins_the_exit:
                problems.append(
                    f"{where}.process: {proc!r} exited at step[{exited[proc]}]; "
                    "remove this step or the exit"
                )
            if isinstance(step, JoinStep):
                if proc not in pending:
                    problems.append(
                        f"{where}.do: 'join' but {proc!r} runs nothing in the background; "
                        "mark an earlier step of it background = true, or remove the join"
                    )
                pending.pop(proc, None)
            elif proc in pending:
                problems.append(
                    f"{where}.process: {proc!r} is still running step[{pending[proc]}] in the "
                    f'background; add {{do = "join", process = "{proc}"}} before this step'
                )
            if step.background:
                if isinstance(step, JoinStep):
                    problems.append(f"{where}.background: a join cannot run in the background")
                else:
                    pending[proc] = i
            if isinstance(step, ExitStep):
                exited[proc] = i
        db = script.database_of(step) if proc is not None else None
        own_db = getattr(step, "db", None) is not None
        if proc is not None and not own_db and script.processes[proc].db is not None:
            db = None  # the process's db: reported once, under processes.<name>.db
        if db is not None and db not in topology.databases:
            field = "db" if own_db else "process"
            problems.append(
                f"{where}.{field}: database {db!r} is not in topology {topology.name!r}; "
                f"use one of {databases}"
            )
        if step.name is not None:
            if step.name in labels:
                problems.append(
                    f"{where}.name: {step.name!r} already names step[{labels[step.name]}]; "
                    "give each step a different name"
                )
            labels.setdefault(step.name, i)
        if (
            step.expect_min_ms is not None
            and step.expect_max_ms is not None
            and step.expect_min_ms > step.expect_max_ms
        ):
            problems.append(
                f"{where}.expect_min_ms: {step.expect_min_ms:g} is above expect_max_ms "
                f"({step.expect_max_ms:g}); swap them"
            )
        if isinstance(step, ValueStep):
            problems.extend(_check_values(step, where, labels, i))
    for proc, i in pending.items():
        problems.append(
            f'step[{i}].background: never joined; add {{do = "join", process = "{proc}"}} after it'
        )
    return problems


def _check_values(step: ValueStep, where: str, labels: Mapping[str, int], i: int) -> list[str]:
    problems: list[str] = []
    low, high = step.expect_min, step.expect_max
    if low is not None and high is not None and low > high:
        problems.append(f"{where}.expect_min: {low:g} is above expect_max ({high:g}); swap them")
    for bound in (step.expect_min, step.expect_max):
        if bound is not None and not math.isfinite(bound):
            problems.append(f"{where}: expect_min and expect_max must be finite numbers")
    for key in ("expect_greater_than", "expect_less_than"):
        label = getattr(step, key)
        if label is None:
            continue
        if labels.get(label, i) >= i:
            problems.append(
                f"{where}.{key}: no earlier step is named {label!r}; set name = {label!r} on "
                "the step whose value this one is compared with"
            )
    return problems


def _root_causes(exc: ValidationError) -> list[Any]:
    """The errors, without a too-short complaint about a list whose items already failed."""
    errors = exc.errors()
    return [
        e
        for e in errors
        if e["type"] != "too_short"
        or not any(
            o is not e and tuple(o["loc"][: len(e["loc"])]) == tuple(e["loc"]) for o in errors
        )
    ]


def _unique(lines: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(lines))


_HINTS: dict[str, str] = {
    "extra_forbidden": "unknown key; remove it or check its spelling",
    "missing": "required; add it",
}
_ACTIONS_TEXT = ", ".join(ACTIONS)


def _format(error: Any) -> str:
    loc = error["loc"]
    parts: list[str] = []
    for i, part in enumerate(loc):
        # pydantic puts the union member's tag in the path (step[0].sql.expect): drop it.
        if i >= 2 and loc[i - 2] == "step" and isinstance(loc[i - 1], int) and part in ACTIONS:
            continue
        if part == "[key]":
            continue  # pydantic's marker for "the key itself": the path already ends with it
        if isinstance(part, int):
            parts.append(f"[{part}]")
            continue
        # A key that is not a plain name is quoted as TOML would write it: `processes."a b"`.
        text = key_text(part)
        parts.append(f".{text}" if parts else text)
    where = "".join(parts) or "<root>"
    kind = error["type"]
    if kind == "union_tag_invalid":
        return f"{where}.do: must be one of {_ACTIONS_TEXT} (got {error['ctx']['tag']!r})"
    if kind == "union_tag_not_found":
        return f"{where}.do: required; one of {_ACTIONS_TEXT}"
    message = _HINTS.get(kind, str(error["msg"]).removeprefix("Value error, "))
    value = error.get("input")
    if kind not in _HINTS and not isinstance(value, dict | list | tuple):
        message += f" (got {value!r})"
    if kind == "string_pattern_mismatch" and error["ctx"]["pattern"] == _NAME:
        message = (
            "names are 1 to 32 lowercase letters, digits, '_' or '-', starting with a letter "
            f"(got {value!r})"
        )
    if where.endswith(".expect") and kind == "literal_error":
        message = f"must be one of {', '.join(OUTCOMES)}, any (got {value!r})"
    return f"{where}: {message}"


def dump_script(script: Script, *, header: str = "") -> str:
    """The script as TOML that `load_script` reads back as an equal script.

    Fields left at their defaults are omitted unless they were set explicitly; `header` becomes
    leading comment lines.
    """
    data = script.model_dump(mode="json", exclude_unset=True)
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    if lines:
        lines.append("")
    for key in ("description", "topology", "timeout"):
        if key in data:
            lines.append(f"{key} = {_toml(data[key])}")
    settings = {k: v for k, v in data.get("settings", {}).items() if v is not None}
    if settings:
        lines += ["", "[settings]", *(f"{k} = {_toml(v)}" for k, v in settings.items())]
    for name, spec in data["processes"].items():
        lines += ["", f"[processes.{name}]", *(f"{k} = {_toml(v)}" for k, v in spec.items())]
    for step in data["step"]:
        lines += ["", "[[step]]"]
        first = ("process", "do", "db", "sql")
        ordered = [*first, *(k for k in step if k not in first)]
        lines += [f"{k} = {_toml(step[k])}" for k in ordered if k in step]
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # A JSON string is a valid TOML basic string: same quotes, same escapes.
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")
