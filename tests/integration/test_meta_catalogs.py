"""Every entry of every designer catalog under ``/api/meta/*`` describes itself
the same way, in both languages, as a client reads it: ``description`` is a
``{"zh": …, "en": …}`` map like ``label`` (no ``description_en`` /
``description_zh`` / ``doc`` variants), the zh texts are Chinese. And each
answer is the caller's own: changing it changes no registry."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.testclient import TestClient

from tangram.engines import catalogs, expressions
from tangram.engines.reports.calculated import SQL_FUNCTIONS

# The catalogs of building blocks a designer shows, with how many entries each
# has at least (so an endpoint answering an empty list cannot pass).
CATALOGS = {"/api/meta/field-types": 28, "/api/meta/field-type-categories": 9,
            "/api/meta/filter-operators": 19, "/api/meta/function-categories": 5,
            "/api/meta/functions": 40, "/api/meta/reports": 50, "/api/meta/flows": 30}
# The other /api/meta routes serve no entries to describe: China's divisions
# (names only) and the definition JSON Schemas.
NOT_CATALOGS = {"/api/meta/regions", "/api/meta/schemas", "/api/meta/schemas/{name}"}
CHINESE = re.compile(r"[\u4e00-\u9fff]")
OLD_KEYS = {"doc", "description_en", "description_zh"}


def entries(catalog: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, entry) for each entry of a catalog: a list of entries, or a map
    of such lists (reports, flows); the date ranges an entry lists are entries
    too."""
    if isinstance(catalog, dict):
        return [e for name, part in catalog.items() for e in entries(part, f"{where}.{name}")]
    out: list[tuple[str, dict[str, Any]]] = []
    for entry in catalog:
        name = (entry.get("key") or entry.get("kind") or entry.get("name")
                or entry.get("type"))
        out.append((f"{where}[{name}]", entry))
        out += entries(entry.get("ranges", []), f"{where}[{name}].ranges")
    return out


@pytest.fixture
def user_client(app: FastAPI, make_user: Any) -> TestClient:
    _, token = make_user("designer")  # any signed-in user reads the catalogs
    return TestClient(app, headers={"Authorization": f"Bearer {token}"})


def test_every_meta_route_is_checked_here(user_client: TestClient) -> None:
    paths = user_client.get("/api/openapi.json").json()["paths"]
    assert {p for p in paths if p.startswith("/api/meta/")} == set(CATALOGS) | NOT_CATALOGS


@pytest.mark.parametrize("path", CATALOGS)
def test_every_catalog_entry_has_a_zh_and_en_description(user_client: TestClient,
                                                         path: str) -> None:
    res = user_client.get(path)
    assert res.status_code == 200, res.text
    found = entries(res.json(), path)
    assert len(found) >= CATALOGS[path]
    problems = []
    for where, entry in found:
        description = entry.get("description")
        if OLD_KEYS & entry.keys():
            problems.append(f"{where}: old description keys {sorted(OLD_KEYS & entry.keys())}")
        if not isinstance(description, dict) or set(description) != {"zh", "en"} or not all(
                isinstance(v, str) and v.strip() for v in description.values()):
            problems.append(f"{where}: description {description!r}")
        elif not CHINESE.search(description["zh"]):
            problems.append(f"{where}: the zh description is not Chinese: {description['zh']!r}")
        label = entry.get("label")  # functions are named by their name instead
        if label is not None and (set(label) != {"zh", "en"} or not all(
                isinstance(v, str) and v.strip() for v in label.values())):
            problems.append(f"{where}: label {label!r}")
        elif label is not None and not CHINESE.search(label["zh"]):
            # A loanword may appear in a zh label ("收到 Webhook 时"), never alone.
            problems.append(f"{where}: the zh label is not Chinese: {label['zh']!r}")
    assert problems == []


def test_every_function_category_has_a_label(user_client: TestClient) -> None:
    functions = user_client.get("/api/meta/functions").json()
    categories = user_client.get("/api/meta/function-categories").json()
    used = [f["category"] for f in functions]
    # Listed in the palette's order, each used by some function, none missing.
    assert [c["key"] for c in categories] == list(dict.fromkeys(used))
    assert {c["key"]: c["label"] for c in categories}["logic"] == {"zh": "条件",
                                                                   "en": "Conditions"}


def test_every_field_type_category_has_a_label(user_client: TestClient) -> None:
    kinds = user_client.get("/api/meta/field-types").json()
    categories = user_client.get("/api/meta/field-type-categories").json()
    used = [k["category"] for k in kinds]
    # Listed in the palette's order, each used by some field type, none missing.
    assert [c["key"] for c in categories] == list(dict.fromkeys(used))
    labels = {c["key"]: c["label"] for c in categories}
    assert labels["number"] == {"zh": "数字", "en": "Numbers"}
    assert labels["computed"] == {"zh": "自动计算", "en": "Computed"}


def test_a_function_of_an_unknown_category_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Registered anyway, it would have no label in the palette (and used to
    # vanish from the function catalog, which lists functions by category).
    monkeypatch.setattr(expressions, "FUNCTIONS", dict(expressions.FUNCTIONS))
    register = expressions._function("shout(text)", "strings", "Louder.", "大声。")
    with pytest.raises(ValueError, match="'strings'.*logic, text, math, date, aggregate"):
        register(lambda ev, text: text.upper())
    assert "shout" not in expressions.FUNCTIONS


def test_the_report_catalog_lists_the_calculated_field_functions(
        user_client: TestClient) -> None:
    listed = user_client.get("/api/meta/reports").json()["calculated_functions"]
    # Exactly the functions a calculated field compiles (in the reference's order).
    assert [f["name"] for f in listed] == list(SQL_FUNCTIONS)
    days = next(f for f in listed if f["name"] == "days_between")
    assert days["signature"] == "days_between(start, end)"
    assert "天数" in days["description"]["zh"] and "days" in days["description"]["en"]


def test_the_webhook_trigger_reads_as_a_moment_like_the_others(
        user_client: TestClient) -> None:
    triggers = user_client.get("/api/meta/flows").json()["trigger_kinds"]
    assert {t["kind"]: t["label"] for t in triggers}["webhook"] == {
        "zh": "收到 Webhook 时", "en": "Inbound webhook"}


def test_every_field_type_has_a_description_of_its_own(user_client: TestClient) -> None:
    kinds = user_client.get("/api/meta/field-types").json()
    # A type that inherits its parent's (currency from decimal) says nothing of its own.
    zh = [k["description"]["zh"] for k in kinds]
    en = [k["description"]["en"] for k in kinds]
    assert len(set(zh)) == len(set(en)) == len(kinds)
    text = next(k for k in kinds if k["type"] == "text")
    assert text["label"] == {"zh": "单行文本", "en": "Text"}
    assert "一行" in text["description"]["zh"]


# --- answers are the caller's ---------------------------------------------------------

def scramble(value: Any) -> None:
    """Change every dict and list of an answer in place, as a careless caller might."""
    if isinstance(value, dict):
        for item in value.values():
            scramble(item)
        value.clear()
        value["scrambled"] = True
    elif isinstance(value, list):
        for item in value:
            scramble(item)
        value.append("scrambled")


def test_every_catalog_route_is_served_from_the_engine_catalogs() -> None:
    served = {f"/api/meta/{name}" for name in catalogs.META_CATALOGS}
    assert served == set(CATALOGS) | {"/api/meta/regions"}


@pytest.mark.parametrize("name", catalogs.META_CATALOGS)
def test_changing_an_answer_changes_no_later_answer(name: str) -> None:
    build = catalogs.META_CATALOGS[name]
    before = copy.deepcopy(build())
    scramble(build())  # engine level: over HTTP the answer is serialized anyway
    assert build() == before


@pytest.mark.parametrize("name", catalogs.META_CATALOGS)
def test_the_route_serves_the_engine_catalog(user_client: TestClient, name: str) -> None:
    res = user_client.get(f"/api/meta/{name}")
    assert res.status_code == 200, res.text
    assert res.json() == jsonable_encoder(catalogs.META_CATALOGS[name]())
