"""Side-by-side speed measurements (`splitdb speed`): the reference system against a plain
implementation of the same work, run in turns on one machine, reported, never asserted.

`api` (the reference API against `anchor_api`, a plain FastAPI app), `wrk` (the load generator
and its output), `anchor_api` (the anchor, run as its own process).
"""
