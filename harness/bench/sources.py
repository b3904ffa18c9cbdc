"""The two source trees the benchmark gate measures: the base revision, exported from git, and
the head, the working tree as it is (uncommitted changes included).

Both are copied into a temporary directory and run alike: by the interpreter running splitdb,
with the tree as working directory and first on PYTHONPATH. The two sides then differ in the
project's own code only: the same Python, the same installed packages (a base installed into a
venv of its own would get whatever versions pip resolves that day), and a fresh copy each, with
no bytecode caches or data left by earlier work in one of them. A base whose pyproject.toml
declares other dependencies than the head's still runs with the head's packages; the gate says so.

A base that cannot be built is a `BenchError` (one line, exit 2), never a skipped gate: a revision
git does not know (in a shallow clone the line says to fetch it), or one without benchmarks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import BenchError

GIT_TIMEOUT_S = 120
BENCHMARKS_DIR = Path("tests") / "benchmarks"
DEFAULT_BASE = "HEAD~1"
BASE_VARIABLE = "SPLITDB_BENCH_BASE"
_FETCH_HINT = (
    "fetch it (git fetch --deepen=1, or actions/checkout with fetch-depth: 2) or set "
    f"{BASE_VARIABLE} to a revision this clone has"
)


@dataclass(frozen=True)
class Tree:
    """One side's code: `side` is 'base' or 'head', `root` its copy, `label` how to name it.

    `commit` is the revision it was taken from (the head's: HEAD, None before the first commit);
    `changed_files` how many files of the working tree differ from it (the base: 0).
    """

    side: str
    root: Path
    label: str
    commit: str | None
    changed_files: int = 0

    @property
    def is_commit(self) -> bool:
        """True when the tree is exactly its commit: no change on top."""
        return self.commit is not None and self.changed_files == 0


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError:
        raise BenchError(
            "git: not found on PATH; splitdb bench builds the base revision with git, install it"
        ) from None


def _text(done: subprocess.CompletedProcess[bytes]) -> str:
    return done.stdout.decode("utf-8", "replace").strip()


def repository(cwd: Path) -> Path:
    """The root of the git checkout `cwd` is in: the head the gate measures."""
    done = _git(cwd, "rev-parse", "--show-toplevel")
    if done.returncode != 0:
        raise BenchError(
            f"{cwd}: not in a git checkout; run splitdb bench (tox -e bench) in the repository "
            "whose working tree is the head to measure"
        )
    return Path(_text(done))


def _is_shallow(repo: Path) -> bool:
    return _text(_git(repo, "rev-parse", "--is-shallow-repository")) == "true"


def resolve(repo: Path, revision: str, flag: str) -> str:
    """The commit `revision` names in `repo`; `flag` says where it came from, for the error."""
    if not revision.strip() or revision.startswith("-"):
        raise BenchError(
            f"{flag} {revision!r}: not a revision; give a commit, tag or branch, such as HEAD~1"
        )
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if done.returncode == 0:
        return _text(done)
    if _is_shallow(repo):
        raise BenchError(
            f"{flag} {revision}: not in this clone, which is shallow (it holds only the newest "
            f"commits); {_FETCH_HINT}"
        )
    raise BenchError(
        f"{flag} {revision}: no such revision in {repo}; give a commit, tag or branch that "
        f"exists (git log --oneline lists them), or set {BASE_VARIABLE}"
    )


def merge_base(repo: Path, branch: str) -> str:
    """The commit where HEAD left `branch` (what a pull request is measured against)."""
    other = resolve(repo, branch, "--merge-base")
    done = _git(repo, "merge-base", "HEAD", other)
    if done.returncode != 0:
        hint = (
            "this clone is shallow: fetch the history (actions/checkout with fetch-depth: 0)"
            if _is_shallow(repo)
            else "give the base itself with --base REV"
        )
        raise BenchError(f"--merge-base {branch}: no common ancestor with HEAD; {hint}")
    return _text(done)


def export_revision(repo: Path, commit: str, dest: Path) -> None:
    """The files of `commit` (as `git archive` gives them) into `dest`."""
    with subprocess.Popen(
        ["git", "-C", str(repo), "archive", "--format=tar", commit],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        try:
            with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
                tar.extractall(dest, filter="data")
        except tarfile.TarError:
            pass  # git failed mid-stream: its own message, below, says why
        error = proc.stderr.read().decode("utf-8", "replace").strip()
        if proc.wait() != 0:
            said = error.splitlines()[-1] if error else "no message"
            raise BenchError(
                f"base {commit[:12]}: git archive failed ({said}); check the clone, or "
                + _FETCH_HINT
            )


def snapshot_working_tree(repo: Path, dest: Path) -> None:
    """The working tree's files into `dest`: tracked ones as they are now, and untracked ones
    that are not ignored (a new module of the change); ignored ones (venvs, reports) stay."""
    listed = _git(repo, "ls-files", "-z", "--cached", "--others", "--exclude-standard").stdout
    for name in sorted({os.fsdecode(n) for n in listed.split(b"\0") if n}):
        source, target = repo / name, dest / name
        if not source.is_symlink() and not source.is_file():
            continue  # deleted in the working tree, or a submodule
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        else:
            shutil.copy2(source, target)


def _head(repo: Path, root: Path) -> Tree:
    done = _git(repo, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    commit = _text(done) if done.returncode == 0 else None
    changed = len(
        [line for line in _text(_git(repo, "status", "--porcelain")).splitlines() if line]
    )
    label = f"working tree at {commit[:12]}" if commit else "working tree (no commit yet)"
    if changed:
        label += f" with {changed} changed file{'s' * (changed != 1)}"
    return Tree("head", root, label, commit, changed)


def require_benchmarks(tree: Tree, fix: str) -> None:
    """Refuse a tree without a benchmark module in tests/benchmarks; `fix` ends the line."""
    folder = tree.root / BENCHMARKS_DIR
    if folder.is_dir() and any(
        p.is_file() for pattern in ("test_*.py", "*_test.py") for p in folder.rglob(pattern)
    ):
        return
    raise BenchError(
        f"{tree.side} {tree.label}: has no benchmarks ({BENCHMARKS_DIR}/test_*.py); {fix}"
    )


def _declared(root: Path) -> dict[str, Any]:
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError):
        return {}
    return {
        "dependencies": sorted(project.get("dependencies") or []),
        "optional": {k: sorted(v) for k, v in (project.get("optional-dependencies") or {}).items()},
    }


def dependency_note(base: Tree, head: Tree) -> str | None:
    """A warning when the base's pyproject.toml declares other dependencies than the head's."""
    if _declared(base.root) == _declared(head.root):
        return None
    return (
        f"the base ({base.label}) declares other dependencies than the head in pyproject.toml; "
        "both sides run with the packages installed here (the head's)"
    )


@contextmanager
def trees(repo: Path, base_commit: str, base_label: str) -> Iterator[dict[str, Tree]]:
    """The base and the head, each copied into a temporary directory, removed on exit.

    Raises BenchError when the base cannot be exported.
    """
    with tempfile.TemporaryDirectory(prefix="splitdb-bench-") as scratch:
        base_root, head_root = Path(scratch) / "base", Path(scratch) / "head"
        base_root.mkdir()
        head_root.mkdir()
        export_revision(repo, base_commit, base_root)
        snapshot_working_tree(repo, head_root)
        yield {
            "base": Tree("base", base_root, base_label, base_commit),
            "head": _head(repo, head_root),
        }
