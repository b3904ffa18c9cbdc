"""When a user's process is ready (harness.runs.readiness): the `ready` table's validation, and
waiting on real files, real sockets, a real HTTP server and real log files.

Servers here are threads of this process; only the tests marked slow start a child process
(the log-line and died-before-ready cases on a real process). No assert is on elapsed time
beyond a condition's own lower bound (a delay is never shorter than asked): the tests hold on a
machine whose cores are busy.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from harness.errors import NotReady, ProcessFailed
from harness.runs.readiness import (
    DEFAULT_TIMEOUT_S,
    LogFollower,
    Readiness,
    describe,
    log_sizes,
    wait_until_ready,
)
from harness.runs.supervisor import describe_end

# A timeout that must expire: short, so a failing wait costs little; the tests assert what the
# error says, never how long it took.
EXPIRES = 0.5
# A generous timeout for conditions that will be met: only a broken wait would reach it.
GENEROUS = 60.0
# A timeout that must expire after the server under test answered at least once: long enough
# for a starved machine to serve one request (at 0.5 s, under load, none came back and the
# message said so instead of naming the answer).
ANSWERED = 2.0


def _always() -> bool:
    return True


def _wait(
    ready: Readiness | None,
    logs: Path,
    *,
    alive: Callable[[], bool] = _always,
    ended: Callable[[], str | None] | None = None,
    offsets: tuple[int, int] = (0, 0),
) -> float:
    return wait_until_ready(
        ready,
        alive=alive,
        ended=ended,
        stdout=logs / "p.stdout",
        stderr=logs / "p.stderr",
        base_dir=logs,
        describe="p (pid 1)",
        log_offsets=offsets,
    )


def _errors(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, message) of each validation error, as a scenario's error line shows it."""
    with pytest.raises(ValidationError) as caught:
        Readiness.model_validate(raw)
    return [
        (".".join(str(p) for p in e["loc"]), e["msg"].removeprefix("Value error, "))
        for e in caught.value.errors()
    ]


# --- the model --------------------------------------------------------------------------------


def test_each_kind_validates_with_the_default_timeout() -> None:
    for raw in (
        {"file": "ready.flag"},
        {"tcp": "127.0.0.1:8765"},
        {"tcp": "[::1]:8765"},
        {"port": 8765},
        {"http": "http://127.0.0.1:8765/-/versions.json"},
        {"http": "https://localhost/health"},
        {"line": r"listening on port \d+", "stream": "stderr"},
        {"delay": 1.5},
    ):
        ready = Readiness.model_validate(raw)
        assert ready.timeout == DEFAULT_TIMEOUT_S
    assert Readiness(port=8765).address == ("127.0.0.1", 8765)
    assert Readiness(tcp="[::1]:80").address == ("::1", 80)
    assert Readiness(tcp="db.local:5432").address == ("db.local", 5432)


@pytest.mark.parametrize(
    ("raw", "loc", "message"),
    [
        (
            {"http": "http://127.0.0.1:1/", "port": 1},
            "",
            "give exactly one of file, tcp, port, http, line, delay (got port and http)",
        ),
        ({}, "", "give exactly one of file, tcp, port, http, line, delay (got none"),
        ({"timeout": 5}, "", "give exactly one of file, tcp, port, http, line, delay (got none"),
        ({"line": "ready ("}, "line", "not a valid regular expression: missing ), unterminated"),
        ({"http": "ftp://127.0.0.1/x"}, "http", "must start with http:// or https://"),
        ({"http": "127.0.0.1:8765/health"}, "http", "must start with http:// or https://"),
        ({"http": "http:///health"}, "http", "has no host"),
        ({"http": "http://127.0.0.1:99999/"}, "http", "has an invalid port"),
        ({"port": 0}, "port", "greater than or equal to 1"),
        ({"port": 65536}, "port", "less than or equal to 65535"),
        ({"tcp": "127.0.0.1:65536"}, "tcp", "port 65536 is out of range 1-65535"),
        ({"tcp": "localhost"}, "tcp", "must be HOST:PORT"),
        ({"tcp": ":8765"}, "tcp", "must be HOST:PORT"),
        ({"tcp": "localhost:http"}, "tcp", "must be HOST:PORT"),
        ({"file": ""}, "file", "at least 1 character"),
        ({"file": "x", "timeout": 0}, "timeout", "greater than 0"),
        ({"file": "x", "timeout": 601}, "timeout", "less than or equal to 600"),
        ({"delay": -1}, "delay", "greater than or equal to 0"),
        ({"file": "x", "stream": "stdout"}, "", "stream: applies only to 'line'; remove it"),
        ({"line": "x", "stream": "both"}, "stream", "'stdout', 'stderr' or 'either'"),
        ({"delay": 2, "timeout": 5}, "", "timeout: does not apply to 'delay'"),
        ({"file": "x", "timout": 5}, "timout", "Extra inputs are not permitted"),
    ],
)
def test_a_bad_ready_table_names_the_field_and_the_fix(
    raw: dict[str, Any], loc: str, message: str
) -> None:
    errors = _errors(raw)
    assert len(errors) == 1, errors
    assert errors[0][0] == loc
    assert message in errors[0][1]


def test_the_model_is_frozen() -> None:
    ready = Readiness(file="x")
    with pytest.raises(ValidationError):
        ready.file = "y"  # type: ignore[misc]


def test_describe_says_what_is_waited_for() -> None:
    assert describe(None) == "started (no ready condition)"
    assert describe(Readiness(file="run/ready")) == "file run/ready exists"
    assert describe(Readiness(port=8765)) == "TCP connect to 127.0.0.1:8765"
    assert describe(Readiness(tcp="[::1]:80")) == "TCP connect to [::1]:80"
    assert describe(Readiness(http="http://h:1/x")) == "http 200 from http://h:1/x"
    assert describe(Readiness(line="up")) == "a line matching 'up' in stdout or stderr"
    assert describe(Readiness(line="up", stream="stderr")) == "a line matching 'up' in stderr"
    assert describe(Readiness(delay=2)) == "2 s after start"


def test_texts_are_the_strings_a_caller_may_check_or_rewrite() -> None:
    assert Readiness(http="http://h:1/x").texts() == ("http://h:1/x",)
    assert Readiness(line="up").texts() == ("up",)
    assert Readiness(port=1).texts() == ()


# --- no condition, delay -----------------------------------------------------------------------


def test_no_condition_is_ready_at_once(tmp_path: Path) -> None:
    assert _wait(None, tmp_path) == 0.0


def test_no_condition_and_already_dead_is_not_ready(tmp_path: Path) -> None:
    with pytest.raises(NotReady) as caught:
        _wait(None, tmp_path, alive=lambda: False, ended=lambda: "exited with code 2")
    assert str(caught.value).startswith("p (pid 1) exited with code 2 before it was ready")
    assert isinstance(caught.value, ProcessFailed)


def test_a_delay_is_never_shorter_than_asked(tmp_path: Path) -> None:
    assert _wait(Readiness(delay=0.2), tmp_path) >= 0.2


def test_a_process_that_dies_during_the_delay_is_not_ready(tmp_path: Path) -> None:
    calls = iter([True, True, True])
    with pytest.raises(NotReady) as caught:
        _wait(Readiness(delay=GENEROUS), tmp_path, alive=lambda: next(calls, False))
    message = str(caught.value)
    assert message.startswith("p (pid 1) exited before it was ready (after ")
    assert "waiting for 60 s after start)" in message
    assert caught.value.ended == "exited" and caught.value.process == "p (pid 1)"


# --- file ----------------------------------------------------------------------------------


def test_a_file_relative_to_the_base_directory(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ready").write_text("")
    assert _wait(Readiness(file="run/ready", timeout=GENEROUS), tmp_path) >= 0.0


def test_a_file_created_while_waiting(tmp_path: Path) -> None:
    flag = tmp_path / "elsewhere" / "ready"
    flag.parent.mkdir()
    timer = threading.Timer(0.2, flag.write_text, ("",))
    timer.start()
    try:
        assert _wait(Readiness(file=str(flag), timeout=GENEROUS), tmp_path) >= 0.0
    finally:
        timer.cancel()


def test_a_file_that_never_appears(tmp_path: Path) -> None:
    with pytest.raises(NotReady) as caught:
        _wait(Readiness(file="ready", timeout=EXPIRES), tmp_path)
    assert str(caught.value) == (
        f"p (pid 1) was not ready: {tmp_path / 'ready'} did not appear within 0.5 s"
    )
    assert caught.value.ended is None and caught.value.waited_s >= EXPIRES


# --- tcp -------------------------------------------------------------------------------------


def test_tcp_is_ready_when_something_listens(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert _wait(Readiness(port=port, timeout=GENEROUS), tmp_path) >= 0.0
        ready = Readiness(tcp=f"127.0.0.1:{port}", timeout=GENEROUS)
        assert _wait(ready, tmp_path) >= 0.0


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port: int = server.getsockname()[1]
    return port


def test_tcp_refused_until_the_timeout(tmp_path: Path) -> None:
    port = _closed_port()
    with pytest.raises(NotReady) as caught:
        _wait(Readiness(port=port, timeout=EXPIRES), tmp_path)
    assert str(caught.value) == (
        f"p (pid 1) was not ready: 127.0.0.1:{port} did not accept a TCP connection within "
        "0.5 s; last attempt: connection refused"
    )


# --- http ------------------------------------------------------------------------------------


class _Server:
    """A real HTTP server in a thread answering each GET with the next of `statuses` (the last
    one repeats); `paths` records what was asked."""

    def __init__(self, statuses: list[int], location: str = "/elsewhere") -> None:
        self.statuses = statuses
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.paths.append(self.path)
                index = min(len(owner.paths), len(owner.statuses)) - 1
                status = owner.statuses[index]
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def serve() -> Iterator[Callable[..., _Server]]:
    servers: list[_Server] = []

    def start(statuses: list[int], **kwargs: str) -> _Server:
        servers.append(_Server(statuses, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_http_200_is_ready(tmp_path: Path, serve: Callable[..., _Server]) -> None:
    server = serve([200])
    ready = Readiness(http=f"{server.url}/-/versions.json", timeout=GENEROUS)
    assert _wait(ready, tmp_path) >= 0.0
    assert server.paths == ["/-/versions.json"]


def test_http_503_then_200_is_ready_on_the_200(
    tmp_path: Path, serve: Callable[..., _Server]
) -> None:
    server = serve([503, 503, 200])
    assert _wait(Readiness(http=f"{server.url}/health", timeout=GENEROUS), tmp_path) >= 0.0
    assert server.paths == ["/health"] * 3


def test_http_never_200_says_the_last_answer(tmp_path: Path, serve: Callable[..., _Server]) -> None:
    server = serve([503])
    with pytest.raises(NotReady) as caught:
        _wait(Readiness(http=f"{server.url}/health", timeout=ANSWERED), tmp_path)
    assert str(caught.value) == (
        f"p (pid 1) was not ready: {server.url}/health did not answer 200 within 2 s; "
        "last attempt: answered 503"
    )


def test_http_204_is_not_200(tmp_path: Path, serve: Callable[..., _Server]) -> None:
    server = serve([204])
    with pytest.raises(NotReady, match=r"last attempt: answered 204$"):
        _wait(Readiness(http=server.url, timeout=ANSWERED), tmp_path)


def test_http_redirects_are_not_followed(tmp_path: Path, serve: Callable[..., _Server]) -> None:
    server = serve([302], location="/login")
    with pytest.raises(NotReady) as caught:
        _wait(Readiness(http=f"{server.url}/", timeout=ANSWERED), tmp_path)
    assert str(caught.value).endswith(
        "last attempt: answered 302, a redirect to /login (redirects are not followed: give "
        "the final URL)"
    )
    assert set(server.paths) == {"/"}


def test_http_refused(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/health"
    with pytest.raises(NotReady) as caught:
        _wait(Readiness(http=url, timeout=EXPIRES), tmp_path)
    assert str(caught.value).endswith(
        f"{url} did not answer 200 within 0.5 s; last attempt: connection refused"
    )


def test_http_to_a_server_that_never_answers_is_cut_at_the_timeout(tmp_path: Path) -> None:
    """The port accepts connections (the kernel's backlog) but nobody reads the request."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/health"
        with pytest.raises(NotReady) as caught:
            _wait(Readiness(http=url, timeout=EXPIRES), tmp_path)
    # The attempt gets what is left of the timeout when it starts: at most 0.5 s.
    assert re.search(
        f"{re.escape(url)} did not answer 200 within 0.5 s; last attempt: no answer within "
        r"0?\.[0-9]+ s$",
        str(caught.value),
    ), str(caught.value)


def test_http_ignores_proxy_settings(
    tmp_path: Path, serve: Callable[..., _Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local process is asked directly: a proxy in the environment would answer for it."""
    server = serve([200])
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("no_proxy", "")
    assert _wait(Readiness(http=server.url, timeout=GENEROUS), tmp_path) >= 0.0


def test_a_process_that_dies_while_refusing(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/"
    calls = iter([True, True])
    with pytest.raises(NotReady) as caught:
        _wait(
            Readiness(http=url, timeout=GENEROUS),
            tmp_path,
            alive=lambda: next(calls, False),
            ended=lambda: "killed by SIGKILL",
        )
    message = str(caught.value)
    assert message.startswith("p (pid 1) killed by SIGKILL before it was ready (after ")
    assert message.endswith(f"waiting for http 200 from {url}; last attempt: connection refused)")
    assert caught.value.ended == "killed by SIGKILL"


# --- log lines -------------------------------------------------------------------------------


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_a_line_written_while_waiting(tmp_path: Path) -> None:
    stderr = tmp_path / "p.stderr"
    stderr.write_bytes(b"starting\n")
    timer = threading.Timer(0.2, _append, (stderr, b"INFO listening on port 8765\n"))
    timer.start()
    try:
        ready = Readiness(line=r"listening on port \d+", timeout=GENEROUS)
        assert _wait(ready, tmp_path) >= 0.0
    finally:
        timer.cancel()


def test_a_line_on_the_other_stream_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "p.stdout").write_bytes(b"ready\nready\n")
    with pytest.raises(NotReady) as caught:
        _wait(Readiness(line="^ready$", stream="stderr", timeout=EXPIRES), tmp_path)
    assert str(caught.value) == (
        "p (pid 1) was not ready: no line matching '^ready$' appeared in stderr within 0.5 s "
        "(0 lines read)"
    )
    assert _wait(Readiness(line="^ready$", stream="stdout", timeout=GENEROUS), tmp_path) >= 0


def test_lines_before_the_offsets_belong_to_an_earlier_incarnation(tmp_path: Path) -> None:
    """The supervisor appends a restarted process's output to the same files: the line its
    previous incarnation wrote must not count."""
    (tmp_path / "p.stdout").write_bytes(b"ready\n")
    (tmp_path / "p.stderr").write_bytes(b"old noise\n")
    offsets = log_sizes(tmp_path / "p.stdout", tmp_path / "p.stderr")
    assert offsets == (6, 10)
    _append(tmp_path / "p.stdout", b"starting again\n")
    with pytest.raises(NotReady, match=r"within 0\.5 s \(1 line read\)$"):
        _wait(Readiness(line="ready", timeout=EXPIRES), tmp_path, offsets=offsets)
    assert log_sizes(tmp_path / "missing", tmp_path / "p.stderr") == (0, 10)


def test_a_line_counts_once_its_newline_is_written(tmp_path: Path) -> None:
    """A partial line is held: `ready$` must not match 'ready' of 'ready soon' mid-write."""
    (tmp_path / "p.stdout").write_bytes(b"ready")
    with pytest.raises(NotReady, match=r"\(0 lines read\)$"):
        _wait(Readiness(line="ready$", timeout=EXPIRES), tmp_path)
    _append(tmp_path / "p.stdout", b" soon\n")
    with pytest.raises(NotReady, match=r"\(1 line read\)$"):
        _wait(Readiness(line="ready$", timeout=EXPIRES), tmp_path)


def test_the_follower_reads_each_byte_once(tmp_path: Path) -> None:
    path = tmp_path / "log"
    follower = LogFollower(path)
    try:
        assert follower.new_lines() == []  # no file yet
        path.write_bytes(b"abc")
        assert follower.new_lines() == []
        _append(path, b"def\r\nxy")
        assert follower.new_lines() == ["abcdef"]
        assert follower.new_lines() == []
        _append(path, b"z\n\n\xff tail\n")
        assert follower.new_lines() == ["xyz", "", "\ufffd tail"]
        assert follower.position == path.stat().st_size
        path.write_bytes(b"rotated\n")  # truncated and rewritten: start again
        assert follower.new_lines() == ["rotated"]
    finally:
        follower.close()


def test_the_follower_starts_at_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(b"old line\n" * 100_000)
    follower = LogFollower(path, offset=path.stat().st_size)
    try:
        _append(path, b"new line\n")
        assert follower.new_lines() == ["new line"]
    finally:
        follower.close()


# --- real processes ------------------------------------------------------------------------


def _child(code: str, logs: Path) -> subprocess.Popen[bytes]:
    """A Python child with its output in the log files, as the supervisor starts one."""
    with open(logs / "p.stdout", "ab") as out, open(logs / "p.stderr", "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def _ended(proc: subprocess.Popen[bytes]) -> Callable[[], str | None]:
    return lambda: describe_end(proc.wait())


@pytest.mark.slow
def test_a_child_that_prints_its_ready_line(tmp_path: Path) -> None:
    proc = _child(
        "import sys, time; print('booting'); time.sleep(0.3); "
        "print('listening on port 8765', file=sys.stderr); time.sleep(120)",
        tmp_path,
    )
    try:
        ready = Readiness(line=r"listening on port \d+", stream="stderr", timeout=GENEROUS)
        waited = _wait(ready, tmp_path, alive=lambda: proc.poll() is None, ended=_ended(proc))
        assert waited >= 0.0 and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_a_child_that_dies_before_it_is_ready(tmp_path: Path) -> None:
    proc = _child("import sys; print('no database', file=sys.stderr); sys.exit(3)", tmp_path)
    try:
        ready = Readiness(line="listening", timeout=GENEROUS)
        with pytest.raises(NotReady) as caught:
            _wait(ready, tmp_path, alive=lambda: proc.poll() is None, ended=_ended(proc))
    finally:
        proc.kill()
        proc.wait()
    message = str(caught.value)
    assert message.startswith("p (pid 1) exited with code 3 before it was ready (after ")
    assert message.endswith("waiting for a line matching 'listening' in stdout or stderr)")
    assert caught.value.ended == "exited with code 3"


def test_a_condition_given_as_a_function_is_polled_until_it_holds(tmp_path: Path) -> None:
    from harness.runs.readiness import Condition

    calls = []

    def met() -> bool:
        calls.append(1)
        return len(calls) >= 3

    waited = wait_until_ready(
        Condition(met, "the board to say ready"),
        alive=lambda: True,
        stdout=tmp_path / "out",
        stderr=tmp_path / "err",
        base_dir=tmp_path,
        describe="bot (pid 1)",
    )
    assert len(calls) == 3 and waited >= 0


def test_a_condition_that_never_holds_says_what_it_waited_for(tmp_path: Path) -> None:
    from harness.runs.readiness import Condition

    with pytest.raises(NotReady) as caught:
        wait_until_ready(
            Condition(lambda: False, "the board to say ready", timeout=0.2),
            alive=lambda: True,
            stdout=tmp_path / "out",
            stderr=tmp_path / "err",
            base_dir=tmp_path,
            describe="bot (pid 1)",
        )
    assert str(caught.value) == (
        "bot (pid 1) was not ready: the board to say ready did not happen within 0.2 s"
    )
