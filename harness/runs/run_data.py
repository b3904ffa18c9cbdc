"""Where a repeat's data lives, and what of the run depends on it: SQLite files in the repeat's
directory (`SqliteRunData`), or a database on a PostgreSQL server (`harness.runs.pg_data`).

The run's flow (start the processes, drive the load and the faults, stop, judge) is the same on
both; the checks that read the data, the contention and settings verdicts, and what each
process and load worker is handed to reach the data are what differ. The checks' SQL is the
same text on both (`harness.runs.reads`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from harness.runs import checks
from harness.runs.checks import Check
from reference.errors import SplitdbError
from reference.events import Event
from reference.topology import Topology

__all__ = ["RunData", "SqliteRunData"]


class RunData(Protocol):
    """What a repeat asks of the place its data lives."""

    # Exception types that mean a check could not read the data (see `checks.judged`).
    errors: tuple[type[Exception], ...]

    def role_env(self) -> dict[str, dict[str, str]] | None:
        """Environment to add to each role's processes (None: nothing)."""
        ...

    def worker_extra(self) -> dict[str, Any]:
        """What a load worker needs besides the topology and the data directory."""
        ...

    def durability(self, bot_event_files: Sequence[Path]) -> Check: ...

    def duplicates(self) -> Check: ...

    def integrity(self) -> Check: ...

    def analysis(self) -> Check: ...

    def api_answers(self, api_url: str, symbols: Sequence[str]) -> Check: ...

    def contention(
        self, events: Mapping[str, Sequence[Event]], *, max_busy: int | None
    ) -> Check: ...

    def settings(self, events: Mapping[str, Sequence[Event]]) -> Check: ...

    def wal_bytes(self) -> dict[str, int]:
        """The size of each database file's WAL now (file name -> bytes); none on a server."""
        ...

    def server_usage(self) -> tuple[int, dict[str, Any]] | None:
        """A database server's pid and CPU and memory so far (None: no server of the run's)."""
        ...

    def end_backends(self, role: str, how: str) -> dict[str, Any]:
        """End the server sessions of `role`'s processes, `how` 'terminate' or 'kill' (the
        `terminate_backend` and `kill_backend` faults); what the fault's record says of it.
        SplitdbError when it cannot be done here."""
        ...

    def close(self) -> None:
        """Release what the data needed for the repeat (a server's database and roles)."""
        ...


class SqliteRunData:
    """The repeat's SQLite files, in `data_dir`, as the topology places them."""

    errors: tuple[type[Exception], ...] = ()

    def __init__(self, topology: Topology, data_dir: Path) -> None:
        self.topology = topology
        self.data_dir = data_dir

    def role_env(self) -> dict[str, dict[str, str]] | None:
        return None

    def worker_extra(self) -> dict[str, Any]:
        return {}

    def durability(self, bot_event_files: Sequence[Path]) -> Check:
        return checks.durability(bot_event_files, self.topology.file_of("ticks", self.data_dir))

    def duplicates(self) -> Check:
        return checks.duplicates(self.topology, self.data_dir)

    def integrity(self) -> Check:
        return checks.integrity(self.topology, self.data_dir)

    def analysis(self) -> Check:
        from harness.runs.api_check import analysis_matches

        return analysis_matches(self.topology, self.data_dir)

    def api_answers(self, api_url: str, symbols: Sequence[str]) -> Check:
        from harness.runs.api_check import api_answers

        return api_answers(api_url, self.topology, self.data_dir, symbols)

    def contention(self, events: Mapping[str, Sequence[Event]], *, max_busy: int | None) -> Check:
        return checks.contention(events, max_busy=max_busy)

    def settings(self, events: Mapping[str, Sequence[Event]]) -> Check:
        return checks.settings(events, self.topology)

    def wal_bytes(self) -> dict[str, int]:
        wal = {}
        files = {self.topology.file_of(d, self.data_dir) for d in self.topology.databases}
        for path in sorted(files):
            wal_path = Path(str(path) + "-wal")
            wal[path.name] = wal_path.stat().st_size if wal_path.exists() else 0
        return wal

    def server_usage(self) -> tuple[int, dict[str, Any]] | None:
        return None

    def end_backends(self, role: str, how: str) -> dict[str, Any]:
        # The scenario refuses the fault on SQLite (harness.runs.scenario.backend_problems).
        raise SplitdbError(f"{how}_backend: SQLite files have no server sessions to end")

    def close(self) -> None:
        return None
