"""A scenario's `[migrate]`: the data set made in another layout, split into the run's.

Before the repeat's own run, the reference stack runs for `migrate.duration` seconds on
`migrate.from_topology` (a layout with one file, such as legacy), in `<repeat>/before/`. That file
is then split into the repeat's data directory with `splitdb split`'s code (verified, from a
snapshot), and the repeat starts its processes on the migrated files. The `migration` check
holds when the run before passed its checks and the split verified; the bot's acknowledgements
from before the move count in the repeat's durability check, so a tick acknowledged before the
move and missing after it fails the run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.migrate.migration import MigrationResult, migrate
from harness.migrate.plan import split_plan
from harness.results.report import Repeat
from harness.runs import checks
from harness.runs.progress import Progress
from harness.runs.scenario import Expect, Scenario, resolve_topology
from reference.errors import SplitdbError
from reference.topology import Topology


@dataclass
class Migrated:
    """What the phase before the move did: its checks, its bot's events, the split."""

    before_checks: list[dict[str, Any]] = field(default_factory=list)
    bot_events: Path | None = None
    result: MigrationResult | None = None
    error: str | None = None

    def check(self) -> checks.Check:
        failed = [c for c in self.before_checks if not c["ok"]]
        ok = self.error is None and not failed and self.result is not None and self.result.ok
        if self.error is not None:
            summary = f"the migration did not happen: {self.error}"
        elif self.result is None:
            summary = "the migration did not happen"
        else:
            r = self.result
            rate = f", {r.rows / r.seconds:,.0f} rows/s" if r.seconds > 0 else ""
            summary = (
                f"run before the move: {len(self.before_checks) - len(failed)} of "
                f"{len(self.before_checks)} checks passed"
                + (f" (failed: {', '.join(c['name'] for c in failed)})" if failed else "")
                + f"; split {r.rows:,} rows in {len(r.source_tables)} tables into "
                f"{len(r.files)} files in {r.seconds:.2f} s{rate}: "
                + ("verified" if r.ok else "NOT verified")
            )
        return checks.Check(
            "migration",
            ok,
            summary,
            {
                "before_failed": failed,
                "split": self.result.to_json() if self.result is not None else None,
                "error": self.error,
            },
        )


def migrate_before(
    scenario: Scenario,
    base_dir: Path,
    repeat_dir: Path,
    topology: Topology,
    data_dir: Path,
    progress: Progress,
    run_repeat: Callable[[Scenario, Path], Repeat],
) -> Migrated:
    """Run the stack in the old layout (`run_repeat(scenario, directory)`, a repeat of its
    own), then split its file into `data_dir` by `topology`."""
    assert scenario.migrate is not None
    before = scenario.model_copy(
        update={
            "name": f"{scenario.name}.before",
            "topology": scenario.migrate.from_topology,
            "duration": scenario.migrate.duration,
            "load": (),
            "fault": (),
            "invariant": (),
            "expect": Expect(),
            "migrate": None,
        }
    )
    migrated = Migrated()
    try:
        old = resolve_topology(before, base_dir)
    except SplitdbError as exc:
        migrated.error = f"migrate.from_topology: {exc}"
        return migrated
    files = sorted({old.file_of(d, Path()) for d in old.databases})
    if len(files) != 1:
        migrated.error = (
            f"migrate.from_topology: {old.name} keeps its databases in {len(files)} files; "
            "the move starts from a layout with one file (such as legacy)"
        )
        return migrated
    progress.phase(f"  before the move: {old.name} layout for {before.duration:g} s")
    repeat = run_repeat(before, repeat_dir / "before")
    migrated.before_checks = [c.model_dump(mode="json") for c in repeat.checks]
    migrated.bot_events = repeat_dir / "before" / "events" / "bot.jsonl"
    source = repeat_dir / "before" / "data" / files[0]
    progress.phase(f"  moving {source.name} into the {topology.name} layout")
    try:
        plan = split_plan(source, topology, data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        migrated.result = migrate(
            plan, force=False, live=progress.live, report=repeat_dir / "migration.json"
        )
    except SplitdbError as exc:
        migrated.error = str(exc)
    progress.end_line()
    return migrated
