"""The documentation follows the code: the README's scenario format lists what the models accept,
and nothing in the repository points at material outside it."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from harness.runs.scenario import Expect, Fault, Load, Variant, parse_scenario

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SECTION = "## Scenario files"


def _scenario_section() -> str:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    body = text.split(SECTION, 1)[1]
    # Up to the next top-level section; "## " inside the TOML example would be a comment.
    match = re.search(r"^## ", body, re.M)
    return body[: match.start()] if match else body


def _tables(section: str) -> dict[str, list[list[str]]]:
    """Markdown tables of the section: first header cell -> body rows (cells stripped)."""
    tables: dict[str, list[list[str]]] = {}
    rows: list[list[str]] = []
    for line in [*section.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
            continue
        if len(rows) >= 2:
            tables[rows[0][0]] = [r for r in rows[2:] if r]
        rows = []
    return tables


def _names(cell: str) -> set[str]:
    """The names a table's first cell documents: `a`, or `a` / `b` sharing one line."""
    return set(re.findall(r"`([^`]+)`", cell))


def _documented(header: str) -> dict[str, str]:
    """name -> the rest of its row, for the section's table whose first header is `header`."""
    rows = _tables(_scenario_section()).get(header, [])
    return {name: " | ".join(row[1:]) for row in rows for name in _names(row[0])}


def _literal(model: type[BaseModel], field: str) -> tuple[str, ...]:
    annotation: Any = model.model_fields[field].annotation
    return tuple(str(value) for value in get_args(annotation))


def _load_models() -> dict[str, type[BaseModel]]:
    union = get_args(Load)[0]
    models: dict[str, type[BaseModel]] = {}
    for model in get_args(union):
        (kind,) = _literal(model, "kind")
        models[kind] = model
    return models


def _common_load_fields() -> set[str]:
    return set.intersection(*(set(m.model_fields) for m in _load_models().values()))


def _check_table(header: str, names: set[str]) -> None:
    documented = set(_documented(header))
    missing = sorted(names - documented)
    extra = sorted(documented - names)
    assert not missing, (
        f"README.md, {SECTION!r}: table '{header}' lacks {missing}; add one row each "
        "(harness/runs/scenario.py defines them)"
    )
    assert not extra, (
        f"README.md, {SECTION!r}: table '{header}' lists {extra}, which harness/runs/scenario.py "
        "does not define"
    )


def test_models_are_found() -> None:
    # Guards the introspection below: a refactor of the models must not make the tests vacuous.
    assert {"reader", "status"} <= set(_load_models())
    assert "write_transaction" in _literal(Fault, "kind")
    assert "max_busy_events" in Expect.model_fields


def test_readme_lists_every_load_kind() -> None:
    _check_table("load kind", set(_load_models()))


def test_readme_lists_every_fault_kind() -> None:
    _check_table("fault kind", set(_literal(Fault, "kind")))


def test_readme_lists_every_expect_field() -> None:
    _check_table("[expect] key", set(Expect.model_fields))


def test_readme_lists_every_variant_key() -> None:
    _check_table("[[variant]] key", set(Variant.model_fields))


def test_readme_names_each_load_kinds_own_settings() -> None:
    rows = _documented("load kind")
    common = _common_load_fields()
    for kind, model in _load_models().items():
        own = sorted(set(model.model_fields) - common)
        absent = [f for f in own if not re.search(rf"`{f}`", rows.get(kind, ""))]
        assert not absent, f"README.md: the row of load kind {kind!r} does not name {absent}"


def test_readme_names_the_common_load_and_fault_settings() -> None:
    section = _scenario_section()
    fields = (_common_load_fields() - {"kind"}) | (set(Fault.model_fields) - {"kind"})
    absent = sorted(f for f in fields if not re.search(rf"\b{f}\b", section))
    assert not absent, f"README.md, {SECTION!r}: settings {absent} are not mentioned"


def test_readme_example_scenario_is_valid() -> None:
    match = re.search(r"```toml\n(.*?)```", _scenario_section(), re.S)
    assert match, f"README.md, {SECTION!r}: no TOML example"
    raw = tomllib.loads(match.group(1))
    scenario = parse_scenario({"name": "readme", **raw}, source="README.md")
    assert scenario.load and scenario.fault and scenario.variant


# Built from parts so this file does not match its own test.
OUTSIDE = ("../" + "shared", "shared" + "/seed")


@pytest.mark.slow
def test_no_tracked_file_points_outside_the_repository() -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: no tracked files to read")
    listed = subprocess.run(
        [git, "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True
    ).stdout
    found = []
    for name in filter(None, listed.decode().split("\0")):
        path = ROOT / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary (the report screenshot)
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if any(text in line for text in OUTSIDE):
                found.append(f"{name}:{number}: {line.strip()}")
    assert not found, "tracked files refer to material outside the repository:\n" + "\n".join(found)


def test_readme_lists_every_key_of_a_users_process() -> None:
    from harness.runs.process_spec import CommandProcess

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Your own processes", 1)[1].split("\n## ", 1)[0]
    rows = _tables(section).get("[processes.NAME] key", [])
    documented = {name for row in rows for name in _names(row[0])}
    missing = sorted(set(CommandProcess.model_fields) - documented)
    assert not missing, f"README.md, '## Your own processes': keys {missing} have no row"
