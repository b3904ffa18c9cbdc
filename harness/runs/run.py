"""`splitdb run`: one scenario, end to end, into `reports/<run-id>/`.

For each repeat: create the databases, start the reference processes and wait until each is
ready, start the load workers together, apply faults on schedule while sampling CPU, RSS and WAL
size, stop everything gracefully, then compute metrics and checks from the event logs and the
databases. The run directory explains itself: scenario.toml, report.json, and per repeat the
topology, databases, event logs and process logs.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import RunInterrupted
from harness.results.report import (
    INTERRUPTED_MARKER,
    REPORT_VERSION,
    Environment,
    Repeat,
    Report,
    RunVerdict,
    ScenarioRecord,
    mark_interrupted,
    write_report,
)
from harness.runs.claims import judge_claims
from harness.runs.progress import Progress
from harness.runs.repeat import RepeatRun
from harness.runs.scenario import Scenario, variants_of
from reference.errors import SplitdbError


@dataclass
class RunResult:
    """A finished run: its report and where it was written."""

    report: Report
    path: Path

    @property
    def ok(self) -> bool:
        return self.report.verdict.ok


def new_run_dir(out_dir: Path, name: str) -> tuple[str, Path]:
    """A fresh directory for the run; a second run of the same scenario in the same second
    (`splitdb run a.toml a.toml`) gets a suffix instead of a collision."""
    out_dir.mkdir(parents=True, exist_ok=True)
    base = new_run_id(name)
    for attempt in range(1, 1000):
        run_id = base if attempt == 1 else f"{base}-{attempt}"
        try:
            (out_dir / run_id).mkdir()
        except FileExistsError:
            continue
        return run_id, out_dir / run_id
    raise SplitdbError(f"could not create a run directory for {base!r} in {out_dir}")


def new_run_id(name: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}-{stamp}-{os.getpid() % 10000:04d}"


def run_scenario(
    scenario: Scenario,
    *,
    out_dir: Path,
    base_dir: Path,
    source_text: str | None = None,
    progress: Progress | None = None,
    pg_url: str | None = None,
) -> RunResult:
    """Run every repeat of `scenario` and write `<out_dir>/<run-id>/report.json`; on a
    PostgreSQL topology, on the server `pg_url` names (None: a throwaway one per repeat)."""
    progress = progress or Progress(quiet=True)
    run_id, run_dir = new_run_dir(Path(out_dir), scenario.name)
    where = _Where("starting")
    try:
        if source_text is not None:
            (run_dir / "scenario.toml").write_text(source_text, encoding="utf-8")
        return _run(scenario, run_id, run_dir, base_dir, source_text, progress, where, pg_url)
    except KeyboardInterrupt:
        # Ctrl-C: the repeat stopped its processes on the way out. The directory is kept as
        # evidence (logs, events, databases) and marked, so it never passes for a finished run.
        progress.end_line()
        if (run_dir / "report.json").exists():
            raise  # written whole (atomically): the run finished, only its page may be missing
        try:
            mark_interrupted(run_dir, where.text())
        except OSError as exc:
            raise RunInterrupted(
                f"the unfinished run in {run_dir} has no report and could not be marked "
                f"{INTERRUPTED_MARKER} ({exc.strerror or exc})"
            ) from None
        raise RunInterrupted(
            f"the unfinished run is kept in {run_dir} (marked {INTERRUPTED_MARKER}, no report)"
        ) from None


class _Where:
    """Which phase a run is in, for the INTERRUPTED marker: a repeat's label and its step."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.repeat: RepeatRun | None = None

    def text(self) -> str:
        return f"{self.label}, {self.repeat.phase}" if self.repeat is not None else self.label


def _run(
    scenario: Scenario,
    run_id: str,
    run_dir: Path,
    base_dir: Path,
    source_text: str | None,
    progress: Progress,
    where: _Where,
    pg_url: str | None = None,
) -> RunResult:
    started = time.time()
    repeats: list[Repeat] = []
    arms = variants_of(scenario)
    # Variants interleave within each repeat, so slow drift of the machine hits every arm alike.
    for index in range(1, scenario.repeat + 1):
        for variant, arm in arms:
            label = f"repeat {index}/{scenario.repeat}" + (
                f", variant {variant}" if variant else ""
            )
            where.label, where.repeat = label, None
            progress.phase(f"[{scenario.name}] {label}")
            name = f"{variant}-repeat-{index}" if variant else f"repeat-{index}"
            where.repeat = RepeatRun(
                arm, base_dir, run_dir / name, index, progress, variant, pg_url=pg_url
            )
            repeats.append(where.repeat.run())
    where.label, where.repeat = "writing the report", None
    return write_run_report(
        scenario,
        run_id,
        run_dir,
        repeats,
        started=started,
        variants=[v for v, _ in arms if v is not None],
        source_text=source_text,
    )


def write_run_report(
    scenario: Scenario,
    run_id: str,
    run_dir: Path,
    repeats: list[Repeat],
    *,
    started: float,
    variants: list[str],
    source_text: str | None,
    step_summary: bool = True,
) -> RunResult:
    """Judge the repeats as one run and write `report.json` and `report.html` in `run_dir`
    (and the Markdown summary to the CI job page, when there is one and `step_summary`)."""
    failed = [
        f"{r.variant + ' ' if r.variant else ''}repeat {r.index}: {c.name}"
        for r in repeats
        for c in r.checks
        if not c.ok
    ]
    report = Report(
        version=REPORT_VERSION,
        run_id=run_id,
        created=datetime.fromtimestamp(started, UTC).isoformat(),
        wall_s=round(time.time() - started, 3),
        environment=Environment.current(),
        scenario=ScenarioRecord(
            name=scenario.name,
            description=scenario.description,
            seed=scenario.seed,
            repeat=scenario.repeat,
            settings=scenario.model_dump(mode="json"),
            source=source_text,
        ),
        variants=variants,
        repeats=repeats,
        verdict=RunVerdict(ok=not failed, failed=failed),
    )
    if scenario.variant:
        # Set only for scenarios with variants: a report without them has no `claims` key.
        report = report.model_copy(update={"claims": judge_claims(repeats)})
    path = run_dir / "report.json"
    write_report(report, path)
    # The readable forms: a page next to the JSON, and the CI job summary when there is one.
    from harness.results.html import write_html
    from harness.results.markdown import append_step_summary, run_markdown

    write_html(report, run_dir / "report.html")
    if step_summary:
        append_step_summary(run_markdown(report))
    return RunResult(report, path)
