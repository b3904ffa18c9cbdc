"""A user's process in a scenario: `[processes.NAME]` with a `command`, run as given.

The harness runs the command as its own OS process (in its own process group, so a shell's
children stop with it), hands it its settings in environment variables, waits for its readiness
condition, and stops it with its stop signal and grace period. Strings in `command`, `env`,
`cwd`, the readiness condition and HTTP load URLs may use placeholders, expanded per repeat:

- `{python}`: the interpreter running splitdb; `{scenario_dir}`: the scenario file's directory;
- `{data_dir}`, `{run_dir}`: the repeat's data directory and its own directory;
- `{db.NAME}`: the file of database NAME of the topology;
- `{port}`: a free TCP port chosen for this process; `{port.NAME}`: the one of process NAME.

The environment a process gets (on top of the harness's own) is listed by `process_env`.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.runs.readiness import Readiness

_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?:\.([A-Za-z0-9_-]+))?\}")
_PLAIN = ("python", "scenario_dir", "data_dir", "run_dir", "port")
_QUALIFIED = ("db", "port")
# Readiness keys taken literally: a regex and a stream name.
_LITERAL_KEYS = ("line", "stream")


class CommandProcess(BaseModel):
    """One of the user's processes: its command line, role, readiness and stop rules."""

    # Strict, as the scenario's models (harness/runs/scenario.py says why).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    command: Annotated[tuple[str, ...], Field(min_length=1, strict=False)]
    role: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    env: dict[str, str] = {}
    cwd: str | None = None
    # The readiness condition as written: checked here with sample values in place of its
    # placeholders, built for real once they are known (`expand_ready`).
    ready: dict[str, Any] | None = None
    stop_signal: Literal["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"] = "SIGTERM"
    # Seconds between the stop signal and SIGKILL (recorded as an unclean stop).
    grace: Annotated[float, Field(gt=0, le=300)] = 5.0
    # What to do when the process ends while it should run: "no" (a failed `processes`
    # check), "on-failure" (start it again when it exits non-zero or is killed by a signal),
    # "always" (start it again whenever it ends); at most `max_restarts` times.
    restart: Literal["no", "on-failure", "always"] = "no"
    max_restarts: Annotated[int, Field(ge=0, le=100)] = 3
    # A process that finishes by itself (a one-shot import): exit code 0 is a clean end.
    oneshot: bool = False
    # Make the process's own sqlite3 report (harness/probe). None: on for Python commands.
    instrument: bool | None = None

    @field_validator("command")
    @classmethod
    def _non_empty_words(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value[0].strip():
            raise ValueError("the program (first word) is empty; give e.g. ['python', 'app.py']")
        return value

    @field_validator("ready")
    @classmethod
    def _valid_ready(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            sample = {
                k: _PLACEHOLDER.sub(_sample, v)
                if isinstance(v, str) and k not in _LITERAL_KEYS
                else v
                for k, v in value.items()
            }
            try:
                Readiness.model_validate(sample)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(str(p) for p in error["loc"])
                message = str(error["msg"]).removeprefix("Value error, ")
                raise ValueError(f"{where + ': ' if where else ''}{message}") from None
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise ValueError(f"{key!r} is not an environment variable name")
        return value

    @property
    def signal(self) -> signal.Signals:
        return signal.Signals[self.stop_signal]


def placeholders(text: str) -> list[tuple[str, str | None]]:
    """The placeholders of `text` as (name, qualifier) pairs, in order."""
    return [(m.group(1), m.group(2)) for m in _PLACEHOLDER.finditer(text)]


def placeholder_problems(
    text: str,
    where: str,
    *,
    databases: Mapping[str, object],
    processes: Mapping[str, object],
    own_port: bool = True,
) -> list[str]:
    """What is wrong with the placeholders of one string, each as 'where: problem; fix'.

    `own_port`: the string belongs to a process, so `{port}` (its own) means something.
    """
    problems = []
    for name, qualifier in placeholders(text):
        shown = "{" + name + (f".{qualifier}" if qualifier else "") + "}"
        if name == "port" and qualifier is None and not own_port:
            problems.append(
                f"{where}: {{port}} is a process's own port, and this is not a process; name "
                "the process: {port.NAME}"
            )
        elif (qualifier is None and name not in _PLAIN) or (qualifier and name not in _QUALIFIED):
            problems.append(
                f"{where}: unknown placeholder {shown}; known: {{python}}, {{scenario_dir}}, "
                "{data_dir}, {run_dir}, {db.NAME}, {port}, {port.NAME}"
            )
        elif name == "db" and qualifier not in databases:
            problems.append(
                f"{where}: {shown} names no database of the topology; its databases are "
                f"{', '.join(databases)}"
            )
        elif name == "port" and qualifier is not None and qualifier not in processes:
            problems.append(
                f"{where}: {shown} names no command process; they are "
                f"{', '.join(processes) or 'none'}"
            )
    return problems


def expand(text: str, values: Mapping[str, str]) -> str:
    """`text` with each placeholder replaced by `values['name']` or `values['name.qualifier']`.

    Placeholders were checked when the scenario was read, so a missing value is a bug here.
    """

    def one(match: re.Match[str]) -> str:
        key = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
        return values[key]

    return _PLACEHOLDER.sub(one, text)


def ready_texts(ready: Mapping[str, Any] | None) -> list[str]:
    """The strings of a readiness condition that may hold placeholders (not a `line` regex,
    whose braces are repetition counts)."""
    if ready is None:
        return []
    return [v for k, v in ready.items() if isinstance(v, str) and k not in _LITERAL_KEYS]


def expand_ready(ready: Mapping[str, Any] | None, values: Mapping[str, str]) -> Readiness | None:
    """The readiness condition with its placeholders expanded, as a checked `Readiness`."""
    if ready is None:
        return None
    return Readiness.model_validate(
        {
            key: expand(value, values)
            if isinstance(value, str) and key not in _LITERAL_KEYS
            else value
            for key, value in ready.items()
        }
    )


def _sample(match: re.Match[str]) -> str:
    """A stand-in for a placeholder while a condition is checked before the run: a port
    number for ports, a path for the rest."""
    return "8000" if match.group(1) == "port" else "/placeholder"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the OS's choice), for `{port}`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def is_python(command: Sequence[str], *, cwd: Path | None = None) -> bool:
    """Whether the command starts a Python interpreter: `python...` itself, or a script whose
    `#!` line names one (console scripts such as `datasette` or `sqlite-utils`)."""
    program = command[0]
    if Path(program).name.startswith("python"):
        return True
    found = shutil.which(program, path=os.environ.get("PATH"))
    if found is None and cwd is not None and (cwd / program).is_file():
        found = str(cwd / program)
    if found is None:
        return False
    try:
        with open(found, "rb") as handle:
            first = handle.readline(256)
    except OSError:
        return False
    return first.startswith(b"#!") and b"python" in first


def process_env(
    *,
    name: str,
    role: str,
    data_dir: Path,
    run_dir: Path,
    events: Path,
    topology: str | Path,
    database_files: Mapping[str, Path],
) -> dict[str, str]:
    """What the harness tells every process it starts about its run, reference processes
    included, in environment variables.

    SPLITDB_PROCESS, SPLITDB_ROLE, SPLITDB_DATA_DIR, SPLITDB_RUN_DIR, SPLITDB_TOPOLOGY (the
    topology's TOML file, or a built-in name), SPLITDB_EVENTS (a JSON-lines file the process may
    append its own events to, in the reference processes' format) and SPLITDB_DB_<NAME> (each
    database's file, NAME in capitals). A user's process also gets SPLITDB_PORT, the free port
    chosen for it.
    """
    env = {
        "SPLITDB_PROCESS": name,
        "SPLITDB_ROLE": role,
        "SPLITDB_DATA_DIR": str(data_dir),
        "SPLITDB_RUN_DIR": str(run_dir),
        "SPLITDB_TOPOLOGY": str(topology),
        "SPLITDB_EVENTS": str(events),
    }
    for database, path in database_files.items():
        env[f"SPLITDB_DB_{database.upper()}"] = str(path)
    return env
