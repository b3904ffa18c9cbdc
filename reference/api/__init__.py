"""The API server (role `api`): ticks, bars and indicators over HTTP, on loopback only.

`python -m reference.api --topology seed --data-dir DIR --events FILE [--host 127.0.0.1]
[--port 0]` serves the app under uvicorn. Port 0 picks a free port; once the socket listens, the
address is published on the status board (section 'api', key 'url') and a `ready` event is
written. SIGTERM or SIGINT: uvicorn finishes in-flight requests (1 s at most), the request log
drains and commits (`--log-drain-timeout`, 2 s), the section says 'stopped', exit code 0.

Endpoints (OpenAPI at /openapi.json, a docs page made from it at /docs that needs no network:
reference.api.docs); each answers HEAD too, like GET without the body:

- `GET /health`, `GET /status` (the status board and the request log's counters), `GET /symbols`
- `GET /ticks/{symbol}/latest`, `GET /ticks/{symbol}?start&end&limit`
- `GET /bars/{symbol}?timeframe&start&end&limit`
- `GET /indicators/{symbol}?timeframe&name&start&end&limit`

Rows come ordered by their key: ticks by (time_msc, seq), bars by start_msc, indicators by
(start_msc, name); `start` and `end` are inclusive epoch milliseconds. Without `end` there is no
upper bound (the answer echoes `"end": null`); an `end` before `start` matches nothing, so the
answer is an empty page (a 200), not an error. A list answer carries `truncated: true` when more
rows matched than `limit`.

Errors are JSON, never a 5xx for any input:

- 422 `{"error": "invalid request", "problems": [{"parameter", "in", "problem", "allowed",
  "given"}]}`: one problem per bad parameter. Unknown and repeated query parameters are
  checked first and, when there are any, reported alone.
- 404 `{"error": "unknown symbol", "symbol", "detail"}`: the symbol has no ticks (nor bars).
- 404 `{"error": "not found", "path", "detail"}`: no endpoint at this path.
- 405 `{"error": "method not allowed", "method", "path", "allowed", "detail"}` with `Allow`:
  the endpoints answer GET and HEAD only.
- 503 `{"error": "database unavailable", "database", "detail"}` with `Retry-After`: a database
  its owner has not created yet, a missing table, a busy or failing database.

Threading: the data endpoints are `async def`s and read on the event loop with a connection
whose busy timeout is 0, so a read never sleeps there in SQLite's busy handler: one that meets a
lock (the rollback-journal layout while a writer commits) is made again in anyio's worker thread
pool (40 threads) with the topology's busy timeout, as every other reader waits, while the loop
keeps accepting requests and feeding the request log. In WAL mode readers do not wait for
writers, so the loop answers nearly every read itself: a thread hand-off per request cost more
than the query (docs/perf/README.md). What the loop still does inline is the query and the
rows' conversion: a page of 10000 rows holds it for that long, as it held the GIL before.
sqlite3 connections belong to the thread that opened them, so the loop and each worker thread
open their own read connection per database on first use and keep it; a thread's connections
close when the thread ends. A database that does not exist yet is tried again on the next
request. `/status` stays a plain `def` in the pool: it takes the status board's file lock.

On PostgreSQL (the topology's `backend = "postgres"`, the api role's login from
`SPLITDB_PG_CONNINFO`) the same routes read through `PgApiStore` in the worker thread pool (its
driver blocks), a connection per thread, and the request log goes through its `log_requests`
from the writer thread; a read on a connection the server ended is a 503, and the next request
reconnects.

The modules: `parameters` (what each parameter accepts, the 422 checks), `models` (the
response models), `errors` (the JSON error bodies and their exception handlers), `reads` (what
the endpoints read, on either backend), `sqlite_reads` (their SQL on SQLite) over `readers`
(the per-thread read connections), `store_reads` (a storage interface in worker threads),
`backend` (the topology's backend picks the reads and the request log's writer), `state` (what
an app keeps on `app.state`), `routes` (the endpoints, on an APIRouter), `app` (`create_app`:
router, middleware, handlers, lifespan), `docs` (the /docs page) and `__main__` (the process:
`build_parser`, `main`).
"""

from __future__ import annotations

from reference.api.app import HeadAsGet, announce_ready, create_app, request_log_of
from reference.api.parameters import (
    DEFAULT_LIMIT,
    INDICATOR_NAMES,
    MAX_LIMIT,
    MAX_MSC,
    SYMBOL_PATTERN,
    TIMEFRAMES,
    IndicatorName,
    Timeframe,
)
from reference.api.sqlite_reads import SYMBOLS_SQL
from reference.errors import DatabaseUnavailable, UnknownSymbol

__all__ = [
    "DEFAULT_LIMIT",
    "INDICATOR_NAMES",
    "MAX_LIMIT",
    "MAX_MSC",
    "SYMBOLS_SQL",
    "SYMBOL_PATTERN",
    "TIMEFRAMES",
    "DatabaseUnavailable",
    "HeadAsGet",
    "IndicatorName",
    "Timeframe",
    "UnknownSymbol",
    "announce_ready",
    "create_app",
    "request_log_of",
]
