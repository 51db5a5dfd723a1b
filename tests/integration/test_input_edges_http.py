"""Bad input over HTTP gets a clear, specific 422 and changes nothing, on
SQLite and PostgreSQL: lone UTF-16 surrogates in any JSON body, bodies nested
too deep to read, and every problem of a save reported together."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import field, form_body, label

FORM = form_body("item", field("title", required=True), field("amount", "decimal"),
                 field("owner_user", "user"), field("lines", "sub_table",
                                                    fields=[field("sku")]))
URL = "/api/apps/crm/forms/item/records"


@pytest.fixture
def crm(admin_client: TestClient) -> TestClient:
    r = admin_client.post("/api/apps", json={"key": "crm", "name": label("CRM")})
    assert r.status_code == 201, r.text
    r = admin_client.put("/api/apps/crm/forms/item/draft", json={"definition": FORM})
    assert r.status_code == 200, r.text
    r = admin_client.post("/api/apps/crm/forms/item/publish", json={})
    assert r.status_code == 200, r.text
    return admin_client


def _post(client: TestClient, url: str, raw: str, **headers: str) -> Any:
    return client.post(url, content=raw.encode(),
                       headers={"content-type": "application/json", **headers})


def _count(client: TestClient) -> int:
    return len(client.get(URL).json()["items"])


@pytest.mark.parametrize(("url", "raw", "where"), [
    (URL, '{"values": {"title": "a\\ud800b"}}', "body.values.title"),
    (URL, '{"values": {"title": "ok", "lines": [{"sku": "\\udfff"}]}}',
     "body.values.lines.0.sku"),
    (URL, '{"values": {"ti\\ud800tle": "x"}}', "body.values"),
    (URL + "/query", '{"filter": {"title": {"eq": "\\ud83d"}}}', "body.filter.title.eq"),
])
def test_a_lone_surrogate_is_refused_naming_where(crm, url, raw, where):
    r = _post(crm, url, raw)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "request_invalid"
    assert body["errors"][0]["field"] == where
    assert "surrogate" in body["errors"][0]["message"]
    assert _count(crm) == 0


def test_a_paired_surrogate_is_a_character(crm):
    r = _post(crm, URL, '{"values": {"title": "\\ud83d\\ude00"}}')
    assert r.status_code == 201, r.text
    assert r.json()["title"] == "😀"


@pytest.mark.parametrize("depth", [150, 700, 5000])
def test_a_body_nested_too_deep_is_refused_naming_the_limit(crm, depth):
    spec = '{"not": ' * depth + '{"title": {"eq": "x"}}' + "}" * depth
    r = _post(crm, URL + "/query", '{"filter": ' + spec + "}")
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "request_invalid", r.text
    assert "deeper than 100 levels" in r.json()["message"], r.text


def test_every_problem_of_a_save_is_reported_together(crm):
    r = crm.post(URL, json={"values": {"title": "q1", "amount": "abc",
                                       "owner_user": "01890000-0000-7000-8000-000000000000"}})
    assert r.status_code == 422, r.text
    assert sorted(e["code"] for e in r.json()["errors"]) == ["type", "user_missing"]


def test_a_refused_required_value_is_not_also_missing(crm):
    r = crm.post(URL, json={"values": {"title": "a\x00b"}})
    assert r.status_code == 422, r.text
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("title", "type")]


def test_the_summary_speaks_the_callers_language(crm):
    r = crm.post(URL, json={"values": {"amount": "abc"}}, headers={"accept-language": "zh"})
    assert r.status_code == 422, r.text
    assert r.json()["message"] == "2 处填写有误"
