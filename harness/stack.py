"""`splitdb up`: the three reference processes together, until Ctrl-C."""

from __future__ import annotations

import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from harness.supervisor import ProcessFailed, Supervisor, stderr_tail
from reference.topology import load_topology

START_ORDER = ("bot", "agent", "api")


def run_stack(
    *,
    topology: str | Path,
    data_dir: Path,
    run_dir: Path,
    bot_args: Sequence[str] = (),
    agent_args: Sequence[str] = (),
    api_args: Sequence[str] = (),
) -> int:
    """Start bot, agent and API, wait for each, run until a signal; 0 if all stop cleanly.

    The bot starts first because it creates the ticks database the others read.
    """
    topo = load_topology(topology)
    # A plain flag, not a threading.Event: the handler runs in the main thread between two of
    # its bytecodes, possibly while that thread holds the Event's lock, and taking it again
    # there would freeze `splitdb up` on Ctrl-C. Setting a list item takes no lock.
    stop = [False]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop[0] = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    extra = {"bot": bot_args, "agent": agent_args, "api": api_args}
    supervisor = Supervisor(run_dir, topo, topology_arg=topology, data_dir=data_dir)
    try:
        for role in START_ORDER:
            supervisor.start(role, extra[role])
            section = supervisor.wait_ready(role)
            print(f"{role:<6} ready  pid {section['pid']}", flush=True)
        url = supervisor.board.section("api").get("url", "?")
        print(f"API    {url}  (docs: {url}/docs)", flush=True)
        print(f"data   {data_dir}   logs and events: {run_dir}", flush=True)
        print("Ctrl-C stops all three.", flush=True)
        while True:
            time.sleep(0.2)
            if stop[0]:
                break
            dead = [m for m in supervisor.processes.values() if not m.alive()]
            if dead:
                for managed in dead:
                    print(
                        f"{managed.name} exited with code {managed.proc.returncode}; stderr:\n"
                        f"{stderr_tail(managed.stderr)}",
                        flush=True,
                    )
                break
    except ProcessFailed as exc:
        print(f"splitdb up: {exc}", flush=True)
    finally:
        exits = supervisor.stop_all()
        for s, handler in previous.items():
            signal.signal(s, handler)
    for record in exits:
        print(f"{record.name:<6} stopped ({record.how}, exit code {record.code})", flush=True)
    return 0 if not supervisor.unexpected_exits() else 1
