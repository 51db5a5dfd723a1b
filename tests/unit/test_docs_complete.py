"""The user and integrator docs stay true to the code.

- docs/forms.md has a row for every field type of the registry, with its
  labels and exactly its filter operators; names every publish step; and its
  worked example is a form definition that compiles.
- docs/api.md has a section for every endpoint of the server (and none for
  endpoints it does not have); a router still in progress may be listed in
  DOCUMENTED_IN_A_LATER_CHANGE meanwhile.
- docs/settings.md lists every setting with its default.
- Links between the docs pages (files and #anchors) resolve.

Adding a field type, an endpoint or a setting without documenting it fails
here, with a message that says what is missing and where it goes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from pydantic import TypeAdapter

from tangram.engines.forms import evolution, publish
from tangram.engines.forms.fieldtypes import FIELD_KINDS
from tangram.engines.forms.validation import compile_validator
from tangram.metamodel import fields as fm
from tangram.metamodel import storage
from tangram.metamodel.forms import Form
from tangram.platform.api.docs import ASSETS_URL, DOCS_URL, REDOC_URL
from tangram.platform.app import create_app
from tangram.settings import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"

# Routers still being written, by module: their endpoints may lack a section
# in docs/api.md for now — each is "documented in a later change", the one
# that finishes the module, which must also remove it from this list. Only
# for modules in progress (not yet committed); a finished router is
# documented when it lands.
DOCUMENTED_IN_A_LATER_CHANGE: dict[str, str] = {}

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def section(text: str, heading: str) -> str:
    """The text of the ``## heading…`` section, up to the next ``## ``."""
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"section '## {heading}' is missing"
    return match.group(1)


def table_rows(text: str) -> dict[str, list[str]]:
    """Rows of markdown tables whose first cell is a code span: key -> cells."""
    rows: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^\| `([^`]+)` \|", line)
        if match:
            rows.setdefault(match.group(1), [c.strip() for c in line.strip().strip("|")
                                             .split("|")])
    return rows


# --------------------------------------------------------------------------- forms.md

@pytest.fixture(scope="module")
def field_type_rows() -> dict[str, list[str]]:
    return table_rows(section(read("forms.md"), "Field types"))


@pytest.mark.parametrize("type_key", FIELD_KINDS)
def test_every_field_type_has_a_row_in_forms_md(type_key, field_type_rows):
    kind = FIELD_KINDS[type_key]
    row = field_type_rows.get(type_key)
    assert row is not None, (
        f"field type {type_key!r} is missing from the table in docs/forms.md, section "
        f"'## Field types': add a row | `{type_key}` | {kind.label['zh']} / "
        f"{kind.label['en']} | what it stores | its options | its filter operators |")
    assert kind.label["zh"] in row[1] and kind.label["en"] in row[1], (
        f"docs/forms.md: the labels of {type_key!r} are {kind.label}, the row says {row[1]!r}")
    documented = set(re.findall(r"`([a-z_]+)`", row[-1]))
    assert documented == set(kind.filter_ops), (
        f"docs/forms.md: the filter operators of {type_key!r} are "
        f"{', '.join(kind.filter_ops)}; the row lists {', '.join(sorted(documented))}")


def test_the_field_type_table_has_no_stale_rows(field_type_rows):
    stale = sorted(set(field_type_rows) - set(FIELD_KINDS))
    assert not stale, f"docs/forms.md documents field types that do not exist: {stale}"


def test_every_publish_step_is_named_in_forms_md():
    # evolution._TEXTS is the registry of plan steps (one handler and one
    # description per op; evolution asserts they match).
    text = section(read("forms.md"), "What publishing does to existing data")
    missing = sorted(op for op in evolution._TEXTS if f"`{op}`" not in text)
    assert not missing, ("publish steps missing from docs/forms.md, section 'What publishing "
                         f"does to existing data' (the list after 'Step operations'): {missing}")


def example_forms() -> list[dict[str, Any]]:
    """The JSON blocks marked ``<!-- example: form draft -->`` in forms.md."""
    blocks = re.findall(r"<!-- example: form draft -->\s*```json\n(.*?)\n```", read("forms.md"),
                        re.S)
    return [json.loads(block)["definition"] for block in blocks]


def test_the_worked_example_is_a_valid_app():
    bodies = example_forms()
    assert len(bodies) >= 2, "docs/forms.md lost its worked example"
    forms: dict[str, Form] = {}
    for body in bodies:
        form = storage.parse_definition("form", body)
        assert isinstance(form, Form)
        compile_validator(form)  # expressions, formulas, rules compile
        # Expressions read only fields the form has (what publishing checks).
        assert publish._check_expression_fields(form) == []
        forms[form.key] = form
    for form in forms.values():
        for f in form.all_fields():
            if isinstance(f, (fm.RelationField, fm.MultiRelationField)):
                assert f.target in forms, f"{form.key}.{f.key} links to unknown {f.target!r}"
            if isinstance(f, fm.RollupField) and f.source.form:
                child = forms[f.source.form]
                via = child.field(f.source.via or "")
                assert isinstance(via, fm.RelationField) and via.target == form.key
                assert f.field is None or child.field(f.field) is not None


# --------------------------------------------------------------------------- api.md

@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    built = create_app(Settings(database_url="sqlite://",
                                var_dir=tmp_path_factory.mktemp("var"), environment="test"))
    yield built
    built.state.engine.dispose()


def api_routes(app: FastAPI) -> dict[tuple[str, str], str]:
    """(method, path) -> the endpoint's module.function, without the API docs pages."""
    docs_pages = {app.openapi_url, DOCS_URL, REDOC_URL, f"{ASSETS_URL}/{{name}}"}
    out = {}
    for ctx in iter_route_contexts(app.routes):
        if ctx.path in docs_pages:
            continue
        for method in ctx.methods or ():
            if method in HTTP_METHODS:
                endpoint = ctx.endpoint
                out[(method, ctx.path)] = f"{endpoint.__module__}.{endpoint.__name__}"
    return out


def documented_endpoints() -> set[tuple[str, str]]:
    """Headings of docs/api.md of the form ### `METHOD /path`."""
    return {(m.group(1), m.group(2)) for m in re.finditer(
        rf"^#{{2,4}} `({'|'.join(HTTP_METHODS)}) (/\S*)`\s*$", read("api.md"), re.M)}


def test_every_endpoint_has_a_section_in_api_md(app):
    routes, documented = api_routes(app), documented_endpoints()
    assert len(routes) > 30
    missing = sorted(route for route, endpoint in routes.items()
                     if route not in documented
                     and endpoint.rpartition(".")[0] not in DOCUMENTED_IN_A_LATER_CHANGE)
    listed = "\n".join(f"  {method} {path}    ({routes[(method, path)]})"
                       for method, path in missing)
    assert not missing, (
        f"{len(missing)} endpoint(s) have no section in docs/api.md:\n{listed}\n"
        "Add, in docs/api.md, a heading  ### `METHOD /path`  for each (in the section of its "
        "router, or a new '## ' section for a new router) saying what it does, who may call "
        "it, its body and its answer, and add it to the 'Endpoint index' table. Only if its "
        "module is still in progress, list its module instead in DOCUMENTED_IN_A_LATER_CHANGE "
        "in tests/unit/test_docs_complete.py with the reason.")


def test_api_md_documents_no_endpoint_the_server_lacks(app):
    stale = sorted(documented_endpoints() - set(api_routes(app)))
    assert not stale, ("docs/api.md has sections for endpoints the server does not have "
                       f"(renamed or removed?): {stale}")


def test_routers_documented_later_are_real_and_not_yet_documented(app):
    routes, documented = api_routes(app), documented_endpoints()
    for module in DOCUMENTED_IN_A_LATER_CHANGE:
        own = [route for route, endpoint in routes.items()
               if endpoint.rpartition(".")[0] == module]
        assert own, (f"DOCUMENTED_IN_A_LATER_CHANGE names {module}, which serves no endpoint: "
                     "remove it")
        assert not set(own) <= documented, (
            f"every endpoint of {module} is documented in docs/api.md now: remove it from "
            "DOCUMENTED_IN_A_LATER_CHANGE")


# --------------------------------------------------------------------------- settings.md

NOT_SET = "(not set)"


@pytest.fixture(scope="module")
def setting_rows() -> dict[str, list[str]]:
    return table_rows(read("settings.md"))


@pytest.mark.parametrize("name", Settings.model_fields)
def test_every_setting_is_in_settings_md_with_its_default(name, setting_rows):
    variable = f"TANGRAM_{name.upper()}"
    field = Settings.model_fields[name]
    row = setting_rows.get(variable)
    assert row is not None, (
        f"setting {name!r} is missing from docs/settings.md: add a row "
        f"| `{variable}` | `{field.default}` | what it means |")
    cell = row[1].strip("`")
    if field.default is None:
        assert cell == NOT_SET, f"docs/settings.md: {variable} has no default; write {NOT_SET}"
        return
    documented = "" if cell == '""' else TypeAdapter(field.annotation).validate_strings(cell)
    assert documented == field.default, (
        f"docs/settings.md: the default of {variable} is {field.default!r}, the docs say {cell!r}")


def test_settings_md_lists_no_unknown_setting(setting_rows):
    known = {f"TANGRAM_{name.upper()}" for name in Settings.model_fields}
    stale = sorted(v for v in setting_rows if v.startswith("TANGRAM_") and v not in known)
    assert not stale, f"docs/settings.md lists settings that do not exist: {stale}"


# --------------------------------------------------------------------------- links

def anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n, candidate = 0, slug
        while candidate in out:
            n += 1
            candidate = f"{slug}-{n}"
        out.add(candidate)
    return out


def test_links_between_docs_pages_resolve():
    broken = []
    for page in sorted(DOCS.glob("*.md")):
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue  # http(s), mailto
            name, _, anchor = target.partition("#")
            linked = DOCS / name if name else page
            if not linked.is_file():
                broken.append(f"{page.name}: {target} (no such page)")
            elif anchor and anchor not in anchors(linked.read_text(encoding="utf-8")):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "broken links in docs/:\n" + "\n".join(broken)
