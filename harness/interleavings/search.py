"""`splitdb search`: let hypothesis find a minimal interleaving that makes a role fail with busy.

Each example is a list of (role, operation) pairs for the three roles; the operations are
`begin` (deferred), `begin_immediate`, `read_own` and `read_other` (a count of the role's own
table, or of another role's), `write_own` (one row into the role's own table), `commit` and
`rollback` on the connection to the role's own database, and `begin_other` / `commit_other`,
which open and end a read transaction on its connection to the other database (so a read of
another role's table can hold its snapshot or lock across steps). An example runs against real
connections opened through the access manager, one `harness.interleavings.actor.Actor` per role
holding a connection to its own database and one to the database it reads: exactly the connections
the replayed script's processes hold. The search runs them in
one process: locks belong to connections, not to processes, and one step at a time in one
process is the interleaving the coordinator enforces between processes.

busy_timeout is 0 during the search: with one step at a time nobody can release a lock while
another waits, so a wait could only end in the same busy error, later. The script written from
a find keeps busy_timeout_ms = 0 so its processes fail at the same step.

When an example fails with the target outcome, hypothesis shrinks it to a minimal one, which
is written as a step script whose expectations are the outcomes observed. The budget is bounded:
at most `max_examples` examples and `max_seconds` seconds until the first find (shrinking a find
is not cut short: it is what makes the script small).
"""

from __future__ import annotations

import contextlib
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from harness.interleavings.actor import Actor, Done
from harness.interleavings.script import (
    HOME_DATABASE,
    STEP,
    Script,
)
from harness.interleavings.targets import TARGETS
from reference.access import AccessManager
from reference.errors import SplitdbError
from reference.topology import REFERENCE_ROLES, Topology

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

OPERATIONS: tuple[str, ...] = (
    "begin",
    "begin_immediate",
    "read_own",
    "read_other",
    "write_own",
    "commit",
    "rollback",
    "begin_other",
    "commit_other",
)
# The database each role reads besides its own: the flows of the seed's design.
OTHER_DATABASE: dict[str, str] = {"bot": "analysis", "agent": "ticks", "api": "ticks"}
_TABLE: dict[str, str] = {"ticks": "ticks", "analysis": "watermarks", "logs": "request_log"}
# One new row per write. Keys come from the step index, and OR REPLACE keeps the examples that
# share one database from failing on each other's keys (a constraint error is not contention).
_WRITE_SQL: dict[str, str] = {
    "ticks": (
        "INSERT OR REPLACE INTO ticks (symbol, time_msc, seq, time, bid, ask) "
        "VALUES ('SEARCH', {i}, 0, 0, 1.1, 1.1002)"
    ),
    "analysis": (
        "INSERT OR REPLACE INTO watermarks (symbol, time_msc, seq, ticks_seen, updated_ns) "
        "VALUES ('SEARCH{i}', {i}, 0, 0, 0)"
    ),
    "logs": (
        "INSERT INTO request_log (ts_ns, method, path, status, duration_us, client) "
        "VALUES ({i}, 'GET', '/search', 200, 0, 'search')"
    ),
}

Op = tuple[str, str]


class _OutOfTime(Exception):
    """The search's time budget ran out before anything was found."""


class _Interrupted(Exception):
    """Ctrl-C during the search: ends `find` (as `_OutOfTime` does), then KeyboardInterrupt."""


@contextlib.contextmanager
def _sigint_as_flag() -> Iterator[list[bool]]:
    """For the duration: SIGINT sets the flag instead of raising KeyboardInterrupt.

    hypothesis runs code where a KeyboardInterrupt is lost (its gc callback: "Exception
    ignored in"), and a Ctrl-C that lands there was ignored and the search ran its whole budget.
    The flag is checked where the search calls back (`fails`), which ends it with an exception
    hypothesis passes on; the caller raises KeyboardInterrupt once the handler is back.
    """
    flag = [False]
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers belong to the main thread; nothing to install
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        flag[0] = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class SearchResult:
    """What a search did. `found` is the minimal interleaving, or None if the budget ran out."""

    topology: Topology
    target: str
    found: tuple[Op, ...] | None
    outcomes: tuple[Done, ...]
    examples: int
    calls: int
    seconds: float
    stopped_by: str | None

    def script(self, *, name: str, topology_ref: str, description: str = "") -> Script:
        """The find as a step script whose expectations are the outcomes observed."""
        if self.found is None:
            raise SplitdbError("the search found nothing to write")
        return script_of(
            self.found,
            self.outcomes,
            name=name,
            topology_ref=topology_ref,
            journal_mode=journal_mode_of(self.topology),
            description=description,
        )


def step_of(role: str, operation: str, index: int) -> dict[str, Any]:
    """The raw script step of one operation (without expectations)."""
    home = HOME_DATABASE[role]
    if operation in ("begin", "begin_immediate", "commit", "rollback"):
        return {"process": role, "do": operation, "db": home}
    if operation in ("begin_other", "commit_other"):
        return {"process": role, "do": operation.removesuffix("_other"), "db": OTHER_DATABASE[role]}
    if operation == "read_own":
        return {"process": role, "do": "sql", "db": home, "sql": _count(home)}
    if operation == "read_other":
        other = OTHER_DATABASE[role]
        return {"process": role, "do": "sql", "db": other, "sql": _count(other)}
    if operation == "write_own":
        return {"process": role, "do": "sql", "db": home, "sql": _WRITE_SQL[home].format(i=index)}
    raise ValueError(f"unknown operation {operation!r}; one of {', '.join(OPERATIONS)}")


def _count(db: str) -> str:
    return f"SELECT count(*) FROM {_TABLE[db]}"


def interleavings(max_steps: int) -> SearchStrategy[list[Op]]:
    """1 to `max_steps` (role, operation) pairs, each operation one that makes sense then.

    A role opens a transaction only when it has none and ends one only when it has one (on each
    of its two connections): errors such as COMMIT without a transaction are no contention and
    would only dilute the examples. hypothesis is imported here, not at the top: every other
    command starts without it.
    """
    from hypothesis import strategies as st

    @st.composite
    def draw_ops(draw: st.DrawFn) -> list[Op]:
        steps = draw(st.integers(min_value=1, max_value=max_steps))
        in_home = dict.fromkeys(REFERENCE_ROLES, False)
        in_other = dict.fromkeys(REFERENCE_ROLES, False)
        ops: list[Op] = []
        for _ in range(steps):
            role = draw(st.sampled_from(REFERENCE_ROLES))
            # Shrinking prefers earlier choices: BEGIN IMMEDIATE first, since a find that takes
            # the write lock in one step is shorter than a deferred BEGIN plus a write.
            choices = ["commit", "rollback"] if in_home[role] else ["begin_immediate", "begin"]
            choices += ["read_own", "read_other", "write_own"]
            choices.append("commit_other" if in_other[role] else "begin_other")
            operation = draw(st.sampled_from(choices))
            if operation in ("begin", "begin_immediate", "commit", "rollback"):
                in_home[role] = operation.startswith("begin")
            elif operation in ("begin_other", "commit_other"):
                in_other[role] = operation == "begin_other"
            ops.append((role, operation))
        return ops

    return draw_ops()


def _drop_steps(ops: Sequence[Op], fails: Callable[[list[Op]], bool]) -> tuple[Op, ...]:
    """Remove single steps while the rest still fails: what is left has no step to spare.

    hypothesis shrinks the draws, and a draw that depends on the state drawn before it does not
    always shrink away; this pass makes the result 1-minimal.
    """
    current = list(ops)
    i = 0
    while i < len(current):
        candidate = current[:i] + current[i + 1 :]
        if candidate and fails(candidate):
            current = candidate
        else:
            i += 1
    return tuple(current)


def execute(ops: Sequence[Op], topology: Topology, data_dir: Path) -> tuple[Done, ...]:
    """Run the operations in order on fresh connections (one Actor per role); their outcomes."""
    actors = {
        role: Actor(topology, data_dir, role, (HOME_DATABASE[role], OTHER_DATABASE[role]))
        for role in dict.fromkeys(role for role, _ in ops)
    }
    try:
        done = []
        for index, (role, operation) in enumerate(ops):
            raw = step_of(role, operation, index)
            done.append(actors[role].run(STEP.validate_python(raw), index, raw["db"]))
        return tuple(done)
    finally:
        for actor in actors.values():
            actor.close()


def search(
    topology: Topology,
    *,
    target: str = "contention",
    max_examples: int = 200,
    max_seconds: float = 20.0,
    max_steps: int = 10,
    seed: int = 0,
) -> SearchResult:
    """Look for an interleaving in which a step ends with an outcome of `target`; shrink it.

    Deterministic for a given seed. Runs in a temporary data directory with busy_timeout 0.
    """
    if target not in TARGETS:
        raise SplitdbError(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
    from hypothesis import HealthCheck, Phase, find, settings
    from hypothesis.errors import NoSuchExample

    wanted = TARGETS[target]
    topology = topology.with_settings(busy_timeout_ms=0)
    started = time.monotonic()
    deadline = started + max_seconds
    tally = {"examples": 0, "calls": 0, "found": 0, "timed_out": 0}
    with (
        tempfile.TemporaryDirectory(prefix="splitdb-search-") as tmp,
        _sigint_as_flag() as interrupted,
    ):
        data_dir = Path(tmp) / "data"
        AccessManager(topology, data_dir).initialize()

        def fails(ops: list[Op]) -> bool:
            if interrupted[0]:
                raise _Interrupted
            if not tally["found"]:
                if time.monotonic() > deadline:
                    # hypothesis has no time budget of its own: an exception ends the search.
                    tally["timed_out"] = 1
                    raise _OutOfTime
                tally["examples"] += 1
            tally["calls"] += 1
            hit = any(d.outcome in wanted for d in execute(ops, topology, data_dir))
            tally["found"] |= hit
            return hit

        budget = settings(
            max_examples=max_examples,
            deadline=None,
            database=None,
            phases=(Phase.generate, Phase.shrink),
            suppress_health_check=list(HealthCheck),
        )
        found: tuple[Op, ...] | None
        try:
            shrunk = find(
                interleavings(max_steps), fails, settings=budget, random=random.Random(seed)
            )
            found = _drop_steps(shrunk, fails)
        except (NoSuchExample, _OutOfTime):
            found = None
        except _Interrupted:
            found = None
        if not interrupted[0]:
            outcomes = execute(found, topology, data_dir) if found is not None else ()
    if interrupted[0]:
        # The handler is back (and the temporary directory gone): Ctrl-C as usual from here.
        raise KeyboardInterrupt
    stopped_by = None
    if found is None:
        stopped_by = "seconds" if tally["timed_out"] else "examples"
    return SearchResult(
        topology=topology,
        target=target,
        found=found,
        outcomes=outcomes,
        examples=tally["examples"],
        calls=tally["calls"],
        seconds=time.monotonic() - started,
        stopped_by=stopped_by,
    )


def script_of(
    ops: Sequence[Op],
    outcomes: Sequence[Done],
    *,
    name: str,
    topology_ref: str,
    journal_mode: str,
    description: str = "",
) -> Script:
    """A step script of the operations, each expecting the outcome (and code) it had."""
    steps = []
    for index, ((role, operation), done) in enumerate(zip(ops, outcomes, strict=True)):
        raw = step_of(role, operation, index)
        raw["expect"] = done.outcome
        if done.code is not None:
            raw["expect_code"] = done.code
        steps.append(raw)
    roles = dict.fromkeys(role for role, _ in ops)
    return Script.model_validate(
        {
            "name": name,
            "description": description,
            "topology": topology_ref,
            "settings": {"journal_mode": journal_mode, "busy_timeout_ms": 0},
            "processes": {role: {"role": role} for role in roles},
            "step": steps,
        }
    )


def journal_mode_of(topology: Topology) -> str:
    """The journal mode of the topology's databases (a search sets one for all)."""
    return next(iter(topology.databases.values())).journal_mode
