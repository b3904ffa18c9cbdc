"""What every reference process records through its runtime: here, its connections' settings."""

from __future__ import annotations

from pathlib import Path

from reference.access import AccessManager
from reference.events import Event, read_events
from reference.runtime import Runtime
from reference.topology import load_topology

SEED = load_topology("seed")


def _settings(events: list[Event]) -> list[tuple[str, str, str, int]]:
    return [
        (e["when"], e["db"], e["synchronous"], e["busy_timeout_ms"])
        for e in events
        if e["op"] == "settings"
    ]


def test_a_process_records_its_connections_settings_at_ready_on_change_and_at_close(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    AccessManager(SEED, data).initialize()
    log = tmp_path / "bot.jsonl"
    runtime = Runtime("bot", topology=SEED, data_dir=data, events=log, install_signals=False)
    conn = runtime.access.connect("bot", "ticks")
    runtime.ready()
    runtime.heartbeat(force=True)  # nothing changed: nothing recorded
    conn.execute("PRAGMA synchronous = OFF")
    runtime.heartbeat(force=True)
    conn.close()
    runtime.finish()
    events = list(read_events(log))
    assert _settings(events) == [
        ("ready", "ticks", "normal", 5000),
        ("heartbeat", "ticks", "off", 5000),
        ("close", "ticks", "off", 5000),
    ]
    first = next(e for e in events if e["op"] == "settings")
    assert first["role"] == "bot" and first["mode"] == "rw" and first["journal_mode"] == "wal"
    assert first["file"] == str(SEED.file_of("ticks", data))
    ops = [e["op"] for e in events]
    # What the process had when it said it was ready is on record before the ready event.
    assert ops.index("settings") < ops.index("ready")
