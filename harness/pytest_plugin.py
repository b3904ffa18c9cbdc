"""splitdb's pytest plugin (entry point `pytest11`): a stack fixture, scenario files as items.

The `splitdb_stack` fixture starts a scenario's processes (the reference stack by default, a
subset, or a user's own commands) for the test to drive (`harness.runs.live_stack.LiveStack`).
When the test's body ends they are stopped and judged by the harness's checks: a failing check
fails the test, with its evidence and the report's path (also the user property
`splitdb_report`). The scenario's load, faults and variants are not run; the test is the load.

`pytest --splitdb-scenarios PATH` (a scenario file or a directory of them; repeatable) adds one
test item per scenario (per variant, for a scenario with variants): the item runs it end to end,
exactly as `splitdb run` does, and fails with the failing checks and the report's path. The report
path is also attached to the test's report as the user property `splitdb_report` (a `<property>` in
JUnit XML). Topology files and step scripts beside the scenarios are not collected; a scenario file
that is not valid is a collection error of one line per problem.

Without the option the plugin does nothing, so it is safe in every pytest run of the venv. Each
item writes its own run directory (`--splitdb-out`, default `reports/`), under a name no other
worker can take, so `pytest -n auto` runs scenarios in parallel.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from harness.runs.live_stack import LiveStack
    from harness.runs.run import RunResult

OPTION = "--splitdb-scenarios"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("splitdb", "splitdb scenarios as tests")
    group.addoption(
        OPTION,
        action="append",
        default=[],
        metavar="PATH",
        help="run the scenario file, or every scenario in the directory, as a test item",
    )
    group.addoption(
        "--splitdb-out",
        default=None,
        metavar="DIR",
        help="where scenario items and stacks write their run directories (default: reports/ "
        "for scenario items, a temporary directory for the splitdb_stack fixture)",
    )


def pytest_configure(config: pytest.Config) -> None:
    paths = [Path(p) for p in config.getoption("splitdb_scenarios")]
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise pytest.UsageError(
            f"{OPTION} {missing[0]}: no such file or directory; give a scenario file or a "
            "directory of them"
        )
    config.stash[_ROOTS] = [p.resolve() for p in paths]
    # Collected along with whatever else pytest was asked to collect.
    config.args.extend(str(p) for p in paths if str(p) not in config.args)


_ROOTS = pytest.StashKey[list[Path]]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    roots = parent.config.stash.get(_ROOTS, [])
    if not roots or file_path.suffix != ".toml":
        return None
    resolved = file_path.resolve()
    if not any(resolved == root or root in resolved.parents for root in roots):
        return None
    if not _is_scenario(resolved):
        return None
    return ScenarioFile.from_parent(parent, path=file_path)


def _is_scenario(path: Path) -> bool:
    """A TOML file that is neither a topology nor a step script (a broken one is collected, so
    its problems are reported)."""
    import tomllib

    from harness.runs.scenario import is_topology

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError):
        return True
    return not is_topology(raw) and "step" not in raw


class ScenarioFile(pytest.File):
    """One scenario file: one item, the scenario's run."""

    def collect(self) -> Iterator[pytest.Item]:
        """One item, or one per variant: each runs its arm's repeats and judges its checks.
        (The claims that compare variants need them interleaved in one run: `splitdb run`.)"""
        from harness.runs.scenario import load_scenario, variants_of

        scenario = load_scenario(self.path)
        for variant, arm in variants_of(scenario):
            name = f"{scenario.name}[{variant}]" if variant else scenario.name
            yield ScenarioItem.from_parent(self, name=name, scenario=arm)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        from reference.errors import SplitdbError

        if isinstance(excinfo.value, SplitdbError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))


class ScenarioFailed(Exception):
    """A scenario's run ended with failing checks."""


class ScenarioItem(pytest.Item):
    """A scenario's run, judged by its checks."""

    def __init__(self, *, scenario: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def runtest(self) -> None:
        from harness.runs.run import run_scenario

        out = Path(self.config.getoption("splitdb_out") or "reports")
        result = run_scenario(
            self.scenario,
            out_dir=out,
            base_dir=self.path.parent,
            source_text=self.path.read_text(encoding="utf-8"),
        )
        self.user_properties.append(("splitdb_report", str(result.path)))
        if not result.ok:
            raise ScenarioFailed(_failure_text(result))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.name}"


# The stack fixture.

_STACKS = pytest.StashKey[list["LiveStack"]]()


@pytest.fixture
def splitdb_stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., LiveStack]]:
    """Start a scenario's processes for this test: `splitdb_stack(scenario=None, *,
    processes=None, variant=None)`.

    `scenario` is a scenario file (relative to the test file's directory), a mapping in the
    scenario file's format, or None for the reference bot, agent and API with default settings
    on the seed topology; `processes`
    names the ones to start (default: all); `variant` picks one of the scenario's variants.
    Returns a started `LiveStack`. At the end of the test it is stopped and checked.
    """
    stacks: list[LiveStack] = []
    request.node.stash[_STACKS] = stacks
    out = request.config.getoption("splitdb_out")

    def start(
        scenario: str | Path | Mapping[str, Any] | None = None,
        *,
        processes: Sequence[str] | None = None,
        variant: str | None = None,
    ) -> LiveStack:
        from harness.runs.live_stack import LiveStack, stack_scenario
        from reference.errors import SplitdbError

        problem: str | None = None
        try:
            loaded, base_dir, source = _stack_source(scenario, request)
            chosen = stack_scenario(loaded, processes=processes, variant=variant)
        except SplitdbError as exc:
            problem = str(exc)
        if problem is not None:  # outside the except: the failure shows this line alone
            pytest.fail(f"splitdb_stack: {problem}", pytrace=False)
        where = Path(out) if out is not None else tmp_path_factory.mktemp("splitdb")
        stack = LiveStack.start(chosen, base_dir=base_dir, out_dir=where, source_text=source)
        stacks.append(stack)
        if stack.aborted:
            # Nothing to drive: the test stops here, with the failed start as its evidence.
            _finish_stacks(request.node, stacks)
            pytest.fail(_failure_text(stack.result), pytrace=False)
        return stack

    yield start
    # The test's body normally finished them (pytest_runtest_call); this covers a test that
    # never got that far, so no process outlives it.
    _finish_stacks(request.node, stacks)


def _stack_source(
    scenario: str | Path | Mapping[str, Any] | None, request: pytest.FixtureRequest
) -> tuple[Any, Path, str | None]:
    """The scenario to start, the directory its relative paths start from, its source text."""
    from harness.runs.scenario import load_scenario, parse_scenario

    if scenario is None or isinstance(scenario, Mapping):
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name).strip("-") or "stack"
        raw = {"name": name[:80], **(scenario or {})}
        where = f"splitdb_stack({dict(scenario) if scenario else ''})"
        parsed = parse_scenario(raw, source=where, base_dir=request.path.parent)
        return parsed, request.path.parent, None
    path = Path(scenario)
    if not path.is_absolute():
        path = request.path.parent / path
    return load_scenario(path), path.parent, path.read_text(encoding="utf-8")


def _finish_stacks(item: pytest.Item, stacks: list[LiveStack]) -> list[RunResult]:
    """Finish every stack still running (each is stopped even when another fails to stop);
    their report paths become the item's `splitdb_report` properties."""
    results = []
    errors: list[BaseException] = []
    for stack in stacks:
        if stack.result is not None:
            continue
        try:
            result = stack.finish()
        except BaseException as exc:  # every stack is stopped, then the first error raised
            errors.append(exc)
            continue
        item.user_properties.append(("splitdb_report", str(result.path)))
        results.append(result)
    if errors:
        raise errors[0]
    return results


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """After the test's body: stop its stacks and judge them. A failing check fails the test;
    when the body itself failed, the checks are added to its report as a section."""
    stacks = item.stash.get(_STACKS, None)
    if stacks is None:  # the test does not use the fixture
        return (yield)
    try:
        outcome = yield
    except BaseException:
        results = _finish_stacks(item, stacks)
        failed = [_failure_text(r) for r in results if not r.ok]
        if failed:
            item.add_report_section("call", "splitdb checks", "\n".join(failed))
        raise
    failed = [_failure_text(r) for r in _finish_stacks(item, stacks) if not r.ok]
    if failed:
        pytest.fail("\n".join(failed), pytrace=False)
    return outcome


def _failure_text(result: RunResult | None) -> str:
    if result is None:
        return "the stack did not finish"
    lines = [f"scenario {result.report.scenario.name}: FAIL  report: {result.path}"]
    for repeat in result.report.repeats:
        where = f"{repeat.variant} " if repeat.variant else ""
        for check in repeat.checks:
            if check.ok:
                continue
            lines.append(f"  [FAIL] {where}repeat {repeat.index}: {check.name}: {check.summary}")
            # A run cut short says why, with the stderr of the process that did not start.
            error = check.evidence.get("error") if check.name == "run" else None
            if error:
                lines.extend(f"    {line}" for line in str(error).splitlines())
    return "\n".join(lines)
