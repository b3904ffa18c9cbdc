"""Status board: the seed's `shared_memory.json`, one section per process, safe under concurrency.

Every process owns one section and only ever rewrites its own (one exception: the section of a
process that died without saying so, which its supervisor marks `state = "dead"`, see
`harness.runs.supervisor`). An update is, in this order: exclusive `fcntl.flock` on `<path>.lock` ->
read the board -> modify the own section -> write a temp file in the same directory -> flush +
fsync -> `os.replace` onto the path -> fsync the directory. The lock lives in a separate file
because `os.replace` swaps the inode: a lock on the board file itself would be taken on an inode
that the next writer throws away. Readers take no lock; the atomic replace means they see the old
board or the new one, never a partial file.

Each update also writes the section, the same atomic way, to `<path>.sections/<section>.json`.
These last good copies are what a corrupt board is rebuilt from: the corrupt file is kept as
`<path>.corrupt-<unix_ns>`, the board is reassembled from the copies, and the repair is recorded
in the board's `repairs` list (and logged), never hidden and never an empty board.

File formats (bump the version on any change a reader of the old version would misread):

- board, `splitdb.status` version 1::

      {"schema": "splitdb.status", "version": 1,
       "sections": {"<name>": {"_seq": int >= 0, "_updated_at": float, ...caller keys}},
       "repairs": [{"at": float, "reason": str, "moved_to": str | null,
                    "sections_restored": [str], "sections_lost": [{"section", "reason",
                    "moved_to"}]}]}

  `repairs` appears once a board was rebuilt and describes that rebuild; it is carried by later
  updates. An earlier rebuild's record is lost with the corrupt board it was in, but its
  `.corrupt-<ns>` file stays on disk.

- last good copy, `splitdb.status.section` version 1::

      {"schema": "splitdb.status.section", "version": 1, "section": "<name>", "content": {...}}
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeAlias

from reference import crashpoints
from reference.errors import StatusBoardBusy, StatusFileCorrupt

__all__ = [
    "SCHEMA",
    "SECTION_NAME_PATTERN",
    "SECTION_SCHEMA",
    "VERSION",
    "StatusBoard",
]

SCHEMA = "splitdb.status"
SECTION_SCHEMA = "splitdb.status.section"
VERSION = 1
SECTION_NAME_PATTERN = r"^[a-z][a-z0-9_-]{0,31}$"

_SECTION_NAME = re.compile(SECTION_NAME_PATTERN)
_RESERVED_KEYS = ("_seq", "_updated_at")
_TOP_LEVEL_KEYS = ("schema", "version", "sections", "repairs")

log = logging.getLogger(__name__)

JSONObject: TypeAlias = dict[str, Any]
Changes: TypeAlias = Mapping[str, Any] | Callable[[JSONObject], Mapping[str, Any]]


class StatusBoard:
    """The status board at `path`; cheap to create, holds no open file between calls.

    Safe to use from several processes and threads at once: every update serialises on the
    lock file, and a section is only ever changed by `update` calls naming it. The directory
    of `path` must exist; the lock file, the `.sections/` directory and the board itself are
    created on first update.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self.sections_dir = self.path.with_name(self.path.name + ".sections")

    def __repr__(self) -> str:
        return f"StatusBoard({str(self.path)!r})"

    def read(self) -> JSONObject:
        """The whole validated board; a missing file reads as an empty board.

        Takes no lock. Raises `StatusFileCorrupt` (with a reason naming what is wrong) when
        the file is not a board this version can read; `update` and `rebuild` repair that.
        """
        raw = self._read_bytes(self.path)
        if raw is None:
            return _empty_board()
        return _parse_board(raw, self.path)

    def section(self, name: str) -> JSONObject:
        """One section's content (with `_seq` and `_updated_at`), or {} if it was never written.

        Raises `StatusFileCorrupt` like `read`.
        """
        _check_section_name(name, "name")
        content: JSONObject = self.read()["sections"].get(name, {})
        return content

    def update(self, section: str, changes: Changes, *, timeout: float | None = None) -> JSONObject:
        """Change one section and return its new content.

        `changes` is either a mapping whose keys replace the section's top-level keys (a
        shallow merge: nested objects are replaced, not merged) or a callable that receives
        the current content (a fresh copy, {} for a new section) and returns the complete
        new content. Either way `_seq` is then incremented and `_updated_at` set to
        `time.time()`; a mapping may not set those two keys. Values must be JSON: finite
        numbers, strings, booleans, None, lists and str-keyed dicts; anything else raises
        before the board is touched.

        Never fails because the board file is corrupt: it is kept as `<path>.corrupt-<ns>`,
        the board is rebuilt from the last good section copies and the repair is recorded in
        the board's `repairs` list. Blocks while another process holds the lock; with a
        `timeout` (seconds), raises StatusBoardBusy instead of waiting longer, so a process
        frozen while holding the lock (SIGSTOP) cannot freeze every other process with it.
        """
        _check_section_name(section, "section")
        if not callable(changes):
            _check_changes(changes)
        with self._locked(timeout):
            board = self._load_for_write()
            current: JSONObject = board["sections"].get(section, {})
            previous_seq: int = current.get("_seq", 0)
            if callable(changes):
                produced = changes(current)
                if not isinstance(produced, Mapping):
                    raise TypeError(
                        f"changes callable must return a mapping (the new section content), "
                        f"got {type(produced).__name__}"
                    )
                _check_keys(produced, "the mapping returned by changes")
                content = dict(produced)
            else:
                content = {**current, **changes}
            content["_seq"] = previous_seq + 1
            content["_updated_at"] = time.time()
            board["sections"][section] = content
            board_bytes = _encode(board, f"section {section!r}")
            copy_bytes = _encode(
                {
                    "schema": SECTION_SCHEMA,
                    "version": VERSION,
                    "section": section,
                    "content": content,
                },
                f"section {section!r}",
            )
            copy_path = self.sections_dir / f"{section}.json"
            _remove_dead_writers_temps(self.path)
            _remove_dead_writers_temps(copy_path)
            # Board first: a last good copy must never be ahead of what the board accepted.
            _write_atomically(self.path, board_bytes)
            self.sections_dir.mkdir(exist_ok=True)
            _write_atomically(copy_path, copy_bytes)
            return content

    def rebuild(self) -> JSONObject:
        """Repair the board if it needs it and return the (validated) board.

        A corrupt board is kept as `<path>.corrupt-<ns>` and rebuilt from the last good
        section copies; a missing board with copies present is rebuilt from them too. A board
        that reads fine is left exactly as it is. A corrupt section copy is kept as
        `<section>.json.corrupt-<ns>` and that section is lost (its owner's next update starts
        it again at `_seq` 1); the repair record in the board's `repairs` list names it.
        """
        with self._locked():
            raw = self._read_bytes(self.path)
            if raw is not None:
                try:
                    return _parse_board(raw, self.path)
                except StatusFileCorrupt:
                    pass
            elif not self._section_copies():
                return _empty_board()
            board = self._load_for_write()
            _write_atomically(self.path, _encode(board, "the rebuilt board"))
            return board

    @contextlib.contextmanager
    def _locked(self, timeout: float | None = None) -> Iterator[None]:
        # Opened per call, not kept: flock belongs to the open file description, so a fresh
        # one per update also serialises threads of one process and survives fork.
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            if timeout is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                _flock_within(fd, timeout, self.path)
            yield
        finally:
            # Closing releases the lock; the lock file itself stays, since unlinking it would
            # let two processes hold locks on two different inodes.
            os.close(fd)

    def _load_for_write(self) -> JSONObject:
        """The board to modify, repaired from the last good copies if needed; call under lock."""
        raw = self._read_bytes(self.path)
        if raw is None:
            if not self._section_copies():
                return _empty_board()
            return self._repair("the board file is missing", moved_to=None)
        try:
            return _parse_board(raw, self.path)
        except StatusFileCorrupt as exc:
            moved_to = _keep_as_evidence(self.path, raw)
            return self._repair(exc.reason, moved_to=moved_to)

    def _repair(self, reason: str, moved_to: Path | None) -> JSONObject:
        restored: dict[str, JSONObject] = {}
        lost: list[JSONObject] = []
        for name, copy_path in self._section_copies():
            raw = self._read_bytes(copy_path)
            if raw is None:
                continue
            try:
                restored[name] = _parse_section_copy(raw, copy_path, name)
            except StatusFileCorrupt as exc:
                lost.append(
                    {
                        "section": name,
                        "reason": exc.reason,
                        "moved_to": str(_keep_as_evidence(copy_path, raw)),
                    }
                )
        record: JSONObject = {
            "at": time.time(),
            "reason": reason,
            "moved_to": None if moved_to is None else str(moved_to),
            "sections_restored": sorted(restored),
            "sections_lost": lost,
        }
        log.warning(
            "status board %s rebuilt from last good copies: %s; corrupt file kept at %s; "
            "restored %s; lost %s",
            self.path,
            reason,
            moved_to,
            sorted(restored) or "nothing",
            [entry["section"] for entry in lost] or "nothing",
        )
        board = _empty_board()
        board["sections"] = restored
        board["repairs"] = [record]
        return board

    def _section_copies(self) -> list[tuple[str, Path]]:
        try:
            entries = sorted(self.sections_dir.iterdir())
        except FileNotFoundError:
            return []
        # Temp files end in .tmp and evidence in .corrupt-<ns>, so neither is taken for a
        # section; neither is a file whose stem is not a valid section name.
        return [
            (entry.stem, entry)
            for entry in entries
            if entry.suffix == ".json" and _SECTION_NAME.fullmatch(entry.stem)
        ]

    @staticmethod
    def _read_bytes(path: Path) -> bytes | None:
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None


def _flock_within(fd: int, timeout: float, path: Path) -> None:
    """Take the exclusive lock, polling, or raise StatusBoardBusy after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise StatusBoardBusy(path, timeout) from None
            time.sleep(pause)
            pause = min(pause * 2, 0.02)


def _empty_board() -> JSONObject:
    return {"schema": SCHEMA, "version": VERSION, "sections": {}}


def _check_section_name(name: object, argument: str) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{argument} must be a str, got {type(name).__name__}")
    if not _SECTION_NAME.fullmatch(name):
        raise ValueError(
            f"{argument}={name!r} is not a valid section name: it must match "
            f"{SECTION_NAME_PATTERN} (a lowercase letter, then up to 31 lowercase letters, "
            f"digits, '_' or '-')"
        )


def _check_changes(changes: object) -> None:
    if not isinstance(changes, Mapping):
        raise TypeError(f"changes must be a mapping or a callable, got {type(changes).__name__}")
    _check_keys(changes, "changes")
    for key in changes:
        if key in _RESERVED_KEYS:
            raise ValueError(f"changes may not set {key!r}: update() maintains it; remove that key")


def _check_keys(mapping: Mapping[Any, Any], what: str) -> None:
    # json.dumps would quietly turn 1 into "1", so the stored section would differ from the
    # one returned.
    for key in mapping:
        if not isinstance(key, str):
            raise TypeError(f"{what}: keys must be str, got {key!r} ({type(key).__name__})")


def _encode(document: JSONObject, what: str) -> bytes:
    try:
        text = json.dumps(document, indent=2, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{what} is not storable as JSON: {exc}") from exc
    return (text + "\n").encode("ascii")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new, never a mix."""
    directory = path.parent
    # A random name rather than mkstemp: mkstemp forces mode 0600, which would hide the board
    # from roles running as other users; os.open applies the umask like any other file.
    temp = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        crashpoints.reach("status.before_replace")
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
        raise
    crashpoints.reach("status.after_replace")
    _fsync_directory(directory)


def _remove_dead_writers_temps(path: Path) -> None:
    """Remove the temp files of `path` whose writer is gone (killed before its rename).

    Called under the board's lock, where every writer of `path` writes, so a temp file of a
    process that still runs is not ours to judge (pid reuse aside, it cannot be mid-write):
    it is kept, and removed by a later update once that process has gone.
    """
    prefix = f".{path.name}."
    try:
        entries = list(os.scandir(path.parent))
    except FileNotFoundError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid, _, token = name[len(prefix) : -len(".tmp")].partition(".")
        if not (pid.isdigit() and len(token) == 8) or _running(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(entry.path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process (OS enforcement runs roles as their own users)
    return True


def _fsync_directory(directory: Path) -> None:
    # Without this the rename itself may not survive a power loss.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _keep_as_evidence(path: Path, raw: bytes) -> Path:
    """Keep a corrupt file's content at `<path>.corrupt-<unix_ns>`, return that path; under lock.

    A hard link rather than a rename: lock-free readers never find the board missing (the
    caller's `os.replace` swaps the good board in), and if the update then fails nothing
    has changed but one more link to the same evidence.
    """
    target = _evidence_path(path)
    try:
        os.link(path, target)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        # No hard links here (some network and FUSE file systems): keep the exact bytes
        # that were judged corrupt instead.
        _write_atomically(target, raw)
        return target
    _fsync_directory(path.parent)
    return target


def _evidence_path(path: Path) -> Path:
    ns = time.time_ns()
    while (target := path.with_name(f"{path.name}.corrupt-{ns}")).exists():
        ns += 1
    return target


class _NotJSONNumber(Exception):
    def __init__(self, problem: str) -> None:
        self.problem = problem


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        # Python would read 1e999 as inf, which it cannot write back as JSON.
        raise _NotJSONNumber(f"number {literal} does not fit a 64-bit float")
    return value


def _reject_constant(name: str) -> float:
    # Python's json reads these by default, but they are not JSON and could not be written back.
    raise _NotJSONNumber(f"{name} is not a JSON value")


def _load_json(raw: bytes, path: Path) -> object:
    if not raw:
        raise StatusFileCorrupt(path, "the file is empty (0 bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StatusFileCorrupt(
            path, f"not UTF-8 text: byte {exc.start} is {raw[exc.start : exc.start + 1]!r}"
        ) from None
    try:
        return json.loads(text, parse_float=_finite_float, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise StatusFileCorrupt(
            path, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except _NotJSONNumber as exc:
        raise StatusFileCorrupt(path, f"invalid JSON: {exc.problem}") from None
    except RecursionError:
        raise StatusFileCorrupt(path, "invalid JSON: nested too deeply to read") from None
    except ValueError as exc:
        # For example an integer with more digits than int() accepts.
        raise StatusFileCorrupt(path, f"invalid JSON: {exc}") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _check_format(
    document: object, path: Path, schema: str, keys: tuple[str, ...], kind: str
) -> JSONObject:
    if not isinstance(document, dict):
        raise StatusFileCorrupt(
            path, f"not a {kind}: the top level is {_json_type(document)}, expected an object"
        )
    if "schema" not in document:
        raise StatusFileCorrupt(path, f"not a {kind}: key 'schema' is missing")
    if document["schema"] != schema:
        raise StatusFileCorrupt(
            path, f"not a {kind}: 'schema' is {document['schema']!r}, expected {schema!r}"
        )
    if "version" not in document:
        raise StatusFileCorrupt(path, "key 'version' is missing")
    version = document["version"]
    if not isinstance(version, int) or isinstance(version, bool):
        raise StatusFileCorrupt(path, f"'version' is {_json_type(version)}, expected an integer")
    if version > VERSION:
        raise StatusFileCorrupt(
            path, f"version {version} is newer than this splitdb supports ({VERSION})"
        )
    if version < 1:
        raise StatusFileCorrupt(path, f"version {version} does not exist (versions start at 1)")
    for key in document:
        if key not in keys:
            raise StatusFileCorrupt(
                path,
                f"unexpected top-level key {key!r} (a version {VERSION} {kind} has "
                f"{', '.join(repr(k) for k in keys)})",
            )
    return document


def _check_section(content: object, path: Path, where: str) -> JSONObject:
    if not isinstance(content, dict):
        raise StatusFileCorrupt(path, f"{where} is {_json_type(content)}, expected an object")
    seq = content.get("_seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        shown = "missing" if "_seq" not in content else f"{seq!r}"
        raise StatusFileCorrupt(
            path, f"{where}: '_seq' is {shown}, expected a non-negative integer"
        )
    updated_at = content.get("_updated_at")
    if not isinstance(updated_at, int | float) or isinstance(updated_at, bool):
        shown = "missing" if "_updated_at" not in content else f"{updated_at!r}"
        raise StatusFileCorrupt(
            path, f"{where}: '_updated_at' is {shown}, expected a number (Unix time)"
        )
    return content


def _parse_board(raw: bytes, path: Path) -> JSONObject:
    board = _check_format(
        _load_json(raw, path), path, SCHEMA, _TOP_LEVEL_KEYS, "splitdb status board"
    )
    if "sections" not in board:
        raise StatusFileCorrupt(path, "key 'sections' is missing")
    sections = board["sections"]
    if not isinstance(sections, dict):
        raise StatusFileCorrupt(path, f"'sections' is {_json_type(sections)}, expected an object")
    for name, content in sections.items():
        if not _SECTION_NAME.fullmatch(name):
            raise StatusFileCorrupt(
                path, f"section name {name!r} does not match {SECTION_NAME_PATTERN}"
            )
        _check_section(content, path, f"section {name!r}")
    repairs = board.get("repairs", [])
    if not isinstance(repairs, list) or not all(isinstance(r, dict) for r in repairs):
        raise StatusFileCorrupt(path, "'repairs' is not an array of objects")
    return board


def _parse_section_copy(raw: bytes, path: Path, name: str) -> JSONObject:
    copy = _check_format(
        _load_json(raw, path),
        path,
        SECTION_SCHEMA,
        ("schema", "version", "section", "content"),
        "splitdb status section copy",
    )
    if copy.get("section") != name:
        raise StatusFileCorrupt(
            path, f"'section' is {copy.get('section')!r}, expected {name!r} (the file name)"
        )
    if "content" not in copy:
        raise StatusFileCorrupt(path, "key 'content' is missing")
    return _check_section(copy["content"], path, "'content'")
