"""The anchor: a plain FastAPI app answering `GET /ticks/{symbol}/latest` from one ticks file.

`python -m harness.speed.anchor_api --db FILE --port P` serves it on 127.0.0.1 under uvicorn,
one worker. It is the reference point `splitdb speed api` measures the reference API against
(issue 18): what FastAPI costs for the same query on the same file with nothing added, so
written the way a first FastAPI app is (an `async def`, one `mode=ro` connection opened at
start, a dict returned). It is a measuring instrument: no request log, no validation beyond
FastAPI's own, no status board; keep it that way, or the ratio stops meaning anything.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import uvicorn
from fastapi import FastAPI, HTTPException

# The reference API's /ticks/{symbol}/latest query, column for column (a test holds the two
# answers equal).
COLUMNS = (
    *("symbol", "time_msc", "seq", "time", "bid", "ask"),
    *("last", "volume", "flags", "volume_real"),
)
LATEST_SQL = (
    f"SELECT {', '.join(COLUMNS)} FROM ticks "
    "WHERE symbol = ? ORDER BY time_msc DESC, seq DESC LIMIT 1"
)


def create_anchor(db: Path) -> FastAPI:
    """The anchor app on the ticks database `db` (opened read-only now)."""
    # The event loop is the only thread that uses it; check_same_thread is for the threads
    # FastAPI's own start-up may run on.
    uri = f"file:{quote(str(db.resolve()))}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    app = FastAPI()

    @app.get("/ticks/{symbol}/latest")
    async def latest(symbol: str) -> dict[str, Any]:
        row = conn.execute(LATEST_SQL, (symbol,)).fetchone()
        if row is None:
            raise HTTPException(404, f"no ticks for symbol {symbol!r}")
        return dict(zip(COLUMNS, row, strict=True))

    return app


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the anchor until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m harness.speed.anchor_api")
    parser.add_argument("--db", type=Path, required=True, help="the ticks database (read-only)")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    app = create_anchor(args.db)
    # uvicorn's defaults but its access log: one line per request would be the anchor's main
    # cost, and the reference API has its own (a database), not uvicorn's.
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
