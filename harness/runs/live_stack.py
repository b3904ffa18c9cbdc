"""A scenario's processes, started and ready, for a test to drive: the pytest plugin's stack.

`LiveStack.start(scenario, ...)` creates the databases and starts the processes (the reference
stack, a subset, or the user's own commands) exactly as a run's repeat does, each once ready.
The test then works with them: connections through the access manager (`connect`), the API's
address (`api_url`), each process's events (`events`), faults (`kill`, `start`, `restart`).
A thread samples CPU, memory and WAL size, and follows the user's restart policies, as a run's
load loop does. `finish()` stops everything and judges the stack with the same checks as
`splitdb run`, writing `report.json` and `report.html` in the stack's run directory.

The scenario's load groups, faults and variants are not run: the test is the load.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.runs.progress import Progress
from harness.runs.repeat import SAMPLE_EVERY_S, RepeatRun
from harness.runs.run import RunResult, new_run_dir, write_run_report
from harness.runs.scenario import Scenario, variants_of
from harness.runs.supervisor import Exit, Supervisor
from reference.access import AccessManager, GuardedConnection
from reference.errors import SplitdbError
from reference.events import Event, read_events
from reference.topology import Topology

WAIT_POLL_S = 0.05


def stack_scenario(
    scenario: Scenario, *, processes: Sequence[str] | None = None, variant: str | None = None
) -> Scenario:
    """`scenario` as a stack runs it: one variant's settings (by name), only the named
    processes, and no load groups, faults or variants of its own.

    Raises SplitdbError naming the unknown process or variant and the known ones.
    """
    if variant is not None:
        arms = dict(variants_of(scenario))
        if variant not in arms:
            known = ", ".join(str(name) for name in arms if name) or "none"
            raise SplitdbError(
                f"variant={variant!r}: scenario {scenario.name!r} has no such variant; "
                f"its variants: {known}"
            )
        scenario = arms[variant]
    if processes is not None:
        known_names = scenario.process_names()
        unknown = [name for name in processes if name not in known_names]
        if unknown:
            raise SplitdbError(
                f"processes={list(processes)!r}: {unknown[0]!r} is not a process of scenario "
                f"{scenario.name!r}; its processes: {', '.join(known_names) or 'none'}"
            )
        reference = scenario.processes.model_copy(
            update={
                role: getattr(scenario.processes, role).model_copy(
                    update={"enabled": role in processes}
                )
                for role in ("bot", "agent", "api")
            }
        )
        commands = {n: c for n, c in scenario.commands.items() if n in processes}
        scenario = scenario.model_copy(update={"processes": reference, "commands": commands})
    return scenario.model_copy(update={"load": (), "fault": (), "variant": ()})


class LiveStack:
    """Running processes of one scenario, for a test; see the module's docstring."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        base_dir: Path,
        out_dir: Path,
        source_text: str | None = None,
    ) -> None:
        self.scenario = scenario
        self.run_id, self.run_dir = new_run_dir(Path(out_dir), scenario.name)
        self._source_text = source_text
        self._repeat = RepeatRun(
            scenario, Path(base_dir), self.run_dir / "repeat-1", 1, Progress(quiet=True)
        )
        self._lock = threading.RLock()
        self._stop_sampling = threading.Event()
        self._sampler: threading.Thread | None = None
        self._supervisor: Supervisor | None = None
        self._access: AccessManager | None = None
        self._connections: list[GuardedConnection] = []
        self._started = time.time()
        self.result: RunResult | None = None

    @classmethod
    def start(
        cls,
        scenario: Scenario,
        *,
        base_dir: Path,
        out_dir: Path,
        source_text: str | None = None,
    ) -> LiveStack:
        """Create the databases and start every process of `scenario`, each once ready.

        A process that never becomes ready does not raise here: `aborted` says why, and
        `finish()` reports it as the failed `run` check with the process's stderr.
        """
        stack = cls(scenario, base_dir=base_dir, out_dir=out_dir, source_text=source_text)
        stack._supervisor = stack._repeat.open()
        stack._repeat.begin(time.time())
        stack._sampler = threading.Thread(target=stack._sample, name="splitdb-stack", daemon=True)
        stack._sampler.start()
        return stack

    # What the test works with.

    @property
    def topology(self) -> Topology:
        return self._repeat.topology

    @property
    def data_dir(self) -> Path:
        return self._repeat.data_dir

    @property
    def api_url(self) -> str | None:
        """The reference API's base URL (`http://127.0.0.1:PORT`), None when it is not running."""
        return self._repeat.api_url

    @property
    def aborted(self) -> str | None:
        """Why the stack could not start (a process never became ready), else None."""
        return self._repeat.aborted

    def file(self, database: str) -> Path:
        """The SQLite file of `database`."""
        return self.topology.file_of(database, self.data_dir)

    def port(self, name: str) -> int:
        """The port the harness gave the user's process `name` (its `{port}`)."""
        value = self._repeat.values.get(f"port.{name}")
        if value is None:
            raise SplitdbError(
                f"port({name!r}): no such process of yours in this stack; "
                f"yours: {', '.join(self.scenario.commands) or 'none'}"
            )
        return int(value)

    def connect(self, role: str, database: str) -> GuardedConnection:
        """A connection to `database` as `role`, through the access manager: owner or reader as
        the topology grants, and a statement outside the grant raises PermissionViolation.
        Closed when the stack finishes."""
        if self._access is None:
            self._access = AccessManager(self.topology, self.data_dir)
        conn = self._access.connect(role, database)
        self._connections.append(conn)
        return conn

    def events(self, name: str) -> list[Event]:
        """Every event process `name` has written so far (a reference process's own events, or
        the `SPLITDB_EVENTS` file of a user's process that writes one)."""
        path = self._running.events_path(name)
        return list(read_events(path)) if path.exists() else []

    def wait_for(
        self, condition: Callable[[], Any], *, timeout: float = 30.0, what: str = "the condition"
    ) -> Any:
        """Poll `condition` until it returns something true and return that; TimeoutError
        naming `what` after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"waited {timeout:g} s for {what}")
            time.sleep(WAIT_POLL_S)

    # Faults, as a scenario's [[fault]] entries apply them.

    def kill(self, name: str) -> Exit:
        """SIGKILL process `name` now (a fault: its exit is expected)."""
        with self._lock:
            return self._running.kill(name)

    def start_process(self, name: str, *, timeout: float = 30.0) -> None:
        """Start process `name` again (after `kill` or `stop`) and wait until it is ready."""
        with self._lock:
            self._running.restart(name, timeout=timeout)

    def stop(self, name: str) -> Exit:
        """Stop process `name` the way it is stopped at the end (its stop signal, then grace)."""
        with self._lock:
            return self._running.stop(name)

    def restart(self, name: str, *, timeout: float = 30.0) -> None:
        """Stop process `name` cleanly and start it again, waiting until it is ready."""
        with self._lock:
            self._running.stop(name)
            self._running.restart(name, timeout=timeout)

    @property
    def _running(self) -> Supervisor:
        if self._supervisor is None or self.result is not None:
            raise SplitdbError("the stack is not running (it has finished); start another")
        return self._supervisor

    # The end.

    def finish(self, *, step_summary: bool = False) -> RunResult:
        """Stop every process, run the checks, write the report; once (then returns the same)."""
        if self.result is not None:
            return self.result
        self._stop_sampling.set()
        if self._sampler is not None:
            self._sampler.join()
        for conn in self._connections:
            conn.close()
        assert self._supervisor is not None
        with self._lock:
            repeat = self._repeat.close(
                self._supervisor, [], round(time.time() - self._repeat.t0, 3)
            )
        self.result = write_run_report(
            self.scenario,
            self.run_id,
            self.run_dir,
            [repeat],
            started=self._started,
            variants=[],
            source_text=self._source_text,
            step_summary=step_summary,
        )
        return self.result

    def _sample(self) -> None:
        while not self._stop_sampling.wait(SAMPLE_EVERY_S):
            with self._lock:
                supervisor = self._supervisor
                if supervisor is None:
                    continue
                supervisor.follow_restart_policies()
                self._repeat.sample(supervisor, [], time.time() - self._repeat.t0)
