"""What a stack runs of a scenario (`stack_scenario`): one variant, a subset, never its load."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.runs.live_stack import stack_scenario
from harness.runs.scenario import load_scenario
from reference.errors import SplitdbError

ROOT = Path(__file__).resolve().parent.parent


def test_the_load_faults_and_variants_are_left_to_the_test() -> None:
    scenario = stack_scenario(load_scenario(ROOT / "scenarios" / "kill-each.toml"))
    assert scenario.load == () and scenario.fault == () and scenario.variant == ()
    assert scenario.reference_roles() == ("bot", "agent", "api")


def test_a_subset_runs_only_the_named_processes() -> None:
    scenario = stack_scenario(
        load_scenario(ROOT / "scenarios" / "default.toml"), processes=["bot", "api"]
    )
    assert scenario.reference_roles() == ("bot", "api")
    user = stack_scenario(
        load_scenario(ROOT / "examples" / "shared-file" / "separate.toml"), processes=["risk"]
    )
    assert user.process_names() == ("risk",)


def test_an_unknown_process_names_the_known_ones() -> None:
    with pytest.raises(SplitdbError) as error:
        stack_scenario(load_scenario(ROOT / "scenarios" / "default.toml"), processes=["boot"])
    assert str(error.value) == (
        "processes=['boot']: 'boot' is not a process of scenario 'default'; its processes: "
        "bot, agent, api"
    )


def test_a_variant_is_chosen_by_name_and_an_unknown_one_names_the_known() -> None:
    claims = load_scenario(ROOT / "scenarios" / "claims.toml")
    names = [v.name for v in claims.variant]
    legacy = stack_scenario(claims, variant="legacy")
    assert legacy.topology == "legacy" and legacy.expect.max_busy_events == 100000
    assert stack_scenario(claims, variant="seed-delete").settings.journal_mode == "delete"
    with pytest.raises(SplitdbError) as error:
        stack_scenario(claims, variant="nope")
    assert str(error.value) == (
        f"variant='nope': scenario 'claims' has no such variant; its variants: {', '.join(names)}"
    )
