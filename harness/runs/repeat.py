"""One repeat of a scenario: its databases, its processes, the load, the checks.

`RepeatRun.run()` does it all, for `splitdb run`. The pytest plugin's stack fixture uses the
parts: `open()` starts the processes and returns their supervisor, the test drives them, then
`close()` stops everything and judges what happened with the same checks.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from harness.errors import ProcessFailed
from harness.probe import probe_env
from harness.probe.observed import Observed
from harness.procstat import read_stat
from harness.results.report import (
    CheckResult,
    FaultRecord,
    Metrics,
    Repeat,
    WalSample,
)
from harness.runs import checks
from harness.runs.catalogue import PROBE_SETUP
from harness.runs.faults import (
    CLOCK_SKEW_FILE,
    HOLD_FAULTS,
    FaultSchedule,
    hold_records,
    judge_board_repairs,
)
from harness.runs.invariants import InvariantMonitor
from harness.runs.load import LOAD_TABLE_SQL, WorkerPlan, start_worker, stop_workers
from harness.runs.metrics import (
    analysis_lag,
    bot_metrics,
    operation_metrics,
    percentile,
    time_series,
)
from harness.runs.migration_phase import Migrated, migrate_before
from harness.runs.observed import (
    errors_as_events,
    mark_not_observed,
    not_observed,
    observe_processes,
    observed_connections,
    observed_figures,
    observed_writes,
)
from harness.runs.os_identity import (
    Identity,
    WalKeeper,
    check_reachable,
    identities,
    prepare_files,
)
from harness.runs.pg_data import PgRunData
from harness.runs.process_spec import expand, expand_ready, free_port, is_python
from harness.runs.progress import Progress
from harness.runs.run_data import RunData, SqliteRunData
from harness.runs.scenario import Scenario, resolve_topology
from harness.runs.small_fs import mount_small_fs, unmount_keeping
from harness.runs.supervisor import Supervisor, stderr_tail
from reference.access import AccessManager
from reference.bot import default_symbols
from reference.events import Event, read_events
from reference.topology import Topology

SAMPLE_EVERY_S = 0.5
# Past this p99 delay in waking idle processes, the machine could not offer the run's load.
STARVED_WAKE_MS = 10.0
_LOOP_SLEEP_S = 0.02
# After the load: how long the run waits for a fault still pending or a restart under way.
FAULT_GRACE_S = 30.0


class RepeatRun:
    """One repeat of a scenario, in its own directory with its own databases."""

    def __init__(
        self,
        scenario: Scenario,
        base_dir: Path,
        repeat_dir: Path,
        index: int,
        progress: Progress,
        variant: str | None = None,
        *,
        pg_url: str | None = None,
    ) -> None:
        self.scenario = scenario
        # On a topology with backend = "postgres": the server to use (None: a throwaway one).
        self.pg_url = pg_url
        self.index = index
        self.variant = variant
        self.dir = repeat_dir
        self.progress = progress
        self.seed = scenario.seed + index - 1
        self.topology: Topology = resolve_topology(scenario, base_dir)
        self.base_dir = base_dir
        self.data_dir = repeat_dir / "data"
        self.topology_path = repeat_dir / "topology.toml"
        # Placeholder values (harness/runs/process_spec.py); the ports join when they are chosen.
        self.values: dict[str, str] = {
            "python": sys.executable,
            "scenario_dir": str(base_dir),
            "data_dir": str(self.data_dir),
            "run_dir": str(repeat_dir),
            **{f"db.{d}": str(self._file_of(d)) for d in self.topology.databases},
        }
        self.symbols = default_symbols(scenario.processes.bot.symbols)
        self.samples: list[dict[str, Any]] = []
        self.process_stats: dict[int, dict[str, Any]] = {}
        self.fault_schedule: FaultSchedule | None = None
        self.wake_ms: list[float] = []  # how late the run's own loop woke, during the load
        self.api_check: checks.Check | None = None
        self.instrumented: dict[str, bool] = {}
        self.probe: dict[str, Observed] = {}
        self.invariants = InvariantMonitor(scenario.invariant, self._file_of)
        self.aborted: str | None = None
        self.api_url: str | None = None
        self.migrated: Migrated | None = None
        self.keeper: WalKeeper | None = None
        self.mounted = False  # the data directory is a tmpfs of its own (disk_full)
        self.identities: dict[str, Identity] | None = None
        # Where the data lives: the files under data_dir until `open` says otherwise.
        self.data: RunData = SqliteRunData(self.topology, self.data_dir)
        self.t0 = time.time()
        self.phase = "setting up"  # where it is, for an interrupted run's marker

    def _file_of(self, database: str) -> Path:
        return self.topology.file_of(database, self.data_dir)

    def _enter(self, phase: str) -> None:
        self.phase = phase

    def run(self) -> Repeat:
        """The whole repeat: start, load and faults for the scenario's duration, stop, judge."""
        supervisor = self.open()
        workers: list[tuple[WorkerPlan, Any]] = []
        load_s = self.scenario.duration
        try:
            if not self.aborted:
                t0 = time.time() + 0.5
                for plan in self._plans(t0, self.api_url):
                    # One at a time: a Ctrl-C while they start leaves every started one listed.
                    workers.append((plan, start_worker(plan)))
                self.progress.phase(
                    f"  load: {len(workers)} workers for {load_s:g} s, "
                    f"{len(self.scenario.fault)} faults"
                )
                self.begin(t0)
                self._drive(supervisor, t0, workers)
                for plan, proc in workers:
                    proc.join(timeout=max(5.0, plan.stop_at - time.time() + 5))
                    if proc.is_alive():
                        proc.terminate()
                        proc.join(5)
        except ProcessFailed as exc:
            self._abort(exc)
        except BaseException:
            # Ctrl-C (or any error) mid-run: workers ignore SIGINT, so they are stopped here.
            stop_workers(proc for _, proc in workers)
            supervisor.stop_all(reverse=True)
            self.invariants.stop()
            self._release_keeper()
            self._unmount()
            self.data.close()
            raise
        return self.close(supervisor, workers, load_s)

    def open(self) -> Supervisor:
        """Create the repeat's directory and databases, start its processes, each once ready.

        A process that never becomes ready is recorded (`aborted`), not raised: the repeat
        still stops what started and reports, with that as a failed check and its stderr.
        """
        # Users first: without root, OS enforcement refuses before anything is made.
        who = identities(self.topology) if self.topology.enforcement == "os" else None
        self.dir.mkdir(parents=True)
        if any(f.kind == "disk_full" for f in self.scenario.fault):
            mount_small_fs(self.data_dir)
            self.mounted = True
        self.topology_path.write_text(self.topology.to_toml(), encoding="utf-8")
        if self.scenario.migrate is not None:
            self._enter("making the data set in the old layout and moving it")
            self.migrated = migrate_before(
                self.scenario,
                self.base_dir,
                self.dir,
                self.topology,
                self.data_dir,
                self.progress,
                run_repeat=lambda scenario, where: RepeatRun(
                    scenario, self.base_dir, where, self.index, self.progress
                ).run(),
            )
        if self.topology.backend == "postgres":
            self._enter("starting PostgreSQL and installing the topology")
            self.data = PgRunData.start(
                self.topology,
                url=self.pg_url,
                run_dir=self.dir,
                probes=any(g.kind == "violator" for g in self.scenario.load),
            )
            self.progress.phase(f"  PostgreSQL ready: database {self.data.run.layout.dbname}")
            # The status board's file is still the processes' own, in the data directory.
            self.data_dir.mkdir(parents=True, exist_ok=True)
        elif not self.scenario.commands:
            # The reference schema; a user's processes create their own tables.
            self._enter("creating databases")
            self._create_databases()
        if who is not None:
            self._enforce_by_os(who)
        supervisor = Supervisor(
            self.dir,
            self.topology,
            topology_arg=self.topology_path,
            data_dir=self.data_dir,
            identities=who,
            role_env=self.data.role_env(),
        )
        try:
            self._enter("starting processes")
            self.api_url = self._start_processes(supervisor)
        except ProcessFailed as exc:
            self._abort(exc)
        except BaseException:
            supervisor.stop_all(reverse=True)
            self.data.close()
            raise
        return supervisor

    def _enforce_by_os(self, who: dict[str, Identity]) -> None:
        """Users, owners and modes for `enforcement = "os"`, and the WAL keeper (see
        harness/runs/os_identity.py). The databases exist first: no role may create a file in
        the data directory, so a user's processes get theirs empty, without tables."""
        AccessManager(self.topology, self.data_dir).initialize()
        names = {**{r: r for r in self.scenario.reference_roles()}}
        names.update({n: c.role for n, c in self.scenario.commands.items()})
        own: dict[str, list[Path]] = {}
        for name, role in names.items():
            own.setdefault(role, []).append(self.dir / "events" / f"{name}.jsonl")
            if name in self.scenario.commands:
                own[role].append(self.dir / "probe" / f"{name}.jsonl")
        prepare_files(self.topology, self.data_dir, who, own)
        for identity in who.values():
            check_reachable(identity, [self.dir / "events", self.data_dir])
        files = sorted({self._file_of(d) for d in self.topology.databases})
        self.keeper = WalKeeper(files)
        self.identities = who

    def begin(self, t0: float) -> None:
        """The load starts at wall time `t0`: metrics count from it, and so do the periodic
        invariants (like faults)."""
        self._enter("load")
        self.t0 = t0
        self.invariants = InvariantMonitor(
            self.scenario.invariant,
            self._file_of,
            started=time.monotonic() + (t0 - time.time()),
        )
        self.invariants.start()

    def close(
        self,
        supervisor: Supervisor,
        workers: list[tuple[WorkerPlan, Any]],
        load_s: float,
    ) -> Repeat:
        """Stop every process (the bot and agent gracefully first, the API after its answers
        are checked) and judge the repeat."""
        try:
            if not self.aborted:
                self._enter("stopping")
                self.progress.phase("  stopping")
                for role in ("bot", "agent"):
                    if role in supervisor.processes:
                        supervisor.stop(role)
                if self.api_url is not None:
                    url = self.api_url
                    self.api_check = checks.judged(
                        "api_answers", lambda: self._check_api(url), self.data.errors
                    )
        except ProcessFailed as exc:
            self._abort(exc)
        finally:
            supervisor.stop_all(reverse=True)
            self.invariants.stop()
            self._release_keeper()
        self._enter("checking")
        try:
            return self._evaluate(supervisor, workers, load_s)
        finally:
            self._unmount()
            self.data.close()

    def _unmount(self) -> None:
        if self.mounted:
            self.mounted = False
            unmount_keeping(self.data_dir)

    def _around_crash(self, when: str) -> None:
        """A crash fault closes the WAL keeper before it touches the files, and opens it after
        (a real crash takes every connection with it)."""
        if self.identities is None:
            return
        if when == "close":
            self._release_keeper()
        else:
            self.keeper = WalKeeper(sorted({self._file_of(d) for d in self.topology.databases}))

    def _release_keeper(self) -> None:
        if self.keeper is not None:
            self.keeper.close()
            self.keeper = None

    def _abort(self, exc: ProcessFailed) -> None:
        # A process that never became ready (or did not come back after a kill) ends the
        # load early; the run still reports, with this as a failed check and its stderr.
        self.aborted = str(exc)
        self.progress.phase(f"  aborted: {exc}")

    def _create_databases(self) -> None:
        access = AccessManager(self.topology, self.data_dir)
        access.initialize()
        kinds = {g.kind for g in self.scenario.load}
        for database in self.topology.databases:
            conn = access.connect(self.topology.writers(database)[0], database)
            if kinds & {"violator", "bypass"}:
                # Probe objects give the violators' DROP and ALTER attempts something to hit.
                conn.executescript(PROBE_SETUP)
            if "writer" in kinds:
                conn.execute(LOAD_TABLE_SQL)
            conn.close()

    def _start_processes(self, supervisor: Supervisor) -> str | None:
        procs = self.scenario.processes
        if procs.bot.enabled:
            bot = procs.bot
            supervisor.start(
                "bot",
                [
                    "--symbols",
                    str(bot.symbols),
                    "--rate",
                    str(bot.rate),
                    "--batch-size",
                    str(bot.batch_size),
                    "--max-delay-ms",
                    str(bot.max_delay_ms),
                    "--seed",
                    str(self.seed),
                    "--speed",
                    str(bot.speed),
                ],
                # Where a clock_jump fault writes the skew of the bot's clock.
                env=(
                    {"SPLITDB_CLOCK_SKEW_FILE": str(self.dir / CLOCK_SKEW_FILE)}
                    if any(f.kind == "clock_jump" for f in self.scenario.fault)
                    else None
                ),
            )
            supervisor.wait_ready("bot")
            self.progress.phase("  bot ready")
        if procs.agent.enabled:
            supervisor.start("agent", ["--interval", str(procs.agent.interval)])
            supervisor.wait_ready("agent")
            self.progress.phase("  agent ready")
        if procs.api.enabled:
            managed = supervisor.start("api", ["--port", "0"])
            section = supervisor.wait_ready("api")
            url = str(section["url"])
            # A restarted API (after a kill fault) must come back where the clients look.
            managed.argv[managed.argv.index("--port") + 1] = url.rsplit(":", 1)[1]
            self.progress.phase(f"  api ready at {url}")
            self._start_commands(supervisor)
            return url
        self._start_commands(supervisor)
        return None

    def _start_commands(self, supervisor: Supervisor) -> None:
        """Start the user's processes in the scenario's order, each once the one before is
        ready; placeholders are expanded with this repeat's directories and ports."""
        commands = self.scenario.commands
        (self.dir / "probe").mkdir(exist_ok=True)
        ports = {name: free_port() for name in commands}
        self.values.update({f"port.{name}": str(port) for name, port in ports.items()})
        for name, spec in commands.items():
            values = {**self.values, "port": str(ports[name])}
            cwd = self.base_dir / expand(spec.cwd, values) if spec.cwd else self.base_dir
            # The supervisor adds the run's settings (SPLITDB_*) for every process it starts.
            env = {"SPLITDB_PORT": str(ports[name])}
            env.update({key: expand(value, values) for key, value in spec.env.items()})
            argv = [expand(word, values) for word in spec.command]
            instrument = (
                spec.instrument if spec.instrument is not None else is_python(argv, cwd=cwd)
            )
            if instrument:
                # Only what the probe changes: its PYTHONPATH keeps the harness's own after it.
                inherited = {"PYTHONPATH": env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))}
                env.update(
                    probe_env(
                        self.dir / "probe" / f"{name}.jsonl",
                        process=name,
                        role=spec.role,
                        base_env={**env, **inherited},
                    )
                )
            self.instrumented[name] = instrument
            supervisor.start_command(
                name,
                spec,
                argv,
                env=env,
                cwd=cwd,
                ready=expand_ready(spec.ready, values),
            )
            section = supervisor.wait_ready(name)
            self.progress.phase(
                f"  {name} ready (pid {section['pid']}"
                + (", instrumented)" if instrument else ", not instrumented)")
            )

    def _as_role(self, group: Any) -> dict[str, Any]:
        """For a bypass worker under enforcement = "os": the user it becomes first."""
        if group.kind != "bypass" or self.identities is None:
            return {}
        who = self.identities[group.role]
        return {"as_user": {"uid": who.uid, "gid": who.gid, "groups": list(who.groups)}}

    def _plans(self, t0: float, api_url: str | None) -> list[WorkerPlan]:
        plans = []
        end = t0 + self.scenario.duration
        for g_index, group in enumerate(self.scenario.load):
            name = group.name or f"{group.kind}{g_index}"
            settings = group.model_dump(mode="json")
            if group.kind == "http":
                settings["urls"] = [expand(url, self.values) for url in settings["urls"]]
            start = t0 + group.start
            stop = min(end, start + group.duration) if group.duration else end
            for w in range(group.workers):
                plans.append(
                    WorkerPlan(
                        group=f"load-{name}",
                        index=w,
                        kind=group.kind,
                        settings=settings,
                        topology=str(self.topology_path),
                        data_dir=str(self.data_dir),
                        events=str(self.dir / "events" / f"load-{name}-{w}.jsonl"),
                        start_at=start,
                        stop_at=stop,
                        seed=self.seed,
                        symbols=self.symbols,
                        api_url=api_url,
                        scratch=str(self.dir / "scratch"),
                        extra={**self._as_role(group), **self.data.worker_extra()},
                    )
                )
        for f_index, fault in enumerate(self.scenario.fault):
            if fault.kind in HOLD_FAULTS and fault.at is not None:
                start = t0 + fault.at
                plans.append(
                    WorkerPlan(
                        group=f"fault-hold{f_index}",
                        index=0,
                        kind="hold",
                        settings={
                            "role": fault.target,
                            "database": fault.database,
                            "hold": fault.hold,
                            "write": fault.kind == "write_transaction",
                        },
                        topology=str(self.topology_path),
                        data_dir=str(self.data_dir),
                        events=str(self.dir / "events" / f"fault-hold{f_index}-0.jsonl"),
                        start_at=start,
                        stop_at=start + 0.01,
                        seed=self.seed,
                    )
                )
        return plans

    def _drive(
        self, supervisor: Supervisor, t0: float, workers: list[tuple[WorkerPlan, Any]]
    ) -> None:
        """Until the load ends: apply faults when due, sample resources, show progress.

        While a fault is still pending or a restarted process is not yet ready when the load
        ends, the run goes on (up to `FAULT_GRACE_S`) so the fault is applied, not dropped.
        """
        end = t0 + self.scenario.duration
        acks = _AckCounter(supervisor.events_path("bot"))
        schedule = FaultSchedule(
            supervisor,
            self.scenario.fault,
            t0,
            acks.count,
            log=self.progress.phase,
            around_crash=self._around_crash,
            end_backends=self.data.end_backends,
        )
        self.fault_schedule = schedule
        next_sample = 0.0
        try:
            while True:
                now = time.time()
                if now >= end and (not schedule.busy or now >= end + FAULT_GRACE_S):
                    break
                schedule.tick(now)
                for record in supervisor.follow_restart_policies():
                    self.progress.phase(f"  {record.name}: {record.how}")
                if now >= next_sample:
                    next_sample = now + SAMPLE_EVERY_S
                    self.sample(supervisor, workers, now - t0)
                slept = time.monotonic()
                time.sleep(_LOOP_SLEEP_S)
                if now < end:
                    self.wake_ms.append((time.monotonic() - slept - _LOOP_SLEEP_S) * 1000)
        finally:
            schedule.finish(time.time())

    def sample(
        self, supervisor: Supervisor, workers: list[tuple[WorkerPlan, Any]], at_s: float
    ) -> None:
        pids = {m.pid: m.name for m in supervisor.processes.values() if m.alive()}
        pids.update({proc.pid: plan.name for plan, proc in workers if proc.pid and proc.is_alive()})
        for pid, name in pids.items():
            stat = _proc_stat(pid)
            if stat is not None:
                self.process_stats[pid] = {"name": name, **stat}
        server = self.data.server_usage()
        if server is not None:
            # A database server's work, beside the processes' (on SQLite they do it themselves).
            self.process_stats[server[0]] = {"name": "postgres", **server[1]}
        self.samples.append({"t_s": round(at_s, 3), "wal_bytes": self.data.wal_bytes()})
        if self.scenario.commands:
            running = sum(
                1 for name in self.scenario.commands if supervisor.processes[name].alive()
            )
            self.progress.live(
                f"  {max(at_s, 0):6.1f}/{self.scenario.duration:g} s  your processes running "
                f"{running} of {len(self.scenario.commands)}"
            )
            return
        try:
            sections = supervisor.board.read()["sections"]
        except Exception:  # the board is checked at the end; progress just skips a beat
            sections = {}
        bot = sections.get("bot", {})
        api = sections.get("api", {})
        self.progress.live(
            f"  {max(at_s, 0):6.1f}/{self.scenario.duration:g} s  ticks committed "
            f"{bot.get('committed', 0):>9}  busy {bot.get('busy', 0)}  pending "
            f"{bot.get('pending', 0)}  api requests logged "
            f"{api.get('request_log', {}).get('logged', 0)}"
        )

    def _check_api(self, api_url: str) -> checks.Check:
        return self.data.api_answers(api_url, self.symbols)

    def _evaluate(
        self, supervisor: Supervisor, workers: list[tuple[WorkerPlan, Any]], load_s: float
    ) -> Repeat:
        events: dict[str, list[Event]] = {}
        for path in sorted((self.dir / "events").glob("*.jsonl")):
            events[path.stem] = list(read_events(path))
        # What the probe saw inside the user's processes: its busy/locked errors count as
        # contention like the reference processes' own.
        self.probe = observe_processes(self.dir / "probe", list(self.scenario.commands))
        for name, errors in errors_as_events(self.probe).items():
            events.setdefault(name, []).extend(errors)
        signal_faults = self.fault_schedule.records if self.fault_schedule else []
        if self.fault_schedule is None and self.scenario.fault:
            # The run stopped before its load started: every signal fault is reported anyway.
            unrun = FaultSchedule(supervisor, self.scenario.fault, self.t0, lambda: 0)
            signal_faults = unrun.records
            for record in signal_faults:
                record["reason"] = "the run was cut short before the load started"
        faults = sorted(
            [*signal_faults, *hold_records(self.scenario.fault, events, self.t0)],
            key=lambda r: int(r["index"]),
        )
        judge_board_repairs(faults, supervisor.board, self.t0)
        bot_events = events.get("bot", [])
        tails = {m.name: stderr_tail(m.stderr) for m in supervisor.processes.values()}
        worker_failures = [
            checks.Check(
                f"worker.{plan.name}",
                False,
                f"load worker {plan.name} exited with code {proc.exitcode}",
                {"events": [e for e in events.get(plan.name, []) if e["op"] == "worker_error"][:3]},
            )
            for plan, proc in workers
            if proc.exitcode not in (0, None)
        ]
        metrics: dict[str, Any] = {
            "load_s": load_s,
            "bot": bot_metrics(bot_events, window=(self.t0, self.t0 + load_s)),
            "analysis_lag": analysis_lag(bot_events, events.get("agent", [])),
            "groups": {},
            "processes": _resources(self.process_stats),
            "wal": _wal_summary(self.samples),
            "series": time_series(events, start_wall=self.t0, seconds=load_s),
        }
        for group, kind in sorted({(p.group, p.kind) for p, _ in workers}):
            evs = [e for name, es in events.items() if name.startswith(group + "-") for e in es]
            plans = [p for p, _ in workers if p.group == group]
            # A group that runs for part of the load (`start`, `duration`) is measured over
            # its own active window, not the whole scenario's.
            active_s = max(p.stop_at for p in plans) - min(p.start_at for p in plans)
            metrics["groups"][group] = {
                "kind": kind,
                "workers": len(plans),
                "active_s": round(active_s, 3),
                **operation_metrics(
                    evs,
                    ops={"read", "http", "write", "attempt", "hold", "status"},
                    seconds=active_s,
                ),
            }
        cpu_s = metrics["processes"].get("bot", {}).get("cpu_s")
        committed = metrics["bot"]["ticks_committed"]
        # CPU for the bot's whole life (all incarnations) per tick committed in the window.
        metrics["bot"]["cpu_us_per_tick"] = (
            round(cpu_s * 1e6 / committed, 2) if cpu_s and committed else None
        )
        metrics["machine"] = machine_state(metrics, self.wake_ms)
        if self.scenario.commands:
            metrics["observed"] = observed_figures(self.probe, self.instrumented)
        found = [
            *(
                [checks.Check("run", False, "the run was cut short", {"error": self.aborted})]
                if self.aborted
                else []
            ),
            checks.processes(supervisor.exits, tails),
            checks.faults(faults),
            *worker_failures,
            *self._system_checks(events),
            checks.judged("integrity", self.data.integrity, self.data.errors),
        ]
        if self.migrated is not None:
            found.append(self.migrated.check())
        if self.scenario.processes.bot.enabled:
            # Acknowledged before a move too: each of those ticks must be in the new files.
            before = self.migrated.bot_events if self.migrated is not None else None
            paths = [*([before] if before is not None else []), supervisor.events_path("bot")]
            found.append(
                checks.judged("durability", lambda: self.data.durability(paths), self.data.errors)
            )
        if self.scenario.processes.agent.enabled:
            found.append(checks.judged("analysis", self.data.analysis, self.data.errors))
        if self.api_check is not None:
            found.append(self.api_check)
        if self.scenario.invariant:
            # Checked once more now, every process stopped: the state the run left behind.
            self.invariants.final()
            found.append(self.invariants.check())
        found.extend(_expectations(self.scenario, metrics, events))
        # The figures above are plain mappings while the checks read them; the report types them.
        return Repeat(
            index=self.index,
            seed=self.seed,
            dir=str(self.dir),
            topology=self.topology.to_mapping(),
            metrics=Metrics.model_validate(metrics),
            checks=[CheckResult.model_validate(c.to_json()) for c in found],
            faults=[FaultRecord.model_validate(f) for f in faults],
            samples=[WalSample.model_validate(s) for s in self.samples],
            variant=self.variant,
        )

    def _system_checks(self, events: dict[str, list[Event]]) -> list[checks.Check]:
        """Contention, permissions and the reference processes' own checks.

        The user's processes are judged on what the probe saw in them; one it could not see
        is named as not observed in the checks that would need its evidence.
        """
        commands = self.scenario.commands
        expect = self.scenario.expect
        unseen = not_observed(
            self.instrumented, {n: list(c.command) for n, c in commands.items()}, self.probe
        )
        contention = self.data.contention(events, max_busy=expect.max_busy_events)
        found = [mark_not_observed(contention, unseen)]
        if any(g.kind == "bypass" for g in self.scenario.load):
            found.append(checks.bypass(events, self.topology.enforcement))
        if not commands:
            return [
                *found,
                checks.permissions(events),
                checks.status_board(events, self.data_dir / self.topology.status),
                checks.judged("duplicates", self.data.duplicates, self.data.errors),
                self.data.settings(events),
            ]
        roles = {name: spec.role for name, spec in commands.items()}
        writes = mark_not_observed(
            observed_writes(self.topology, self.data_dir, roles, self.probe), unseen
        )
        if self.scenario.reference_roles() or any(g.kind == "violator" for g in self.scenario.load):
            writes = checks.combined(writes, checks.permissions(events))
        found.append(writes)
        connections = observed_connections(self.topology, self.data_dir, roles, self.probe)
        found.append(mark_not_observed(connections, unseen))
        if self.scenario.reference_roles():
            found.append(checks.status_board(events, self.data_dir / self.topology.status))
            found.append(self.data.settings(events))
        return found


def machine_state(metrics: dict[str, Any], harness_wake_ms: list[float]) -> dict[str, Any]:
    """Could this run offer its load? Judged from how late idle processes were woken.

    Load workers sleep between sends, and so does the run's own loop; on a machine with a free
    core the OS wakes them within a millisecond or two. When the p99 delay passes
    `STARVED_WAKE_MS`, the machine (not the system under test) was short of CPU, and
    machine-dependent expectations are reported as warnings instead of judged.
    """
    wakes = [
        g["generator_wake_p99_ms"]
        for g in metrics["groups"].values()
        if g.get("generator_wake_p99_ms") is not None
    ]
    own = sorted(harness_wake_ms)
    harness_p99 = None if not own else round(percentile(own, 99) or 0.0, 3)
    worst = max([*wakes, *([harness_p99] if harness_p99 is not None else [])], default=None)
    starved = worst is not None and worst > STARVED_WAKE_MS
    return {
        "generator_wake_p99_ms": max(wakes, default=None),
        "harness_wake_p99_ms": harness_p99,
        "starved_wake_ms": STARVED_WAKE_MS,
        "could_offer_load": not starved,
    }


def _expectations(
    scenario: Scenario, metrics: dict[str, Any], events: dict[str, list[Event]]
) -> list[checks.Check]:
    expect = scenario.expect
    busy = sum(
        checks.errors_in(e)
        for evs in events.values()
        for e in evs
        if e.get("outcome") in ("busy", "locked")
    )
    groups = metrics["groups"]
    api = [g for g in groups.values() if g["kind"] in ("api", "http")]
    readers = [g for g in groups.values() if g["kind"] == "reader"]

    def worst(chosen: list[dict[str, Any]], block: str, key: str) -> float | None:
        values = [g[block][key] for g in chosen if g.get(block) and g[block][key] is not None]
        return max(values) if values else None

    def answered(chosen: list[dict[str, Any]]) -> float | None:
        offered = sum(g.get("offered") or 0 for g in chosen)
        return round(sum(g["ok"] for g in chosen) / offered, 4) if offered else None

    bot = metrics["bot"]
    offered_rate = scenario.processes.bot.rate if scenario.processes.bot.enabled else 0
    wal_max = max(metrics["wal"]["max_bytes"].values(), default=0)
    table: list[tuple[str, float | None, bool]] = [
        ("min_busy_events", busy, False),
        ("min_ingest_ticks_per_s", bot["ticks_per_s"], False),
        (
            "min_ingest_fraction",
            round(bot["ticks_per_s"] / offered_rate, 4)
            if offered_rate and bot["ticks_per_s"] is not None
            else None,
            False,
        ),
        ("min_rows_per_commit", bot["rows_per_commit"], False),
        ("max_commit_p99_ms", bot["commit_latency"]["p99_ms"], True),
        ("max_api_p99_ms", worst(api, "latency", "p99_ms"), True),
        ("max_api_response_p99_ms", worst(api, "response", "p99_ms"), True),
        ("max_api_response_max_ms", worst(api, "response", "max_ms"), True),
        (
            "max_api_silence_ms",
            max(
                (g["longest_silence_ms"] for g in api if g.get("longest_silence_ms")), default=None
            ),
            True,
        ),
        (
            "min_api_requests_per_s",
            sum(g["ok_per_s"] or 0 for g in api) if api else None,
            False,
        ),
        ("min_api_answered_fraction", answered(api), False),
        ("max_analysis_lag_p99_s", metrics["analysis_lag"]["p99_s"], True),
        ("max_reader_p99_ms", worst(readers, "latency", "p99_ms"), True),
        ("min_wal_bytes", wal_max, False),
        ("max_wal_bytes", wal_max, True),
        ("max_load_errors", sum(g["errors"] for g in groups.values()), True),
    ]
    machine = metrics["machine"]
    found = []
    for name, measured, upper in table:
        limit = getattr(expect, name)
        if limit is None:
            continue
        check = checks.threshold(name, measured, limit, upper=upper)
        if name in expect.machine_dependent:
            check = _machine_dependent(check, machine)
        found.append(check)
    return found


def _machine_dependent(check: checks.Check, machine: dict[str, Any]) -> checks.Check:
    """A machine-dependent expectation: judged when the run could offer its load, else a
    warning when missed. The summary says which."""
    wake = max(
        (v for v in (machine["generator_wake_p99_ms"], machine["harness_wake_p99_ms"]) if v),
        default=0.0,
    )
    if machine["could_offer_load"]:
        check.summary += (
            f" [machine-dependent; judged: idle processes woke within {wake:g} ms (p99)]"
        )
        return check
    if check.ok:
        check.summary += " [machine-dependent; met on a machine short of CPU]"
        return check
    check.ok = True
    check.warning = (
        f"not judged: the machine was short of CPU (idle processes woke {wake:g} ms late at "
        f"p99, over {machine['starved_wake_ms']:g} ms), so the run could not offer its load"
    )
    check.summary += f" [machine-dependent; WARNING, {check.warning}]"
    return check


class _AckCounter:
    """Counts the bot's acks by reading its event file incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.acks = 0

    def count(self) -> int:
        if not self.path.exists():
            return self.acks
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read()
        complete = chunk.rfind(b"\n") + 1
        self.offset += complete
        self.acks += chunk[:complete].count(b'"op":"ack"')
        return self.acks


def _proc_stat(pid: int) -> dict[str, Any] | None:
    """CPU seconds and peak RSS of a live process."""
    stat = read_stat(pid)
    if stat is None:
        return None
    return {"cpu_s": round(stat.cpu_s, 3), "peak_rss_mb": round(stat.peak_rss_mb, 1)}


def _resources(stats: dict[int, dict[str, Any]]) -> dict[str, Any]:
    by_name: dict[str, dict[str, Any]] = {}
    for pid, s in stats.items():
        entry = by_name.setdefault(s["name"], {"cpu_s": 0.0, "peak_rss_mb": 0.0, "pids": []})
        entry["cpu_s"] = round(entry["cpu_s"] + s["cpu_s"], 3)
        entry["peak_rss_mb"] = max(entry["peak_rss_mb"], s["peak_rss_mb"])
        entry["pids"].append(pid)
    return by_name


def _wal_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    files: dict[str, int] = {}
    for sample in samples:
        for name, size in sample["wal_bytes"].items():
            files[name] = max(files.get(name, 0), size)
    return {"max_bytes": files, "samples": len(samples)}
