"""The fast lane (`pytest -m "not slow"`) starts no process: a test that does must be marked."""

from __future__ import annotations

import subprocess

import pytest


def test_an_unmarked_test_that_starts_a_process_is_told_to_mark_itself_slow() -> None:
    with pytest.raises(RuntimeError, match=r"not marked slow; add @pytest.mark.slow"):
        subprocess.run(["true"], check=False)


@pytest.mark.slow
def test_a_slow_test_may_start_processes() -> None:
    assert subprocess.run(["true"], check=False).returncode == 0
