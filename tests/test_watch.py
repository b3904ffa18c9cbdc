"""`splitdb watch -- COMMAND...`: the command runs as it would alone (streams, exit code), and a
summary of what its Python processes did with sqlite3 follows on stderr.

The slow tests run `python -m harness.cli watch` as a real process; deadlines only bound waits.
The fast tests are the bad inputs, refused before anything starts.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import termios
import textwrap
from pathlib import Path
from typing import Any

import pytest

from harness.cli import main
from harness.probe.observed import observe

REPO = Path(__file__).resolve().parent.parent
DEADLINE_S = 120.0


def _watch(
    tmp_path: Path, *command: str, stdin: str | None = None, events: Path | None = None
) -> subprocess.CompletedProcess[str]:
    flags = ["--events", str(events)] if events else []
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "watch", *flags, "--", *command],
        cwd=tmp_path,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _python(tmp_path: Path, name: str, code: str) -> list[str]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(code), encoding="utf-8")
    return [sys.executable, str(path)]


# --- bad input: one line, exit 2, nothing run -----------------------------------------------------


@pytest.mark.parametrize("argv", [["watch"], ["watch", "--"], ["watch", "--events", "e.jsonl"]])
def test_watch_without_a_command_says_where_it_goes(argv: list[str], capsys: Any) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "splitdb watch -- python app.py" in err[0], err


def test_watch_of_a_command_not_on_path_names_it(capsys: Any) -> None:
    assert main(["watch", "--", "no-such-command-for-splitdb", "--flag"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "'no-such-command-for-splitdb' is not on PATH" in line


def test_watch_of_a_file_that_cannot_run_says_why(tmp_path: Path, capsys: Any) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    for program, why in [
        (script, "is not executable"),
        (tmp_path / "missing", "does not exist"),
        (tmp_path, "is a directory"),
    ]:
        assert main(["watch", "--", str(program)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert f"'{program}' {why}" in line


def test_watch_refuses_an_events_file_it_cannot_write(capsys: Any) -> None:
    assert main(["watch", "--events", "/etc/passwd/x.jsonl", "--", "true"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--events /etc/passwd/x.jsonl" in line


# --- the command runs as it would alone -----------------------------------------------------------

WRITER = """
import sqlite3, sys
conn = sqlite3.connect("watched.db")
conn.execute("CREATE TABLE t (a)")
for line in sys.stdin:
    conn.execute("INSERT INTO t VALUES (?)", (line.strip(),))
conn.commit()
print("rows", conn.execute("SELECT count(*) FROM t").fetchone()[0])
raise SystemExit(3)
"""


@pytest.mark.slow
def test_watch_passes_streams_and_exit_code_and_summarises_the_writes(tmp_path: Path) -> None:
    events = tmp_path / "kept.jsonl"
    proc = _watch(
        tmp_path, *_python(tmp_path, "writer.py", WRITER), stdin="a\nb\nc\n", events=events
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "rows 3\n"
    err = proc.stderr
    db = str((tmp_path / "watched.db").resolve())
    assert "exited 3" in err
    assert f"{db}  mode rwc" in err  # the connection, with its mode
    assert "busy/locked errors: none" in err
    insert = next(line for line in err.splitlines() if "INSERT INTO t VALUES (?)" in line)
    assert insert.split()[:2] == ["3x", "3"], insert  # count, rows
    assert "CREATE TABLE t (a)" in err
    assert f"events: {events}" in err
    assert observe([events]).writes[(db, "main", "INSERT INTO t VALUES (?)")].count == 3


CONTENTION = """
import sqlite3, subprocess, sys
conn = sqlite3.connect("shared.db", isolation_level=None)
conn.execute("CREATE TABLE t (a)")
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO t VALUES (1)")
# A second Python process, started by this one: probed too, through the inherited environment.
subprocess.run([sys.executable, "-c", '''
import sqlite3
try:
    sqlite3.connect("shared.db", timeout=0.05).execute("INSERT INTO t VALUES (2)")
except sqlite3.OperationalError as exc:
    print("waiter:", exc)
'''], check=True)
conn.execute("COMMIT")
"""


@pytest.mark.slow
def test_watch_summarises_busy_errors_of_every_python_process(tmp_path: Path) -> None:
    proc = _watch(tmp_path, *_python(tmp_path, "contention.py", CONTENTION))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "waiter: database is locked\n"
    err = proc.stderr
    assert "observed: 2 Python processes" in err
    assert "busy/locked errors (1), most frequent first:" in err
    busy = next(line for line in err.splitlines() if line.strip().startswith("busy "))
    assert "1x" in busy and "INSERT INTO t VALUES (?)" in busy and "SQLITE_BUSY" in busy
    assert str((tmp_path / "shared.db").resolve()) in busy


@pytest.mark.slow
def test_watch_of_a_command_that_is_not_python_says_not_observed(tmp_path: Path) -> None:
    proc = _watch(tmp_path, "sh", "-c", "echo from sh; exit 4")
    assert (proc.returncode, proc.stdout) == (4, "from sh\n")
    assert "no Python process started with the probe (not observed)" in proc.stderr
    assert "writes" not in proc.stderr  # nothing that could pass for "no writes"


@pytest.mark.slow
def test_watch_reports_a_signal_death_as_a_shell_does(tmp_path: Path) -> None:
    proc = _watch(tmp_path, sys.executable, "-c", "import os; os.kill(os.getpid(), 15)")
    assert proc.returncode == 128 + signal.SIGTERM
    assert "was killed by SIGTERM (exit 143)" in proc.stderr


# --- Ctrl-C --------------------------------------------------------------------------------------

SLEEPER = """
import signal, sqlite3, sys
sqlite3.connect("s.db").execute("CREATE TABLE IF NOT EXISTS t (a)")
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
print("ready", flush=True)
info = signal.sigwaitinfo({signal.SIGINT})
print("sigint", info.si_code, info.si_pid, flush=True)
raise SystemExit(130)
"""


def _default_sigint() -> None:
    """A command typed at a terminal has SIGINT's default action, whatever pytest inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_a_sigint_sent_to_watch_is_forwarded_then_summarised(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "watch", "--", *_python(tmp_path, "s.py", SLEEPER)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=_default_sigint,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGINT)  # to watch alone, as `kill -INT` does
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    # The command got it from watch (a process: si_code SI_USER), not from a terminal.
    assert out.split() == ["sigint", "0", str(proc.pid)]
    assert "exited 130 (interrupted)" in err and "CREATE TABLE IF NOT EXISTS t (a)" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_at_a_terminal_reaches_the_command_from_the_terminal(tmp_path: Path) -> None:
    """The terminal sends SIGINT to the whole foreground group: the command gets it from the
    kernel (si_code SI_KERNEL), and watch, which got it too, waits for the command to end."""
    controller, terminal = os.openpty()

    def on_the_terminal() -> None:
        _default_sigint()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)  # after setsid: this pty is our terminal

    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "watch", "--", *_python(tmp_path, "s.py", SLEEPER)],
        cwd=tmp_path,
        stdin=terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=on_the_terminal,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    os.close(terminal)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        os.write(controller, b"\x03")  # Ctrl-C typed
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        os.close(controller)
    assert proc.returncode == 130, err
    assert out.split()[:2] == ["sigint", "128"]  # SI_KERNEL: from the terminal
    assert "exited 130 (interrupted)" in err and "Traceback" not in err
