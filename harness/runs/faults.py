"""The fault schedule of one repeat: every scheduled fault is applied or reported, never lost.

A fault is due at its time (`at`) or when the bot has acknowledged `after_acks` batches. It is
applied only to a target that is running and ready: a fault due while its target restarts
after an earlier kill, or sits in SIGSTOP, waits for it, and its record says how late it was
and why. So two faults never collapse into one, and a restart never delays another target's
fault (restarts are waited for here, between ticks, not inside one).

Nothing blocks: `tick()` is called from the run's loop every few milliseconds. After the load
ends the loop goes on (processes still running) while a fault is pending or a restart is under
way, up to `grace_s`; a fault still pending then is recorded as not applied, with the reason.
Faults played by a load worker (a transaction held open) are reported from that worker's
events by `hold_records`.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.atomic import write_atomically
from harness.errors import ProcessFailed
from harness.runs.scenario import Fault
from harness.runs.supervisor import Supervisor
from reference.errors import SplitdbError
from reference.events import Event
from reference.status import StatusBoard

# The file a clock_jump fault writes and the bot reads (SPLITDB_CLOCK_SKEW_FILE), in the repeat.
CLOCK_SKEW_FILE = "clock-skew"
# Faults played by a worker process holding a transaction open (scheduled at start, by time).
HOLD_FAULTS = ("read_transaction", "write_transaction")
# How long a restarted process has to become ready before the run is cut short.
RESTART_TIMEOUT_S = 30.0


@dataclass
class _Planned:
    index: int
    fault: Fault
    record: dict[str, Any]
    waiting_since: float | None = None
    reason: str = ""


@dataclass
class FaultSchedule:
    """Applies a repeat's signal faults (sigkill, sigstop, restart) on time, or as soon as
    possible."""

    supervisor: Supervisor
    faults: Sequence[Fault]
    t0: float
    acks: Callable[[], int]
    log: Callable[[str], None] = lambda _text: None
    # Called with "close" before a crash fault touches the files and "open" after: the WAL
    # keeper of OS enforcement holds them (harness/runs/os_identity.py).
    around_crash: Callable[[str], None] = lambda _when: None
    # On a PostgreSQL run: ends the server sessions of a role ("terminate" or "kill"), returns
    # what the fault's record says of it (the pids, how long the server took to recover).
    end_backends: Callable[[str, str], dict[str, Any]] | None = None
    records: list[dict[str, Any]] = field(default_factory=list)
    _pending: list[_Planned] = field(default_factory=list)
    # name -> (kill time, the kill's record) while the new process is not yet ready
    _restarting: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    _paused: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    # a ballast file filling the data directory's filesystem -> (until, the fault's record)
    _filled: dict[Path, tuple[float, dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for index, fault in enumerate(self.faults):
            if fault.kind in HOLD_FAULTS:
                continue
            record: dict[str, Any] = {
                "index": index,
                "kind": fault.kind,
                "target": fault.target,
                "scheduled_s": fault.at,
                "after_acks": fault.after_acks,
                "applied": False,
                "at_s": None,
            }
            self.records.append(record)
            self._pending.append(_Planned(index, fault, record))
        # Time faults in time order; a fault on a target that just took one waits for it.
        self._pending.sort(key=lambda p: (p.fault.at is None, p.fault.at or 0.0, p.index))

    @property
    def busy(self) -> bool:
        """A fault is still pending, a target is restarting or paused."""
        return bool(self._pending or self._restarting or self._paused or self._filled)

    def tick(self, now: float) -> None:
        """Apply what is due and possible now; resume paused targets; follow restarts."""
        self._follow_restarts(now)
        for name, (when, record) in list(self._paused.items()):
            if now >= when:
                self.supervisor.resume(name)
                del self._paused[name]
                record["resumed_s"] = round(time.time() - self.t0, 3)
        for ballast, (until, record) in list(self._filled.items()):
            if now >= until:
                ballast.unlink(missing_ok=True)
                del self._filled[ballast]
                record["freed_s"] = round(time.time() - self.t0, 3)
        acks: int | None = None
        for planned in list(self._pending):
            fault = planned.fault
            if fault.at is not None:
                due = now >= self.t0 + fault.at
            else:
                acks = self.acks() if acks is None else acks
                due = acks >= (fault.after_acks or 0)
            if not due:
                continue
            blocker = self._blocker(fault.target)
            if blocker:
                if planned.waiting_since is None:
                    planned.waiting_since = now
                planned.reason = blocker
                continue
            self._pending.remove(planned)
            self._apply(planned, time.time())

    def finish(self, now: float) -> None:
        """The run is over: resume paused targets; record every pending fault as not applied."""
        for name, (_, record) in list(self._paused.items()):
            self.supervisor.resume(name)
            record["resumed_s"] = round(now - self.t0, 3)
        self._paused.clear()
        for ballast, (_, record) in list(self._filled.items()):
            ballast.unlink(missing_ok=True)
            record["freed_s"] = round(now - self.t0, 3)
        self._filled.clear()
        for planned in self._pending:
            fault = planned.fault
            if planned.reason and planned.waiting_since is not None:
                why = f"{planned.reason} from {planned.waiting_since - self.t0:.1f} s to the end"
            elif fault.at is not None:
                why = f"due at {fault.at:g} s, after the run ended"
            else:
                why = (
                    f"the bot acknowledged {self.acks()} batches by the end of the run, "
                    f"not the {fault.after_acks} this fault waits for"
                )
            planned.record["reason"] = why
        self._pending.clear()

    def _blocker(self, target: str) -> str:
        """Why `target` cannot take a fault now ('' when it can)."""
        managed = self.supervisor.processes.get(target)
        if managed is None:
            return f"{target} is not running in this scenario"
        if target in self._restarting:
            return f"{target} was restarting"
        if target in self._paused:
            return f"{target} was stopped (SIGSTOP)"
        if not managed.alive():
            return f"{target} had exited"
        return ""

    def _apply(self, planned: _Planned, now: float) -> None:
        fault, record = planned.fault, planned.record
        at_s = now - self.t0
        record.update(applied=True, at_s=round(at_s, 3))
        if fault.at is not None:
            record["late_s"] = round(max(0.0, at_s - fault.at), 3)
        if planned.reason:
            record["waited_because"] = planned.reason
        self.log(f"  fault: {fault.kind} {fault.target} at {at_s:.1f} s")
        if fault.kind == "sigkill":
            self.supervisor.kill(fault.target)
            if fault.restart:
                self.supervisor.start_again(fault.target)
                self._restarting[fault.target] = (now, record)
                record["restarted"] = False  # set True when the new process is ready
            return
        if fault.kind == "restart":
            # A clean restart: the stop signal and grace period, as a deploy would do it.
            stopped = self.supervisor.stop(fault.target)
            record["stopped"] = {"how": stopped.how, "exit_code": stopped.code}
            self.supervisor.start_again(fault.target)
            self._restarting[fault.target] = (now, record)
            record["restarted"] = False  # set True when the new process is ready
            return
        if fault.kind == "torn_wal":
            self._crash_with_torn_wal(now, record)
            return
        if fault.kind in ("terminate_backend", "kill_backend"):
            # The server ends the process's sessions (terminate: as a cut connection would;
            # kill: SIGKILL of its backends, after which the server restarts every backend and
            # recovers, a crash). The process itself is not touched and must reconnect.
            assert self.end_backends is not None
            role = self.supervisor.processes[fault.target].role
            how = "kill" if fault.kind == "kill_backend" else "terminate"
            try:
                record.update(self.end_backends(role, how))
            except SplitdbError as exc:
                record["problem"] = str(exc)
            return
        if fault.kind == "status_garbage":
            record["bytes"] = garble_status_board(self.supervisor.board.path)
            return
        if fault.kind == "clock_jump":
            # Cumulative: each jump steps the clock from where the last one left it.
            skew = self.supervisor.run_dir / CLOCK_SKEW_FILE
            total = (float(skew.read_text()) if skew.exists() else 0.0) + float(fault.by or 0.0)
            write_atomically(skew, f"{total}\n")
            record.update(by_s=fault.by, skew_s=total)
            return
        if fault.kind == "replace_file":
            path = self.supervisor.topology.file_of(fault.database, self.supervisor.data_dir)
            record["database"] = fault.database
            record.update(replace_with_copy(path))
            return
        if fault.kind == "disk_full":
            ballast = self.supervisor.data_dir / BALLAST
            record["filled_bytes"] = fill_filesystem(ballast)
            free = os.statvfs(ballast.parent)
            record["free_bytes_after"] = free.f_bavail * free.f_frsize
            self._filled[ballast] = (now + fault.hold, record)
            return
        self.supervisor.pause(fault.target)
        self._paused[fault.target] = (now + fault.hold, record)

    def _crash_with_torn_wal(self, now: float, record: dict[str, Any]) -> None:
        """SIGKILL every process, leave each WAL as a crash in the middle of a write leaves it
        (a partial frame at its end) and no -shm, then start them all again."""
        killed = [name for name, managed in self.supervisor.processes.items() if managed.alive()]
        for name in killed:
            self.supervisor.kill(name)
        self.around_crash("close")
        topology, data_dir = self.supervisor.topology, self.supervisor.data_dir
        files = sorted({topology.file_of(d, data_dir) for d in topology.databases})
        record["killed"] = killed
        record["torn"] = {str(path.name): tear_wal(path) for path in files}
        self.around_crash("open")
        for name in killed:
            self.supervisor.start_again(name)
            self._restarting[name] = (now, record)
        record["restarted"] = False  # set True when the processes are ready

    def _follow_restarts(self, now: float) -> None:
        for name, (killed_at, record) in list(self._restarting.items()):
            managed = self.supervisor.processes[name]
            if not managed.alive():
                del self._restarting[name]
                raise ProcessFailed(
                    f"{name} exited with code {managed.proc.returncode} after its restart, "
                    "before it was ready"
                )
            if self.supervisor.ready_now(name):
                del self._restarting[name]
                record["restarted"] = True
                record["ready_after_s"] = round(now - killed_at, 3)
            elif now - killed_at > RESTART_TIMEOUT_S:
                raise ProcessFailed(
                    f"{name} (pid {managed.pid}) was not ready {RESTART_TIMEOUT_S:g} s after "
                    "its restart"
                )


def hold_records(
    faults: Sequence[Fault], events: Mapping[str, Sequence[Event]], t0: float
) -> list[dict[str, Any]]:
    """What each held-transaction fault did, from its worker's event log."""
    records = []
    for index, fault in enumerate(faults):
        if fault.kind not in HOLD_FAULTS:
            continue
        evs = events.get(f"fault-hold{index}-0", [])
        record: dict[str, Any] = {
            "index": index,
            "kind": fault.kind,
            "target": fault.target,
            "database": fault.database,
            "scheduled_s": fault.at,
            "applied": False,
            "at_s": None,
        }
        hold = next((e for e in evs if e.get("op") == "hold"), None)
        error = next((e for e in evs if e.get("op") == "worker_error"), None)
        if hold is not None and hold.get("outcome") == "ok":
            started_s = float(hold.get("wall", t0)) - t0 - hold.get("dur_us", 0) / 1e6
            record.update(
                applied=True,
                at_s=round(started_s, 3),
                held_s=round(hold.get("dur_us", 0) / 1e6, 3),
                late_s=round(max(0.0, started_s - (fault.at or 0.0)), 3),
            )
        elif hold is not None:
            record["reason"] = (
                f"the transaction could not be opened: {hold.get('outcome')} "
                f"({hold.get('error', '')})"
            )
        elif error is not None:
            record["reason"] = f"the fault's worker failed: {error.get('error')}"
        else:
            record["reason"] = "the fault's worker recorded no hold"
        records.append(record)
    return records


def tear_wal(database: Path) -> dict[str, Any]:
    """Append half a frame of garbage to `database`'s WAL (a write cut off by the crash) and
    delete its -shm (shared memory does not survive one); what was done, for the record."""
    wal = Path(str(database) + "-wal")
    shm = Path(str(database) + "-shm")
    done: dict[str, Any] = {"wal_bytes_before": wal.stat().st_size if wal.exists() else None}
    if wal.exists() and wal.stat().st_size >= _WAL_HEADER:
        page_size = int.from_bytes(wal.read_bytes()[8:12], "big")
        partial = (_FRAME_HEADER + page_size) // 2
        with open(wal, "ab") as handle:
            handle.write(os.urandom(partial))
        done["appended_bytes"] = partial
    done["shm_deleted"] = shm.exists()
    shm.unlink(missing_ok=True)
    return done


def garble_status_board(path: Path) -> int:
    """Cut the status board file in half, in place (a write torn by a crash); the bytes left."""
    data = path.read_bytes() if path.exists() else b""
    kept = data[: len(data) // 2]
    with open(path, "r+b" if path.exists() else "wb") as handle:
        handle.write(kept)
        handle.truncate()
    return len(kept)


# SQLite's WAL format: a 32-byte header, then frames of a 24-byte header and one page.
_WAL_HEADER = 32
_FRAME_HEADER = 24


def judge_board_repairs(records: Sequence[dict[str, Any]], board: StatusBoard, t0: float) -> None:
    """For each status_garbage fault applied: did a process repair the board after it (the
    board's `repairs` says so, with the reason)? One not repaired by the end gets a `problem`,
    which fails the `faults` check."""
    try:
        repairs = list(board.read().get("repairs", []))
    except SplitdbError as exc:
        repairs, unreadable = [], str(exc)
    else:
        unreadable = ""
    for record in records:
        if record.get("kind") != "status_garbage" or not record.get("applied"):
            continue
        when = t0 + float(record["at_s"])
        found = [r for r in repairs if float(r.get("at", 0)) >= when]
        record["repaired"] = bool(found)
        if found:
            record["repair"] = {
                "reason": found[0].get("reason"),
                "moved_to": found[0].get("moved_to"),
            }
        else:
            record["problem"] = "the board was not repaired by the end of the run" + (
                f" (it reads as: {unreadable})" if unreadable else ""
            )


BALLAST = ".splitdb-ballast"


def fill_filesystem(ballast: Path) -> int:
    """Take every free byte of the filesystem holding `ballast` into that file; its size.

    Written, not reserved: `posix_fallocate` of exactly the free space fails on tmpfs and
    leaves nothing. Blocks of 1 MiB, then of a page, until the filesystem says it is full.
    """
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for block in (b"\0" * (1 << 20), b"\0" * 4096, b"\0" * 512):
            while True:
                try:
                    if os.write(fd, block) < len(block):
                        break
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    return ballast.stat().st_size


def replace_with_copy(path: Path) -> dict[str, Any]:
    """Replace the database file at `path` with a copy of itself, as a restore or a migration
    putting a file in place does: the copy is made with the backup API while a write
    transaction is held (so no commit falls between the copy and the rename), then renamed
    over the path. Processes that have the old file open must notice (reference/file_identity.py).
    """
    copy = path.with_name(f".{path.name}.replacement")
    lock = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        lock.execute("BEGIN IMMEDIATE")
        source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        target = sqlite3.connect(copy)
        try:
            source.backup(target)
        finally:
            target.close()
            source.close()
        old_inode = path.stat().st_ino
        os.replace(copy, path)
        lock.execute("ROLLBACK")
    finally:
        lock.close()
        copy.unlink(missing_ok=True)
    return {"old_inode": old_inode, "new_inode": path.stat().st_ino}
