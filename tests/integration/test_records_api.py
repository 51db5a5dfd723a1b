"""The forms and records API as a real client uses it, on both backends."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.factories import field, form_body

LEAD = form_body(
    "lead",
    field("name", required=True, label={"zh": "姓名", "en": "Name"}),
    field("mobile", "phone", unique=True, label={"zh": "手机", "en": "Mobile"}),
    field("status", "select", options=[{"value": "new", "label": {"zh": "新建"}},
                                       {"value": "qualified", "label": {"zh": "合格"}}],
          default="new"),
    field("account", "relation", target="account"),
    field("budget", "currency"),
    search_fields=["name", "mobile"],
)
ACCOUNT = form_body("account", field("name"), field("industry"))


@pytest.fixture
def crm(admin_client):
    r = admin_client.post("/api/apps", json={"key": "crm", "name": {"zh": "客户管理"}})
    assert r.status_code == 201, r.text
    for body in (ACCOUNT, LEAD):
        r = admin_client.put(f"/api/apps/crm/forms/{body['key']}/draft",
                             json={"definition": body})
        assert r.status_code == 200, r.text
        r = admin_client.post(f"/api/apps/crm/forms/{body['key']}/publish", json={})
        assert r.status_code == 200, r.text
    return admin_client


def records_url(form="lead"):
    return f"/api/apps/crm/forms/{form}/records"


def test_form_metadata_lets_a_client_render_it(crm):
    meta = crm.get("/api/apps/crm/forms/lead").json()
    assert meta["version"] == 1
    assert [f["key"] for f in meta["definition"]["fields"]][:2] == ["name", "mobile"]
    assert all(f["id"] for f in meta["definition"]["fields"])
    assert meta["field_access"]["name"] == "editable"
    assert "create" in meta["actions"]
    kinds = {k["type"] for k in crm.get("/api/meta/field-types").json()}
    assert {"text", "sub_table", "rollup", "region"} <= kinds
    ops = {o["key"] for o in crm.get("/api/meta/filter-operators").json()}
    assert {"eq", "between", "date_range", "contains_any"} <= ops
    assert any(f["name"] == "add_days" for f in crm.get("/api/meta/functions").json())


def test_crud_through_http(crm):
    acc = crm.post(records_url("account"), json={"values": {"name": "华为", "industry": "ICT"}})
    assert acc.status_code == 201
    r = crm.post(records_url(), json={"values": {"name": "张三", "mobile": "13812345678",
                                                 "account": acc.json()["id"],
                                                 "budget": "500000.50"}})
    assert r.status_code == 201, r.text
    lead = r.json()
    assert lead["status"] == "new" and lead["budget"] == "500000.50"
    assert lead["_display"]["account"] == "华为"
    r = crm.patch(f"{records_url()}/{lead['id']}", json={"version": 1,
                                                         "values": {"status": "qualified"}})
    assert r.status_code == 200 and r.json()["version"] == 2
    stale = crm.patch(f"{records_url()}/{lead['id']}", json={"version": 1,
                                                             "values": {"name": "x"}})
    assert stale.status_code == 409 and stale.json()["code"] == "conflict"
    # A misspelled key is refused, not ignored (with it, the stale-copy check).
    typo = crm.post(f"{records_url()}/{lead['id']}/transfer", json={
        "owner": lead["owner"], "verison": 1})
    assert typo.status_code == 422 and typo.json()["errors"] == [{
        "field": "body.verison", "code": "extra_forbidden",
        "message": "unknown key: this request does not take it (check its spelling)"}]
    assert crm.get(f"{records_url()}/{lead['id']}").json()["name"] == "张三"
    assert crm.delete(f"{records_url()}/{lead['id']}").status_code == 204
    assert crm.get(f"{records_url()}/{lead['id']}").status_code == 404
    assert crm.post(f"{records_url()}/{lead['id']}/restore").status_code == 200
    history = crm.get(f"{records_url()}/{lead['id']}/history").json()["items"]
    assert [h["action"] for h in history] == ["restore", "delete", "update", "create"]
    assert history[-1]["actor_name"] == "Administrator"


def test_validation_errors_are_422_per_field_localized(crm):
    r = crm.post(records_url(), json={"values": {"mobile": "123", "status": "zzz",
                                                 "budget": "abc", "nope": 1}},
                 headers={"Accept-Language": "zh"})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "validation_failed"
    got = {(e["field"], e["code"]) for e in body["errors"]}
    assert got == {("name", "required"), ("mobile", "phone"), ("status", "option"),
                   ("budget", "type"), ("nope", "unknown_field")}
    assert any(e["message"] == "姓名为必填项" for e in body["errors"])
    en = crm.post(records_url(), json={"values": {}}, headers={"Accept-Language": "en"}).json()
    assert en["errors"][0]["message"] == "Name is required"


def test_list_filter_sort_search_and_keyset_pages(crm):
    acc = crm.post(records_url("account"), json={"values": {"name": "A", "industry": "制造业"}})
    other = crm.post(records_url("account"), json={"values": {"name": "B", "industry": "金融"}})
    rows = [{"name": f"客户{i}", "mobile": f"1380000{i:04d}", "budget": str(i * 100),
             "account": (acc if i % 2 else other).json()["id"]} for i in range(25)]
    r = crm.post(f"{records_url()}/bulk", json={"rows": rows})
    assert r.status_code == 201, r.text
    flt = {"and": [{"field": "account.industry", "op": "eq", "value": "制造业"},
                   {"field": "budget", "op": "gte", "value": "1000"}]}
    page = crm.get(records_url(), params={"filter": json.dumps(flt), "sort": "-budget",
                                          "limit": 5, "total": "true"}).json()
    expected = sorted((i for i in range(25) if i % 2 and i * 100 >= 1000), reverse=True)
    assert page["total"] == len(expected)
    seen = [p["name"] for p in page["items"]]
    while page["next_cursor"]:
        page = crm.get(records_url(), params={"filter": json.dumps(flt), "sort": "-budget",
                                              "limit": 5, "after": page["next_cursor"]}).json()
        seen += [p["name"] for p in page["items"]]
    assert seen == [f"客户{i}" for i in expected]
    found = crm.get(records_url(), params={"search": "客户1"}).json()["items"]
    assert sorted(p["name"] for p in found) == sorted(
        f"客户{i}" for i in range(25) if str(i).startswith("1"))
    body = crm.post(f"{records_url()}/query", json={"filter": {"field": "name", "op": "in",
                                                               "value": ["客户3", "客户4"]},
                                                    "fields": ["name"]}).json()
    assert sorted(p["name"] for p in body["items"]) == ["客户3", "客户4"]
    assert "budget" not in body["items"][0]


def test_bad_filters_get_clear_errors(crm):
    r = crm.get(records_url(), params={"filter": "{not json"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "filter"
    r = crm.post(f"{records_url()}/query", json={"filter": {"field": "nope", "op": "eq",
                                                            "value": 1}})
    assert r.status_code == 422 and "nope" in r.json()["errors"][0]["message"]
    r = crm.post(f"{records_url()}/query", json={"filter": {
        "field": "name", "op": "eq", "value": "x'; DROP TABLE users; --"}})
    assert r.status_code == 200 and r.json()["items"] == []


def test_publish_destructive_change_needs_confirmation(crm):
    crm.post(records_url(), json={"values": {"name": "a", "mobile": "13800000000"}})
    changed = {**LEAD, "fields": [f for f in LEAD["fields"] if f["key"] != "budget"]}
    draft = crm.get("/api/apps/crm/forms/lead/draft").json()["draft"]
    ids = {f["key"]: f["id"] for f in draft["fields"]}
    changed["fields"] = [{**f, "id": ids[f["key"]]} for f in changed["fields"]]
    assert crm.put("/api/apps/crm/forms/lead/draft", json={"definition": changed}).status_code \
        == 200
    dry = crm.post("/api/apps/crm/forms/lead/publish", json={"dry_run": True}).json()
    assert dry["dry_run"] and any(s["op"] == "remove_field" for s in dry["plan"]["steps"])
    refused = crm.post("/api/apps/crm/forms/lead/publish", json={})
    assert refused.status_code == 409 and refused.json()["code"] == "confirmation_required"
    ok = crm.post("/api/apps/crm/forms/lead/publish", json={"confirm_destructive": True})
    assert ok.status_code == 200 and ok.json()["version"] == 2
    versions = crm.get("/api/apps/crm/forms/lead/versions").json()
    assert [v["version"] for v in versions] == [2, 1]
    assert any(d["op"] == "remove" for d in versions[0]["diff"])


def test_invalid_definitions_list_every_error_with_paths(crm):
    bad = form_body("broken", field("a", "decimal", scale=20), field("b", "select", options=[]),
                    field("c", "relation", target="nowhere"))
    r = crm.put("/api/apps/crm/forms/broken/draft", json={"definition": bad})
    assert r.status_code == 422
    paths = {e["path"] for e in r.json()["errors"]}
    assert {"$.fields[0].scale", "$.fields[1].options"} <= paths
    ok = form_body("broken", field("c", "relation", target="nowhere"),
                   field("f", "formula", expression="record.missing + 1", result_type="integer"))
    assert crm.put("/api/apps/crm/forms/broken/draft", json={"definition": ok}).status_code \
        == 200
    r = crm.post("/api/apps/crm/forms/broken/publish", json={})
    assert r.status_code == 422
    assert {e["path"] for e in r.json()["errors"]} == {"$.fields[0].target",
                                                      "$.fields[1].expression"}


def test_formula_dates_and_times_are_written_as_fields_write_them(crm):
    form = form_body("visit", field("at", "datetime"),
                     field("later", "formula", expression="add_hours(record.at, 2)",
                           result_type="datetime"),
                     field("day", "formula", expression="to_date(record.at)",
                           result_type="date"))
    assert crm.put("/api/apps/crm/forms/visit/draft", json={"definition": form}
                   ).status_code == 200
    assert crm.post("/api/apps/crm/forms/visit/publish", json={}).status_code == 200
    res = crm.post("/api/apps/crm/forms/visit/records", json={"values": {
        "at": "2026-01-05T09:30:00+08:00"}})
    assert res.status_code == 201, res.text
    rec = res.json()
    # UTC with "Z", like the date-time field itself; a date as a date.
    assert (rec["at"], rec["later"]) == ("2026-01-05T01:30:00Z", "2026-01-05T03:30:00Z")
    assert rec["day"] == "2026-01-05"
    listed = crm.get("/api/apps/crm/forms/visit/records").json()["items"]
    assert listed[0]["later"] == "2026-01-05T03:30:00Z"


def publish_prospect(crm, views: list[dict[str, Any]]) -> dict[str, Any]:
    """A form with a name and a status, and ``views``, published."""
    body = form_body("prospect", field("name", required=True),
                     field("status", "select", options=[
                         {"value": v, "label": {"zh": v}} for v in ("new", "qualified")]),
                     views=views)
    assert crm.put("/api/apps/crm/forms/prospect/draft", json={"definition": body}
                   ).status_code == 200
    assert crm.post("/api/apps/crm/forms/prospect/publish", json={}).status_code == 200
    return body


def test_list_views_filter_and_sort_for_the_viewer(crm, app, make_user):
    views = [{"key": "mine", "label": {"zh": "我的"}, "columns": ["name", "status"],
              "filter": {"field": "owner", "op": "eq", "value": {"$user": "id"}},
              "sort": ["name"]},
             {"key": "qualified", "label": {"zh": "合格"},
              "filter": {"field": "status", "op": "eq", "value": "qualified"}}]
    body = publish_prospect(crm, views)
    url = "/api/apps/crm/forms/prospect/records"
    for name, status in (("乙", "new"), ("甲", "qualified")):
        assert crm.post(url, json={"values": {"name": name, "status": status}}
                        ).status_code == 201
    from fastapi.testclient import TestClient

    _, token = make_user("other", is_admin=True, app=app)
    other = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    other.post(url, json={"values": {"name": "丙", "status": "qualified"}})

    def names(client, **params) -> list[str]:
        res = client.get(url, params=params)
        assert res.status_code == 200, res.text
        return [r["name"] for r in res.json()["items"]]

    assert names(crm, view="mine") == ["乙", "甲"]  # the view's sort (by code point)
    assert names(other, view="mine") == ["丙"]  # "$user" is the viewer
    assert names(crm, view="mine", sort="-name") == ["甲", "乙"]  # the client's sort wins
    assert names(crm, view="qualified", filter=json.dumps(
        {"field": "name", "op": "eq", "value": "丙"})) == ["丙"]  # both filters
    res = crm.post(f"{url}/query", json={"view": "mine", "filter": {
        "field": "status", "op": "eq", "value": "new"}})
    assert [r["name"] for r in res.json()["items"]] == ["乙"]
    missing = crm.get(url, params={"view": "nope"})
    assert missing.status_code == 404 and "mine, qualified" in missing.json()["message"]
    exported = crm.get("/api/apps/crm/forms/prospect/export", params={"view": "mine"})
    assert "甲" in exported.text and "丙" not in exported.text
    # A view naming an unknown field, or whose filter does not compile, is refused.
    bad = {**body, "views": [{"key": "x", "label": {"zh": "x"}, "columns": ["nmae"]}]}
    res = crm.put("/api/apps/crm/forms/prospect/draft", json={"definition": bad})
    assert res.status_code == 422 and "nmae" in res.text
    bad = {**body, "views": [{"key": "x", "label": {"zh": "x"}, "filter": {
        "field": "status", "op": "gt", "value": {"$user": "nobody"}}}]}
    assert crm.put("/api/apps/crm/forms/prospect/draft", json={"definition": bad}
                   ).status_code == 200
    res = crm.post("/api/apps/crm/forms/prospect/publish", json={})
    assert res.status_code == 422, res.text
    assert res.json()["errors"][0]["path"].startswith("$.views[0].filter")
    assert crm.get("/api/apps/crm/forms/prospect").json()["version"] == 1  # unchanged


def test_a_department_view_shows_a_user_in_no_department_nothing(crm, app, make_user):
    from fastapi.testclient import TestClient

    team = {"field": "owner", "op": "in_department", "value": {"$user": "department_tree"}}
    views = [{"key": "team", "label": {"zh": "本部门"}, "filter": team},
             {"key": "others", "label": {"zh": "其他部门"}, "filter": {"not": team}},
             {"key": "team_or_new", "label": {"zh": "本部门或新"}, "filter": {"or": [
                 team, {"field": "status", "op": "eq", "value": "new"}]}}]
    publish_prospect(crm, views)
    url = "/api/apps/crm/forms/prospect/records"
    member_id, token = make_user("member", is_admin=True, app=app)
    member = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    sales = crm.post("/api/org/departments", json={"name": "Sales"}).json()["id"]
    assert crm.put(f"/api/org/users/{member_id}/departments", json={"departments": [
        {"department_id": sales}]}).status_code == 204
    for client, name, status in ((crm, "甲", "new"), (crm, "乙", "qualified"),
                                 (member, "丙", "qualified")):
        assert client.post(url, json={"values": {"name": name, "status": status}}
                           ).status_code == 201

    def names(client, view: str) -> list[str]:
        res = client.get(url, params={"view": view, "sort": "name"})
        assert res.status_code == 200, res.text
        return [r["name"] for r in res.json()["items"]]

    # crm's user is in no department: "my team" is nobody's records, "not my
    # team" everyone's, and an "or" still finds the other half.
    assert names(crm, "team") == []
    assert names(crm, "others") == ["丙", "乙", "甲"]
    assert names(crm, "team_or_new") == ["甲"]
    assert names(member, "team") == ["丙"]
    assert names(member, "others") == ["乙", "甲"]
    assert names(member, "team_or_new") == ["丙", "甲"]
    exported = crm.get("/api/apps/crm/forms/prospect/export", params={"view": "team"})
    assert exported.status_code == 200 and "甲" not in exported.text


def test_attachment_upload_and_link(crm, tmp_path):
    form = form_body("doc", field("files", "attachment", accept=[".pdf"], max_files=2))
    crm.put("/api/apps/crm/forms/doc/draft", json={"definition": form})
    crm.post("/api/apps/crm/forms/doc/publish", json={})
    up = crm.post("/api/files", files={"file": ("合同.pdf", b"%PDF-1.4 test", "application/pdf")})
    assert up.status_code == 201, up.text
    bad = crm.post("/api/files", files={"file": ("x.exe", b"MZ", "application/octet-stream")})
    rec = crm.post("/api/apps/crm/forms/doc/records",
                   json={"values": {"files": [up.json()["id"]]}})
    assert rec.status_code == 201, rec.text
    assert rec.json()["files"][0]["name"] == "合同.pdf"
    refused = crm.post("/api/apps/crm/forms/doc/records",
                       json={"values": {"files": [bad.json()["id"]]}})
    assert refused.status_code == 422 and refused.json()["errors"][0]["code"] == "file_type"
    got = crm.get(f"/api/files/{up.json()['id']}")
    assert got.status_code == 200 and got.content == b"%PDF-1.4 test"


def test_records_require_authentication(client, crm):
    assert client.get("/api/apps/crm/forms/lead/records").status_code == 401


def test_files_are_private_to_readers_of_their_records(crm, app, make_user):
    from fastapi.testclient import TestClient

    form = form_body("doc", field("files", "attachment"))
    crm.put("/api/apps/crm/forms/doc/draft", json={"definition": form})
    crm.post("/api/apps/crm/forms/doc/publish", json={})
    up = crm.post("/api/files", files={"file": ("合同.pdf", b"%PDF-1.4", "application/pdf")})
    crm.post("/api/apps/crm/forms/doc/records", json={"values": {"files": [up.json()["id"]]}})
    _, token = make_user("outsider")
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as outsider:
        # a member with no role on the app cannot read the record, so not the file
        assert outsider.get(f"/api/files/{up.json()['id']}").status_code == 404
        own = outsider.post("/api/files", files={"file": ("a.txt", b"hi", "text/plain")})
        assert own.status_code == 201
        assert outsider.get(f"/api/files/{own.json()['id']}").content == b"hi"
    assert crm.get(f"/api/files/{up.json()['id']}").status_code == 200


def test_region_fields_follow_the_division_table_a_picker_reads(crm):
    tree = crm.get("/api/meta/regions").json()
    guangdong = next(p for p in tree if p["value"] == "广东省")
    shenzhen = next(c for c in guangdong["children"] if c["value"] == "深圳市")
    assert {"value": "南山区"} in shenzhen["children"] and len(tree) == 34
    body = form_body("site", field("place", "region", levels=3))
    assert crm.put("/api/apps/crm/forms/site/draft", json={"definition": body}).status_code == 200
    assert crm.post("/api/apps/crm/forms/site/publish", json={}).status_code == 200
    r = crm.post(records_url("site"), json={"values": {"place": "广东/深圳/南山"}})
    assert r.status_code == 201, r.text
    assert r.json()["place"] == {"province": "广东省", "city": "深圳市", "district": "南山区"}
    r = crm.post(records_url("site"), json={"values": {
        "place": {"province": "广东省", "city": "杭州市", "district": "西湖区"}}},
        headers={"Accept-Language": "en"})
    assert r.status_code == 422
    assert [(e["field"], e["code"]) for e in r.json()["errors"]] == [("place", "region_city")]
    assert "杭州市" in r.json()["errors"][0]["message"]


def test_fields_nobody_types_into_are_read_only_in_the_metadata(crm):
    body = form_body("invoice", field("number", "autonumber", pattern="INV-{seq:4}"),
                     field("qty", "integer"), field("note", read_only=True),
                     field("double", "formula", expression="record.qty * 2",
                           result_type="integer"))
    res = crm.put("/api/apps/crm/forms/invoice/draft", json={"definition": body})
    assert res.status_code == 200, res.text
    assert crm.post("/api/apps/crm/forms/invoice/publish", json={}).status_code == 200
    access = crm.get("/api/apps/crm/forms/invoice").json()["field_access"]
    assert access == {"number": "read_only", "qty": "editable", "note": "read_only",
                      "double": "read_only"}


def test_empty_multi_values_read_as_empty_lists(crm):
    body = form_body("profile", field("name"),
                     field("tags", "tags"),
                     field("colors", "multi_select", options=[
                         {"value": "red", "label": {"zh": "红"}}]),
                     field("peers", "multi_relation", target="profile"),
                     field("files", "attachment"))
    res = crm.put("/api/apps/crm/forms/profile/draft", json={"definition": body})
    assert res.status_code == 200, res.text
    assert crm.post("/api/apps/crm/forms/profile/publish", json={}).status_code == 200
    url = "/api/apps/crm/forms/profile/records"
    created = crm.post(url, json={"values": {"name": "空"}})
    assert created.status_code == 201, created.text
    for rec in (created.json(), crm.get(f"{url}/{created.json()['id']}").json(),
                crm.get(url).json()["items"][0]):
        assert [rec[k] for k in ("tags", "colors", "peers", "files")] == [[], [], [], []]


def test_rules_compare_user_fields_with_the_user(crm):
    # A user field holds an id: a rule compares it with user.id as text.
    body = form_body("expense", field("title"), field("approver", "user"), rules=[
        {"assert": "is_empty(record.approver) or record.approver != user.id",
         "message": {"zh": "不能自己审批自己的报销", "en": "You cannot approve your own claim"},
         "fields": ["approver"]}])
    res = crm.put("/api/apps/crm/forms/expense/draft", json={"definition": body})
    assert res.status_code == 200, res.text
    assert crm.post("/api/apps/crm/forms/expense/publish", json={}).status_code == 200
    me = crm.get("/api/auth/me").json()["id"]
    url = "/api/apps/crm/forms/expense/records"
    res = crm.post(url, json={"values": {"title": "a", "approver": me}})
    assert res.status_code == 422 and res.json()["errors"][0]["field"] == "approver"
    res = crm.post(f"{url}/bulk", json={"rows": [{"title": "b", "approver": me}]})
    assert res.status_code == 422, res.text  # the bulk path reads ids the same way
    assert crm.post(url, json={"values": {"title": "c"}}).status_code == 201


def test_a_body_that_is_not_json_is_named_as_such(crm):
    res = crm.post("/api/apps/crm/forms/lead/records", content=b'{"values": {"name": "x"',
                   headers={"content-type": "application/json"})
    assert res.status_code == 422, res.text
    [error] = res.json()["errors"]
    assert (error["field"], error["code"]) == ("body", "json_invalid")
    assert error["message"].startswith("the body is not valid JSON at character")
