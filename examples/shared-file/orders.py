"""Takes orders: every write transaction adds 20 orders, one every 5 ms, then commits.

Like many real services it uses Python's sqlite3 with a short busy timeout (20 ms) for its
work, and logs and carries on when the database is locked.
"""

import os
import sqlite3
import sys
import time

db = sqlite3.connect(os.environ["SPLITDB_DB_ORDERS"], timeout=5, isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
# BEGIN IMMEDIATE: a bare CREATE reads the schema, then writes, and fails at once (no wait) when
# another writer committed in between.
db.execute("BEGIN IMMEDIATE")
db.execute(
    "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, symbol TEXT, qty INTEGER, at REAL)"
)
db.execute("COMMIT")
# Set up with a patient timeout; the work loop runs with a short one, as the service does.
db.execute("PRAGMA busy_timeout = 20")
print("ready", flush=True)
n = 0
while True:
    try:
        db.execute("BEGIN IMMEDIATE")
        for _ in range(20):
            n += 1
            db.execute(
                "INSERT INTO orders (symbol, qty, at) VALUES (?, ?, ?)",
                ("EURUSD", n % 7 + 1, time.time()),
            )
            time.sleep(0.005)
        db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        print(f"orders: {exc}", file=sys.stderr, flush=True)
        if db.in_transaction:
            db.execute("ROLLBACK")
    time.sleep(0.01)
