"""Reports, pages and traces are written whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.atomic import remove_stale_temporaries, write_atomically


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old\n")
    write_atomically(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old\n")
    with pytest.raises(UnicodeEncodeError):
        write_atomically(target, "half \udc80 written")  # a lone surrogate cannot be UTF-8
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_only_the_temporary_files_of_killed_writers_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process has this pid
    stale = tmp_path / f".report.json.{dead}.tmp"
    writing = tmp_path / f".report.json.{os.getpid()}.tmp"  # a live process, mid-write
    other = tmp_path / f".report.json.x{dead}.tmp"
    for path in (stale, writing, other):
        path.write_text("half")
    assert remove_stale_temporaries(target) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([writing.name, other.name])
