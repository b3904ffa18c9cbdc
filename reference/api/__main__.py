"""`python -m reference.api`: the API server as a process (see reference.api for what it serves).

The command line (`build_parser`), uvicorn with the address announced once the socket listens,
and the stop on SIGTERM/SIGINT (`main`).
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Any

import uvicorn

from reference.api.app import announce_ready, create_app, request_log_of
from reference.errors import SplitdbError
from reference.requestlog import RequestLogSettings
from reference.runtime import OneLineParser, Runtime, add_common_arguments, number_in

__all__ = ["build_parser", "main"]

ROLE = "api"

# The largest request-log queue and batch the API takes (each record is held in memory).
MAX_QUEUE_SIZE = 1_000_000
MAX_BATCH_SIZE = 100_000


def _loopback_host(value: str) -> str:
    if value == "localhost":
        # Not resolved: a hosts file could map the name elsewhere.
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a loopback address; the API serves this machine only: "
            "use 127.0.0.1 (or another 127.x.y.z), ::1 or localhost"
        )
    return str(address)


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a TCP port; give 0..65535 (0 picks a free port)"
        )
    return port


def _seconds(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not 0 <= number <= 3600:
        raise argparse.ArgumentTypeError(f"{value!r} must be a number of seconds, 0..3600")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python -m reference.api`."""
    defaults = RequestLogSettings()
    parser = OneLineParser(
        prog="python -m reference.api",
        description=(
            "Serve ticks, bars and indicators over HTTP on a loopback address, log every "
            "request to the logs database, publish the URL on the status board (section "
            "'api', key 'url')."
        ),
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--host",
        type=_loopback_host,
        default="127.0.0.1",
        help="loopback address to listen on: 127.x.y.z, ::1 or localhost (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="TCP port; 0 picks a free one (default: 0)"
    )
    parser.add_argument(
        "--log-queue-size",
        type=number_in(1, MAX_QUEUE_SIZE, integer=True),
        default=defaults.queue_size,
        help="request records that may wait for the writer; more are dropped and counted "
        f"(default: {defaults.queue_size})",
    )
    parser.add_argument(
        "--log-batch-size",
        type=number_in(1, MAX_BATCH_SIZE, integer=True),
        default=defaults.batch_size,
        help=f"request records per transaction at most (default: {defaults.batch_size})",
    )
    parser.add_argument(
        "--log-max-delay",
        type=_seconds,
        default=defaults.max_delay,
        help="seconds a request record may wait for its batch to fill "
        f"(default: {defaults.max_delay})",
    )
    parser.add_argument(
        "--log-drain-timeout",
        type=_seconds,
        default=2.0,
        help="seconds the writer may take to commit what is queued at shutdown (default: 2.0)",
    )
    parser.add_argument(
        "--request-events",
        action="store_true",
        help="also write one 'request' event per request (costs a JSON line each)",
    )
    parser.add_argument(
        "--log-level",
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="uvicorn's log level on stderr (default: info)",
    )
    return parser


class _Server(uvicorn.Server):
    """uvicorn, announcing the bound address once its socket listens."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_listening = on_listening

    async def startup(self, sockets: list[Any] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.should_exit or not self.servers:
            return
        port = int(self.servers[0].sockets[0].getsockname()[1])
        self._on_listening(port)


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _probe_port(host: str, port: int) -> None:
    """Raise OSError when host:port cannot be listened on (port 0, any free one, always can)."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        probe.bind((host, port))
        probe.listen(1)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the API server until SIGTERM/SIGINT; 0 after a clean stop, 2 on a setup error."""
    args = build_parser().parse_args(argv)
    try:
        settings = RequestLogSettings(
            queue_size=args.log_queue_size,
            batch_size=args.log_batch_size,
            max_delay=args.log_max_delay,
        )
        # The runtime's signal handlers stay installed: uvicorn replaces them while it serves
        # and, after its graceful shutdown, restores them and re-raises the signal, which then
        # only sets the runtime's stop flag instead of killing the process with the default
        # action (exit status -15 rather than 0).
        runtime = Runtime.from_args(ROLE, args)
        app = create_app(
            runtime,
            log_settings=settings,
            drain_timeout=args.log_drain_timeout,
            request_events=args.request_events,
        )
    except (SplitdbError, ValueError, OSError) as exc:
        print(f"reference.api: error: {exc}", file=sys.stderr)
        return 2
    try:
        # Tried here, before uvicorn starts: a port in use is one line and exit 2, not uvicorn's
        # log and exit 3. Only a probe: serving on a socket bound here instead of uvicorn's own
        # cut the answered share of an open-loop API load under a busy machine from 100% to 21%
        # (scenarios/default.toml with stress-ng --cpu 2), so uvicorn still binds its own.
        _probe_port(args.host, args.port)
    except OSError as exc:
        print(
            f"reference.api: error: --port {args.port}: cannot listen on {args.host} "
            f"({exc.strerror}); pass another port, or 0 for any free one",
            file=sys.stderr,
        )
        return 2
    writer = request_log_of(app)

    def listening(port: int) -> None:
        announce_ready(app, _url(args.host, port))

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,  # the request log is ours, in the logs database
        lifespan="on",
        # Loopback, no proxy in front: a client must not choose its logged address with
        # X-Forwarded-For.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=1,
    )
    server = _Server(config, listening)
    if not runtime.stopping:
        server.run()
    runtime.finish(request_log=dict(writer.stats()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
