"""A whole migration (`splitdb split`, `splitdb merge`): plan, copy, verify, put in place, report.

Nothing is put in place unless every target verified. An interruption (Ctrl-C, an error) removes
the temporary files it made; a kill leaves them (and may leave a manifest or report half
written under its temporary name), and the next run removes them first. A target
an interrupted run put in place is replaced by the next run (see `placing`); any other existing
target is refused unless `force`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.atomic import remove_stale_temporaries, write_atomically
from harness.migrate.copy import Report, backup_snapshot, copy_plan, snapshot_needed
from harness.migrate.placing import (
    MANIFEST,
    put_in_place,
    refuse_existing,
    remove_file,
    temp_of,
)
from harness.migrate.plan import Plan
from harness.migrate.verify import FileCheck, TableFigures, verify_file


@dataclass
class MigrationResult:
    """What a migration did and found, per table and per file."""

    kind: str
    sources: list[Path]
    snapshot: dict[str, str]  # source -> how its snapshot was taken
    source_tables: dict[str, TableFigures]
    files: list[FileCheck]
    seconds: float
    placed: bool
    report_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.placed and all(f.ok for f in self.files)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.source_tables.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ok": self.ok,
            "placed": self.placed,
            "sources": [str(s) for s in self.sources],
            "snapshot": self.snapshot,
            "seconds": round(self.seconds, 3),
            "rows": self.rows,
            "rows_per_s": round(self.rows / self.seconds) if self.seconds > 0 else None,
            "files": [
                {
                    "file": str(f.file),
                    "ok": f.ok,
                    "integrity_check": f.integrity,
                    "problems": f.problems,
                    "tables": {
                        name: {
                            "rows": got.rows,
                            "checksum": got.checksum,
                            "source_rows": self.source_tables[name].rows,
                            "source_checksum": self.source_tables[name].checksum,
                            "equal": got == self.source_tables[name],
                        }
                        for name, got in f.tables.items()
                    },
                }
                for f in self.files
            ],
        }

    def lines(self) -> list[str]:
        """The verification as a table, for the terminal."""
        out = [f"{'file':<28} {'table':<16} {'rows':>12}  {'checksum':<16}  {'verdict'}"]
        for f in self.files:
            for name, got in f.tables.items():
                want = self.source_tables[name]
                verdict = "equal" if got == want else f"DIFFERS (source {want.rows:,} rows)"
                out.append(
                    f"{f.file.name:<28} {name:<16} {got.rows:>12,}  {got.checksum:<16}  {verdict}"
                )
            out.append(
                f"{f.file.name:<28} {'':<16} {'':>12}  {'':<16}  integrity_check {f.integrity}"
            )
            out.extend(f"  problem: {p}" for p in f.problems)
        rate = f", {self.rows / self.seconds:,.0f} rows/s" if self.seconds > 0 else ""
        verdict = (
            "verified and put in place"
            if self.ok
            else "NOT put in place: a target did not verify (see the problems above)"
        )
        out.append(
            f"{self.kind}: {self.rows:,} rows in {len(self.source_tables)} tables, "
            f"{len(self.files)} files, {self.seconds:.1f} s{rate}: {verdict}"
        )
        return out


def migrate(plan: Plan, *, force: bool, live: Report, report: Path | None) -> MigrationResult:
    """Carry out `plan`; see the module's docstring."""
    started = time.monotonic()
    files = [t.file for t in plan.targets]
    refuse_existing(files, force=force)
    temps = {f: temp_of(f) for f in files}
    snapshots = {s: temp_of(files[0].parent / s.name, "splitdb-snapshot") for s in plan.sources}
    # Left by a run that was killed: its temporary files, and any write it was in the middle of.
    for path in [*temps.values(), *snapshots.values()]:
        remove_file(path)
    for path in [*{f.parent / MANIFEST for f in files}, *([report] if report else [])]:
        remove_stale_temporaries(path)
    read_from: dict[Path, Path] = {}
    how: dict[str, str] = {}
    try:
        for source in plan.sources:
            if snapshot_needed(source):
                live(f"  {source.name} is not in WAL mode: copying it whole first (backup API)")
                backup_snapshot(source, snapshots[source])
                read_from[source], how[str(source)] = snapshots[source], "backup API copy"
            else:
                read_from[source], how[str(source)] = source, "one read transaction (WAL)"
        figures = copy_plan(plan, read_from, temps, live)
        checks = []
        for target in plan.targets:
            live(f"  verifying {target.file.name}")
            checks.append(
                verify_file(
                    temps[target.file],
                    target.objects,
                    {t: figures[t] for t in target.tables},
                    target.journal_mode,
                )
            )
        placed = all(c.ok for c in checks)
        if placed:
            put_in_place(temps)
        for check, target in zip(checks, plan.targets, strict=True):
            check.file = target.file if placed else temps[target.file]
    except BaseException:
        for path in temps.values():
            remove_file(path)
        raise
    finally:
        for path in snapshots.values():
            remove_file(path)
    result = MigrationResult(
        kind=plan.kind,
        sources=list(plan.sources),
        snapshot=how,
        source_tables=figures,
        files=checks,
        seconds=time.monotonic() - started,
        placed=placed,
    )
    if report is not None:
        write_atomically(report, json.dumps(result.to_json(), indent=1) + "\n")
        result.report_path = report
    return result
