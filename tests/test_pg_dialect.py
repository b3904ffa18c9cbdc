"""The checks' SQL is written once, in SQLite's dialect (`?`, `?N`, `:name`, `%` as modulo);
`harness.pg.dialect` runs the same text on PostgreSQL, so a check cannot mean one thing on one
backend and another on the other."""

from __future__ import annotations

import pytest

from harness.pg.dialect import to_psycopg


def test_question_marks_become_positional_placeholders() -> None:
    assert to_psycopg("SELECT 1 FROM t WHERE a = ? AND b = ?", ("x", 2)) == (
        "SELECT 1 FROM t WHERE a = %s AND b = %s",
        ("x", 2),
    )


def test_numbered_and_named_placeholders_become_named_ones() -> None:
    sql, params = to_psycopg("SELECT ?2, ?1, ?2", ("a", "b"))
    assert sql == "SELECT %(p2)s, %(p1)s, %(p2)s"
    assert params == {"p1": "a", "p2": "b"}
    sql, params = to_psycopg("SELECT x % :tf FROM t WHERE s = :symbol", {"tf": 60, "symbol": "E"})
    assert sql == "SELECT x %% %(tf)s FROM t WHERE s = %(symbol)s"
    assert params == {"tf": 60, "symbol": "E"}


def test_a_percent_is_escaped_and_text_in_quotes_is_left_alone() -> None:
    sql, _ = to_psycopg("SELECT a % 3, '?:x%' FROM t WHERE b = ?", (1,))
    assert sql == "SELECT a %% 3, '?:x%%' FROM t WHERE b = %s"


def test_sqlite_only_functions_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="total"):
        to_psycopg("SELECT total(x) FROM t", ())
