"""The supervisor: runs each process of a run as its own OS process and keeps its evidence.

Two sorts of process go through the same start, stop, kill and restart: the reference roles
(`start`: `python -m reference.<role>` with its flags) and the user's commands (`start_command`:
any argv, in its own process group, with its environment, working directory, stop signal, grace
period and restart policy from the scenario). Every process gets
`<run_dir>/logs/<name>.stdout|.stderr` and may append events to `<run_dir>/events/<name>.jsonl`.
Every process is watched for readiness the same way, from its start, by a thread running
`harness.runs.readiness.wait_until_ready`: a command process on its own condition, a reference
process on its status-board section saying `state = "ready"` with its own pid. Stopping
sends the stop signal and waits; a process that does not exit in time is killed and that is
recorded, as is every exit code.

A process that ends without announcing its own clean stop (killed, crashed, or exited while it
should have run) cannot update its status-board section any more, so the supervisor does it for
it when it records the exit: `state = "dead"` and `last_exit = {"pid", "how", "exit_code",
"wall"}` (how: "killed by SIGKILL", "exited with code 1"). Only a section that still names that
process's pid is touched; a restarted process's own `ready` replaces the state, and `last_exit`
stays as the record of the previous incarnation.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from harness.errors import ProcessFailed
from harness.runs.os_identity import UMASK, Identity
from harness.runs.process_spec import CommandProcess, process_env
from harness.runs.readiness import Condition, Readiness, log_sizes, wait_until_ready
from reference.errors import SplitdbError, StatusBoardBusy, StatusFileCorrupt
from reference.status import StatusBoard
from reference.topology import Topology

log = logging.getLogger(__name__)

# How long `wait_ready` waits for a reference process, unless told otherwise.
REFERENCE_READY_S = 30.0
# How long the supervisor waits for the status board's lock to mark a dead process: a process
# frozen while holding it (a SIGSTOP fault) must not freeze the supervisor with it.
MARK_DEAD_TIMEOUT_S = 2.0

ROLE_MODULES: dict[str, str] = {
    "bot": "reference.bot",
    "agent": "reference.agent",
    "api": "reference.api",
}


class _Unchanged(Exception):
    """Raised inside a status-board update to leave the board as it is."""


@dataclass(frozen=True)
class Exit:
    """How one run of a supervised process ended."""

    name: str
    pid: int
    code: int
    expected: bool
    # What ended it: 'sigterm' (asked to stop), 'sigkill' (a kill asked for),
    # 'sigkill after sigterm timeout', 'exited' (on its own, nobody asked), or the signal
    # the supervisor itself got while stopping (`stop_all(signalled=...)`, e.g. 'sigint').
    how: str

    @property
    def ended(self) -> str:
        """'killed by SIGKILL' or 'exited with code 1': what the exit code says."""
        return describe_end(self.code)


def describe_end(code: int) -> str:
    """A return code in words: a negative one is the signal that killed the process."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class Managed:
    """One supervised process (its current incarnation) and its files.

    A reference process is ready when its status-board section says so; a command process
    (`start_command`) when its readiness condition holds, watched by a thread from its start.
    """

    name: str
    role: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path
    events: Path
    handles: list[IO[bytes]] = field(default_factory=list)
    # Extra environment for this incarnation only (a crash point): dropped on restart.
    env: dict[str, str] = field(default_factory=dict)
    # What every incarnation gets: the run's settings, the probe's variables.
    base_env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    command: CommandProcess | None = None
    # The command's readiness condition with its placeholders expanded; a reference process's
    # status-board condition.
    ready: Readiness | Condition | None = None
    restarts: int = 0
    readiness: _ReadinessWatch | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def stop_signal(self) -> signal.Signals:
        return self.command.signal if self.command is not None else signal.SIGTERM

    def signal(self, signum: signal.Signals) -> None:
        """Send a signal to the process; a command process's whole group gets it."""
        if self.command is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)
        else:
            self.proc.send_signal(signum)


class _ReadinessWatch:
    """Waits in a thread for a command process's readiness condition, from its start."""

    def __init__(self, managed: Managed, base_dir: Path, offsets: tuple[int, int]) -> None:
        self.done = threading.Event()
        self.error: str | None = None
        self.waited_s: float | None = None
        ready = managed.ready

        def watch() -> None:
            try:
                self.waited_s = wait_until_ready(
                    ready,
                    alive=managed.alive,
                    stdout=managed.stdout,
                    stderr=managed.stderr,
                    base_dir=base_dir,
                    describe=f"{managed.name} (pid {managed.pid})",
                    ended=lambda: describe_end(managed.proc.wait()),
                    # A restarted process's line must be its own, not its predecessor's.
                    log_offsets=offsets,
                )
            except ProcessFailed as exc:
                self.error = str(exc)
            except Exception as exc:  # a bug in a condition must not hang the run
                self.error = f"{managed.name}: readiness could not be checked: {exc}"
            finally:
                self.done.set()

        threading.Thread(target=watch, name=f"ready-{managed.name}", daemon=True).start()


def stderr_tail(path: Path, lines: int = 20) -> str:
    """The last `lines` lines of a process's stderr, for error messages."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class Supervisor:
    """Starts, watches and stops the reference processes of one run."""

    def __init__(
        self,
        run_dir: Path,
        topology: Topology,
        *,
        topology_arg: str | Path = "seed",
        data_dir: Path | None = None,
        python: str = sys.executable,
        identities: Mapping[str, Identity] | None = None,
        role_env: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        # Environment per role, for every incarnation (restarts too): on PostgreSQL each
        # role's login (harness/pg/run.py).
        self.role_env = {role: dict(env) for role, env in (role_env or {}).items()}
        # Under enforcement = "os": the Unix user each role's processes run as.
        self.identities = dict(identities or {})
        self.topology = topology
        self.topology_arg = str(topology_arg)
        self.data_dir = Path(data_dir) if data_dir is not None else self.run_dir / "data"
        self.python = python
        self.processes: dict[str, Managed] = {}
        self.exits: list[Exit] = []
        self.board = StatusBoard(self.data_dir / topology.status)
        for sub in ("logs", "events"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)

    def events_path(self, name: str) -> Path:
        return self.run_dir / "events" / f"{name}.jsonl"

    def settings_env(self, name: str, role: str) -> dict[str, str]:
        """The run's settings for process `name` in environment variables (`process_env`)."""
        return process_env(
            name=name,
            role=role,
            data_dir=self.data_dir,
            run_dir=self.run_dir,
            events=self.events_path(name),
            topology=self.topology_arg,
            database_files={
                d: self.topology.file_of(d, self.data_dir) for d in self.topology.databases
            },
        )

    def start(
        self,
        role: str,
        args: Sequence[str] = (),
        *,
        name: str | None = None,
        module: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Managed:
        """Start `role` (bot, agent or api) with extra command-line `args`.

        `module` runs another entry point in the role's place (a user's process, or a test's
        deliberately broken variant); it must take the same arguments. `env` adds environment
        variables for this process only, for example `SPLITDB_CRASH_AT` to arm a crash point.
        """
        name = name or role
        if name in self.processes and self.processes[name].alive():
            raise SplitdbError(
                f"process {name!r} is already running (pid {self.processes[name].pid})"
            )
        if role not in ROLE_MODULES:
            raise SplitdbError(f"unknown role {role!r}; roles are {', '.join(ROLE_MODULES)}")
        argv = [
            self.python,
            "-m",
            module or ROLE_MODULES[role],
            "--topology",
            self.topology_arg,
            "--data-dir",
            str(self.data_dir),
            "--events",
            str(self.events_path(name)),
            *args,
        ]
        return self._spawn(name, role, argv, extra=dict(env or {}))

    def start_command(
        self,
        name: str,
        spec: CommandProcess,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path | None = None,
        ready: Readiness | None = None,
    ) -> Managed:
        """Start one of the user's processes: `argv` (placeholders expanded) with `env` added
        to the harness's environment, in its own process group, and start watching for its
        `ready` condition (`wait_ready` waits for it)."""
        if name in self.processes and self.processes[name].alive():
            raise SplitdbError(
                f"process {name!r} is already running (pid {self.processes[name].pid})"
            )
        return self._spawn(
            name, spec.role, list(argv), base_env=dict(env), cwd=cwd, command=spec, ready=ready
        )

    def _spawn(
        self,
        name: str,
        role: str,
        argv: list[str],
        *,
        extra: dict[str, str] | None = None,
        base_env: dict[str, str] | None = None,
        cwd: Path | None = None,
        command: CommandProcess | None = None,
        ready: Readiness | None = None,
        restarts: int = 0,
    ) -> Managed:
        """Start one incarnation; its stdout and stderr are appended to its log files."""
        stdout = self.run_dir / "logs" / f"{name}.stdout"
        stderr = self.run_dir / "logs" / f"{name}.stderr"
        offsets = log_sizes(stdout, stderr)
        out = open(stdout, "ab")  # noqa: SIM115
        err = open(stderr, "ab")  # noqa: SIM115
        extra = extra or {}
        # Every process, reference or the user's, is told its run's settings the same way.
        base_env = {
            **self.settings_env(name, role),
            **self.role_env.get(role, {}),
            **(base_env or {}),
        }
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **base_env, **extra}
        identity = self.identities.get(role)
        as_user: dict[str, Any] = (
            {
                "user": identity.uid,
                "group": identity.gid,
                "extra_groups": list(identity.groups),
                "umask": UMASK,
            }
            if identity is not None
            else {}
        )
        try:
            proc = subprocess.Popen(
                argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                # A user's command may be a shell or a server with workers: its own group, so
                # a stop or a fault reaches all of it (`Managed.signal`).
                start_new_session=command is not None,
                **as_user,
            )
        except OSError as exc:
            out.close()
            err.close()
            raise ProcessFailed(
                f"{name}: cannot start {argv[0]!r} ({exc.strerror or exc}); give a program "
                "on PATH or a path to one in processes." + f"{name}.command"
            ) from None
        managed = Managed(
            name,
            role,
            argv,
            proc,
            stdout,
            stderr,
            self.events_path(name),
            [out, err],
            extra,
            base_env,
            cwd,
            command,
            ready,
            restarts,
        )
        if command is None:
            # The same watch as a user's process, on the condition a scenario cannot write.
            managed.ready = Condition(
                lambda: self._board_says_ready(managed),
                f"its status-board section {role!r} to say ready with its pid",
            )
        managed.readiness = _ReadinessWatch(managed, cwd or self.run_dir, offsets)
        self.processes[name] = managed
        return managed

    def wait_ready(self, name: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Block until `name` is ready; returns its status section (a reference process's, with
        its `url` for the API) or, for a command process, `{pid, state, waited_s}`.

        Every process waits the same way: for the readiness watch started with it (its
        condition, or a reference process's status-board section). `timeout` cuts a reference
        process's wait short (default 30 s); a command's wait is bounded by its own condition.
        Raises ProcessFailed with the tail of its stderr if it ends or times out first.
        """
        managed = self.processes[name]
        assert managed.readiness is not None
        limit = (timeout or REFERENCE_READY_S) if managed.command is None else None
        if not managed.readiness.done.wait(limit):
            raise ProcessFailed(
                f"{name} (pid {managed.pid}) was not ready after {limit:g} s; "
                f"stderr ({managed.stderr}):\n{stderr_tail(managed.stderr)}"
            )
        return self._readiness_result(managed)

    def _readiness_result(self, managed: Managed) -> dict[str, Any]:
        """What a finished readiness watch found; raises ProcessFailed if it failed."""
        assert managed.readiness is not None
        if managed.readiness.error is not None:
            if not managed.alive():
                self._record_exit(managed, expected=False, how="exited")
            raise ProcessFailed(
                f"{managed.readiness.error}; stderr ({managed.stderr}):\n"
                f"{stderr_tail(managed.stderr)}"
            )
        if managed.command is None:
            return self.board.section(managed.role)
        return {"pid": managed.pid, "state": "ready", "waited_s": managed.readiness.waited_s}

    def _board_says_ready(self, managed: Managed) -> bool:
        """A reference process's readiness: its status-board section is ready, with its pid."""
        try:
            section = self.board.section(managed.role)
        except StatusFileCorrupt:
            return False
        return section.get("state") == "ready" and section.get("pid") == managed.pid

    def ready_now(self, name: str) -> bool:
        """Whether the process is ready, without waiting; raises ProcessFailed when its
        readiness failed (it died first, or the condition timed out)."""
        managed = self.processes[name]
        assert managed.readiness is not None
        if not managed.readiness.done.is_set():
            return False
        self._readiness_result(managed)
        return True

    def stop(
        self, name: str, *, timeout: float = 5.0, signalled: signal.Signals | None = None
    ) -> Exit:
        """SIGTERM and wait; SIGKILL (recorded as unexpected) after `timeout` seconds.

        A process that had already ended is recorded as an unexpected exit, unless the
        supervisor was `signalled` (see `stop_all`) and the process exited with code 0.
        """
        managed = self.processes[name]
        if not managed.alive():
            return self._record_ended(managed, signalled)
        how = managed.stop_signal.name.lower()
        if managed.command is not None:
            timeout = managed.command.grace
        managed.signal(managed.stop_signal)
        try:
            managed.proc.wait(timeout)
            # A process that dies of its own stop signal (no handler) stopped as asked.
            code = managed.proc.returncode
            clean = code == 0 or (managed.command is not None and code == -managed.stop_signal)
            return self._record_exit(managed, expected=clean, how=how)
        except subprocess.TimeoutExpired:
            managed.signal(signal.SIGKILL)
            managed.proc.wait()
            return self._record_exit(managed, expected=False, how=f"sigkill after {how} timeout")

    def kill(self, name: str) -> Exit:
        """SIGKILL now (a fault the run asked for, so expected)."""
        managed = self.processes[name]
        managed.signal(signal.SIGKILL)
        managed.proc.wait()
        return self._record_exit(managed, expected=True, how="sigkill")

    def pause(self, name: str) -> None:
        self.processes[name].signal(signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self.processes[name].signal(signal.SIGCONT)

    def restart(self, name: str, *, timeout: float = 30.0, keep_env: bool = False) -> Managed:
        """Start a dead process again with the same arguments and wait until it is ready.

        The extra environment given to `start` is dropped (a crash point fires once) unless
        `keep_env`.
        """
        managed = self.start_again(name, keep_env=keep_env)
        self.wait_ready(name, timeout=timeout)
        return managed

    def start_again(self, name: str, *, keep_env: bool = False) -> Managed:
        """Start a dead process again with the same arguments; does not wait for readiness."""
        old = self.processes[name]
        if old.alive():
            raise SplitdbError(f"process {name!r} is still running; stop or kill it first")
        return self._spawn(
            name,
            old.role,
            old.argv,
            extra=old.env if keep_env else None,
            base_env=old.base_env,
            cwd=old.cwd,
            command=old.command,
            # A reference process gets a fresh status-board condition, for its new pid.
            ready=old.ready if isinstance(old.ready, Readiness) else None,
            restarts=old.restarts + 1,
        )

    def follow_restart_policies(self) -> list[Exit]:
        """Start again each command process that ended and whose restart policy says so.

        Its exit is recorded as expected (the policy covers it), with `how` saying it was
        restarted; past `max_restarts` it is left ended, for `reap` or `stop_all` to record
        as unexpected. A one-shot process that finished with code 0 is recorded as finished.
        """
        recorded = {e.pid for e in self.exits}
        made = []
        for name, managed in list(self.processes.items()):
            spec = managed.command
            if spec is None or managed.pid in recorded or managed.alive():
                continue
            code = managed.proc.wait()
            if spec.oneshot and code == 0:
                made.append(self._record_exit(managed, expected=True, how="finished"))
                continue
            wanted = spec.restart == "always" or (spec.restart == "on-failure" and code != 0)
            if not wanted or managed.restarts >= spec.max_restarts:
                continue
            made.append(
                self._record_exit(
                    managed, expected=True, how=f"restarted by policy ({describe_end(code)})"
                )
            )
            self.start_again(name)
        return made

    def stop_all(
        self,
        *,
        timeout: float = 5.0,
        signalled: signal.Signals | None = None,
        reverse: bool = False,
    ) -> list[Exit]:
        """Stop every live process (SIGCONT first, in case one is paused) and record every
        process that had already ended; returns the records made by this call.

        `signalled` is the signal that made the caller stop, when it may have reached the
        processes too: a terminal's Ctrl-C sends SIGINT to the whole process group, so each
        process may stop on its own before it gets SIGTERM. One that exited with code 0 then
        stopped cleanly (recorded with `how` the signal's name, e.g. 'sigint'); any other end
        that nobody asked for is unexpected.
        """
        recorded = {e.pid for e in self.exits}
        made = []
        order = list(self.processes.items())
        # `reverse`: the last started stops first (a server before the writer it reads).
        for name, managed in reversed(order) if reverse else order:
            if managed.pid in recorded:
                continue
            if managed.alive():
                with contextlib.suppress(ProcessLookupError):
                    managed.signal(signal.SIGCONT)
            made.append(self.stop(name, timeout=timeout, signalled=signalled))
        return made

    def reap(self) -> list[Exit]:
        """Record every process that ended while nobody asked it to (unexpected exits).

        Their status-board sections are marked dead. Returns the new records, in start order.
        """
        recorded = {e.pid for e in self.exits}
        return [
            self._record_ended(managed, None)
            for managed in self.processes.values()
            if managed.pid not in recorded and not managed.alive()
        ]

    def unexpected_exits(self) -> list[Exit]:
        return [e for e in self.exits if not e.expected]

    def _record_ended(self, managed: Managed, signalled: signal.Signals | None) -> Exit:
        """Record a process found already ended: clean only if it stopped on `signalled`."""
        code = managed.proc.wait()
        if signalled is not None and code == 0:
            return self._record_exit(managed, expected=True, how=signalled.name.lower())
        if managed.command is not None and managed.command.oneshot and code == 0:
            return self._record_exit(managed, expected=True, how="finished")
        return self._record_exit(managed, expected=False, how="exited")

    def _record_exit(self, managed: Managed, *, expected: bool, how: str) -> Exit:
        code = managed.proc.wait()
        for handle in managed.handles:
            if not handle.closed:
                handle.close()
        for seen in self.exits:
            if seen.pid == managed.pid:
                return seen
        record = Exit(managed.name, managed.pid, code, expected, how)
        self.exits.append(record)
        self._mark_dead(managed, record)
        return record

    def _mark_dead(self, managed: Managed, record: Exit) -> None:
        """Say on the status board that the process is gone, unless it said it stopped.

        A process that stops cleanly writes `state = "stopped"` itself; one that was killed or
        crashed left its last state (usually "ready") behind, which would go on claiming a
        running process. Best effort: a board that stays locked or cannot be written is
        logged, never raised, since this runs while processes are being stopped.
        """
        pid = managed.pid
        if managed.command is not None:
            return  # a user's process has no status-board section of ours

        def dead(current: dict[str, Any]) -> dict[str, Any]:
            if current.get("pid") != pid or current.get("state") == "stopped":
                raise _Unchanged
            last_exit = {"pid": pid, "how": record.ended, "exit_code": record.code}
            return {**current, "state": "dead", "last_exit": {**last_exit, "wall": time.time()}}

        try:
            current = self.board.section(managed.role)
            if current.get("pid") != pid or current.get("state") == "stopped":
                return
            self.board.update(managed.role, dead, timeout=MARK_DEAD_TIMEOUT_S)
        except _Unchanged:
            pass
        except (StatusBoardBusy, StatusFileCorrupt, OSError) as exc:
            log.warning(
                "could not mark %s (pid %d) dead on %s: %s", managed.name, pid, self.board, exc
            )

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
