"""The data directory on a filesystem of its own, for a `disk_full` fault to fill.

A scenario with a `disk_full` fault runs its repeat's data directory on a tmpfs (`SIZE_MB`),
so filling it (harness/runs/faults.py, `fill_filesystem`) starves only the system under test,
never the machine. Mounting needs root; without it the run refuses before it starts. When the
repeat is judged, the files are copied out of the tmpfs into the directory it covered, so the
run directory keeps its evidence, and the tmpfs is unmounted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from reference.errors import SplitdbError

SIZE_MB = 512


class SmallFsUnavailable(SplitdbError):
    """A filesystem of its own cannot be mounted here."""


def mount_small_fs(path: Path, size_mb: int = SIZE_MB) -> None:
    """Mount a tmpfs of `size_mb` on `path` (created if missing)."""
    if os.geteuid() != 0:
        raise SmallFsUnavailable(
            "a disk_full fault fills a filesystem of the data directory's own (a tmpfs), which "
            "needs root to mount; run as root, or remove the fault"
        )
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SmallFsUnavailable(
            f"a disk_full fault needs a tmpfs on {path}: mount failed "
            f"({done.stderr.strip() or done.returncode}); run where mounting is allowed, or "
            "remove the fault"
        )


def unmount_keeping(path: Path) -> None:
    """Copy what the tmpfs on `path` holds out, unmount it, and put the copy in its place."""
    keep = Path(tempfile.mkdtemp(prefix=".data-", dir=path.parent))
    shutil.copytree(path, keep, dirs_exist_ok=True, symlinks=True)
    subprocess.run(["umount", str(path)], capture_output=True, check=False)
    shutil.copytree(keep, path, dirs_exist_ok=True, symlinks=True)
    shutil.rmtree(keep, ignore_errors=True)
