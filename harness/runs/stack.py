"""`splitdb up`: the three reference processes together, until Ctrl-C.

Also `prepare_directories`, which checks `splitdb up`'s directories before anything starts (its
other flags are checked by the parser: `harness.commands.up`).
"""

from __future__ import annotations

import contextlib
import signal
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from harness.errors import ProcessFailed
from harness.runs.supervisor import Exit, Supervisor, stderr_tail
from reference.errors import SplitdbError
from reference.topology import load_topology

START_ORDER = ("bot", "agent", "api")


def prepare_directories(directories: Sequence[tuple[str, Path]]) -> None:
    """Create each (flag, directory) with its parents and check a file can be made in it.

    Raises SplitdbError naming the flag and the fix; the directories this call created are
    removed again first, so a refused command leaves nothing behind. Checked by trying, not with
    `os.access`, which says yes to root everywhere (even in /proc).
    """
    created: list[Path] = []
    try:
        for flag, path in directories:
            _prepare_directory(flag, path, created)
    except SplitdbError:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                path.rmdir()
        raise


def _prepare_directory(flag: str, path: Path, created: list[Path]) -> None:
    fix = "give a directory you may write to (it is created if missing)"
    missing: list[Path] = []
    existing = path
    while not existing.exists() and existing != existing.parent:
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is under {existing}, a file"
        raise SplitdbError(f"{flag} {path} {where}, not a directory: {fix}")
    for directory in reversed(missing):
        try:
            directory.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            raise SplitdbError(
                f"{flag} {path}: cannot create {directory} ({exc.strerror}): {fix}"
            ) from None
        created.append(directory)
    try:
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise SplitdbError(f"{flag} {path}: cannot write there ({exc.strerror}): {fix}") from None


def run_stack(
    *,
    topology: str | Path,
    data_dir: Path,
    run_dir: Path,
    bot_args: Sequence[str] = (),
    agent_args: Sequence[str] = (),
    api_args: Sequence[str] = (),
) -> bool:
    """Start bot, agent and API, wait for each, run until a signal; True if all stop cleanly.

    The bot starts first because it creates the ticks database the others read. A process that
    ends while it should run stops the others; it is named with how it ended (`killed by
    SIGKILL`) and its stderr, its status-board section is marked dead, and the result is False.
    The final summary has one line per process. A process that stopped on the same signal as
    this one (Ctrl-C in a terminal reaches the whole process group) with exit code 0 stopped
    cleanly.
    """
    topo = load_topology(topology)
    # A plain slot, not a threading.Event: the handler runs in the main thread between two of
    # its bytecodes, possibly while that thread holds the Event's lock, and taking it again
    # there would freeze `splitdb up` on Ctrl-C. Setting a list item takes no lock.
    stop: list[signal.Signals | None] = [None]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop[0] = signal.Signals(signum)

    def signalled() -> signal.Signals | None:
        # A call, not a narrowed local: the handler changes the slot between two statements.
        return stop[0]

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    extra = {"bot": bot_args, "agent": agent_args, "api": api_args}
    supervisor = Supervisor(run_dir, topo, topology_arg=topology, data_dir=data_dir)
    try:
        for role in START_ORDER:
            if signalled() is not None:
                break
            supervisor.start(role, extra[role])
            section = supervisor.wait_ready(role)
            print(f"{role:<6} ready  pid {section['pid']}", flush=True)
        else:
            url = supervisor.board.section("api").get("url", "?")
            print(f"API    {url}  (docs: {url}/docs)", flush=True)
            print(f"data   {data_dir}   logs and events: {run_dir}", flush=True)
            print("Ctrl-C stops all three.", flush=True)
        while signalled() is None:
            time.sleep(0.2)
            ended = [m for m in supervisor.processes.values() if not m.alive()]
            # Checked again after looking: a terminal's Ctrl-C reaches the children too, and one
            # that stopped on it has not died. A child cannot be seen ended by its own SIGINT
            # before this process's handler ran: the kernel marks the signal pending on the
            # whole group before any of them can finish exiting.
            if signalled() is not None:
                break
            if ended:
                for record in supervisor.reap():
                    managed = supervisor.processes[record.name]
                    print(
                        f"splitdb up: {record.name} (pid {record.pid}) {record.ended} while it "
                        f"should have run; stopping the others. Its stderr ({managed.stderr}):\n"
                        f"{stderr_tail(managed.stderr)}",
                        flush=True,
                    )
                break
    except ProcessFailed as exc:
        print(f"splitdb up: {exc}", flush=True)
    finally:
        supervisor.stop_all(signalled=signalled())
        for s, handler in previous.items():
            signal.signal(s, handler)
    for record in supervisor.exits:
        print(exit_line(record), flush=True)
    return not supervisor.unexpected_exits()


def exit_line(record: Exit) -> str:
    """One line of `splitdb up`'s final summary: how one process ended."""
    if record.expected:
        return f"{record.name:<6} stopped ({record.how}, exit code {record.code})"
    if record.how == "exited":
        return f"{record.name:<6} {record.ended} while it should have run (pid {record.pid})"
    if record.how == "sigterm":
        return f"{record.name:<6} {record.ended} after SIGTERM; 0 expected (pid {record.pid})"
    return f"{record.name:<6} did not stop: {record.how}, exit code {record.code}"
