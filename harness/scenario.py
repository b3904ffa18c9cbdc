"""Scenario files (`scenarios/*.toml`) parsed into typed, validated models.

A scenario names a topology (with optional setting overrides), which reference processes run and
with what settings, `[[load]]` groups, `[[fault]]`s, `[expect]` thresholds, `duration`, `seed`
and `repeat`. A bad file raises ScenarioError with one line per problem, each naming the field
path and how to fix it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reference.errors import ScenarioError, TopologyError
from reference.topology import BUILTIN_TOPOLOGIES, Topology, load_topology

ROLES = ("bot", "agent", "api")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BotSettings(_Model):
    """The tick bot's settings (see `python -m reference.bot --help`)."""

    enabled: bool = True
    symbols: Annotated[int, Field(ge=1, le=1000)] = 10
    rate: Annotated[float, Field(gt=0, le=1_000_000)] = 2000.0
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 1000
    max_delay_ms: Annotated[float, Field(ge=0, le=60_000)] = 50.0


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
    name: str | None = None
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
    endpoints: tuple[Literal["health", "symbols", "latest", "ticks", "bars", "indicators"], ...] = (
        "latest",
        "ticks",
        "bars",
    )


class WriterLoad(_LoadBase):
    """Extra writers: insert rows into a database as `role` (contention for shared layouts)."""

    kind: Literal["writer"]
    role: Literal["bot", "agent", "api"] = "api"
    database: Literal["ticks", "analysis", "logs"] = "logs"
    rows: Annotated[int, Field(ge=1, le=100_000)] = 10


class ViolatorLoad(_LoadBase):
    """Processes that try the forbidden-operation catalogue from `role` on `database`."""

    kind: Literal["violator"]
    role: Literal["bot", "agent", "api"] = "api"
    database: Literal["ticks", "analysis", "logs", "*"] = "*"


Load = Annotated[ReaderLoad | ApiLoad | WriterLoad | ViolatorLoad, Field(discriminator="kind")]


class Fault(_Model):
    """Something done to a process during the run, at `at` seconds or after `after_acks` acks."""

    kind: Literal["sigkill", "sigstop", "read_transaction"]
    target: Literal["bot", "agent", "api"] = "bot"
    at: Annotated[float, Field(ge=0)] | None = None
    after_acks: Annotated[int, Field(ge=1)] | None = None
    hold: Annotated[float, Field(gt=0, le=600)] = 1.0
    restart: bool = True
    database: Literal["ticks", "analysis", "logs"] = "ticks"

    @model_validator(mode="after")
    def _one_trigger(self) -> Fault:
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


class Scenario(_Model):
    """A validated scenario; load with `load_scenario`."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    topology: str = "seed"
    settings: TopologySettings = TopologySettings()
    duration: Annotated[float, Field(gt=0, le=3600)] = 10.0
    seed: int = 1
    repeat: Annotated[int, Field(ge=1, le=100)] = 1
    processes: Processes = Processes()
    load: tuple[Load, ...] = ()
    fault: tuple[Fault, ...] = ()
    expect: Expect = Expect()

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.processes.api.enabled is False and any(g.kind == "api" for g in self.load):
            raise ValueError("an 'api' load group needs processes.api.enabled = true")
        for fault in self.fault:
            if not getattr(self.processes, fault.target).enabled:
                raise ValueError(f"a fault targets {fault.target!r}, which is not enabled")
        return self


def resolve_topology(scenario: Scenario, base_dir: Path) -> Topology:
    """The scenario's topology with its settings applied; relative paths from `base_dir`."""
    ref: str | Path = scenario.topology
    if scenario.topology not in BUILTIN_TOPOLOGIES:
        ref = (base_dir / scenario.topology).resolve()
    topology = load_topology(ref)
    overrides = {k: v for k, v in scenario.settings.model_dump().items() if v is not None}
    return topology.with_settings(**overrides) if overrides else topology


_HINTS: dict[str, str] = {
    "extra_forbidden": "unknown key; remove it or check its spelling",
    "missing": "required; add it",
}


_KINDS = "'reader', 'api', 'writer' or 'violator'"


def _format(error: Any) -> str:
    parts: list[str] = []
    for i, p in enumerate(error["loc"]):
        # pydantic puts the union member's tag in the path (load[0].reader.rate): drop it.
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif (
            i > 1 and error["loc"][i - 2] == "load" and p in ("reader", "api", "writer", "violator")
        ):
            continue
        else:
            parts.append(f".{p}" if parts else str(p))
    loc = "".join(parts) or "<root>"
    kind = error["type"]
    if kind == "union_tag_invalid":
        return f"{loc}.kind: must be {_KINDS} (got {error['ctx']['tag']!r})"
    if kind == "union_tag_not_found":
        return f"{loc}.kind: required; one of {_KINDS}"
    msg = _HINTS.get(kind, error["msg"].removeprefix("Value error, "))
    shown = "input" in error and not isinstance(error["input"], dict | list | tuple)
    if kind not in _HINTS and not kind.startswith("value_error") and shown:
        msg += f" (got {error['input']!r})"
    return f"{loc}: {msg}"


def parse_scenario(
    raw: Any, *, source: str = "<mapping>", base_dir: Path | None = None
) -> Scenario:
    """Validate a parsed TOML mapping into a Scenario (topology included)."""
    try:
        scenario = Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(source, [_format(e) for e in exc.errors()]) from None
    try:
        resolve_topology(scenario, base_dir or Path.cwd())
    except TopologyError as exc:
        raise ScenarioError(source, [f"topology: {p}" for p in exc.problems]) from None
    return scenario


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    if not path.is_file():
        raise ScenarioError(
            str(path), ["file not found; list shipped ones with `splitdb scenarios`"]
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(path), [f"not valid TOML: {exc}"]) from None
    raw.setdefault("name", path.stem)
    return parse_scenario(raw, source=str(path), base_dir=path.parent)
