"""What a generic UI needs from the API to render any app without knowing it,
as real users over HTTP on SQLite and PostgreSQL: choices for user and
department fields, form metadata without hidden fields (layout, views,
rules), read-only fields for readers, per-record actions, titles inside
sub-tables, and the system fields' labels."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.factories import field as fdef
from tests.integration.org_world import (
    CONTRACT,
    ROLES,
    OrgWorld,
    bearer,
    build,
    records_url,
)


@pytest.fixture
def org(admin_client, app, make_user) -> OrgWorld:
    return build(admin_client, app, make_user)


def _reader(org: OrgWorld, make_user: Any) -> TestClient:
    """A user whose only role may read and print contracts (all of them)."""
    org.role("auditor", {"contract": {"actions": ["read", "print"], "scope": "all"}})
    user_id, token = make_user("auditor")
    org.ok(org.admin.post("/api/apps/crm/role-assignments", json={
        "role": "auditor", "user_id": str(user_id)}), 201)
    return TestClient(org.app, headers=bearer(token))


PEOPLE = [fdef("signer", "user"), fdef("team", "department"),
          fdef("lines", "sub_table", fields=[
              fdef("account", "relation", target="account"), fdef("helper", "user")])]


# --- 1. user and department choices for everyone ------------------------------------------

def test_any_colleague_may_look_up_active_users_and_departments(org, make_user):
    rep = org.clients["rep_east"]
    gone, _ = make_user("gone", email="gone@example.com")
    org.ok(org.admin.post(f"/api/org/users/{gone}/disable"), 204)
    page = org.ok(rep.get("/api/directory/users", params={"limit": 2}))
    assert len(page["items"]) == 2 and page["next_cursor"]
    seen = page["items"]
    while page["next_cursor"]:
        page = org.ok(rep.get("/api/directory/users", params={
            "limit": 2, "after": page["next_cursor"]}))
        seen += page["items"]
    assert {u["username"] for u in seen} == {"admin", "rep_east", "rep_west", "manager_east",
                                             "director"}  # not the disabled one
    east = next(u for u in seen if u["username"] == "rep_east")
    assert east == {"id": org.user_ids["rep_east"], "title": "rep_east", "username": "rep_east",
                    "department": {"id": org.departments["East"], "name": "East"}}
    found = org.ok(rep.get("/api/directory/users", params={"search": "REP_ W"}))["items"]
    assert [u["username"] for u in found] == ["rep_west"]
    departments = org.ok(rep.get("/api/directory/departments"))["items"]
    assert {d["title"]: d["parent_id"] for d in departments} == {
        "East": org.departments["Sales"], "West": org.departments["Sales"], "Sales": None}
    res = rep.get("/api/directory/users", params={"after": "not-a-cursor"})
    assert res.status_code == 422 and res.json()["code"] == "cursor_invalid"
    # The administrators' view of users stays theirs.
    assert rep.get("/api/org/users").status_code == 403


def test_user_and_department_fields_have_a_picker_like_relations(org, make_user):
    org.publish({**CONTRACT, "fields": [*CONTRACT["fields"], *PEOPLE]})
    rep = org.clients["rep_east"]
    url = "/api/apps/crm/forms/contract/fields/{}/picker"
    users = org.ok(rep.get(url.format("signer"), params={"search": "director"}))
    assert users["kind"] == "user" and users["next_cursor"] is None
    assert [u["id"] for u in users["items"]] == [org.user_ids["director"]]
    helpers = org.ok(rep.get(url.format("lines.helper"), params={"limit": 1}))
    assert len(helpers["items"]) == 1 and helpers["next_cursor"]
    teams = org.ok(rep.get(url.format("team"), params={"search": "east"}))
    assert teams["kind"] == "department"
    assert teams["items"] == [{"id": org.departments["East"], "title": "East",
                               "parent_id": org.departments["Sales"]}]
    accounts = org.ok(rep.get(url.format("lines.account")))
    assert accounts["kind"] == "relation" and accounts["target"] == "account"
    # Only for those who may set the field.
    res = _reader(org, make_user).get(url.format("signer"))
    assert res.status_code == 403 and res.json()["details"] == {"field": "signer"}
    assert rep.get(url.format("name")).status_code == 404


# --- 2. nothing of a hidden field in the metadata or in messages --------------------------

LAID_OUT = {**CONTRACT, "fields": [*CONTRACT["fields"], fdef(
    "note", "text", visible_when="record.amount > 10"), fdef("stage", "text")],
    "layout": {"sections": [{"fields": ["name", "amount"]}, {"fields": ["note"]}]},
    "default_sort": ["-amount", "name"],
    "rules": [{"assert": "record.amount >= 0", "message": {"en": "no negative amounts"},
               "fields": ["amount"]},
              {"assert": "record.stage != 'x'", "message": {"en": "no x"},
               "fields": ["stage", "amount"]}],
    "views": [{"key": "mine", "label": {"en": "Mine"}, "columns": ["name", "amount", "owner"],
               "filter": {"field": "owner", "op": "eq", "value": {"$user": "id"}}},
              {"key": "big", "label": {"en": "Big"}, "columns": ["name"],
               "filter": {"field": "amount", "op": "gt", "value": "1000"}},
              {"key": "richest", "label": {"en": "Richest"}, "sort": ["-amount"]}],
    "lock": {"when": "record.amount > 1000", "editable": ["amount", "note"]}}


def test_the_form_metadata_says_nothing_of_hidden_fields(org):
    org.publish(LAID_OUT)
    rep = org.clients["rep_east"]
    meta = org.ok(rep.get("/api/apps/crm/forms/contract"))
    definition = meta["definition"]
    assert "amount" not in str(definition) and "amount" not in meta["field_access"]
    assert [s["fields"] for s in definition["layout"]["sections"]] == [["name"], ["note"]]
    assert [(v["key"], v["columns"]) for v in definition["views"]] == [
        ("mine", ["name", "owner"])]
    assert [r["assert"] for r in definition["rules"]] == ["record.stage != 'x'"]
    assert definition["rules"][0]["fields"] == ["stage"]
    assert definition["default_sort"] == ["name"]
    assert "visible_when" not in next(f for f in definition["fields"] if f["key"] == "note")
    assert definition["lock"] == {"editable": ["note"]}
    # The view left out is one the rep could not list with anyway.
    assert rep.get(records_url(), params={"view": "big"}).status_code == 403
    assert org.ok(rep.get(records_url(), params={"view": "mine"}))["items"]
    # The builder's view of it is whole.
    full = org.ok(org.admin.get("/api/apps/crm/forms/contract"))["definition"]
    assert len(full["views"]) == 3 and len(full["rules"]) == 2 and "when" in full["lock"]


def test_listing_a_hidden_field_is_refused_and_messages_do_not_name_one(org):
    rep = org.clients["rep_east"]
    res = rep.get(records_url(), params={"fields": "name,amount"})
    assert res.status_code == 403 and res.json()["details"] == {"field": "amount"}
    res = rep.post(f"{records_url()}/query", json={"fields": ["name", "amount"]})
    assert res.status_code == 403 and res.json()["details"] == {"field": "amount"}
    for params in ({"fields": "name,zzz"}, {"sort": "amout"},
                   {"filter": '{"field": "amout", "op": "eq", "value": "1"}'}):
        res = rep.get(records_url(), params=params)
        assert res.status_code == 422, res.text
        assert "unknown field" in res.text and "amount" not in res.text
    # Whoever may see it still lists it.
    items = org.ok(org.clients["manager_east"].get(records_url(), params={
        "fields": "name,amount"}))["items"]
    assert {r["amount"] for r in items} == {"100.00"}


def test_the_search_does_not_look_in_hidden_fields(org):
    org.publish({**CONTRACT, "fields": [*CONTRACT["fields"], fdef("code")],
                   "search_fields": ["name", "code"]})
    org.role("rep", {**ROLES["rep"], "contract": {
        "actions": ["read", "create", "update"], "scope": "own",
        "fields": {"amount": "hidden", "code": "hidden"}}})
    e1 = org.contracts["E1"]
    org.ok(org.admin.patch(f"{records_url()}/{e1['id']}", json={
        "version": 2, "values": {"code": "SECRET"}}))
    rep = org.clients["rep_east"]
    assert org.ok(rep.get(records_url(), params={"search": "SECRET"}))["items"] == []
    assert [r["name"] for r in org.ok(rep.get(records_url(), params={
        "search": "E1"}))["items"]] == ["E1"]
    assert len(org.ok(org.admin.get(records_url(), params={"search": "SECRET"}))["items"]) == 1


# --- 3. readers see every field read-only -------------------------------------------------

def test_a_reader_who_may_neither_create_nor_update_sees_every_field_read_only(org, make_user):
    meta = org.ok(_reader(org, make_user).get("/api/apps/crm/forms/contract"))
    assert meta["actions"] == ["read", "print"]
    assert meta["field_access"] == {"name": "read_only", "amount": "read_only",
                                    "account": "read_only"}
    rep = org.ok(org.clients["rep_east"].get("/api/apps/crm/forms/contract"))
    assert rep["field_access"] == {"name": "editable", "account": "editable"}


# --- 4. what the caller may do on each record ---------------------------------------------

LEAD = {"key": "lead", "label": {"en": "Lead"}, "fields": [fdef("name"), fdef("status")],
        "lock": {"when": "record.status == 'won'"}}


def _leads(org: OrgWorld) -> dict[str, dict[str, Any]]:
    """Reps read every lead (the pool) but change only their own."""
    org.publish(LEAD)
    org.role("rep", {"lead": [{"actions": ["read"], "scope": "all"},
                                {"actions": ["read", "create", "update", "delete"],
                                 "scope": "own"}]})
    rep = org.clients["rep_east"]
    made = {"pool": org.ok(org.admin.post(records_url("lead"), json={"values": {
        "name": "pool"}}), 201)}
    for name, status in (("mine", "new"), ("won", "won")):
        made[name] = org.ok(rep.post(records_url("lead"), json={"values": {
            "name": name, "status": status}}), 201)
    return made


def test_each_record_says_what_the_caller_may_do_on_it(org):
    leads = _leads(org)
    rep = org.clients["rep_east"]
    listed = {r["name"]: r["_actions"] for r in org.ok(rep.get(records_url("lead")))["items"]}
    assert listed == {"pool": ["read"], "mine": ["read", "update", "delete"],
                      "won": ["read"]}  # locked: neither edited nor deleted by hand
    one = org.ok(rep.get(f"{records_url('lead')}/{leads['pool']['id']}"))
    assert one["_actions"] == ["read"]
    res = rep.patch(f"{records_url('lead')}/{leads['pool']['id']}", json={
        "version": 1, "values": {"name": "taken"}})
    assert res.status_code == 403  # as _actions said
    assert leads["mine"]["_actions"] == ["read", "update", "delete"]  # also on create
    admin = {r["name"]: r["_actions"] for r in org.ok(org.admin.get(records_url("lead")))["items"]}
    assert admin["won"] == ["read", "update", "delete", "print", "submit"]  # lock spares admins
    org.ok(rep.delete(f"{records_url('lead')}/{leads['mine']['id']}"), 204)
    binned = org.ok(org.admin.get(records_url("lead"), params={"deleted": "true"}))["items"]
    assert [r["_actions"] for r in binned] == [["read", "restore"]]


def test_record_actions_cost_no_query_per_record(org, app):
    _leads(org)
    rep = org.clients["rep_east"]
    for i in range(6):
        org.ok(rep.post(records_url("lead"), json={"values": {"name": f"more {i}"}}), 201)
    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    def queries(limit: int) -> int:
        statements.clear()
        sa.event.listen(app.state.engine, "before_cursor_execute", count)
        try:
            assert len(org.ok(rep.get(records_url("lead"), params={
                "limit": limit}))["items"]) == limit
        finally:
            sa.event.remove(app.state.engine, "before_cursor_execute", count)
        return len(statements)

    assert queries(2) == queries(8)


# --- 5. titles of links inside sub-tables -------------------------------------------------

def test_links_in_sub_table_rows_have_titles_and_rows_go_back_unchanged(org):
    org.publish({**CONTRACT, "fields": [*CONTRACT["fields"], *PEOPLE]})
    rows = [{"account": org.accounts["E1"]["id"], "helper": org.user_ids["rep_west"]},
            {"account": org.accounts["W1"]["id"], "helper": None}]
    made = org.ok(org.admin.post(records_url(), json={"values": {"name": "S", "lines": rows}}),
                  201)
    display = made["_display"]
    assert display["lines[0].account"] == "acc-E1" and display["lines[1].account"] == "acc-W1"
    assert display["lines[0].helper"] == "rep_west" and "lines[1].helper" not in display
    listed = org.ok(org.admin.get(records_url(), params={"search": "S"}))["items"]
    assert listed[0]["_display"] == display
    # A client sends the rows back as it read them.
    again = org.ok(org.admin.patch(f"{records_url()}/{made['id']}", json={
        "version": made["version"], "values": {"lines": made["lines"][::-1]}}))
    assert again["_display"]["lines[0].account"] == "acc-W1"


# --- 6. labels of the system fields -------------------------------------------------------

def test_the_form_metadata_describes_the_system_fields(org):
    meta = org.ok(org.clients["rep_east"].get("/api/apps/crm/forms/contract"))
    system = {f["key"]: f for f in meta["system_fields"]}
    assert list(system) == ["id", "created_at", "updated_at", "created_by", "updated_by",
                            "owner"]
    assert system["owner"] == {"key": "owner", "type": "user",
                               "label": {"zh": "负责人", "en": "Owner"},
                               "sortable": True, "filterable": True}
    assert system["created_at"]["type"] == "datetime"
    assert system["id"]["type"] == "relation" and system["id"]["target"] == "contract"
