"""Side-by-side speed measurements (`splitdb speed`): the reference system against a plain
implementation of the same work, run in turns on one machine, reported, never asserted.

Each writes `reports/speed/<time>/<name>.json` with a Markdown summary: `api` (the reference API
against `anchor_api`, a plain FastAPI app run as its own process, loaded by `wrk`, the load
generator and its output) and `bot` (the tick bot at its ceiling against a raw `executemany`
loop into the same schema).
"""
