"""The janitor: logs a maintenance pass every half second in its own database, and (the bug
this example is for) deletes old items from a database it may only read."""

import os
import sqlite3
import time

log = sqlite3.connect(os.environ["SPLITDB_DB_MAINTENANCE"])
log.execute("PRAGMA journal_mode=wal")
log.execute("CREATE TABLE IF NOT EXISTS passes (at REAL NOT NULL, deleted INTEGER NOT NULL)")
items = sqlite3.connect(os.environ["SPLITDB_DB_ITEMS"])
while True:
    time.sleep(0.5)
    with items:
        deleted = items.execute("DELETE FROM items WHERE created < ?", (time.time() - 2,)).rowcount
    with log:
        log.execute("INSERT INTO passes (at, deleted) VALUES (?, ?)", (time.time(), deleted))
