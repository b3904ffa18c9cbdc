"""When a user's process is ready: the `ready` table of its `[processes.NAME]`, and the wait.

A scenario's own processes (a datasette, a worker, anything with a `command`) say when they can
take load, so the run neither starts its load against a process still booting nor waits a fixed
time that is too short on a busy machine:

    ready = { http = "http://127.0.0.1:8765/-/versions.json", timeout = 20 }

Exactly one condition per table, plus `timeout` seconds (default 30, more than 0, at most 600):

- `file = "path"`: the file exists. A relative path is taken from the caller's base directory.
- `tcp = "host:port"` (`"[::1]:port"` for IPv6), or `port = N` for 127.0.0.1:N: a TCP connect
  succeeds. Whatever listens there counts, so give a port nothing else uses.
- `http = "URL"` (http:// or https:// only): a GET answers 200; any other status is not ready
  yet. Redirects are not followed: a 3xx is reported with its Location, so the scenario can give
  the final URL (following it could ask another server, which says nothing about this process).
  Proxies from the environment are ignored (the process is asked directly); https certificates
  are verified.
- `line = "regex"`, with `stream = "stdout" | "stderr" | "either"` (default either): a line the
  process wrote to that log file matches (`re.search`). A line counts once its newline is
  written. A program that buffers its output when it is not a terminal writes its line late or
  never: make it flush (the supervisor sets PYTHONUNBUFFERED for Python).
- `delay = seconds`: ready that long after the wait began; `timeout` does not apply.
- no `ready` at all: ready as soon as it started (alive when the wait begins).

Strings are taken literally: placeholders such as `{port}` are the caller's to expand first.

`wait_until_ready` polls every POLL_S seconds, asks `alive()` at every poll, and gives each
connect or request at most ATTEMPT_TIMEOUT_S and never more than what is left of the timeout,
so it cannot hang (an HTTP server that trickles its headers byte by byte can stretch one attempt:
the timeout is per socket operation). A process that ends before it is ready is not ready, even
if it met its condition just before: the harness runs long-lived processes, and the exit is the
finding.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPException, RemoteDisconnected
from pathlib import Path
from typing import IO, Annotated, Literal
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.errors import NotReady

KINDS = ("file", "tcp", "port", "http", "line", "delay")
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 600.0
# Between polls: short enough that readiness is seen within a few tens of milliseconds, long
# enough that a wait of minutes costs nothing.
POLL_S = 0.025
# One TCP connect or HTTP request: a port that drops packets must not hold a poll for long.
ATTEMPT_TIMEOUT_S = 1.0
STREAMS = {"stdout": "stdout", "stderr": "stderr", "either": "stdout or stderr"}

_PORT = re.compile(r"[0-9]{1,5}")


def _address(text: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' as (host, port); ValueError says what is wrong."""
    host, colon, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not _PORT.fullmatch(port):
        raise ValueError(f"must be HOST:PORT, e.g. '127.0.0.1:8765' (got {text!r})")
    number = int(port)
    if not 1 <= number <= 65535:
        raise ValueError(f"port {number} is out of range 1-65535")
    return host, number


def _check_url(url: str) -> None:
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"must start with http:// or https:// (got {url!r})")
    parts = urlsplit(url)
    if not parts.hostname:
        raise ValueError(f"has no host (got {url!r}); e.g. 'http://127.0.0.1:8765/health'")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(
            f"has an invalid port in {parts.netloc!r} ({exc}); give one from 1 to 65535"
        ) from None
    if port == 0:
        raise ValueError(f"has an invalid port in {parts.netloc!r}; give one from 1 to 65535")


class Readiness(BaseModel):
    """A process's readiness condition: exactly one of the KINDS, and a timeout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Annotated[str, Field(min_length=1)] | None = None
    tcp: str | None = None
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    http: str | None = None
    line: Annotated[str, Field(min_length=1)] | None = None
    stream: Literal["stdout", "stderr", "either"] = "either"
    delay: Annotated[float, Field(ge=0, le=MAX_TIMEOUT_S)] | None = None
    timeout: Annotated[float, Field(gt=0, le=MAX_TIMEOUT_S)] = DEFAULT_TIMEOUT_S

    @field_validator("tcp")
    @classmethod
    def _tcp_address(cls, value: str | None) -> str | None:
        if value is not None:
            _address(value)
        return value

    @field_validator("http")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            _check_url(value)
        return value

    @field_validator("line")
    @classmethod
    def _line_regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Readiness:
        given = [kind for kind in KINDS if getattr(self, kind) is not None]
        if len(given) != 1:
            got = (
                ", ".join(given[:-1]) + f" and {given[-1]}"
                if given
                else "none; leave `ready` out to count the process ready once it started"
            )
            raise ValueError(f"give exactly one of {', '.join(KINDS)} (got {got})")
        if "stream" in self.model_fields_set and self.line is None:
            raise ValueError("stream: applies only to 'line'; remove it")
        if "timeout" in self.model_fields_set and self.delay is not None:
            raise ValueError(
                "timeout: does not apply to 'delay' (the process is ready that long after it "
                "started, if it still runs); remove it"
            )
        return self

    @property
    def kind(self) -> str:
        """Which condition this is: one of KINDS."""
        return next(kind for kind in KINDS if getattr(self, kind) is not None)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of a `tcp` or `port` condition."""
        if self.port is not None:
            return ("127.0.0.1", self.port)
        if self.tcp is None:
            raise AttributeError(f"a {self.kind} condition has no address")
        return _address(self.tcp)

    def texts(self) -> tuple[str, ...]:
        """The condition's strings (file, tcp, http, line), for a caller checking placeholders."""
        return tuple(t for t in (self.file, self.tcp, self.http, self.line) if t is not None)


@dataclass(frozen=True)
class Condition:
    """A readiness condition given as a function, for what a scenario cannot write: the
    reference processes are ready when their status-board section says so with their own pid.
    `met()` is asked at every poll; `shown` words it for messages."""

    met: Callable[[], bool]
    shown: str
    timeout: float = MAX_TIMEOUT_S


def describe(ready: Readiness | Condition | None) -> str:
    """The condition in words, for reports: 'http 200 from http://...', 'file x exists'."""
    if ready is None:
        return "started (no ready condition)"
    if isinstance(ready, Condition):
        return ready.shown
    if ready.file is not None:
        return f"file {ready.file} exists"
    if ready.http is not None:
        return f"http 200 from {ready.http}"
    if ready.line is not None:
        return f"a line matching '{ready.line}' in {STREAMS[ready.stream]}"
    if ready.delay is not None:
        return f"{ready.delay:g} s after start"
    return f"TCP connect to {_shown_address(ready)}"


_describe_condition = describe  # wait_until_ready's `describe` is the process's name


def _shown_address(ready: Readiness) -> str:
    return ready.tcp if ready.tcp is not None else f"127.0.0.1:{ready.port}"


def log_sizes(stdout: Path, stderr: Path) -> tuple[int, int]:
    """The sizes of a process's log files now (0 for a missing one).

    The supervisor appends a restarted process's output to its earlier incarnation's files; taken
    just before the start, these are the `log_offsets` from which the new output begins.
    """
    sizes = []
    for path in (stdout, stderr):
        try:
            sizes.append(path.stat().st_size)
        except OSError:
            sizes.append(0)
    return sizes[0], sizes[1]


class LogFollower:
    """The lines appended to a log file since the last call, each byte read once.

    The file may not exist yet (it is opened when it appears). A partial last line is held until
    its newline arrives (so `ready$` cannot match half a line); one longer than MAX_READ is
    passed on as it is. A file that shrank was truncated and is read again from its start.
    Lines are decoded as UTF-8, undecodable bytes replaced, a trailing CR dropped.
    """

    MAX_READ = 1 << 20

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = Path(path)
        self.position = offset
        self._handle: IO[bytes] | None = None
        self._partial = b""

    def new_lines(self) -> list[str]:
        """The complete lines written since the last call (at most MAX_READ bytes of them)."""
        handle = self._open()
        if handle is None:
            return []
        size = os.fstat(handle.fileno()).st_size
        if size < self.position:
            self.position, self._partial = 0, b""
        if size == self.position:
            return []
        handle.seek(self.position)
        data = handle.read(min(size - self.position, self.MAX_READ))
        self.position += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        if len(self._partial) > self.MAX_READ:
            chunks.append(self._partial)
            self._partial = b""
        return [chunk.removesuffix(b"\r").decode("utf-8", "replace") for chunk in chunks]

    def _open(self) -> IO[bytes] | None:
        if self._handle is None:
            try:
                self._handle = open(self.path, "rb")  # noqa: SIM115 (closed by close())
            except OSError:
                return None
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


# --- probes: one attempt at a condition per poll -----------------------------------------------


class _Probe:
    """One kind of condition: `met` tries once; `last` is what the last try found, if useful."""

    last: str | None = None

    def met(self, remaining: float) -> bool:
        raise NotImplementedError

    def timed_out(self, timeout: float) -> str:
        """Why the condition was not met within `timeout`, as a clause."""
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Started(_Probe):
    def met(self, remaining: float) -> bool:
        return True

    def timed_out(self, timeout: float) -> str:  # pragma: no cover - met at once
        return "it did not start"


class _Delay(_Probe):
    def __init__(self, delay: float, start: float) -> None:
        self.until = start + delay

    def met(self, remaining: float) -> bool:
        return time.monotonic() >= self.until

    def timed_out(self, timeout: float) -> str:  # pragma: no cover - has no timeout
        return "the delay did not pass"


class _File(_Probe):
    def __init__(self, path: Path) -> None:
        self.path = path

    def met(self, remaining: float) -> bool:
        return self.path.exists()

    def timed_out(self, timeout: float) -> str:
        return f"{self.path} did not appear within {timeout:g} s"


def _attempt_timeout(remaining: float) -> float:
    return max(0.01, min(ATTEMPT_TIMEOUT_S, remaining))


def _error_text(exc: BaseException, timeout: float) -> str:
    """What a failed connect or request met, in a few words ('connection refused')."""
    if isinstance(exc, URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:.2g} s"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc}"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    if isinstance(exc, RemoteDisconnected):
        return "the connection closed without an answer"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    if isinstance(exc, URLError):
        return str(exc.reason)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Tcp(_Probe):
    def __init__(self, address: tuple[str, int], shown: str) -> None:
        self.address = address
        self.shown = shown

    def met(self, remaining: float) -> bool:
        timeout = _attempt_timeout(remaining)
        try:
            with socket.create_connection(self.address, timeout=timeout):
                return True
        except OSError as exc:
            self.last = _error_text(exc, timeout)
            return False

    def timed_out(self, timeout: float) -> str:
        return (
            f"{self.shown} did not accept a TCP connection within {timeout:g} s; "
            f"last attempt: {self.last}"
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Hand a 3xx back as an HTTPError instead of following it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class _Http(_Probe):
    def __init__(self, url: str) -> None:
        self.url = url
        # No proxies (a local process is asked directly), no redirects (see the module's doc).
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())

    def met(self, remaining: float) -> bool:
        timeout = _attempt_timeout(remaining)
        request = urllib.request.Request(self.url, headers={"User-Agent": "splitdb-readiness"})
        location = None
        try:
            with self.opener.open(request, timeout=timeout) as response:
                status = response.status
        except HTTPError as exc:
            status, location = exc.code, exc.headers.get("Location")
            exc.close()
        except (OSError, HTTPException) as exc:
            self.last = _error_text(exc, timeout)
            return False
        if status == 200:
            return True
        self.last = f"answered {status}"
        if 300 <= status < 400:
            self.last += (
                f", a redirect to {location} (redirects are not followed: give the final URL)"
            )
        return False

    def timed_out(self, timeout: float) -> str:
        return f"{self.url} did not answer 200 within {timeout:g} s; last attempt: {self.last}"


class _Line(_Probe):
    def __init__(self, regex: str, stream: str, followers: list[LogFollower]) -> None:
        self.regex = regex
        self.pattern = re.compile(regex)
        self.stream = stream
        self.followers = followers
        self.lines = 0

    def met(self, remaining: float) -> bool:
        for follower in self.followers:
            for line in follower.new_lines():
                self.lines += 1
                if self.pattern.search(line):
                    return True
        return False

    def timed_out(self, timeout: float) -> str:
        read = f"{self.lines} line{'' if self.lines == 1 else 's'} read"
        return (
            f"no line matching '{self.regex}' appeared in {STREAMS[self.stream]} within "
            f"{timeout:g} s ({read})"
        )

    def close(self) -> None:
        for follower in self.followers:
            follower.close()


class _Called(_Probe):
    def __init__(self, condition: Condition) -> None:
        self.condition = condition

    def met(self, remaining: float) -> bool:
        return self.condition.met()

    def timed_out(self, timeout: float) -> str:
        return f"{self.condition.shown} did not happen within {timeout:g} s"


def _probe(
    ready: Readiness | Condition,
    *,
    stdout: Path,
    stderr: Path,
    base_dir: Path,
    offsets: tuple[int, int],
    start: float,
) -> _Probe:
    if isinstance(ready, Condition):
        return _Called(ready)
    if ready.file is not None:
        path = Path(ready.file)
        return _File(path if path.is_absolute() else Path(base_dir) / path)
    if ready.http is not None:
        return _Http(ready.http)
    if ready.line is not None:
        logs = [
            LogFollower(path, offset)
            for name, path, offset in (
                ("stdout", stdout, offsets[0]),
                ("stderr", stderr, offsets[1]),
            )
            if ready.stream in (name, "either")
        ]
        return _Line(ready.line, ready.stream, logs)
    if ready.delay is not None:
        return _Delay(ready.delay, start)
    return _Tcp(ready.address, _shown_address(ready))


def wait_until_ready(
    ready: Readiness | Condition | None,
    *,
    alive: Callable[[], bool],
    stdout: Path,
    stderr: Path,
    base_dir: Path,
    describe: str,
    ended: Callable[[], str | None] | None = None,
    log_offsets: tuple[int, int] = (0, 0),
) -> float:
    """Wait until the process meets `ready`; returns the seconds waited.

    `alive()` is asked at every poll; once it is False, `ended()` (if given) says how the
    process ended, as the supervisor words it (`describe_end(proc.returncode)`). `stdout` and
    `stderr` are its log files, read from `log_offsets` (see `log_sizes`) for a `line`
    condition; `base_dir` anchors a relative `file`; `describe` names the process in the error.

    Raises NotReady when the timeout expires or the process ends first: one sentence naming the
    process and the condition, without the stderr tail (the caller adds it).
    """
    start = time.monotonic()
    condition = _describe_condition(ready)
    if ready is None:
        if alive():
            return 0.0
        how = (ended() if ended is not None else None) or "exited"
        raise NotReady(
            f"{describe} {how} before it was ready (it has no ready condition, so it only had to "
            "be running)",
            process=describe,
            condition=condition,
            waited_s=0.0,
            ended=how,
        )
    if isinstance(ready, Condition):
        timeout = ready.timeout
    else:
        timeout = float("inf") if ready.delay is not None else ready.timeout
    deadline = start + timeout
    probe = _probe(
        ready, stdout=stdout, stderr=stderr, base_dir=base_dir, offsets=log_offsets, start=start
    )
    with contextlib.closing(probe):
        while True:
            if not alive():
                how = (ended() if ended is not None else None) or "exited"
                waited = time.monotonic() - start
                last = f"; last attempt: {probe.last}" if probe.last else ""
                raise NotReady(
                    f"{describe} {how} before it was ready (after {waited:.1f} s waiting for "
                    f"{condition}{last})",
                    process=describe,
                    condition=condition,
                    waited_s=waited,
                    ended=how,
                )
            if probe.met(deadline - time.monotonic()):
                return time.monotonic() - start
            now = time.monotonic()
            if now >= deadline:
                raise NotReady(
                    f"{describe} was not ready: {probe.timed_out(timeout)}",
                    process=describe,
                    condition=condition,
                    waited_s=now - start,
                    ended=None,
                )
            time.sleep(min(POLL_S, deadline - now))
