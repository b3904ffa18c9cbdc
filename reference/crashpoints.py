"""Crash points: named places on the write paths where a process can be told to die by SIGKILL.

A random `kill -9` finds a window between two commits only if it happens to land in it. A crash
point lands there every time, like the crash tests SQLite runs at each of its writes: set

    SPLITDB_CRASH_AT="[ROLE/]POINT[:N]"

in a reference process's environment and it sends itself SIGKILL the N-th time (default 1) it
reaches POINT. ROLE (bot, agent, api) arms only that role's process, so one variable can be
exported to a whole stack; without it every process that reaches POINT counts. Examples:
`txn.before_commit` (the first write transaction of any process dies before its COMMIT),
`bot/bot.after_ack:3` (the bot dies right after writing its 3rd ack event),
`agent/txn.after_commit:2`. Counts are per process incarnation: a restarted process counts from
zero, and is armed again only if its environment still says so.

The variable is read once, when this module is imported; a process arms itself at start
(`reference.runtime.Runtime` calls `arm`), so a bad value stops it with one line naming the
variable and the valid points (the processes exit 2). Unset, `reach` is one comparison.

Before dying the process writes one line to stderr (`splitdb: crash point ... SIGKILL`) and
nothing else: buffered events are lost and open transactions are left to SQLite's recovery, as
after any kill.

The points, in `POINTS`:

- `txn.begin`, `txn.before_commit`, `txn.after_commit`: in `reference.access.transaction()`,
  after BEGIN, after the block's writes just before COMMIT, and after COMMIT returns. Every write
  transaction of every process passes them (read transactions, `immediate=False`, do not), so
  work split over two transactions has a crash point between them.
- `bot.after_ack`: the bot, after its ack event for a committed batch is written and flushed.
- `agent.after_commit`: the agent, after a cycle's commit (bars, indicators and watermarks) and
  its `analysis_commit` event.
- `requestlog.after_commit`: the API's request-log writer, after a batch's commit and its
  `log_commit` event.
- `status.before_replace`, `status.after_replace`: the status board, in every atomic file write
  (the board and each section's last good copy), after the temp file is written and synced and
  before `os.replace`, and right after it.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from reference.errors import CrashPointError

ENV = "SPLITDB_CRASH_AT"
ROLES = ("bot", "agent", "api")
SYNTAX = "[ROLE/]POINT[:N]"


@dataclass(frozen=True)
class CrashPoint:
    """One named point: which roles' processes reach it, and where it is."""

    name: str
    roles: tuple[str, ...]
    where: str


POINTS: dict[str, CrashPoint] = {
    p.name: p
    for p in (
        CrashPoint("txn.begin", ROLES, "a write transaction, right after BEGIN"),
        CrashPoint(
            "txn.before_commit", ROLES, "a write transaction, after its writes, before COMMIT"
        ),
        CrashPoint("txn.after_commit", ROLES, "a write transaction, right after COMMIT returns"),
        CrashPoint("bot.after_ack", ("bot",), "the bot, after its ack event is written"),
        CrashPoint(
            "agent.after_commit", ("agent",), "the agent, after committing bars and watermarks"
        ),
        CrashPoint(
            "requestlog.after_commit", ("api",), "the API's request-log writer, after a batch"
        ),
        CrashPoint(
            "status.before_replace", ROLES, "the status board, temp file written, before replace"
        ),
        CrashPoint("status.after_replace", ROLES, "the status board, right after os.replace"),
    )
}


@dataclass(frozen=True)
class CrashPlan:
    """Die at the `hit`-th time `point` is reached, in a process of `role` (any role if None)."""

    point: str
    hit: int
    role: str | None

    def __str__(self) -> str:
        role = f"{self.role}/" if self.role else ""
        return f"{role}{self.point}:{self.hit}"


def parse(value: str) -> CrashPlan:
    """The plan a `SPLITDB_CRASH_AT` value asks for; CrashPointError (one line) if it is bad."""

    def bad(problem: str) -> CrashPointError:
        return CrashPointError(
            f"{ENV}={value!r}: {problem}; valid points: {', '.join(POINTS)} "
            f"(syntax {SYNTAX}, e.g. bot/txn.before_commit:3)"
        )

    text = value.strip()
    if not text:
        raise bad("the value is empty")
    role: str | None = None
    if "/" in text:
        role, text = text.split("/", 1)
        if role not in ROLES:
            raise bad(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
    name, _, count = text.partition(":")
    point = POINTS.get(name)
    if point is None:
        raise bad(f"unknown point {name!r}")
    if role is not None and role not in point.roles:
        raise bad(f"{role} never reaches {name} (reached by {', '.join(point.roles)})")
    hit = 1
    if count:
        if not count.isdigit() or int(count) < 1:
            raise bad(f"the hit count {count!r} must be an integer >= 1")
        hit = int(count)
    return CrashPlan(name, hit, role)


def _sigkill(plan: CrashPlan) -> NoReturn:
    # Straight to the file descriptor: nothing buffered in this process survives SIGKILL.
    os.write(2, f"splitdb: {_describe(plan)} ({ENV}={plan}): SIGKILL\n".encode())
    while True:  # SIGKILL to oneself lands before kill() returns; the loop is for the type
        os.kill(os.getpid(), signal.SIGKILL)


def _describe(plan: CrashPlan) -> str:
    n = plan.hit
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"crash point {plan.point} reached for the {n}{suffix} time"


class _Trap:
    """The armed plan and how often its point was reached; threads share it."""

    def __init__(self, plan: CrashPlan, action: Callable[[CrashPlan], None]) -> None:
        self.plan = plan
        self.point = plan.point
        self.reached = 0
        self.action = action
        self.lock = threading.Lock()

    def reach(self) -> None:
        with self.lock:
            self.reached += 1
            fire = self.reached == self.plan.hit
        if fire:
            self.action(self.plan)


_VALUE = os.environ.get(ENV)
_armed: _Trap | None = None


def arm(
    role: str,
    value: str | None = None,
    *,
    action: Callable[[CrashPlan], None] = _sigkill,
) -> CrashPlan | None:
    """Arm this process, as `role`, with `value` (default: SPLITDB_CRASH_AT as read at import).

    Returns the plan, or None when nothing is armed for `role` (unset, or another role's).
    Raises CrashPointError for a bad value. Call once at process start; `action` replaces the
    SIGKILL (tests observe a point with it instead of dying).
    """
    global _armed
    _armed = None
    if value is None:
        value = _VALUE
    if value is None:
        return None
    plan = parse(value)
    if plan.role is not None and plan.role != role:
        return None
    _armed = _Trap(plan, action)
    return plan


def disarm() -> None:
    """No crash point fires in this process any more."""
    global _armed
    _armed = None


def reach(point: str) -> None:
    """Pass the crash point `point` (a name in POINTS); dies here if this is the armed hit."""
    trap = _armed
    if trap is not None and trap.point == point:
        trap.reach()
