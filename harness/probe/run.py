"""Run one command as a user would, with its stdin, stdout and stderr, and pass signals on.

A Ctrl-C typed at a terminal is sent by the kernel to the whole foreground process group: the
command gets it by itself, and sending it a second one would interrupt its own clean-up (a
Python program would raise KeyboardInterrupt inside its `finally`). A SIGINT or SIGTERM sent to
this process alone by another process (`kill`, a supervisor) would never reach the command. So
both signals are blocked here and taken with `sigtimedwait`, which says who sent each: one from
a process (si_code SI_USER, SI_QUEUE, SI_TKILL) is forwarded, one from the kernel (SI_KERNEL: the
terminal) is not.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

FORWARDED = (signal.SIGINT, signal.SIGTERM)
SI_KERNEL = 0x80  # <asm-generic/siginfo.h>: sent by the kernel (a terminal's Ctrl-C)
# Only bounds a wait for SIGCHLD that a race could lose; the child's end is seen by poll().
POLL_S = 0.5


@dataclass(frozen=True)
class Ended:
    """How the command ended: `returncode` as subprocess gives it (negative: killed by that
    signal); `interrupted`: a SIGINT reached this process while the command ran."""

    returncode: int
    interrupted: bool


def run_forwarding(command: Sequence[str], env: Mapping[str, str]) -> Ended:
    """Run `command` to its end with inherited standard streams and `env`."""
    if not hasattr(signal, "pthread_sigmask") or not hasattr(signal, "sigtimedwait"):
        return _run_plain(command, env)
    watched = {*FORWARDED, signal.SIGCHLD}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, watched)
    interrupted = False
    try:
        proc = subprocess.Popen(
            list(command),
            env=dict(env),
            # The child starts with the signal mask this process had before: its own Ctrl-C.
            preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_SETMASK, previous),
        )
        while proc.poll() is None:
            info = signal.sigtimedwait(watched, POLL_S)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            interrupted = interrupted or info.si_signo == signal.SIGINT
            if info.si_code != SI_KERNEL and proc.poll() is None:
                proc.send_signal(info.si_signo)
        # Signals that came while the command was ending are taken here, not on unblocking.
        while (info := signal.sigtimedwait(FORWARDED, 0)) is not None:
            interrupted = interrupted or info.si_signo == signal.SIGINT
        return Ended(proc.returncode, interrupted)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _run_plain(command: Sequence[str], env: Mapping[str, str]) -> Ended:
    """Where signals cannot be blocked and waited for (not POSIX): wait, and on Ctrl-C let the
    command (which got it too) end."""
    proc = subprocess.Popen(list(command), env=dict(env))
    try:
        return Ended(proc.wait(), False)
    except KeyboardInterrupt:
        return Ended(proc.wait(), True)


def exit_code(returncode: int) -> int:
    """The command's exit code as a shell gives it: killed by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def resolve(program: str, env: Mapping[str, str]) -> str | None:
    """Why `program` cannot be started, in one clause, or None when it can."""
    import shutil

    if os.sep in program or (os.altsep and os.altsep in program):
        if not os.path.exists(program):
            return f"{program!r} does not exist"
        if os.path.isdir(program):
            return f"{program!r} is a directory, not a program"
        if not os.access(program, os.X_OK):
            return f"{program!r} is not executable (chmod +x it, or run it with its interpreter)"
        return None
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        return f"{program!r} is not on PATH; check the name, or give its full path"
    return None
