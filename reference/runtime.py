"""What every reference process shares: its arguments, stop signal, readiness and heartbeat.

A process is ready when its status-board section says `state = "ready"` with its pid (and an
event `ready` is in its log). SIGTERM or SIGINT sets `stopping`; the main loop finishes the open
transaction, flushes and exits 0. Once it has announced its stop (`finish`), further SIGTERM and
SIGINT are ignored, so a second signal cannot turn that clean exit into a kill. A process arms
its crash point (`SPLITDB_CRASH_AT`, see `reference.crashpoints`) when its runtime is made.

Settings: each connection's journal_mode, synchronous, busy_timeout and query_only, read back from
SQLite, go to the event log as `settings` events (`db`, `file`, `mode`, `when`, ...): for the
main thread's connections at `ready` and at each heartbeat when they changed, for every connection
after a transaction when they changed and when it is closed (`reference.access`).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import select
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from reference import crashpoints
from reference.access import AccessManager, ConnectionSettings
from reference.errors import PermissionViolation, SplitdbError, StatusBoardBusy
from reference.events import EventLog
from reference.status import StatusBoard
from reference.topology import Topology, load_topology

# How long a process waits for the status board's lock: a heartbeat gives up quickly (the next
# one comes soon), readiness and the final state wait longer because someone waits for them.
HEARTBEAT_TIMEOUT_S = 0.5
ANNOUNCE_TIMEOUT_S = 10.0


# A process's exit status for bad input (a usage error, a file it cannot use).
EXIT_BAD_INPUT = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line: what was wrong, and where the help is."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}; see --help\n")


# The longest heartbeat interval a process takes, in seconds.
MAX_HEARTBEAT_S = 3600.0


def number_in(
    low: float, high: float, *, integer: bool = False, above: bool = False, unit: str = ""
) -> Callable[[str], Any]:
    """An argparse `type` for a finite number in [low, high] (or (low, high] with `above`).

    nan, inf and anything out of range are refused with the range in the message.
    """
    unit_text = f" {unit}" if unit else ""
    lower = f"> {low:g}" if above else f">= {low:g}"
    kind = "an integer" if integer else "a number"

    def parse(text: str) -> Any:
        try:
            value: float = int(text) if integer else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {kind}; give {kind} {lower} and <= {high:g}{unit_text}"
            ) from None
        in_range = (value > low if above else value >= low) and value <= high
        if not (math.isfinite(value) and in_range):
            raise argparse.ArgumentTypeError(
                f"{text} is out of range; give {kind} {lower} and <= {high:g}{unit_text}"
            )
        return value

    return parse


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every reference process takes."""
    parser.add_argument(
        "--topology", default="seed", help="built-in name (seed, legacy) or TOML file"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="default: ./data")
    parser.add_argument(
        "--events", type=Path, default=None, help="append JSON-lines events to this file"
    )
    parser.add_argument(
        "--heartbeat",
        type=number_in(0, MAX_HEARTBEAT_S, above=True, unit="seconds"),
        default=1.0,
        help="seconds between status-board heartbeats (> 0, default 1)",
    )


def _why(exc: OSError) -> str:
    """An OSError's reason and the path it is about, without the errno prefix."""
    reason = exc.strerror or str(exc)
    return f"{reason} ({exc.filename})" if exc.filename else reason


def _check_data_dir(data_dir: Path) -> None:
    """Create the data directory; an unusable one (a file, under a file, forbidden) is one
    SplitdbError naming it."""
    if data_dir.exists() and not data_dir.is_dir():
        raise SplitdbError(
            f"--data-dir {data_dir} is not a directory; give a directory (it is created if missing)"
        )
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SplitdbError(
            f"--data-dir {data_dir}: cannot create it: {_why(exc)}; give a directory you can write"
        ) from exc


class Runtime:
    """One reference process's topology, access manager, event log, status board and stop flag."""

    def __init__(
        self,
        role: str,
        *,
        topology: Topology | str = "seed",
        data_dir: Path,
        events: Path | None = None,
        heartbeat: float = 1.0,
        install_signals: bool = True,
    ) -> None:
        # First, before any file is touched: a bad SPLITDB_CRASH_AT stops the process at start.
        self.crash_plan = crashpoints.arm(role)
        self.role = role
        self.topology = load_topology(topology) if isinstance(topology, str) else topology
        self.data_dir = Path(data_dir)
        _check_data_dir(self.data_dir)
        status_path = self.data_dir / self.topology.status
        if status_path.is_dir():
            raise SplitdbError(
                f"status file {status_path} is a directory; move it away or choose another "
                "--data-dir"
            )
        try:
            self.events = EventLog(events, role=role)
        except OSError as exc:
            raise SplitdbError(
                f"--events {events}: {_why(exc)}; give a file path in a directory you can write"
            ) from exc
        self.access = AccessManager(
            self.topology,
            self.data_dir,
            on_violation=self._violation,
            on_settings=self._settings,
            report_every_s=heartbeat,
        )
        self.status = StatusBoard(status_path)
        self.heartbeat_s = heartbeat
        self.started = time.monotonic()
        # A flag and a wake-up pipe rather than a threading.Event: a signal handler runs in the
        # main thread between two of its bytecodes, possibly while that thread holds a lock (the
        # Event's own, the event log's), and taking that lock again in the handler deadlocks
        # the process. Setting a flag and writing a byte take no lock.
        self._stopping = False
        self._signal: str | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._stop_requested: float | None = None
        self._last_beat = 0.0
        self.status_busy = 0
        self._handles_signals = install_signals
        if install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)

    @classmethod
    def from_args(cls, role: str, args: argparse.Namespace) -> Runtime:
        return cls(
            role,
            topology=args.topology,
            data_dir=args.data_dir,
            events=args.events,
            heartbeat=args.heartbeat,
        )

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def stop_requested(self) -> float | None:
        """When the stop was asked for (time.monotonic()), or None."""
        return self._stop_requested

    def stop(self) -> None:
        """Ask the main loop to stop; safe from any thread and from a signal handler."""
        if self._stop_requested is None:
            self._stop_requested = time.monotonic()
        self._stopping = True
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"\0")

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early on a stop signal; True if stopping."""
        if seconds > 0 and not self._stopping:
            # The pipe stays readable once written: every later wait returns at once.
            select.select([self._wake_r], [], [], seconds)
        return self._stopping

    def ready(self, **info: Any) -> None:
        """Announce readiness on the status board and in the event log."""
        self.access.observe("ready")
        self._publish(
            {"state": "ready", "pid": os.getpid(), "started_wall": time.time(), **info},
            timeout=ANNOUNCE_TIMEOUT_S,
        )
        self.events.emit("ready", **info)
        self.events.flush()

    def heartbeat_due(self) -> bool:
        """True when `heartbeat` would publish now (the interval has passed since the last)."""
        return time.monotonic() - self._last_beat >= self.heartbeat_s

    def heartbeat(self, *, force: bool = False, **counters: Any) -> None:
        """Publish counters on the status board, at most once per heartbeat interval.

        Without `force`, a call inside the interval publishes nothing, so a caller that gathers
        something costly (or something that must reach the board) asks `heartbeat_due` first.
        """
        now = time.monotonic()
        if not force and now - self._last_beat < self.heartbeat_s:
            return
        self._last_beat = now
        self.access.observe("heartbeat", changed_only=True)
        self._publish(
            {"heartbeat_wall": time.time(), "uptime_s": round(now - self.started, 3), **counters},
            timeout=HEARTBEAT_TIMEOUT_S,
        )

    def finish(self, **counters: Any) -> None:
        """Record a clean stop; call last, after the final commit.

        From here on SIGTERM and SIGINT are ignored: the process has nothing left to stop, and
        a second stop signal is common (a terminal's Ctrl-C reaches the whole process group,
        then the supervisor sends SIGTERM). While the interpreter shuts down it puts the
        default action back in place of a Python handler, so such a late signal would kill a
        process that stopped cleanly (exit status -15 instead of 0). An ignored signal stays
        ignored through that shutdown.
        """
        if self._handles_signals:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        self._publish(
            {"state": "stopped", "stopped_wall": time.time(), **counters},
            timeout=ANNOUNCE_TIMEOUT_S,
        )
        if self._signal is not None:
            # Recorded here, not in the handler, which must not take the event log's lock.
            self.events.emit("signal", signal=self._signal)
        self.events.emit("stopped", **counters)
        self.events.close()

    def _publish(self, changes: dict[str, Any], *, timeout: float) -> None:
        # The event carries the section's new _seq: the harness checks each role's sequence
        # only grows, which is how a lost update would show.
        try:
            section = self.status.update(self.role, changes, timeout=timeout)
        except StatusBoardBusy as exc:
            # A heartbeat is skipped, not waited for: the next one carries the same counters.
            self.status_busy += 1
            # Not an SQLite busy error: the status board's own lock, reported on its own.
            self.events.emit("status_busy", outcome="skipped", timeout_s=exc.timeout)
            return
        except OSError as exc:
            # A full disk (or a board directory gone): this update is skipped, said so; the
            # next heartbeat tries again. The process's work does not stop for its status.
            self.events.emit("status_error", outcome="skipped", error=exc.strerror or str(exc))
            return
        self.events.emit("status_update", seq=section["_seq"])

    def _violation(self, violation: PermissionViolation) -> None:
        self.events.emit(
            "violation",
            db=violation.database,
            operation=violation.operation,
            outcome="denied",
        )

    def _settings(self, settings: ConnectionSettings, when: str) -> None:
        self.events.emit("settings", when=when, **settings.event_fields())

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # No lock may be taken here (see __init__): no event, no Event.set, no logging.
        self._signal = signal.Signals(signum).name
        self.stop()
