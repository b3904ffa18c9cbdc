"""The coordinator of a step script: real processes, one step at a time, the same order every run.

Each named process of the script is its own OS process (`python -m harness.interleavings.actor`)
holding its connections for the whole run. The coordinator sends one step to one process and waits
for its reply before sending the next: that wait is the barrier that makes the interleaving exact. A
`background` step is only waited for until it has started; its `join` step waits for its end.

Every wait has a timeout (the step's `timeout`, else the script's): a process that does not
answer in time is killed and its step recorded as `timeout`; a process that dies is recorded as
`exited` with its exit code, and later steps for it are recorded the same way without waiting.
A run never hangs on a process and never raises for one; `RunTrace.ok` says whether every
step matched its expectations.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from harness.interleavings.expect import mismatches
from harness.interleavings.script import JoinStep, ScriptFile, SleepStep, Step
from harness.interleavings.trace import ProcessRecord, RunTrace, StepResult
from reference.access import AccessManager
from reference.errors import SplitdbError

StepHook = Callable[[StepResult], None]

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_EOF: dict[str, Any] = {"eof": True}
# How long a process may take to exit after its input closes before it is killed.
_SHUTDOWN_S = 5.0
_STDERR_TAIL = 600


@dataclass
class _Pending:
    index: int
    step: Step
    at_ms: float


class _Process:
    """One actor process as the coordinator sees it: its replies arrive through a queue."""

    def __init__(self, name: str, role: str, popen: subprocess.Popen[str], stderr: Path) -> None:
        self.name = name
        self.role = role
        self.popen = popen
        self.stderr = stderr
        self.replies: queue.Queue[dict[str, Any]] = queue.Queue()
        self.gone: tuple[str, int | None, str] | None = None
        self.pending: _Pending | None = None
        self.timed_out: int | None = None
        assert popen.stdout is not None
        threading.Thread(target=self._read, args=(popen.stdout,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(message, dict):
                self.replies.put(message)
        self.replies.put(_EOF)

    def send(self, message: dict[str, Any]) -> bool:
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(json.dumps(message) + "\n")
            self.popen.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._mark_exited()
            return False
        return True

    def wait_for(self, key: str, index: int, timeout: float) -> dict[str, Any] | None:
        """The reply `{key: index, ...}`; None (and `gone` set) on timeout or exit."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                message = self.replies.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                self.kill()
                self.timed_out = index
                self.gone = (
                    "timeout",
                    None,
                    f"process {self.name!r} gave no reply to step[{index}] within "
                    f"{timeout:g} s; it was killed",
                )
                return None
            if message is _EOF:
                self._mark_exited()
                return None
            if message.get(key) == index:
                return message

    def _mark_exited(self) -> None:
        if self.gone is not None:
            return
        try:
            code = self.popen.wait(timeout=_SHUTDOWN_S)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.popen.returncode
        tail = self.stderr_tail().strip().splitlines()
        last = f": {tail[-1]}" if tail else ""
        self.gone = ("exited", code, f"process {self.name!r} exited with code {code}{last}")

    def kill(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=_SHUTDOWN_S)

    def stop(self) -> None:
        """Close its input (it closes its connections and exits); kill it if it lingers."""
        try:
            assert self.popen.stdin is not None
            self.popen.stdin.close()
        except OSError:
            pass
        try:
            self.popen.wait(timeout=_SHUTDOWN_S)
        except subprocess.TimeoutExpired:
            self.kill()

    def stderr_tail(self) -> str:
        try:
            data = self.stderr.read_bytes()
        except OSError:
            return ""
        return data[-_STDERR_TAIL:].decode("utf-8", "replace")

    def record(self) -> ProcessRecord:
        code = self.popen.returncode
        tail = self.stderr_tail() if code not in (0, None) or self.gone else ""
        return ProcessRecord(self.role, self.popen.pid, code, tail)


def run_script(
    loaded: ScriptFile,
    *,
    index: int = 1,
    work_dir: Path | None = None,
    on_step: StepHook | None = None,
) -> RunTrace:
    """Run every step of the script once on fresh databases and judge each step.

    `work_dir` keeps the run's files (databases, topology, each process's stderr) there; by
    default they go to a temporary directory removed afterwards. `on_step` is called with each
    step's result as soon as it is judged (a background step's at its join).
    """
    if work_dir is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        return _Run(loaded, index, work_dir, on_step).run()
    with tempfile.TemporaryDirectory(prefix="splitdb-interleave-") as tmp:
        return _Run(loaded, index, Path(tmp), on_step).run()


class _Run:
    def __init__(self, loaded: ScriptFile, index: int, work_dir: Path, on_step: StepHook | None):
        self.loaded = loaded
        self.script = loaded.script
        self.index = index
        self.dir = work_dir
        self.on_step = on_step
        self.data_dir = work_dir / "data"
        self.processes: dict[str, _Process] = {}
        self.results: dict[int, StepResult] = {}
        self.values: dict[str, Any] = {}
        self.t0 = time.perf_counter()

    def run(self) -> RunTrace:
        topology_file = self.dir / "topology.toml"
        topology_file.write_text(self.loaded.topology.to_toml(), encoding="utf-8")
        try:
            AccessManager(self.loaded.topology, self.data_dir).initialize()
        except (SplitdbError, sqlite3.Error) as exc:
            return RunTrace(self.index, (), error=f"cannot create the databases: {exc}")
        try:
            error = self._start(topology_file)
            if error is None:
                self.t0 = time.perf_counter()
                for i, step in enumerate(self.script.step):
                    self._step(i, step)
        finally:
            for proc in self.processes.values():
                proc.stop()
        wall = time.perf_counter() - self.t0
        steps = tuple(self.results[i] for i in sorted(self.results))
        records = {name: p.record() for name, p in self.processes.items()}
        return RunTrace(self.index, steps, records, wall, error)

    def _start(self, topology_file: Path) -> str | None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        for name, spec in self.script.processes.items():
            stderr = self.dir / f"{name}.stderr"
            with open(stderr, "wb") as err:
                popen = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "harness.interleavings.actor",
                        "--topology",
                        str(topology_file),
                        "--data-dir",
                        str(self.data_dir),
                        "--role",
                        spec.role,
                        "--databases",
                        ",".join(self.script.databases_of(name)),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    encoding="utf-8",
                    env=env,
                )
            self.processes[name] = _Process(name, spec.role, popen, stderr)
        # Started together, awaited in turn: start-up costs one interpreter start, not three.
        for proc in self.processes.values():
            if proc.wait_for("ready", proc.popen.pid, self.script.timeout) is None:
                assert proc.gone is not None
                return f"process {proc.name!r} did not start: {proc.gone[2]}"
        return None

    def _elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.t0) * 1000, 3)

    def _step(self, i: int, step: Step) -> None:
        at_ms = self._elapsed_ms()
        timeout = step.timeout or self.script.timeout
        if isinstance(step, SleepStep) and step.process is None:
            begun = time.perf_counter()
            time.sleep(step.seconds)
            waited = round((time.perf_counter() - begun) * 1000, 3)
            self._judge(step, StepResult(i, step.do, "ok", at_ms=at_ms, duration_ms=waited))
            return
        assert step.process is not None
        proc = self.processes[step.process]
        if isinstance(step, JoinStep):
            self._join(i, step, proc, at_ms, timeout)
            return
        db = self.script.database_of(step)
        base = StepResult(
            i,
            step.do,
            "ok",
            process=proc.name,
            role=proc.role,
            pid=proc.popen.pid,
            db=db,
            background=step.background,
            at_ms=at_ms,
            note=step.note,
        )
        message = {
            "index": i,
            "step": step.model_dump(mode="json"),
            "db": db,
            "background": step.background,
        }
        if proc.gone is not None or not proc.send(message):
            self._judge(step, _failed(base, proc))
            return
        since = time.perf_counter()
        if step.background:
            if proc.wait_for("started", i, timeout) is None:
                self._judge(step, _failed(base, proc, since))
            else:
                proc.pending = _Pending(i, step, at_ms)
            return
        reply = proc.wait_for("done", i, timeout)
        self._judge(step, _failed(base, proc, since) if reply is None else _done(base, reply))

    def _join(self, i: int, step: JoinStep, proc: _Process, at_ms: float, timeout: float) -> None:
        begun = time.perf_counter()
        pending, proc.pending = proc.pending, None
        outcome, error = "ok", None
        if pending is not None:
            base = StepResult(
                pending.index,
                pending.step.do,
                "ok",
                process=proc.name,
                role=proc.role,
                pid=proc.popen.pid,
                db=self.script.database_of(pending.step),
                background=True,
                at_ms=pending.at_ms,
                note=pending.step.note,
            )
            wait = step.timeout or pending.step.timeout or timeout
            reply = proc.wait_for("done", pending.index, wait) if proc.gone is None else None
            sent = self.t0 + pending.at_ms / 1000
            failed = _failed(base, proc, sent) if reply is None else None
            self._judge(pending.step, failed or _done(base, reply or {}))
            if reply is None and proc.gone is not None and proc.gone[0] == "timeout":
                outcome, error = "timeout", proc.gone[2]
        waited = round((time.perf_counter() - begun) * 1000, 3)
        result = StepResult(
            i,
            step.do,
            outcome,
            process=proc.name,
            role=proc.role,
            pid=proc.popen.pid,
            error=error,
            at_ms=at_ms,
            duration_ms=waited,
            note=step.note,
        )
        self._judge(step, result)

    def _judge(self, step: Step, result: StepResult) -> None:
        judged = replace(result, mismatches=tuple(mismatches(step, result, self.values)))
        self.results[judged.index] = judged
        if step.name is not None:
            self.values[step.name] = judged.value
        if self.on_step is not None:
            self.on_step(judged)


def _done(base: StepResult, reply: dict[str, Any]) -> StepResult:
    return replace(
        base,
        outcome=str(reply["outcome"]),
        code=reply.get("code"),
        error=reply.get("error"),
        duration_ms=float(reply.get("duration_ms", 0.0)),
        row_count=reply.get("row_count"),
        rows=reply.get("rows"),
        value=reply.get("value"),
    )


def _failed(base: StepResult, proc: _Process, since: float | None = None) -> StepResult:
    """The step as the process's end left it; `since`: when the coordinator began waiting."""
    assert proc.gone is not None
    outcome, code, why = proc.gone
    if outcome == "timeout" and proc.timed_out != base.index:
        # Only the step that went unanswered timed out; for later ones the process is gone.
        outcome, code = "exited", proc.popen.returncode
    waited = 0.0 if since is None else round((time.perf_counter() - since) * 1000, 3)
    return replace(base, outcome=outcome, code=code, error=why, duration_ms=waited)
