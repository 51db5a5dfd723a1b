"""Every example of docs/filters.md runs as it is written against the CRM
package's demo company, over HTTP as its director: each filter of the page
(code blocks and inline), the sort and search examples and the error example.
A filter example the CRM cannot run (a field it lacks, a label where an
option value belongs) fails here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.engines.context import EngineContext
from tangram.platform.packages.install import install_package
from tangram.platform.packages.loader import load_package
from tangram.platform.packages.source import read_package

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "filters.md"
CRM = ROOT / "apps_catalog" / "crm"
DEMO_PASSWORD = "tangram-demo"  # noqa: S105 - the demo users' password
# The page's examples are on the opportunity form unless the text names another.
FORM_OF_FIELD = {"region": "account", "sign_date": "contract",
                 "contract.account.industry": "payment"}


def doc_filters() -> list[dict[str, Any]]:
    """The page's filters before its Errors section: JSON code blocks and inline
    code that parses as a condition or a group."""
    text = DOC.read_text(encoding="utf-8").split("\n## Errors")[0]
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    inline = re.findall(r"`([^`]+)`", re.sub(r"```.*?```", "", text, flags=re.S))
    found = []
    for snippet in blocks + inline:
        try:
            value = json.loads(snippet)
        except ValueError:
            continue
        if isinstance(value, dict) and set(value) & {"field", "and", "or", "not"}:
            found.append(value)
    return found


def first_field(spec: Any) -> str | None:
    if isinstance(spec, dict):
        if "field" in spec:
            return str(spec["field"])
        for part in spec.values():
            got = first_field(part)
            if got:
                return got
    if isinstance(spec, list):
        for part in spec:
            got = first_field(part)
            if got:
                return got
    return None


def with_ids(spec: Any, departments: dict[str, str]) -> Any:
    """``"<id of 华东一组>"`` placeholders replaced by the demo department's id."""
    text = json.dumps(spec, ensure_ascii=False)
    return json.loads(re.sub(r"<id of ([^>]+)>", lambda m: departments[m.group(1)], text))


def test_every_example_of_the_filters_page_runs_on_the_crm_demo(app_factory, make_user):
    clock = FrozenClock()
    app = app_factory(clock=clock)
    with app.state.sessions.begin() as s:
        install_package(EngineContext(session=s, clock=clock),
                        load_package(read_package(CRM)), demo=True)
    res = TestClient(app).post("/api/auth/login", json={"username": "director",
                                                        "password": DEMO_PASSWORD})
    assert res.status_code == 200, res.text
    director = TestClient(app, headers={"Authorization":
                                        f"Bearer {res.json()['access_token']}"})
    _, admin_token = make_user("admin", is_admin=True, app=app)
    res = TestClient(app, headers={"Authorization": f"Bearer {admin_token}"}).get(
        "/api/org/departments")
    assert res.status_code == 200, res.text
    departments: dict[str, str] = {}
    tree = list(res.json())
    while tree:  # the department tree, flattened
        node = tree.pop()
        departments[node["name"]] = node["id"]
        tree.extend(node["children"])

    def query(form: str, **body: Any) -> Any:
        return director.post(f"/api/apps/crm/forms/{form}/records/query",
                             json={"include_total": True, "limit": 500, **body})

    def total(form: str, spec: Any) -> int:
        res = query(form, filter=spec)
        assert res.status_code == 200, (form, spec, res.text)
        return int(res.json()["total"])

    examples = doc_filters()
    for spec in examples:
        form = FORM_OF_FIELD.get(first_field(spec) or "", "opportunity")
        total(form, with_ids(spec, departments))
    assert len(examples) >= 12, examples  # the extraction still finds them all

    # What the page says of them holds on the demo.
    opportunities = total("opportunity", {})
    under = {"field": "account.industry", "op": "under", "value": "manufacturing"}
    eq = {"field": "account.industry", "op": "eq", "value": "auto_parts"}
    ne = {"field": "account.industry", "op": "ne", "value": "auto_parts"}
    assert under in examples and eq in examples and ne in examples
    assert 0 < total("opportunity", eq) < total("opportunity", under) < opportunities
    assert total("opportunity", eq) + total("opportunity", ne) == opportunities
    parts = {"field": "account.industry", "op": "in", "value": [
        "manufacturing", "auto_parts", "electronics", "machinery", "chemicals"]}
    assert total("opportunity", under) == total("opportunity", parts)
    group = {"field": "owner", "op": "in_department", "value": ["<id of 华东一组>"]}
    region = {"field": "owner", "op": "in_department", "value": [departments["华东大区"]]}
    assert group in examples
    assert total("opportunity", with_ids(group, departments)) > total("opportunity", region)
    assert total("payment", {"field": "contract.account.industry", "op": "under",
                             "value": "manufacturing"}) > 0
    assert total("account", {"field": "region", "op": "eq", "value": "广东省"}) > 0
    assert total("contract", {"field": "sign_date", "op": "date_range",
                              "value": {"last_n_days": 30}}) > 0
    # The label of an option is refused, naming the values.
    res = query("opportunity", filter={**under, "value": "制造业"})
    assert res.status_code == 422 and "manufacturing" in res.text, res.text

    # Sorting and search.
    for sort in (["-amount", "name"], ["account.name"]):
        res = query("opportunity", sort=sort)
        assert res.status_code == 200, (sort, res.text)
    res = query("opportunity", sort=["--amount"])
    assert res.status_code == 422 and "invalid_sort" in res.text, res.text
    text = DOC.read_text(encoding="utf-8")
    assert "`汽车 集团` finds" in text and "`汽车` matches\n  `北京泰天汽车部件有限公司`" in text
    names = [r["name"] for r in query("account", search="汽车 集团").json()["items"]]
    assert names and all("汽车" in n and "集团" in n for n in names)
    names = [r["name"] for r in query("account", search="汽车").json()["items"]]
    assert "北京泰天汽车部件有限公司" in names

    # The error example: its codes, paths and the start of each message.
    res = query("opportunity", filter={"and": [
        {"field": "amout", "op": "gte", "value": "500000"},
        {"field": "amount", "op": "gte", "value": "abc"}]})
    assert res.status_code == 422, res.text
    body = res.json()
    assert body["code"] == "filter_invalid", body
    block = re.search(r"```json\n(\{\"code\": \"filter_invalid\".*?)```", text, re.S)
    assert block, "the error example is gone"
    # "…" cuts a message short: the real one starts with the text before it.
    shown = json.loads(block.group(1).replace(', …"', '"').replace('"message": "…", ', ""))
    for doc_error, error in zip(shown["errors"], body["errors"], strict=True):
        for key in ("code", "path", "field"):
            assert error[key] == doc_error[key], (error, doc_error)
        assert error["message"].startswith(doc_error["message"]), (error, doc_error)
