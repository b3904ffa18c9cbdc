"""splitdb's pytest plugin (entry point `pytest11`): scenario files as test items.

`pytest --splitdb-scenarios PATH` (a scenario file or a directory of them; repeatable) adds one
test item per scenario: the item runs it end to end, exactly as `splitdb run` does, and fails
with the failing checks and the report's path. The report path is also attached to the test's
report as the user property `splitdb_report` (a `<property>` in JUnit XML). Topology files and
step scripts beside the scenarios are not collected; a scenario file that is not valid is a
collection error of one line per problem.

Without the option the plugin does nothing, so it is safe in every pytest run of the venv. Each
item writes its own run directory (`--splitdb-out`, default `reports/`), under a name no other
worker can take, so `pytest -n auto` runs scenarios in parallel.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

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
        default="reports",
        metavar="DIR",
        help="where scenario items write their run directories (default: reports/)",
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
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return True
    return not is_topology(raw) and "step" not in raw


class ScenarioFile(pytest.File):
    """One scenario file: one item, the scenario's run."""

    def collect(self) -> Iterator[pytest.Item]:
        from harness.runs.scenario import load_scenario

        scenario = load_scenario(self.path)
        yield ScenarioItem.from_parent(self, name=scenario.name, scenario=scenario)

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

        out = Path(self.config.getoption("splitdb_out"))
        result = run_scenario(
            self.scenario,
            out_dir=out,
            base_dir=self.path.parent,
            source_text=self.path.read_text(encoding="utf-8"),
        )
        self.user_properties.append(("splitdb_report", str(result.path)))
        if not result.ok:
            lines = [f"scenario {self.scenario.name}: FAIL  report: {result.path}"]
            for repeat in result.report.repeats:
                where = f"{repeat.variant} " if repeat.variant else ""
                for check in repeat.checks:
                    if not check.ok:
                        lines.append(
                            f"  [FAIL] {where}repeat {repeat.index}: {check.name}: {check.summary}"
                        )
            raise ScenarioFailed("\n".join(lines))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario {self.name}"
