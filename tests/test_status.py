"""Claims about the status board (`reference.status`): updates, corruption, repair, processes."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from reference.errors import SplitdbError, StatusFileCorrupt
from reference.status import SCHEMA, SECTION_NAME_PATTERN, VERSION, StatusBoard

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def board(tmp_path: Path) -> StatusBoard:
    return StatusBoard(tmp_path / "shared_memory.json")


def write_json(path: Path, document: object) -> None:
    path.write_text(json.dumps(document), encoding="utf-8")


def evidence_files(board: StatusBoard) -> list[Path]:
    return sorted(board.path.parent.glob(board.path.name + ".corrupt-*"))


# --- updates -------------------------------------------------------------------------------


def test_missing_file_reads_as_empty_board(board: StatusBoard) -> None:
    assert board.read() == {"schema": SCHEMA, "version": VERSION, "sections": {}}
    assert board.section("bot") == {}
    assert not board.path.exists()


def test_first_update_creates_section_with_seq_1_and_wall_time(board: StatusBoard) -> None:
    before = time.time()
    section = board.update("bot", {"state": "running"})
    after = time.time()

    assert section["state"] == "running"
    assert section["_seq"] == 1
    assert before <= section["_updated_at"] <= after
    assert board.read()["sections"] == {"bot": section}


def test_update_merges_changes_into_own_section(board: StatusBoard) -> None:
    board.update("bot", {"state": "starting", "ticks": 0, "feed": {"kind": "synthetic"}})
    section = board.update("bot", {"state": "running", "ticks": 10})

    assert section["state"] == "running"
    assert section["ticks"] == 10
    assert section["feed"] == {"kind": "synthetic"}, "keys not named in changes are kept"
    assert board.section("bot") == section


def test_update_replaces_nested_objects_rather_than_merging_them(board: StatusBoard) -> None:
    board.update("bot", {"feed": {"kind": "synthetic", "seed": 7}})
    section = board.update("bot", {"feed": {"kind": "mt5"}})
    assert section["feed"] == {"kind": "mt5"}


def test_update_leaves_other_sections_untouched(board: StatusBoard) -> None:
    agent = board.update("agent", {"watermark": 41, "bars": [1, 2, 3]})
    api = board.update("api", {"requests": 5})

    board.update("bot", {"ticks": 1})
    board.update("bot", {"ticks": 2})

    sections = board.read()["sections"]
    assert sections["agent"] == agent
    assert sections["api"] == api
    assert sections["bot"]["ticks"] == 2


def test_seq_increments_by_one_per_update_of_that_section(board: StatusBoard) -> None:
    seqs = [board.update("bot", {"i": i})["_seq"] for i in range(5)]
    board.update("agent", {"x": 1})
    assert seqs == [1, 2, 3, 4, 5]
    assert board.section("bot")["_seq"] == 5
    assert board.section("agent")["_seq"] == 1


def test_callable_update_receives_current_content_and_replaces_it(board: StatusBoard) -> None:
    board.update("bot", {"ticks": 3, "obsolete": True})
    seen: list[dict[str, Any]] = []

    def increment(current: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(current))
        return {"ticks": current["ticks"] + 1}

    section = board.update("bot", increment)

    assert seen[0]["ticks"] == 3
    assert seen[0]["_seq"] == 1
    assert section["ticks"] == 4
    assert "obsolete" not in section, "a callable's result replaces the section"
    assert section["_seq"] == 2


def test_callable_update_of_new_section_receives_empty_dict(board: StatusBoard) -> None:
    seen: list[dict[str, Any]] = []

    def record(current: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(current))
        return {"n": 1}

    board.update("bot", record)
    assert seen == [{}]


def test_update_returns_exactly_what_is_stored(board: StatusBoard) -> None:
    returned = board.update("bot", {"ticks": 1, "ratio": 0.25, "tags": ["a"], "none": None})
    assert board.section("bot") == returned


def test_each_update_writes_last_good_copy_of_its_section(board: StatusBoard) -> None:
    board.update("agent", {"watermark": 1})
    section = board.update("bot", {"ticks": 9})

    copy = json.loads((board.sections_dir / "bot.json").read_text())
    assert copy == {
        "schema": "splitdb.status.section",
        "version": VERSION,
        "section": "bot",
        "content": section,
    }
    assert sorted(p.name for p in board.sections_dir.iterdir()) == ["agent.json", "bot.json"]


def test_update_leaves_no_temp_files_behind(board: StatusBoard) -> None:
    for i in range(3):
        board.update("bot", {"i": i})
    names = {p.name for p in board.path.parent.iterdir()} | {
        p.name for p in board.sections_dir.iterdir()
    }
    assert not [n for n in names if n.endswith(".tmp")]


@pytest.mark.slow
def test_update_removes_the_temp_files_a_killed_writer_left_and_keeps_a_live_ones(
    board: StatusBoard,
) -> None:
    # A writer SIGKILLed between creating its temp file and renaming it leaves the file; the
    # next update (under the same lock) removes it once its process is gone.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        board.update("bot", {"i": 0})
        sections = board.sections_dir
        left = [
            board.path.parent / f".{board.path.name}.{dead.pid}.0badcafe.tmp",
            sections / f".bot.json.{dead.pid}.0badcafe.tmp",
        ]
        writing = board.path.parent / f".{board.path.name}.{alive.pid}.0badcafe.tmp"
        unrelated = board.path.parent / f".other.json.{dead.pid}.0badcafe.tmp"
        for path in [*left, writing, unrelated]:
            path.write_text("{")
        board.update("bot", {"i": 1})
        assert [p.exists() for p in left] == [False, False]
        assert writing.exists() and unrelated.exists()
        assert board.section("bot")["i"] == 1
    finally:
        alive.kill()
        alive.wait()


@pytest.mark.parametrize("key", ["_seq", "_updated_at"])
def test_changes_may_not_set_reserved_keys(board: StatusBoard, key: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"may not set {key!r}")):
        board.update("bot", {key: 99})
    assert not board.path.exists()


@pytest.mark.parametrize(
    ("value", "error"),
    [(math.nan, ValueError), (math.inf, ValueError), (object(), TypeError), ({1, 2}, TypeError)],
)
def test_value_that_is_not_json_raises_and_leaves_board_untouched(
    board: StatusBoard, value: object, error: type[Exception]
) -> None:
    board.update("bot", {"ticks": 1})
    before = board.path.read_bytes()

    with pytest.raises(error, match="section 'bot' is not storable as JSON"):
        board.update("bot", {"ticks": value})

    assert board.path.read_bytes() == before


def test_non_string_key_raises_type_error(board: StatusBoard) -> None:
    with pytest.raises(TypeError, match="keys must be str"):
        board.update("bot", {1: "one"})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="keys must be str"):
        board.update("bot", lambda current: {2: "two"})  # type: ignore[dict-item]
    assert not board.path.exists()


def test_callable_returning_non_mapping_raises_type_error(board: StatusBoard) -> None:
    with pytest.raises(TypeError, match="must return a mapping"):
        board.update("bot", lambda current: [1, 2])  # type: ignore[arg-type,return-value]


@pytest.mark.parametrize("name", ["Bot", "1bot", "", "bot!", "b" * 33, "bot\n", "_bot", "bot.x"])
def test_bad_section_name_raises_value_error_naming_argument_and_pattern(
    board: StatusBoard, name: str
) -> None:
    with pytest.raises(ValueError) as update_error:
        board.update(name, {"x": 1})
    with pytest.raises(ValueError) as section_error:
        board.section(name)

    assert f"section={name!r}" in str(update_error.value)
    assert f"name={name!r}" in str(section_error.value)
    for error in (update_error, section_error):
        assert SECTION_NAME_PATTERN in str(error.value)
    assert not board.path.exists()


@pytest.mark.parametrize("name", ["bot", "agent", "api", "a", "worker-2", "load_7", "b" * 32])
def test_good_section_names_are_accepted(board: StatusBoard, name: str) -> None:
    assert board.update(name, {"ok": True})["_seq"] == 1


# --- corruption ----------------------------------------------------------------------------

GOOD_SECTION = {"_seq": 1, "_updated_at": 1.5}

CORRUPTIONS = [
    (b"", "the file is empty (0 bytes)"),
    (b'{"schema": ', "invalid JSON at line 1 column 12: Expecting value"),
    (b'{\n  "schema": x', "invalid JSON at line 2 column 13: Expecting value"),
    (b"\xff\xfe{}", "not UTF-8 text: byte 0 is b'\\xff'"),
    (b"[" * 100_000, "invalid JSON: nested too deeply to read"),
    (b'{"a": NaN}', "invalid JSON: NaN is not a JSON value"),
    (b'{"a": 1e999}', "invalid JSON: number 1e999 does not fit a 64-bit float"),
    (b"[]", "not a splitdb status board: the top level is an array, expected an object"),
    (b'"board"', "not a splitdb status board: the top level is a string, expected an object"),
    (b"{}", "not a splitdb status board: key 'schema' is missing"),
    (
        b'{"schema": "other", "version": 1, "sections": {}}',
        "not a splitdb status board: 'schema' is 'other', expected 'splitdb.status'",
    ),
    (b'{"schema": "splitdb.status", "sections": {}}', "key 'version' is missing"),
    (
        b'{"schema": "splitdb.status", "version": 9, "sections": {}}',
        "version 9 is newer than this splitdb supports (1)",
    ),
    (
        b'{"schema": "splitdb.status", "version": 0, "sections": {}}',
        "version 0 does not exist (versions start at 1)",
    ),
    (
        b'{"schema": "splitdb.status", "version": "1", "sections": {}}',
        "'version' is a string, expected an integer",
    ),
    (
        b'{"schema": "splitdb.status", "version": true, "sections": {}}',
        "'version' is a boolean, expected an integer",
    ),
    (b'{"schema": "splitdb.status", "version": 1}', "key 'sections' is missing"),
    (
        b'{"schema": "splitdb.status", "version": 1, "sections": []}',
        "'sections' is an array, expected an object",
    ),
    (
        b'{"schema": "splitdb.status", "version": 1, "sections": {"bot": 3}}',
        "section 'bot' is a number, expected an object",
    ),
    (
        b'{"schema": "splitdb.status", "version": 1, "sections": {"bot": {}}}',
        "section 'bot': '_seq' is missing, expected a non-negative integer",
    ),
    (
        b'{"schema": "splitdb.status", "version": 1, "sections": {"bot": {"_seq": -1}}}',
        "section 'bot': '_seq' is -1, expected a non-negative integer",
    ),
    (
        b'{"schema": "splitdb.status", "version": 1, "sections": {"bot": {"_seq": 1}}}',
        "section 'bot': '_updated_at' is missing, expected a number (Unix time)",
    ),
    (
        b'{"schema": "splitdb.status", "version": 1, "sections": {"Bot": '
        b'{"_seq": 1, "_updated_at": 1.5}}}',
        f"section name 'Bot' does not match {SECTION_NAME_PATTERN}",
    ),
    (
        b'{"schema": "splitdb.status", "version": 1, "sections": {}, "extra": 1}',
        "unexpected top-level key 'extra'",
    ),
    (
        b'{"schema": "splitdb.status", "version": 1, "sections": {}, "repairs": {}}',
        "'repairs' is not an array of objects",
    ),
]


@pytest.mark.parametrize(("content", "reason"), CORRUPTIONS)
def test_each_corruption_raises_status_file_corrupt_with_path_and_specific_reason(
    board: StatusBoard, content: bytes, reason: str
) -> None:
    board.path.write_bytes(content)

    with pytest.raises(StatusFileCorrupt) as error:
        board.read()

    assert error.value.path == board.path
    assert error.value.reason.startswith(reason)
    assert str(board.path) in str(error.value)
    assert isinstance(error.value, SplitdbError)
    with pytest.raises(StatusFileCorrupt):
        board.section("bot")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(content=st.binary(max_size=200))
def test_arbitrary_bytes_read_as_a_board_or_raise_status_file_corrupt(
    board: StatusBoard, content: bytes
) -> None:
    board.path.write_bytes(content)
    try:
        board.read()
    except StatusFileCorrupt as error:
        assert error.path == board.path
        assert error.reason


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=json_values)
def test_json_value_that_is_not_a_board_raises_status_file_corrupt(
    board: StatusBoard, value: object
) -> None:
    assume(not (isinstance(value, dict) and value.get("schema") == SCHEMA))
    write_json(board.path, value)
    with pytest.raises(StatusFileCorrupt) as error:
        board.read()
    assert error.value.reason


section_names = st.from_regex(r"[a-z][a-z0-9_-]{0,31}", fullmatch=True)
sections = st.fixed_dictionaries(
    {
        "_seq": st.integers(min_value=0, max_value=2**40),
        "_updated_at": st.floats(min_value=0, max_value=2e9),
    },
    optional={"state": st.text(max_size=8), "data": json_values},
)
boards = st.fixed_dictionaries(
    {
        "schema": st.just(SCHEMA),
        "version": st.just(VERSION),
        "sections": st.dictionaries(section_names, sections, min_size=1, max_size=3),
    }
)


def not_type(*kinds: type) -> st.SearchStrategy[Any]:
    return json_values.filter(lambda v: not isinstance(v, kinds))


DAMAGES = [
    "schema wrong",
    "schema missing",
    "version wrong",
    "version missing",
    "sections not an object",
    "sections missing",
    "section not an object",
    "seq wrong",
    "updated_at wrong",
    "section name invalid",
    "extra top-level key",
    "repairs wrong",
]


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(good=boards, damage=st.sampled_from(DAMAGES), data=st.data())
def test_damaged_board_raises_status_file_corrupt_never_another_error(
    board: StatusBoard, good: dict[str, Any], damage: str, data: st.DataObject
) -> None:
    bad = json.loads(json.dumps(good))
    some = data.draw(st.sampled_from(sorted(bad["sections"])))
    if damage == "schema wrong":
        bad["schema"] = data.draw(json_values.filter(lambda v: v != SCHEMA))
    elif damage == "schema missing":
        del bad["schema"]
    elif damage == "version wrong":
        bad["version"] = data.draw(json_values.filter(lambda v: not (type(v) is int and v == 1)))
    elif damage == "version missing":
        del bad["version"]
    elif damage == "sections not an object":
        bad["sections"] = data.draw(not_type(dict))
    elif damage == "sections missing":
        del bad["sections"]
    elif damage == "section not an object":
        bad["sections"][some] = data.draw(not_type(dict))
    elif damage == "seq wrong":
        bad["sections"][some]["_seq"] = data.draw(
            json_values.filter(lambda v: not (type(v) is int and v >= 0))
        )
    elif damage == "updated_at wrong":
        bad["sections"][some]["_updated_at"] = data.draw(
            json_values.filter(lambda v: type(v) not in (int, float))
        )
    elif damage == "section name invalid":
        name = data.draw(
            st.text(max_size=40).filter(lambda n: not re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", n))
        )
        bad["sections"] = {name: bad["sections"][some]}
    elif damage == "extra top-level key":
        key = data.draw(
            st.text(max_size=10).filter(
                lambda k: k not in ("schema", "version", "sections", "repairs")
            )
        )
        bad[key] = data.draw(json_values)
    elif damage == "repairs wrong":
        bad["repairs"] = data.draw(
            not_type(list) | st.lists(not_type(dict), min_size=1, max_size=3)
        )
    write_json(board.path, bad)

    with pytest.raises(StatusFileCorrupt) as error:
        board.read()
    assert error.value.path == board.path


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(good=boards)
def test_any_valid_board_reads_back_as_written(board: StatusBoard, good: dict[str, Any]) -> None:
    write_json(board.path, good)
    assert board.read() == good


# --- repair --------------------------------------------------------------------------------


def test_update_on_corrupt_file_moves_it_aside_and_restores_other_sections(
    board: StatusBoard,
) -> None:
    agent = board.update("agent", {"watermark": 1234, "bars": {"EURUSD": 17}})
    api = board.update("api", {"requests": 88, "healthy": True})
    bot_before = board.update("bot", {"ticks": 500})
    garbage = b'{"schema": "splitdb.status", "version": 1, "sec'
    board.path.write_bytes(garbage)

    bot = board.update("bot", {"ticks": 501})

    evidence = evidence_files(board)
    assert len(evidence) == 1
    assert evidence[0].read_bytes() == garbage, "the corrupt file is kept byte for byte"
    assert re.fullmatch(r"shared_memory\.json\.corrupt-\d{19}", evidence[0].name)

    document = board.read()
    assert document["sections"] == {"agent": agent, "api": api, "bot": bot}
    assert bot["ticks"] == 501
    assert bot["_seq"] == bot_before["_seq"] + 1, "the own section continues from its copy"
    [repair] = document["repairs"]
    assert repair["moved_to"] == str(evidence[0])
    assert repair["reason"].startswith("invalid JSON at line 1 column")
    assert repair["sections_restored"] == ["agent", "api", "bot"]
    assert repair["sections_lost"] == []
    assert isinstance(repair["at"], float)


def test_repair_record_is_kept_by_later_updates(board: StatusBoard) -> None:
    board.update("agent", {"watermark": 1})
    board.path.write_bytes(b"not json")
    board.update("bot", {"ticks": 1})

    board.update("bot", {"ticks": 2})
    board.update("agent", {"watermark": 2})

    [repair] = board.read()["repairs"]
    assert repair["sections_restored"] == ["agent"]


def test_corrupt_section_copy_is_skipped_kept_as_evidence_and_reported(board: StatusBoard) -> None:
    agent = board.update("agent", {"watermark": 7})
    board.update("api", {"requests": 3})
    api_copy = board.sections_dir / "api.json"
    api_copy.write_bytes(b"\x00\x00garbage")
    board.path.write_bytes(b"")

    bot = board.update("bot", {"ticks": 1})

    document = board.read()
    assert document["sections"] == {"agent": agent, "bot": bot}, "api is lost, agent is kept"
    [repair] = document["repairs"]
    assert repair["reason"] == "the file is empty (0 bytes)"
    assert repair["sections_restored"] == ["agent"]
    [lost] = repair["sections_lost"]
    assert lost["section"] == "api"
    assert lost["reason"].startswith("invalid JSON at line 1 column 1")
    assert Path(lost["moved_to"]).read_bytes() == b"\x00\x00garbage"

    api = board.update("api", {"requests": 1})
    assert api["_seq"] == 1, "the lost section starts again"
    assert json.loads(api_copy.read_text())["content"] == api, "its copy is good again"


def test_section_copy_under_wrong_file_name_is_not_restored(board: StatusBoard) -> None:
    board.update("agent", {"watermark": 7})
    (board.sections_dir / "agent.json").rename(board.sections_dir / "api.json")
    board.path.write_bytes(b"{")

    board.update("bot", {"ticks": 1})

    document = board.read()
    assert sorted(document["sections"]) == ["bot"]
    [lost] = document["repairs"][0]["sections_lost"]
    assert lost["section"] == "api"
    assert lost["reason"] == "'section' is 'agent', expected 'api' (the file name)"


def test_rebuild_repairs_a_corrupt_board(board: StatusBoard) -> None:
    agent = board.update("agent", {"watermark": 7})
    bot = board.update("bot", {"ticks": 3})
    board.path.write_bytes(b'{"schema": "splitdb.status", "version": 2, "sections": {}}')

    document = board.rebuild()

    assert document == board.read()
    assert document["sections"] == {"agent": agent, "bot": bot}
    [repair] = document["repairs"]
    assert repair["reason"] == "version 2 is newer than this splitdb supports (1)"
    assert repair["moved_to"] == str(evidence_files(board)[0])


def test_rebuild_leaves_a_good_board_byte_for_byte_unchanged(board: StatusBoard) -> None:
    board.update("bot", {"ticks": 3})
    before = board.path.read_bytes()

    assert board.rebuild() == board.read()
    assert board.path.read_bytes() == before
    assert evidence_files(board) == []


def test_rebuild_of_missing_board_without_copies_is_empty_and_writes_nothing(
    board: StatusBoard,
) -> None:
    assert board.rebuild() == {"schema": SCHEMA, "version": VERSION, "sections": {}}
    assert not board.path.exists()


def test_update_on_deleted_board_restores_other_sections_from_copies(board: StatusBoard) -> None:
    agent = board.update("agent", {"watermark": 7})
    board.update("bot", {"ticks": 3})
    board.path.unlink()

    bot = board.update("bot", {"ticks": 4})

    document = board.read()
    assert document["sections"] == {"agent": agent, "bot": bot}
    assert bot["_seq"] == 2
    [repair] = document["repairs"]
    assert repair["reason"] == "the board file is missing"
    assert repair["moved_to"] is None


@settings(max_examples=100, deadline=None)
@given(garbage=st.binary(max_size=100))
def test_update_never_fails_on_a_corrupt_file_and_keeps_it(garbage: bytes) -> None:
    with tempfile.TemporaryDirectory() as directory:
        board = StatusBoard(Path(directory) / "shared_memory.json")
        agent = board.update("agent", {"watermark": 1})
        board.path.write_bytes(garbage)
        try:
            board.read()
            corrupt = False
        except StatusFileCorrupt:
            corrupt = True

        bot = board.update("bot", {"ticks": 1})

        sections = board.read()["sections"]
        assert sections["bot"] == bot
        if corrupt:
            assert sections["agent"] == agent
            [evidence] = evidence_files(board)
            assert evidence.read_bytes() == garbage


# --- concurrency ---------------------------------------------------------------------------


def test_threads_of_one_process_lose_no_update(board: StatusBoard) -> None:
    def work(name: str) -> None:
        for _ in range(100):
            board.update(name, lambda s: {**s, "counter": s.get("counter", 0) + 1})

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    sections = board.read()["sections"]
    assert {name: (s["counter"], s["_seq"]) for name, s in sections.items()} == {
        f"t{i}": (100, 100) for i in range(4)
    }


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from reference.status import StatusBoard

    path, section, updates, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    board = StatusBoard(path)
    while not go.exists():
        time.sleep(0.001)
    for _ in range(updates):
        board.update(section, lambda s: {**s, "counter": s.get("counter", 0) + 1})
    """
)

# Reads as fast as it can without the lock; a _seq that goes down between two reads means a
# writer put back a stale copy of another process's section (a lost update a reader can see).
READER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from reference.errors import StatusFileCorrupt
    from reference.status import StatusBoard

    path, stop = Path(sys.argv[1]), Path(sys.argv[2])
    board = StatusBoard(path)
    counts = dict(raw_reads=0, board_reads=0, missing=0, invalid_json=0, corrupt=0,
                  seq_regressions=0)
    last = {}

    def check(sections):
        for name, content in sections.items():
            if content["_seq"] < last.get(name, 0):
                counts["seq_regressions"] += 1
            last[name] = content["_seq"]

    while not stop.exists():
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            counts["missing"] += 1
            continue
        try:
            document = json.loads(raw)
        except json.JSONDecodeError:
            counts["invalid_json"] += 1
            continue
        counts["raw_reads"] += 1
        check(document["sections"])
        try:
            check(board.read()["sections"])
            counts["board_reads"] += 1
        except StatusFileCorrupt:
            counts["corrupt"] += 1
    print(json.dumps(counts))
    """
)


@pytest.mark.slow
def test_three_processes_lose_no_status_update(tmp_path: Path) -> None:
    updates = 2000
    path = tmp_path / "shared_memory.json"
    go, stop = tmp_path / "go", tmp_path / "stop"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }

    def spawn(code: str, *args: object) -> subprocess.Popen[str]:
        argv = [sys.executable, "-c", code, *map(str, args)]
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    reader = spawn(READER, path, stop)
    writers = [spawn(WRITER, path, name, updates, go) for name in ("bot", "agent", "api")]
    started = time.monotonic()
    go.touch()
    try:
        for writer in writers:
            _, stderr = writer.communicate(timeout=600)
            assert writer.returncode == 0, stderr
    finally:
        elapsed = time.monotonic() - started
        stop.touch()
        out, stderr = reader.communicate(timeout=60)
        for process in writers:
            process.kill()
    assert reader.returncode == 0, stderr
    counts = json.loads(out)
    print(f"3 x {updates} updates in {elapsed:.1f} s; reader: {counts}")

    sections = StatusBoard(path).read()["sections"]
    assert {name: (s["counter"], s["_seq"]) for name, s in sections.items()} == {
        "bot": (updates, updates),
        "agent": (updates, updates),
        "api": (updates, updates),
    }
    for name, content in sections.items():
        copy = json.loads(
            (path.parent / "shared_memory.json.sections" / f"{name}.json").read_text()
        )
        assert copy["content"] == content
    assert counts["raw_reads"] > 0
    assert counts["board_reads"] > 0
    assert counts["invalid_json"] == 0
    assert counts["corrupt"] == 0
    assert counts["seq_regressions"] == 0


@pytest.mark.slow
def test_update_with_a_timeout_gives_up_while_a_stopped_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    """A SIGSTOPped process can hold the lock forever; a heartbeat must not freeze with it."""
    import subprocess
    import sys

    from reference.errors import StatusBoardBusy

    board = StatusBoard(tmp_path / "shared_memory.json")
    board.update("bot", {"n": 1})
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(30)\n",
            str(board.lock_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(StatusBoardBusy, match=r"stayed locked for 0\.2 s"):
            board.update("agent", {"n": 1}, timeout=0.2)
        assert board.read()["sections"].keys() == {"bot"}
    finally:
        holder.kill()
        holder.wait()
    assert board.update("agent", {"n": 1}, timeout=0.2)["n"] == 1
