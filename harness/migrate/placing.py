"""Putting verified files in place, so an interrupted migration never leaves a wrong one.

Targets are written under temporary names beside their final ones (`.NAME.splitdb-tmp`), and
only renamed into place once every one of them is verified. Before the first rename a manifest
(`.splitdb-migration.json` in the target directory) records each verified file's identity
(inode, size, modification time); `os.replace` keeps them, so a later run can tell a target an
interrupted migration put in place (it may be replaced) from one that was there before (it is
refused unless `--force`). A target that an earlier interrupted migration left in place stays
listed with the new file until the rename replaces it: a run stopped before that rename leaves
it as replaceable as it found it. A finished migration marks its manifest complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from harness.atomic import write_atomically
from harness.migrate.plan import MigrationError

MANIFEST = ".splitdb-migration.json"
SIDE_FILES = ("-wal", "-shm", "-journal")


def temp_of(target: Path, suffix: str = "splitdb-tmp") -> Path:
    return target.with_name(f".{target.name}.{suffix}")


def remove_file(path: Path) -> None:
    """`path` and its SQLite side files (-wal, -shm, -journal), where they exist."""
    for name in (str(path), *(str(path) + s for s in SIDE_FILES)):
        Path(name).unlink(missing_ok=True)


def _identity(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"inode": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _manifest_path(targets: Iterable[Path]) -> list[Path]:
    return sorted({t.parent / MANIFEST for t in targets})


def left_by_unfinished_run(target: Path) -> bool:
    """Whether `target` is a file an interrupted migration verified and put in place, unchanged
    since."""
    manifest = target.parent / MANIFEST
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
        recorded = data["targets"][str(target)]
        # One identity (the manifest's first form), or every file the run may have left here.
        identities = recorded if isinstance(recorded, list) else [recorded]
        return not data.get("complete") and _identity(target) in identities
    except (OSError, ValueError, KeyError, TypeError):
        return False


def refuse_existing(targets: Iterable[Path], *, force: bool) -> None:
    """Raise naming every target that exists and may not be replaced."""
    taken = [t for t in targets if t.exists() and not force and not left_by_unfinished_run(t)]
    if taken:
        raise MigrationError(
            str(taken[0].parent),
            [
                f"{t} exists; move it away or pass --force to replace it (its -wal and -shm "
                "files go with it)"
                for t in taken
            ],
        )


def put_in_place(verified: dict[Path, Path]) -> None:
    """Rename each verified temporary file (value) over its target (key).

    The manifest is written first, then each target's old side files go (a stale -wal would
    be replayed into the new file), then the rename; the directory is synced after each.
    """
    for manifest in _manifest_path(verified):
        # Read before this manifest replaces the one that says which targets are replaceable.
        entries = {
            str(t): [_identity(tmp), *([_identity(t)] if left_by_unfinished_run(t) else [])]
            for t, tmp in verified.items()
            if t.parent == manifest.parent
        }
        write_atomically(manifest, json.dumps({"complete": False, "targets": entries}, indent=1))
    for target, tmp in verified.items():
        for side in SIDE_FILES:
            Path(str(target) + side).unlink(missing_ok=True)
        os.replace(tmp, target)
        _sync_dir(target.parent)
    for manifest in _manifest_path(verified):
        data = json.loads(manifest.read_text(encoding="utf-8"))
        data["complete"] = True
        write_atomically(manifest, json.dumps(data, indent=1))


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
