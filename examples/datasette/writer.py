"""The catalogue's writer: adds ten items every 50 ms with sqlite-utils, until stopped."""

import os
import random
import time

import sqlite_utils

db = sqlite_utils.Database(os.environ["SPLITDB_DB_ITEMS"])
db.enable_wal()
db["items"].create(
    {"id": int, "name": str, "price": float, "created": float}, pk="id", if_not_exists=True
)
print("ready", flush=True)
rng = random.Random(1)
while True:
    now = time.time()
    db["items"].insert_all(
        {
            "name": f"item-{rng.randrange(10**6)}",
            "price": round(rng.uniform(1, 100), 2),
            "created": now,
        }
        for _ in range(10)
    )
    time.sleep(0.05)
