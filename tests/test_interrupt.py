"""Ctrl-C, as a terminal sends it: SIGINT to the whole process group, at any moment.

A command started in its own session (`start_new_session=True`) is signalled with
`os.killpg(pgid, SIGINT)`, exactly what a terminal does to its foreground job: the command and
every child it started get the signal at once. What must follow: exit 130, one line saying so
(no traceback from any process), no process of the group left, and nothing left behind that
could pass for a finished run. Deadlines below only bound how long a test waits; nothing asserts
how fast anything happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import ComparisonError, ReportFormatError
from harness.results.compare import compare_paths
from harness.results.report import INTERRUPTED_MARKER, interrupted_phase, load_report
from tests.fixtures.reports import make_report, write_report

REPO = Path(__file__).resolve().parent.parent
# Give-up bounds for a loaded machine (both cores busy).
START_DEADLINE_S = 180.0
EXIT_DEADLINE_S = 120.0
GONE_DEADLINE_S = 60.0


def _sigint_as_at_a_terminal() -> None:
    """In the child: SIGINT's default action, as a command typed at a terminal has it.

    A job started in the background by a non-interactive shell (`cmd &`) inherits SIGINT
    ignored, and Python then installs no KeyboardInterrupt for it; these tests are about what a
    Ctrl-C does, so they must not depend on how pytest itself was started.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Command:
    """`python -m harness.cli ARGS` in its own session; its output collected as it comes."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.cli", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            preexec_fn=_sigint_as_at_a_terminal,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.pgid = self.proc.pid
        self.out: list[str] = []
        self.err: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    def wait_for(self, text: str, deadline_s: float = START_DEADLINE_S) -> None:
        """Until a line of stdout or stderr holds `text` (fails if the command ends first)."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if any(text in line for line in [*self.out, *self.err]):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"no {text!r} line (exit {self.proc.poll()})\nstdout:\n{self.stdout}\n"
            f"stderr:\n{self.stderr}"
        )

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the whole process group."""
        os.killpg(self.pgid, signal.SIGINT)

    def finish(self) -> int:
        code = self.proc.wait(timeout=EXIT_DEADLINE_S)
        for reader in self._readers:
            reader.join(timeout=EXIT_DEADLINE_S)
        return code

    def group_gone(self) -> bool:
        """Whether every process of the group has ended (polled up to a generous deadline)."""
        deadline = time.monotonic() + GONE_DEADLINE_S
        while time.monotonic() < deadline:
            try:
                os.killpg(self.pgid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False

    def leftovers(self) -> str:
        ps = subprocess.run(
            ["ps", "-o", "pid,stat,cmd", "-g", str(self.pgid)], capture_output=True, text=True
        )
        return ps.stdout

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=EXIT_DEADLINE_S)


def assert_interrupted_cleanly(command: Command, code: int) -> None:
    stderr = command.stderr
    assert code == 130, f"exit {code}\nstdout:\n{command.stdout}\nstderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    said = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(said) == 1, stderr
    assert said[0].startswith("splitdb: interrupted; processes stopped"), stderr
    assert command.group_gone(), f"processes left:\n{command.leftovers()}"


# --- 1 and 2: Ctrl-C during the load of `splitdb run` -----------------------------------------


@dataclass
class InterruptedRun:
    code: int
    command: Command
    out_dir: Path


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory: pytest.TempPathFactory) -> InterruptedRun:
    """`splitdb run scenarios/default.toml --duration 5`, Ctrl-C once its load is running."""
    out_dir = tmp_path_factory.mktemp("interrupt") / "reports"
    command = Command(
        REPO,
        "run",
        str(REPO / "scenarios" / "default.toml"),
        "--duration",
        "5",
        "--out",
        str(out_dir),
    )
    try:
        command.wait_for("load:")
        # Into the load itself: the workers' start time is half a second after this line.
        time.sleep(1.0)
        command.interrupt()
        code = command.finish()
    finally:
        if command.proc.poll() is None or not command.group_gone():
            command.kill()
    return InterruptedRun(code, command, out_dir)


@pytest.mark.slow
def test_ctrl_c_during_a_run_exits_130_with_one_line_and_no_process_left(
    interrupted_run: InterruptedRun,
) -> None:
    assert_interrupted_cleanly(interrupted_run.command, interrupted_run.code)


@pytest.mark.slow
def test_an_interrupted_run_directory_is_kept_marked_and_refused_as_a_report(
    interrupted_run: InterruptedRun, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_dir,) = interrupted_run.out_dir.iterdir()
    assert not (run_dir / "report.json").exists()
    marker = (run_dir / INTERRUPTED_MARKER).read_text(encoding="utf-8")
    assert "repeat 1/1" in marker and "load" in marker, marker
    assert interrupted_phase(run_dir) == "repeat 1/1, load"
    # The evidence is kept: the repeat's event logs and process logs.
    assert list((run_dir / "repeat-1" / "events").glob("*.jsonl"))
    # The one line names the directory: it is where the evidence is.
    (said,) = [
        line for line in interrupted_run.command.stderr.splitlines() if "interrupted" in line
    ]
    assert str(run_dir) in said, said
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"splitdb: error: {run_dir} was interrupted at repeat 1/1, load; it has no report\n"
    )


# --- 2 and 3 without processes: a marked directory as a user hands it to report and compare -----


def _interrupted_dir(run_dir: Path, phase: str = "repeat 2/5, load") -> Path:
    """A run directory as an interrupted `splitdb run` leaves it: no report, a status board."""
    data = run_dir / "repeat-1" / "data"
    data.mkdir(parents=True)
    (data / "shared_memory.json").write_text(
        json.dumps({"schema": "splitdb.status", "version": 1, "sections": {}}), encoding="utf-8"
    )
    (run_dir / "scenario.toml").write_text('description = "x"\n', encoding="utf-8")
    from harness.results.report import mark_interrupted

    mark_interrupted(run_dir, phase)
    return run_dir


def test_a_marked_run_directory_gives_one_line_to_report_and_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = _interrupted_dir(tmp_path / "default-20260101T000000Z-0001")
    expected = f"{run_dir} was interrupted at repeat 2/5, load; it has no report"
    with pytest.raises(ReportFormatError) as found:
        load_report(run_dir)
    assert str(found.value) == expected
    with pytest.raises(ReportFormatError, match="was interrupted at repeat 2/5, load"):
        load_report(run_dir / "report.json")
    good = write_report(make_report(repeats=5), tmp_path / "good")
    for argv in (
        ["report", str(run_dir)],
        ["replay", str(run_dir)],
        ["compare", str(good), str(run_dir)],
        ["compare", str(run_dir), str(good)],
    ):
        assert main(argv) == 2
        assert capsys.readouterr().err == f"splitdb: error: {expected}\n"


def test_compare_of_a_reports_directory_skips_an_interrupted_run_and_other_json(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    for i in range(2):
        write_report(make_report(repeats=3), reports / f"default-{i}")
    _interrupted_dir(reports / "default-9")
    # JSON that is no report, not named report.json, beside the runs: skipped, not an error.
    (reports / "notes.json").write_text(json.dumps({"schema": "other", "x": 1}))
    (reports / "default-1" / "status.json").write_text(json.dumps({"schema": "splitdb.status"}))
    new = write_report(make_report(repeats=5), tmp_path / "new")
    comparison = compare_paths([reports], [new])
    (group,) = comparison.groups
    assert group.base_samples == 6 and len(group.base_sources) == 2


def test_a_directory_with_only_an_interrupted_run_has_no_report_to_compare(
    tmp_path: Path,
) -> None:
    reports = tmp_path / "reports"
    _interrupted_dir(reports / "default-9")
    # Unmarked too (a run killed outright): its status board is still no report.
    _interrupted_dir(reports / "default-8")
    (reports / "default-8" / INTERRUPTED_MARKER).unlink()
    new = write_report(make_report(repeats=5), tmp_path / "new")
    with pytest.raises(ComparisonError, match=r"no report\.json"):
        compare_paths([reports], [new])


# --- 4: Ctrl-C while the command line is still starting ----------------------------------------
# A real Ctrl-C within the first fraction of a second lands at a moment no test can choose, so
# these make the moment deterministic: the handler raises, the parser build raises, and (with a
# real SIGINT) the import of a command module is interrupted. What main cannot cover is Python's
# own start-up and the entry script's `from harness.cli import main`, which imports nothing of
# splitdb's but harness/cli.py itself (see its module docstring).

ONE_LINE = "splitdb: interrupted; processes stopped\n"


def test_ctrl_c_in_a_command_handler_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import harness.commands.scenarios

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.commands.scenarios, "handle", interrupted)
    assert main(["scenarios"]) == 130
    assert capsys.readouterr().err == ONE_LINE


def test_ctrl_c_while_the_parser_is_built_is_one_line_and_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import harness.cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(harness.cli, "_build_parser", interrupted)
    assert main(["run", "--help"]) == 130
    assert capsys.readouterr().err == ONE_LINE


# The entry script's two lines, with a real SIGINT sent to the process while a command module
# is being imported (a meta path finder sees the import start).
_INTERRUPTED_IMPORT = """
import os, signal, sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == "harness.commands.search":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
from harness.cli import main
sys.exit(main(["search", "--help"]))
"""


@pytest.mark.slow
def test_a_real_sigint_while_the_commands_are_imported_is_one_line_and_exit_130() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _INTERRUPTED_IMPORT],
        cwd=REPO,
        preexec_fn=_sigint_as_at_a_terminal,
        capture_output=True,
        text=True,
        timeout=EXIT_DEADLINE_S,
    )
    assert (done.returncode, done.stderr, done.stdout) == (130, ONE_LINE, "")


# --- 5: Ctrl-C during `splitdb search` -----------------------------------------------------------


@pytest.mark.slow
def test_ctrl_c_during_a_search_ends_it_with_exit_130(tmp_path: Path) -> None:
    # A budget that would run a minute: on the seed layout (each role writes its own file) the
    # search finds no contention, so it runs until Ctrl-C or the budget.
    command = Command(
        tmp_path,
        "search",
        "--max-examples",
        "100000",
        "--max-seconds",
        "60",
    )
    try:
        command.wait_for("budget:")
        time.sleep(2.0)  # into the search itself (hypothesis generating, examples running)
        command.interrupt()
        # Well before the budget's 60 s: a search that ignored Ctrl-C would run them all.
        code = command.proc.wait(timeout=30)
        command.finish()
    finally:
        if command.proc.poll() is None:
            command.kill()
    assert_interrupted_cleanly(command, code)
    assert "none found" not in command.stdout, command.stdout


def test_a_ctrl_c_that_something_swallows_still_ends_the_search(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failure behind an ignored Ctrl-C, made deterministic: hypothesis loses a
    KeyboardInterrupt raised inside its gc callback. Here a real SIGINT arrives while the search
    runs an example, in code that swallows KeyboardInterrupt as that callback does; the search
    must still end, with KeyboardInterrupt, long before its budget."""
    import harness.interleavings.search as search_module
    from reference.topology import load_topology

    real_execute = search_module.execute
    calls = [0]

    def execute(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 20:
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler runs here: a KeyboardInterrupt would be lost
            except KeyboardInterrupt:
                pass
        return real_execute(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(search_module, "execute", execute)
    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        search_module.search(load_topology("seed"), max_examples=100_000, max_seconds=60)
    assert signal.getsignal(signal.SIGINT) is previous
    assert calls[0] < 1000, calls  # ended at the next example, not by the budget
