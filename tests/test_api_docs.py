"""The /docs page rendered from an OpenAPI document: escaped, linked within itself, no nulls
offered for query parameters. (tests/test_api.py checks the page the real server serves.)"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from reference.api.docs import render_docs

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "T <&> API", "version": "7", "summary": "Rows of `things`."},
    "paths": {
        "/things/{key}": {
            "get": {
                "summary": "One <b>thing</b>",
                "description": "Ends <script>alert(1)</script> with `limit` rows.",
                "parameters": [
                    {
                        "name": "key",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "examples": ["K1"]},
                        "description": "the key",
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "required": False,
                        "schema": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "null"}]},
                        "description": "no bound if left out",
                    },
                    {
                        "name": "kind",
                        "in": "query",
                        "required": False,
                        "schema": {"enum": ["a", "b"], "type": "string", "default": "a"},
                        "description": "which kind",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the thing",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}
                        },
                    }
                },
            }
        }
    },
    "components": {
        "schemas": {
            "Thing": {
                "type": "object",
                "required": ["key"],
                "properties": {
                    "key": {"type": "string"},
                    "parts": {"type": "array", "items": {"$ref": "#/components/schemas/Part"}},
                    "until": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                },
            },
            "Part": {"type": "object", "properties": {"n": {"type": "integer"}}},
        }
    },
}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.fragments: list[str] = []
        self.scripts = 0
        self.fields: dict[str, dict[str, str | None]] = {}
        self.cells: list[str] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(str(values["id"]))
        href = values.get("href")
        if href and href.startswith("#"):
            self.fragments.append(href[1:])
        if tag == "script":
            self.scripts += 1
        if tag in ("input", "select") and values.get("name"):
            self.fields[str(values["name"])] = {"tag": tag, **values}
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            self.cells.append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def parse(page: str) -> _Page:
    parsed = _Page()
    parsed.feed(page)
    return parsed


def test_schema_text_is_escaped_and_only_our_script_runs() -> None:
    page = render_docs(SPEC)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "One &lt;b&gt;thing&lt;/b&gt;" in page and "T &lt;&amp;&gt; API" in page
    assert "with <code>limit</code> rows" in page
    assert parse(page).scripts == 1


def test_every_link_within_the_page_has_its_target() -> None:
    parsed = parse(render_docs(SPEC))
    assert {"schema-Thing", "schema-Part"} <= set(parsed.fragments)
    assert set(parsed.fragments) <= parsed.ids


def test_the_form_has_a_field_per_parameter_and_offers_no_null() -> None:
    parsed = parse(render_docs(SPEC, openapi_url="/spec.json"))
    assert parsed.fields["key"]["value"] == "K1" and "required" in parsed.fields["key"]
    assert parsed.fields["until"]["tag"] == "input" and "required" not in parsed.fields["until"]
    assert parsed.fields["kind"]["tag"] == "select"
    # A query string cannot carry a null: the parameter is an integer, left out for no bound.
    until_row = parsed.cells[parsed.cells.index("until") : parsed.cells.index("until") + 3]
    assert until_row == ["until", "query", "integer"]
    # A response field can be null, and says so.
    assert "integer or null" in parsed.cells
