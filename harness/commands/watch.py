"""`splitdb watch -- COMMAND...`: run one command with the probe on the sqlite3 of every Python
process it starts, then say what they did: connections, busy and locked errors, writes per
database file. The command keeps its standard streams and its exit code.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness.commands.exits import EXIT_INTERRUPTED
from harness.commands.paths import output_file, path_arg
from reference.errors import SplitdbError

USAGE_FIX = "put the command after --, e.g. splitdb watch -- python app.py"


def register(subparsers: Any) -> None:
    """Add `splitdb watch` to the CLI."""
    parser = subparsers.add_parser(
        "watch",
        help="run a command with its Python processes' sqlite3 probed; summarise connections, "
        "busy errors and writes",
        description="Run COMMAND with the probe: every Python 3.10+ process it starts reports "
        "its own sqlite3 connections, busy/locked errors and writes, with no change to its "
        "code. The summary goes to stderr when the command ends; the exit code is the "
        "command's (killed by signal N: 128+N; interrupted: 130).",
    )
    parser.add_argument(
        "--events",
        type=path_arg,
        help="keep the probe's events (JSON lines) in this file, replacing it; "
        "default: a temporary file, removed after the summary",
    )
    parser.add_argument(
        "--process", default="watched", help="process name in the events (default: watched)"
    )
    parser.add_argument("--role", default="", help="role name in the events (default: none)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command, after --")
    parser.set_defaults(handler=handle)


def _signal_name(number: int) -> str:
    import signal

    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def handle(args: argparse.Namespace) -> int:
    from harness.probe import probe_env
    from harness.probe.observed import observe
    from harness.probe.run import exit_code, resolve, run_forwarding
    from harness.probe.summary import summary_lines

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        raise SplitdbError(f"watch needs a command to run; {USAGE_FIX}")
    problem = resolve(command[0], os.environ)
    if problem is not None:
        raise SplitdbError(f"watch cannot run the command: {problem}")
    if args.events is not None:
        events = output_file(args.events, "--events")
        events.write_bytes(b"")
        keep = True
    else:
        handle_fd, name = tempfile.mkstemp(prefix="splitdb-watch-", suffix=".jsonl")
        os.close(handle_fd)
        events, keep = Path(name), False
    try:
        env = probe_env(events, process=args.process, role=args.role, base_env=os.environ)
        ended = run_forwarding(command, env)
        observed = observe([events])
    finally:
        if not keep:
            events.unlink(missing_ok=True)
    code = exit_code(ended.returncode)
    how = f"exited {code}"
    if ended.returncode < 0:
        how = f"was killed by {_signal_name(-ended.returncode)} (exit {code})"
    if ended.interrupted:
        how += " (interrupted)"
    lines = summary_lines(observed, command=shlex.join(command), ended=how)
    if keep:
        lines.append(f"  events: {events}")
    sys.stderr.flush()
    print("\n".join(lines), file=sys.stderr)
    return EXIT_INTERRUPTED if ended.interrupted else code
