"""The import rules that keep the layout honest, read from the code itself.

- `reference/` (the system under test) never imports `harness/` (its tester).
- `harness/results/` reads and renders reports; it never imports the code that runs processes
  (`harness.runs`, `harness.interleavings`) nor the command layer: a report is read, compared
  and rendered on a machine that never ran it.
- Domain code never imports the command layer, and only the command layer (and the entry points
  of processes started with `python -m`) knows argparse.
- Exit codes are defined once.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Modules run as their own process with `python -m`: each parses its own flags.
PROCESS_ENTRY_POINTS = {
    "reference/bot.py",
    "reference/agent.py",
    "reference/api/__main__.py",
    "reference/api.py",
    "reference/runtime.py",
    "harness/interleavings/actor.py",
    "harness/speed/anchor_api.py",
}


def _modules(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module an `import` or `from ... import` names, at any depth of the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            # `from harness import runs` names the package harness.runs.
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _offending(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in paths:
        for name in sorted(_imports(path)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                found.append(f"{where} imports {name}")
    return found


def test_the_reference_system_never_imports_its_tester() -> None:
    assert _offending(_modules("reference"), ("harness",)) == []


def test_results_code_never_imports_the_process_running_code() -> None:
    forbidden = ("harness.runs", "harness.interleavings", "harness.commands", "harness.cli")
    assert _offending(_modules("harness/results"), forbidden) == []


@pytest.mark.parametrize(
    "folder",
    ["harness/runs", "harness/interleavings", "harness/results", "harness/bench", "harness/speed"],
)
def test_domain_code_never_imports_the_command_layer(folder: str) -> None:
    assert _offending(_modules(folder), ("harness.commands", "harness.cli")) == []


def test_only_the_command_layer_and_process_entry_points_know_argparse() -> None:
    allowed = {"harness/cli.py", *PROCESS_ENTRY_POINTS}
    paths = [
        p
        for p in _modules("harness", "reference")
        if str(p.relative_to(ROOT)) not in allowed and "commands" not in p.parts
    ]
    assert _offending(paths, ("argparse",)) == []


def test_exit_codes_are_defined_once() -> None:
    definitions = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in _modules("harness")
        for m in re.finditer(r"^EXIT_\w+\s*=", p.read_text(encoding="utf-8"), re.M)
    ]
    assert sorted({d.split(":")[0] for d in definitions}) == ["harness/commands/exits.py"], (
        definitions
    )


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from harness.runs import run\n    import argparse\n")
    assert _imports(module) >= {"harness.runs", "harness.runs.run", "argparse"}
    assert _offending([module], ("harness.runs",)) == [
        f"{module} imports harness.runs",
        f"{module} imports harness.runs.run",
    ]
    assert _offending([module], ("harness.run",)) == []  # a prefix of a name is not the name
