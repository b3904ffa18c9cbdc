"""Durability check: every tick the bot acknowledged is in the ticks database.

The bot appends an `ack` event after each COMMIT, carrying per symbol the last committed key and
the number of rows. Across all of its incarnations (restarts after kills), for every symbol:
  - the last acknowledged key must be present, and
  - the database must hold at least as many ticks as were acknowledged (a restarted bot resumes
    after the newest stored key, so it never re-sends, and an acked-then-lost batch re-fetched
    later would be acknowledged twice and show up here as more acks than rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from harness.runs.reads import Reads
from reference.events import read_events


@dataclass
class DurabilityResult:
    """What the check found; `ok` when nothing acknowledged is missing."""

    acked_rows: dict[str, int] = field(default_factory=dict)
    stored_rows: dict[str, int] = field(default_factory=dict)
    missing_keys: list[tuple[str, int, int]] = field(default_factory=list)
    short_symbols: list[tuple[str, int, int]] = field(default_factory=list)
    acks: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing_keys and not self.short_symbols

    def describe(self) -> str:
        if self.ok:
            return (
                f"{sum(self.acked_rows.values())} acknowledged ticks in {self.acks} acks, "
                f"all present ({sum(self.stored_rows.values())} stored)"
            )
        parts = []
        if self.missing_keys:
            parts.append(f"acknowledged keys missing: {self.missing_keys[:5]}")
        if self.short_symbols:
            parts.append(
                "symbols with fewer stored than acknowledged ticks (symbol, acked, stored): "
                f"{self.short_symbols[:5]}"
            )
        return "; ".join(parts)


def check_durability(event_files: Iterable[Path], ticks: Reads) -> DurabilityResult:
    """Compare the bot's acks (from its event files) with the ticks database."""
    result = DurabilityResult()
    last: dict[str, tuple[int, int]] = {}
    for path in event_files:
        if not path.exists():
            continue
        for event in read_events(path):
            if event.get("op") != "ack":
                continue
            result.acks += 1
            for symbol, n in event["rows"].items():
                result.acked_rows[symbol] = result.acked_rows.get(symbol, 0) + int(n)
            for symbol, key in event["last"].items():
                last[symbol] = max(last.get(symbol, (-1, -1)), (int(key[0]), int(key[1])))
    for symbol, count in ticks.execute("SELECT symbol, count(*) FROM ticks GROUP BY symbol"):
        result.stored_rows[symbol] = int(count)
    for symbol, (time_msc, seq) in sorted(last.items()):
        row = ticks.execute(
            "SELECT 1 FROM ticks WHERE symbol = ? AND time_msc = ? AND seq = ?",
            (symbol, time_msc, seq),
        ).fetchone()
        if row is None:
            result.missing_keys.append((symbol, time_msc, seq))
    for symbol, acked in sorted(result.acked_rows.items()):
        stored = result.stored_rows.get(symbol, 0)
        if stored < acked:
            result.short_symbols.append((symbol, acked, stored))
    return result
