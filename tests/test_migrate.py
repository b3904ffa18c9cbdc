"""`splitdb split` and `splitdb merge`: every row carried, verified, nothing wrong put in place."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.migrate.objects import schema_objects
from harness.migrate.verify import TableFigures, table_figures, verify_file
from reference.access import AccessManager
from reference.topology import load_topology


def legacy_file(where: Path, ticks: int = 2_000) -> Path:
    """A legacy-layout file (every database in trading.db) with rows in every table."""
    AccessManager(load_topology("legacy"), where).initialize()
    path = where / "trading.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO ticks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                "EURUSD" if i % 2 else "GBPUSD",
                1_700_000_000_000 + i,
                0,
                1_700_000_000 + i // 1000,
                1.1 + i * 1e-6,
                1.1002 + i * 1e-6,
                0.0,
                1,
                6,
                0.5,
            )
            for i in range(ticks)
        ),
    )
    conn.executemany(
        "INSERT INTO bars VALUES (?, '1m', ?, 1.1, 1.2, 1.0, 1.15, 10, 2.5)",
        (("EURUSD", 60_000 * i) for i in range(50)),
    )
    conn.executemany(
        "INSERT INTO indicators VALUES ('EURUSD', '1m', ?, 'sma14', ?)",
        ((60_000 * i, 1.1 + i / 100) for i in range(50)),
    )
    conn.execute("INSERT INTO watermarks VALUES ('EURUSD', 1700000001999, 0, 1000, 5)")
    conn.executemany(
        "INSERT INTO request_log (ts_ns, method, path, status, duration_us, client) "
        "VALUES (?, 'GET', '/health', 200, 150, '127.0.0.1')",
        ((i,) for i in range(30)),
    )
    conn.execute("COMMIT")
    conn.close()
    return path


def figures(path: Path) -> dict[str, TableFigures]:
    conn = sqlite3.connect(path)
    try:
        tables = [o.name for o in schema_objects(conn) if o.type == "table"]
        return {t: table_figures(conn, "main", t) for t in tables}
    finally:
        conn.close()


def test_split_puts_each_table_in_its_database_file_and_merge_brings_them_back(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = legacy_file(tmp_path / "old")
    before = figures(source)
    assert (
        main(["split", str(source), "--topology", "seed", "--data-dir", str(tmp_path / "new")]) == 0
    )
    out = capsys.readouterr().out
    assert "verified and put in place" in out
    seed = load_topology("seed")
    held = {}
    for _name, spec in seed.databases.items():
        found = figures(tmp_path / "new" / spec.path)
        assert set(found) == set(spec.tables)
        held.update(found)
        conn = sqlite3.connect(tmp_path / "new" / spec.path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        conn.close()
    assert held == before
    report = json.loads((tmp_path / "new" / "split-report.json").read_text())
    assert report["ok"] and report["rows"] == sum(f.rows for f in before.values())
    assert {f["integrity_check"] for f in report["files"]} == {"ok"}
    # No temporary file, snapshot or side file is left beside the targets.
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == sorted(
        [
            *(str(s.path) for s in seed.databases.values()),
            "split-report.json",
            ".splitdb-migration.json",
        ]
    )
    merged = tmp_path / "back" / "one.db"
    assert (
        main(["merge", str(merged), "--topology", "seed", "--data-dir", str(tmp_path / "new")]) == 0
    )
    assert figures(merged) == before


def test_split_carries_rowids_autoincrement_indexes_triggers_views_and_without_rowid(
    tmp_path: Path,
) -> None:
    source = tmp_path / "app.db"
    conn = sqlite3.connect(source, isolation_level=None)
    conn.executescript(
        """
        CREATE TABLE notes (body TEXT);
        CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT, qty INTEGER CHECK (qty > 0));
        CREATE INDEX orders_qty ON orders (qty);
        CREATE TABLE audit (at INTEGER, what TEXT);
        CREATE TRIGGER orders_audit AFTER INSERT ON orders
            BEGIN INSERT INTO audit VALUES (new.id, 'order'); END;
        CREATE VIEW big_orders AS SELECT * FROM orders WHERE qty > 10;
        CREATE TABLE kv (k TEXT PRIMARY KEY, v BLOB) WITHOUT ROWID;
        INSERT INTO notes VALUES ('a'), ('b'), ('c');
        DELETE FROM notes WHERE body = 'a';
        INSERT INTO orders (qty) VALUES (5), (50), (7);
        DELETE FROM orders WHERE id = 3;
        INSERT INTO kv VALUES ('x', x'00ff'), ('y', NULL);
        """
    )
    conn.close()
    topology = tmp_path / "two.toml"
    topology.write_text(
        """
        [databases.trade]
        path = "trade.db"
        tables = ["orders", "audit", "big_orders"]
        [databases.misc]
        path = "misc.db"
        tables = ["notes", "kv"]
        [roles.trader]
        trade = "rw"
        misc = "ro"
        [roles.clerk]
        misc = "rw"
        """
    )
    out = tmp_path / "out"
    assert main(["split", str(source), "--topology", str(topology), "--data-dir", str(out)]) == 0
    trade = sqlite3.connect(out / "trade.db", isolation_level=None)
    names = {(o.type, o.name) for o in schema_objects(trade)}
    assert names == {
        ("table", "orders"),
        ("index", "orders_qty"),
        ("table", "audit"),
        ("trigger", "orders_audit"),
        ("view", "big_orders"),
    }
    # The counter is carried: id 3 was used and deleted, so the next order is 4, not 3.
    trade.execute("INSERT INTO orders (qty) VALUES (1)")
    assert trade.execute("SELECT max(id) FROM orders").fetchone()[0] == 4
    # 3 copied (one per order ever taken) and 1 from the trigger, which was carried too.
    assert trade.execute("SELECT count(*) FROM audit").fetchone()[0] == 4
    assert trade.execute("SELECT qty FROM big_orders").fetchall() == [(50,)]
    misc = sqlite3.connect(out / "misc.db")
    # The rowids of a table without an INTEGER PRIMARY KEY are kept (2 and 3, not 1 and 2).
    assert misc.execute("SELECT rowid, body FROM notes").fetchall() == [(2, "b"), (3, "c")]
    assert misc.execute("SELECT k, v FROM kv ORDER BY k").fetchall() == [
        ("x", b"\x00\xff"),
        ("y", None),
    ]


def test_a_source_not_in_wal_mode_is_split_from_a_backup_copy(tmp_path: Path) -> None:
    source = legacy_file(tmp_path / "old")
    conn = sqlite3.connect(source)
    conn.execute("PRAGMA journal_mode = delete")
    conn.close()
    assert (
        main(["split", str(source), "--topology", "seed", "--data-dir", str(tmp_path / "new")]) == 0
    )
    report = json.loads((tmp_path / "new" / "split-report.json").read_text())
    assert report["snapshot"] == {str(source.resolve()): "backup API copy"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda raw: raw.replace('tables = ["request_log"]', "tables = []"),
            "table 'request_log' of trading.db is placed in no database: add it to the tables "
            "of one database in",
        ),
        (
            lambda raw: raw.replace('tables = ["ticks"]', 'tables = ["ticks", "quotes"]'),
            "databases.ticks.tables: 'quotes' is not a table of trading.db; remove it from the "
            "list or check its spelling",
        ),
    ],
)
def test_a_table_the_topology_does_not_place_is_an_error_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: Callable[[str], str], expected: str
) -> None:
    source = legacy_file(tmp_path / "old")
    seed = (Path(__file__).parent.parent / "reference" / "topologies" / "seed.toml").read_text()
    topology = tmp_path / "mine.toml"
    topology.write_text(change(seed))
    new = tmp_path / "new"
    assert main(["split", str(source), "--topology", str(topology), "--data-dir", str(new)]) == 2
    assert expected in capsys.readouterr().err
    assert list(new.iterdir()) == []


def test_a_foreign_key_across_files_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "app.db"
    conn = sqlite3.connect(source)
    conn.executescript(
        "CREATE TABLE customers (id INTEGER PRIMARY KEY);"
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer INTEGER REFERENCES customers(id));"
    )
    conn.close()
    topology = tmp_path / "t.toml"
    topology.write_text(
        '[databases.a]\npath = "a.db"\ntables = ["customers"]\n'
        '[databases.b]\npath = "b.db"\ntables = ["orders"]\n'
        '[roles.x]\na = "rw"\n[roles.y]\nb = "rw"\n'
    )
    assert (
        main(["split", str(source), "--topology", str(topology), "--data-dir", str(tmp_path / "o")])
        == 2
    )
    assert (
        "table 'orders' has a foreign key to 'customers', which goes to another file (a.db, not "
        "b.db); SQLite cannot enforce it across files: place both tables in one database"
    ) in capsys.readouterr().err


def test_existing_targets_are_refused_unless_forced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = legacy_file(tmp_path / "old")
    new = tmp_path / "new"
    new.mkdir()
    (new / "analysis_data.db").write_text("someone's file")
    args = ["split", str(source), "--topology", "seed", "--data-dir", str(new)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{new / 'analysis_data.db'} exists; move it away or pass --force to replace it" in err
    assert (new / "analysis_data.db").read_text() == "someone's file"
    assert not (new / "unified_tick_pipeline.db").exists()
    assert main([*args, "--force"]) == 0
    # Done: a second split finds its own finished targets, and refuses them too.
    assert main(args) == 2


def test_targets_an_interrupted_split_put_in_place_are_replaced_by_the_rerun(
    tmp_path: Path,
) -> None:
    source = legacy_file(tmp_path / "old")
    new = tmp_path / "new"
    args = ["split", str(source), "--topology", "seed", "--data-dir", str(new)]
    assert main(args) == 0
    manifest = new / ".splitdb-migration.json"
    data = json.loads(manifest.read_text())
    data["complete"] = False  # as a kill between two renames leaves it
    manifest.write_text(json.dumps(data))
    assert main(args) == 0
    # A target changed since (its writer ran) is no longer the migration's: refused.
    manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"complete": False}))
    conn = sqlite3.connect(new / "system_logs.db")
    conn.execute(
        "INSERT INTO request_log (ts_ns, method, path, status, duration_us) "
        "VALUES (1, 'GET', '/', 200, 1)"
    )
    conn.commit()
    conn.close()
    assert main(args) == 2


def test_verification_names_a_table_whose_rows_differ(tmp_path: Path) -> None:
    source = legacy_file(tmp_path / "old")
    conn = sqlite3.connect(source)
    want = table_figures(conn, "main", "bars")
    objects = tuple(o for o in schema_objects(conn) if o.table == "bars")
    conn.close()
    copy = tmp_path / "copy.db"
    src, dst = sqlite3.connect(source), sqlite3.connect(copy)
    src.backup(dst)
    dst.execute("UPDATE bars SET close = close + 1e-9 WHERE start_msc = 60000")
    dst.commit()
    for table in ("ticks", "indicators", "watermarks", "request_log"):
        dst.execute(f"DROP TABLE {table}")
    dst.commit()
    dst.close()
    check = verify_file(copy, objects, {"bars": want}, "wal")
    assert not check.ok
    assert check.problems[0].startswith("table bars: 50 rows, checksum ")
    assert "the source's snapshot had 50 rows" in check.problems[0]


def test_a_file_that_is_not_sqlite_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "notes.txt"
    source.write_text("not a database\n" * 100)
    assert (
        main(["split", str(source), "--topology", "seed", "--data-dir", str(tmp_path / "o")]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a SQLite database" in err[0] and "notes.txt" in err[0]
    assert (
        main(
            [
                "split",
                str(tmp_path / "nope.db"),
                "--topology",
                "seed",
                "--data-dir",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "nope.db: no such file" in capsys.readouterr().err


values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tables=st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=4),  # columns
            st.booleans(),  # INTEGER PRIMARY KEY or a plain rowid table
            st.integers(min_value=0, max_value=1),  # which database
            st.lists(st.lists(values, min_size=4, max_size=4), max_size=30),
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_tables_split_and_merge_back_unchanged(
    tmp_path_factory: pytest.TempPathFactory,
    tables: list[tuple[int, bool, int, list[list[object]]]],
) -> None:
    where = tmp_path_factory.mktemp("any")
    source = where / "one.db"
    conn = sqlite3.connect(source, isolation_level=None)
    placed: dict[int, list[str]] = {0: [], 1: []}
    for i, (ncols, integer_pk, database, rows) in enumerate(tables):
        cols = [f"c{j}" for j in range(ncols)]
        key = "id INTEGER PRIMARY KEY, " if integer_pk else ""
        conn.execute(f"CREATE TABLE t{i} ({key}{', '.join(cols)})")
        conn.executemany(
            f"INSERT INTO t{i} ({', '.join(cols)}) VALUES ({', '.join('?' * ncols)})",
            [row[:ncols] for row in rows],
        )
        conn.execute(f"DELETE FROM t{i} WHERE rowid % 3 = 0")  # gaps in the rowids
        placed[database].append(f"t{i}")
    conn.close()
    before = figures(source)
    topology = where / "t.toml"
    topology.write_text(
        f'[databases.a]\npath = "a.db"\ntables = {placed[0]!r}\n'
        f'[databases.b]\npath = "b.db"\ntables = {placed[1]!r}\n'
        '[roles.x]\na = "rw"\n[roles.y]\nb = "rw"\n'.replace("'", '"')
    )
    args = ["--topology", str(topology), "--data-dir", str(where / "split"), "--quiet"]
    assert main(["split", str(source), *args]) == 0
    assert {**figures(where / "split" / "a.db"), **figures(where / "split" / "b.db")} == before
    assert main(["merge", str(where / "back.db"), *args]) == 0
    assert figures(where / "back.db") == before


def interrupt_at_rename(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Ctrl-C just before the `n`th rename of a verified file into place (1-based)."""
    real = os.replace
    renames = [0]

    def replace(src: str | Path, dst: str | Path) -> None:
        if str(src).endswith(".splitdb-tmp"):
            renames[0] += 1
            if renames[0] == n:
                raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(os, "replace", replace)


def test_a_rerun_accepts_targets_left_by_two_interrupted_runs_in_a_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = legacy_file(tmp_path / "old")
    new = tmp_path / "new"
    args = ["split", str(source), "--topology", "seed", "--data-dir", str(new)]
    ticks, analysis, logs = (
        new / f for f in ("unified_tick_pipeline.db", "analysis_data.db", "system_logs.db")
    )
    # The first run puts two of its three files in place, then stops.
    interrupt_at_rename(monkeypatch, 3)
    assert main(args) == 130
    assert ticks.exists() and analysis.exists() and not logs.exists()
    first_analysis = analysis.stat().st_ino
    # The second accepts them, and stops after replacing one: analysis_data.db is still the
    # first run's file, which its manifest no longer names as its own.
    monkeypatch.undo()
    interrupt_at_rename(monkeypatch, 2)
    assert main(args) == 130
    assert analysis.stat().st_ino == first_analysis and not logs.exists()
    monkeypatch.undo()
    assert main(args) == 0
    held = {}
    for target in (ticks, analysis, logs):
        held.update(figures(target))
    assert held == figures(source)


def test_a_rerun_removes_the_temporary_files_a_killed_run_left(tmp_path: Path) -> None:
    source = legacy_file(tmp_path / "old")
    new = tmp_path / "new"
    new.mkdir()
    # The process that wrote them is gone: no process has a pid above the kernel's maximum.
    dead = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1
    left = [
        new / ".unified_tick_pipeline.db.splitdb-tmp",
        new / ".unified_tick_pipeline.db.splitdb-tmp-wal",
        # Killed inside an atomic write: of the manifest, of the report.
        new / f"..splitdb-migration.json.{dead}.tmp",
        new / f".split-report.json.{dead}.tmp",
    ]
    for path in left:
        path.write_text("half written")
    assert main(["split", str(source), "--topology", "seed", "--data-dir", str(new)]) == 0
    assert [p.name for p in left if p.exists()] == []


class CtrlCAfterCommit(sqlite3.Connection):
    """A connection on which Ctrl-C lands just as COMMIT returns: SQLite committed, and Python
    raises KeyboardInterrupt at its next instruction."""

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = super().execute(sql, *args)
        if sql == "COMMIT":
            raise KeyboardInterrupt
        return cursor


def test_ctrl_c_as_the_copy_commits_is_exit_130_and_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    source = legacy_file(tmp_path / "old")
    new = tmp_path / "new"
    real = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if database == "file::memory:":  # the copy's connection
            kwargs["factory"] = CtrlCAfterCommit
        return real(database, *args, **kwargs)

    monkeypatch.setattr(sqlite3, "connect", connect)
    args = ["split", str(source), "--topology", "seed", "--data-dir", str(new), "--quiet"]
    assert main(args) == 130
    assert capsys.readouterr().err.splitlines() == ["splitdb: interrupted; processes stopped"]
    assert list(new.iterdir()) == []


def test_the_checksum_tells_values_apart_by_type_and_bit_and_ignores_row_order() -> None:
    conn = sqlite3.connect(":memory:")
    values: list[object] = [1, 1.0, "1", b"1", None, 0.1 + 0.2, 0.3, 2**53, float(2**53) + 2]
    for i, value in enumerate(values):
        conn.execute(f"CREATE TABLE v{i} (x)")
        conn.execute(f"INSERT INTO v{i} (rowid, x) VALUES (1, ?)", (value,))
    sums = {table_figures(conn, "main", f"v{i}").checksum for i in range(len(values))}
    assert len(sums) == len(values)
    rows = [(i, f"row {i}", i / 7) for i in range(1, 500)]
    conn.execute("CREATE TABLE up (a TEXT, b REAL)")
    conn.execute("CREATE TABLE down (a TEXT, b REAL)")
    conn.executemany("INSERT INTO up (rowid, a, b) VALUES (?, ?, ?)", rows)
    conn.executemany("INSERT INTO down (rowid, a, b) VALUES (?, ?, ?)", reversed(rows))
    assert table_figures(conn, "main", "up") == table_figures(conn, "main", "down")
    # The rowid is part of the row: the same values under other rowids are other rows.
    conn.execute("UPDATE down SET rowid = rowid + 1000")
    assert table_figures(conn, "main", "up") != table_figures(conn, "main", "down")
