"""The API's /docs page: one self-contained HTML page made from its OpenAPI document.

FastAPI's own /docs page loads Swagger UI's script and style sheet from a CDN, so on a machine
without the network it stays blank. This page needs nothing but the server: the operations,
their parameters, responses and the schemas are rendered here as HTML (readable with scripts
off), and a small inline script of our own lets a reader send a request from each operation's
form and see the answer. The only link it makes is to the OpenAPI document itself.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["render_docs"]

_METHODS = ("get", "head", "post", "put", "patch", "delete", "options", "trace")

_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem;
       padding: 0 1.5rem 4rem; color: #1b1f24; }
h1 { margin-bottom: 0.2rem; } h1 small { color: #57606a; font-weight: normal; }
h2 { margin-top: 2.5rem; border-top: 1px solid #d0d7de; padding-top: 1rem; }
code, pre, input, select { font: 13px ui-monospace, monospace; }
.method { background: #0969da; color: #fff; border-radius: 4px; padding: 0.1rem 0.45rem;
          font-size: 0.8em; vertical-align: middle; }
table { border-collapse: collapse; width: 100%; margin: 0.5rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.5rem; text-align: left;
         vertical-align: top; }
th { background: #f6f8fa; }
.description { white-space: pre-line; }
nav ul { columns: 2; padding-left: 1.2rem; }
input, select { width: 12rem; }
pre.answer { background: #f6f8fa; border: 1px solid #d0d7de; padding: 0.6rem;
             max-height: 28rem; overflow: auto; white-space: pre-wrap; }
pre.answer:empty { display: none; }
"""

# Our own few lines: each operation's form builds the URL from its fields (path parameters go
# into the path, filled query parameters into the query string), sends a GET and shows the
# status and the body.
_SCRIPT = """
for (const form of document.querySelectorAll("form[data-path]")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let path = form.dataset.path;
    const query = new URLSearchParams();
    for (const field of form.querySelectorAll("[data-in]")) {
      if (field.dataset.in === "path") {
        path = path.replace("{" + field.name + "}", encodeURIComponent(field.value));
      } else if (field.value !== "") {
        query.append(field.name, field.value);
      }
    }
    const search = query.toString();
    const url = path + (search ? "?" + search : "");
    const out = form.querySelector("pre.answer");
    out.textContent = "GET " + url + "\\n...";
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      let body = await response.text();
      try { body = JSON.stringify(JSON.parse(body), null, 2); } catch (error) {}
      out.textContent = "GET " + url + "\\n" + response.status + " " + response.statusText +
        "\\n\\n" + body;
    } catch (error) {
      out.textContent = "GET " + url + "\\n" + error;
    }
  });
}
"""


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _text(value: object) -> str:
    """Text from the schema as HTML: escaped, with `backticked` spans as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(str(value), quote=False))


def _anchor(method: str, path: str) -> str:
    return "op-" + method + "-" + re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-")


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: Mapping[str, Any]) -> str:
    """A JSON schema in a few words of HTML; references link to the schema's section."""
    if "$ref" in schema:
        name = _ref_name(str(schema["$ref"]))
        return f'<a href="#schema-{_esc(name)}">{_esc(name)}</a>'
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " or ".join(_type(option) for option in schema[key])
    if "const" in schema:
        return f"<code>{_esc(schema['const'])}</code>"
    if "enum" in schema:
        return "one of " + ", ".join(f"<code>{_esc(value)}</code>" for value in schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return " or ".join(_esc(k) for k in kind)
    if kind == "array":
        items = schema.get("items")
        return "array of " + (_type(items) if isinstance(items, Mapping) else "anything")
    if kind is None:
        return "anything"
    return _esc(kind)


def _without_null(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """A parameter's schema less its `null` alternative: a query string cannot carry a null,
    an optional parameter is one left out."""
    options = schema.get("anyOf")
    if not isinstance(options, list):
        return schema
    kept = [option for option in options if option != {"type": "null"}]
    if len(kept) != 1:
        return {**schema, "anyOf": kept}
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**rest, **kept[0]}


def _default(schema: Mapping[str, Any]) -> str:
    return f"<code>{_esc(schema['default'])}</code>" if "default" in schema else ""


def _options(schema: Mapping[str, Any]) -> list[str] | None:
    """The values a parameter takes, if it takes a closed set of them."""
    if "enum" in schema:
        return [str(value) for value in schema["enum"]]
    for option in schema.get("anyOf", ()):
        if isinstance(option, Mapping) and "enum" in option:
            return [str(value) for value in option["enum"]]
    return None


def _field(parameter: Mapping[str, Any]) -> str:
    """A form field for one parameter of the 'try it' form."""
    name = _esc(parameter["name"])
    where = _esc(parameter.get("in", "query"))
    schema: Mapping[str, Any] = parameter.get("schema", {})
    required = bool(parameter.get("required", False))
    common = f'name="{name}" data-in="{where}" aria-label="{name}"'
    options = _options(schema)
    if options is not None:
        choices = [] if required else ['<option value="">(default)</option>']
        choices += [f'<option value="{_esc(o)}">{_esc(o)}</option>' for o in options]
        return f"<select {common}>{''.join(choices)}</select>"
    examples = schema.get("examples") or []
    value = f' value="{_esc(examples[0])}"' if required and examples else ""
    hint = schema.get("default", "")
    return (
        f'<input type="text" {common}{value} placeholder="{_esc(hint)}"'
        f"{' required' if required else ''}>"
    )


def _parameters(parameters: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for parameter in parameters:
        schema: Mapping[str, Any] = parameter.get("schema", {})
        description = parameter.get("description") or schema.get("description") or ""
        rows.append(
            "<tr>"
            f"<td><code>{_esc(parameter['name'])}</code></td>"
            f"<td>{_esc(parameter.get('in', ''))}</td>"
            f"<td>{_type(_without_null(schema))}</td>"
            f"<td>{'yes' if parameter.get('required') else 'no'}</td>"
            f"<td>{_default(schema)}</td>"
            f"<td>{_text(description)}</td>"
            f"<td>{_field(parameter)}</td>"
            "</tr>"
        )
    if not rows:
        return "<p>No parameters.</p>"
    return (
        "<table><tr><th>Parameter</th><th>In</th><th>Type</th><th>Required</th>"
        "<th>Default</th><th>Description</th><th>Value</th></tr>" + "".join(rows) + "</table>"
    )


def _responses(responses: Mapping[str, Any]) -> str:
    rows = []
    for status, response in responses.items():
        content = response.get("content", {})
        bodies = [
            f"{_type(media.get('schema', {}))} (<code>{_esc(media_type)}</code>)"
            for media_type, media in content.items()
        ]
        rows.append(
            f"<tr><td>{_esc(status)}</td><td>{_text(response.get('description', ''))}</td>"
            f"<td>{'<br>'.join(bodies)}</td></tr>"
        )
    return (
        "<table><tr><th>Status</th><th>Meaning</th><th>Body</th></tr>" + "".join(rows) + "</table>"
    )


def _operation(path: str, method: str, operation: Mapping[str, Any]) -> str:
    summary = operation.get("summary", "")
    parts = [
        f'<section id="{_anchor(method, path)}">',
        f'<h2><span class="method">{_esc(method.upper())}</span> <code>{_esc(path)}</code></h2>',
        f"<p><strong>{_text(summary)}</strong></p>" if summary else "",
    ]
    if operation.get("description"):
        parts.append(f'<p class="description">{_text(operation["description"])}</p>')
    parameters = _parameters(operation.get("parameters", []))
    if method == "get":
        parts += [
            f'<form data-path="{_esc(path)}">',
            parameters,
            '<button type="submit">Send</button>',
            '<pre class="answer" aria-live="polite"></pre>',
            "</form>",
        ]
    else:
        parts.append(parameters)
    parts += ["<h3>Responses</h3>", _responses(operation.get("responses", {})), "</section>"]
    return "\n".join(part for part in parts if part)


def _schema(name: str, schema: Mapping[str, Any]) -> str:
    required = set(schema.get("required", ()))
    rows = [
        f"<tr><td><code>{_esc(field)}</code></td><td>{_type(prop)}</td>"
        f"<td>{'yes' if field in required else 'no'}</td>"
        f"<td>{_text(prop.get('description', ''))}</td></tr>"
        for field, prop in schema.get("properties", {}).items()
    ]
    table = (
        "<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>"
        + "".join(rows)
        + "</table>"
        if rows
        else f"<p>{_type(schema)}</p>"
    )
    return f'<h3 id="schema-{_esc(name)}">{_esc(name)}</h3>\n{table}'


def render_docs(spec: Mapping[str, Any], *, openapi_url: str = "/openapi.json") -> str:
    """The docs page for an OpenAPI document `spec`, served by the app at `openapi_url`.

    Everything is inline (style, script); the page links to `openapi_url` and to its own
    sections only, so it works without any network.
    """
    info: Mapping[str, Any] = spec.get("info", {})
    title = str(info.get("title", "API"))
    operations = [
        (path, method, operation)
        for path, item in spec.get("paths", {}).items()
        for method, operation in item.items()
        if method in _METHODS
    ]
    contents = "".join(
        f'<li><a href="#{_anchor(method, path)}">{_esc(method.upper())} '
        f"<code>{_esc(path)}</code></a> {_text(operation.get('summary', ''))}</li>"
        for path, method, operation in operations
    )
    schemas: Mapping[str, Any] = spec.get("components", {}).get("schemas", {})
    intro = info.get("summary") or info.get("description") or ""
    body = [
        f"<h1>{_esc(title)} <small>version {_esc(info.get('version', '?'))}</small></h1>",
        f'<p class="description">{_text(intro)}</p>' if intro else "",
        f'<p>The OpenAPI document: <a href="{_esc(openapi_url)}">{_esc(openapi_url)}</a>. '
        "Every endpoint also answers HEAD (GET without the body).</p>",
        f"<nav><ul>{contents}</ul></nav>",
        *(_operation(path, method, operation) for path, method, operation in operations),
        '<h2 id="schemas">Schemas</h2>' if schemas else "",
        *(_schema(name, schema) for name, schema in schemas.items()),
    ]
    return "\n".join(
        [
            "<!doctype html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_esc(title)}: docs</title>",
            # No favicon request: the page asks the server for nothing it does not serve.
            '<link rel="icon" href="data:,">',
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            *(part for part in body if part),
            f"<script>{_SCRIPT}</script>",
            "</body>",
            "</html>",
            "",
        ]
    )
