"""Computes exposure: reads the orders, writes a risk snapshot in a 50 ms transaction.

Same style as orders.py: a short busy timeout, and it logs and carries on when locked.
"""

import os
import sqlite3
import sys
import time

orders_file = os.environ["SPLITDB_DB_ORDERS"]
db = sqlite3.connect(os.environ["SPLITDB_DB_RISK"], timeout=5, isolation_level=None)
db.execute("PRAGMA journal_mode=wal")
# BEGIN IMMEDIATE: a bare CREATE reads the schema, then writes, and fails at once (no wait) when
# another writer committed in between.
db.execute("BEGIN IMMEDIATE")
db.execute("CREATE TABLE IF NOT EXISTS exposure (at REAL, orders INTEGER, qty INTEGER)")
db.execute("COMMIT")
orders = sqlite3.connect(f"file:{orders_file}?mode=ro", uri=True, timeout=5)
# Set up with a patient timeout; the work loop runs with a short one, as the service does.
db.execute("PRAGMA busy_timeout = 20")
print("ready", flush=True)
while True:
    try:
        count, qty = orders.execute("SELECT count(*), coalesce(sum(qty), 0) FROM orders").fetchone()
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO exposure VALUES (?, ?, ?)", (time.time(), count, qty))
        time.sleep(0.05)
        db.execute("COMMIT")
    except sqlite3.OperationalError as exc:
        print(f"risk: {exc}", file=sys.stderr, flush=True)
        if db.in_transaction:
            db.execute("ROLLBACK")
    time.sleep(0.02)
