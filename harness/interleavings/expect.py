"""Whether one step's result is what its script said to expect.

Each mismatch is one sentence naming the expectation and what happened instead, so a failing
replay reads like `step[3]: outcome ok, expected busy_snapshot`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from harness.interleavings.script import CheckpointStep, Step, ValueStep
from harness.interleavings.trace import StepResult


def mismatches(step: Step, result: StepResult, values: Mapping[str, Any]) -> list[str]:
    """What in `result` differs from `step`'s expectations; empty when everything matched.

    `values` maps the names of earlier steps to their values, for `expect_greater_than` and
    `expect_less_than`. Durations compare as measured inside the process that ran the step.
    """
    found: list[str] = []
    if step.expect != "any" and result.outcome != step.expect:
        found.append(f"outcome {_describe(result)}, expected {step.expect}")
    if step.expect_code is not None and result.code != step.expect_code:
        found.append(f"code {result.code}, expected {step.expect_code}")
    if step.expect_min_ms is not None and result.duration_ms < step.expect_min_ms:
        found.append(f"took {result.duration_ms:.1f} ms, expected at least {step.expect_min_ms:g}")
    if step.expect_max_ms is not None and result.duration_ms > step.expect_max_ms:
        found.append(f"took {result.duration_ms:.1f} ms, expected at most {step.expect_max_ms:g}")
    if isinstance(step, ValueStep):
        found.extend(_value_mismatches(step, result, values))
    if isinstance(step, CheckpointStep) and step.expect_checkpoint is not None:
        state = checkpoint_state(result)
        if state != step.expect_checkpoint:
            found.append(
                f"checkpoint {state or 'did not run'} {result.rows or ''}, "
                f"expected {step.expect_checkpoint}"
            )
    return found


def checkpoint_state(result: StepResult) -> str | None:
    """'busy' (busy flag set), 'partial' (frames left) or 'complete', from the pragma's row."""
    if not result.rows or len(result.rows[0]) != 3:
        return None
    busy, log, done = result.rows[0]
    if busy:
        return "busy"
    return "complete" if done == log else "partial"


def _value_mismatches(step: ValueStep, result: StepResult, values: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    if step.expect_rows is not None and result.row_count != step.expect_rows:
        found.append(f"{result.row_count} rows, expected {step.expect_rows}")
    if step.expect_value is not None and not _same(result.value, step.expect_value):
        found.append(f"value {result.value!r}, expected {step.expect_value!r}")
    if step.expect_row is not None:
        first = result.rows[0] if result.rows else None
        same = first is not None and len(first) == len(step.expect_row)
        if not same or not all(
            _same(a, b) for a, b in zip(first or (), step.expect_row, strict=False)
        ):
            found.append(f"first row {first!r}, expected {list(step.expect_row)!r}")
    number = _number(result.value)
    if step.expect_min is not None and (number is None or number < step.expect_min):
        found.append(f"value {result.value!r}, expected at least {step.expect_min:g}")
    if step.expect_max is not None and (number is None or number > step.expect_max):
        found.append(f"value {result.value!r}, expected at most {step.expect_max:g}")
    for name, sign in ((step.expect_greater_than, 1), (step.expect_less_than, -1)):
        if name is None:
            continue
        other = _number(values.get(name))
        if number is None or other is None or not (number - other) * sign > 0:
            relation = "greater" if sign > 0 else "less"
            found.append(
                f"value {result.value!r}, expected {relation} than step {name!r} "
                f"({values.get(name)!r})"
            )
    return found


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _same(actual: Any, expected: Any) -> bool:
    # 1 == 1.0 is a match (SQLite may hand back either), True == 1 is not: types must agree
    # on being a number, a string or a flag.
    if isinstance(expected, bool) or isinstance(actual, bool):
        return type(actual) is type(expected) and actual == expected
    return bool(actual == expected)


def _describe(result: StepResult) -> str:
    text = result.outcome
    if result.code is not None:
        text += f" (code {result.code})"
    if result.error:
        text += f": {result.error}"
    return text
