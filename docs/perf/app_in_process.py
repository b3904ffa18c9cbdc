"""CPU per request of the API's app alone, called in-process through ASGI (no socket, no uvicorn).

    python docs/perf/app_in_process.py DATA_DIR reference|anchor

DATA_DIR holds a seed-layout ticks file with EURUSD in it (`splitdb speed api` fills one the
same way: harness.speed.api.fill_ticks). Calls `GET /ticks/EURUSD/latest` 20,000 times per
round, 7 rounds after a warm-up, and prints the best round's process CPU time per request (all
threads: the request log writer's included). The HTTP server's work (uvicorn, h11, the socket)
is the same for both sides and left out, so the difference between the sides is the app's own.
Run with PYTHONPATH set to another tree to measure that tree's `reference`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

N = 20_000
SCOPE: dict[str, Any] = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "server": ("127.0.0.1", 8000),
    "client": ("127.0.0.1", 50000),
    "scheme": "http",
    "method": "GET",
    "root_path": "",
    "path": "/ticks/EURUSD/latest",
    "raw_path": b"/ticks/EURUSD/latest",
    "query_string": b"",
    "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk")],
    "state": {},
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


async def _measure(app: Any) -> float:
    for _ in range(2_000):
        await app(dict(SCOPE), _receive, _send)
    best = float("inf")
    for _ in range(7):
        started = time.process_time()
        for _ in range(N):
            await app(dict(SCOPE), _receive, _send)
        best = min(best, (time.process_time() - started) / N * 1e6)
    return best


def main() -> None:
    data_dir, side = Path(sys.argv[1]), sys.argv[2]
    if side == "anchor":
        from harness.speed.anchor_api import create_anchor

        app: Any = create_anchor(data_dir / "unified_tick_pipeline.db")
    else:
        from reference.api.app import create_app, request_log_of
        from reference.runtime import Runtime

        app = create_app(Runtime("api", data_dir=data_dir, install_signals=False))
        request_log_of(app).start()
    print(f"{side}: {asyncio.run(_measure(app)):.1f} us CPU per request (app only)")


if __name__ == "__main__":
    main()
