"""No value computed from a field hidden from a user reaches them, over HTTP
on SQLite and PostgreSQL: a sub-table column computed from a hidden field of
its record hides its sub-table (reads hide fields, not columns of rows) on
every read path — record, list, export, print, history, reports — and with
it the rollups and formulas over it; defaults computed from a hidden field
and formulas reading the record as a whole or its old values are hidden too;
and the relation picker searches (and sorts by) only the fields of the linked
form the caller may see."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.factories import field as fdef
from tests.integration.org_world import ACCOUNT, CONTRACT, ROLES, OrgWorld, build, records_url

# Reps may not see contract amounts; they may export and print their contracts.
REP = {**ROLES["rep"], "contract": {**ROLES["rep"]["contract"], "actions": [
    *ROLES["rep"]["contract"]["actions"], "export", "print"]}}
LINES = fdef("lines", "sub_table", fields=[
    fdef("qty", "integer"),
    fdef("share", "formula", result_type="decimal", expression="parent.amount * row.qty")])
# Nothing of it reads the amount: it stays, with its rollup.
ITEMS = fdef("items", "sub_table", fields=[
    fdef("qty", "integer"),
    fdef("half", "formula", result_type="decimal", expression="row.qty / 2")])
WITH_LINES = {**CONTRACT, "fields": [
    *CONTRACT["fields"], LINES, ITEMS,
    fdef("share_total", "rollup", source={"sub_table": "lines"}, aggregate="sum",
         field="share"),
    fdef("band", "formula", result_type="text",
         expression='iif(coalesce(record.share_total, 0) > 100, "big", "small")'),
    fdef("item_total", "rollup", source={"sub_table": "items"}, aggregate="sum", field="qty")]}


@pytest.fixture
def org(admin_client, app, make_user) -> OrgWorld:
    world = build(admin_client, app, make_user)
    world.role("rep", REP)
    return world


def _e1(org: OrgWorld) -> str:
    return org.contracts["E1"]["id"]


def _set(org: OrgWorld, values: dict[str, Any], record: str | None = None) -> dict[str, Any]:
    """Change contract E1 (or ``record``) as the administrator."""
    url = f"{records_url()}/{record or _e1(org)}"
    version = org.ok(org.admin.get(url))["version"]
    return org.ok(org.admin.patch(url, json={"version": version, "values": values}))


# How the hidden product shows wherever it leaks ("300" alone also matches
# inside ids and timestamps).
SECRET = "300.00"


def _with_lines(org: OrgWorld) -> None:
    org.publish(WITH_LINES)
    done = _set(org, {"lines": [{"qty": 3}], "items": [{"qty": 4}]})
    # 3 × the amount 100: what the rep must not learn.
    assert (done["lines"][0]["share"], done["share_total"], done["band"]) == (
        "300.00", "300.00", "big"), done


# --- 1. sub-table columns over a hidden field of their record ----------------------------

def test_a_column_over_a_hidden_field_hides_its_sub_table_in_records_and_lists(org):
    _with_lines(org)
    rep = org.clients["rep_east"]
    for rec in (org.ok(rep.get(f"{records_url()}/{_e1(org)}")),
                org.ok(rep.get(records_url()))["items"][0],
                org.ok(rep.post(f"{records_url()}/query", json={}))["items"][0]):
        assert not {"amount", "lines", "share_total", "band"} & set(rec), rec
        assert SECRET not in json.dumps(rec)
        # The sub-table that reads nothing hidden, and its rollup, stay.
        assert rec["items"][0]["half"] == "2.00" and rec["item_total"] == "4.00"
    for fields in (["lines"], ["share_total"], ["band"]):
        res = rep.post(f"{records_url()}/query", json={"fields": fields})
        assert res.status_code == 403 and res.json()["details"]["field"] == fields[0]
    meta = org.ok(rep.get("/api/apps/crm/forms/contract"))
    keys = [f["key"] for f in meta["definition"]["fields"]]
    assert "items" in keys and not {"lines", "share_total", "band"} & set(keys)
    # The manager reads amounts (read-only): everything shows.
    seen = org.ok(org.clients["manager_east"].get(f"{records_url()}/{_e1(org)}"))
    assert (seen["lines"][0]["share"], seen["share_total"]) == ("300.00", "300.00")


def test_nor_in_exports_prints_and_history(org):
    _with_lines(org)
    rep = org.clients["rep_east"]
    exported = rep.get("/api/apps/crm/forms/contract/export", params={"format": "csv"})
    assert exported.status_code == 200, exported.text
    assert "E1" in exported.text and SECRET not in exported.text
    assert "share_total" not in exported.text and "band" not in exported.text
    org.ok(org.admin.put("/api/apps/crm/print-templates/sheet", json={"definition": {
        "label": {"en": "Sheet"}, "form": "contract",
        "body": "<p>{{ record.name }}|{% for l in record.lines %}{{ l.share }}{% endfor %}|"
                "{{ record.share_total }}|{{ record.band }}</p>"}}))
    printed = rep.get(f"{records_url()}/{_e1(org)}/print/sheet")
    assert printed.status_code == 200, printed.text
    assert "<p>E1|||</p>" in printed.text
    history = org.ok(rep.get(f"{records_url()}/{_e1(org)}/history"))["items"]
    assert history and SECRET not in json.dumps(history)
    assert not any({"lines", "share_total", "band"} & set(h["changes"]) for h in history)


def test_reports_cannot_read_such_a_column_nor_its_rollup(org):
    _with_lines(org)
    rep = org.clients["rep_east"]
    reports = {
        "by_line": {"form": "contract", "measures": [{"agg": "sum", "key": "s",
                                                      "field": "lines.share"}]},
        "over_lines": {"form": "contract", "rows": "lines", "measures": [
            {"agg": "sum", "key": "q", "field": "qty"}]},
        "by_total": {"form": "contract", "measures": [{"agg": "sum", "key": "s",
                                                       "field": "share_total"}]},
        "by_items": {"form": "contract", "measures": [{"agg": "sum", "key": "s",
                                                       "field": "items.half"}]}}
    for key, body in reports.items():
        org.ok(org.admin.put(f"/api/apps/crm/reports/{key}/draft", json={"definition": {
            "label": {"en": key}, **body, "chart": {"type": "table"}}}))
        org.ok(org.admin.post(f"/api/apps/crm/reports/{key}/publish", json={}))
    for key in ("by_line", "over_lines", "by_total"):
        res = rep.post(f"/api/apps/crm/reports/{key}/run", json={})
        assert res.status_code == 403, (key, res.text)
        assert SECRET not in res.text
    assert org.ok(rep.post("/api/apps/crm/reports/by_items/run", json={}))["rows"]
    assert [r["key"] for r in org.ok(rep.get("/api/apps/crm/reports"))] == ["by_items"]


def test_a_rep_cannot_write_the_sub_table_they_cannot_see(org):
    _with_lines(org)
    rep = org.clients["rep_east"]
    url = f"{records_url()}/{_e1(org)}"
    seen = org.ok(rep.get(url))
    res = rep.patch(url, json={"version": seen["version"], "values": {"lines": []}})
    assert res.status_code == 403 and res.json()["details"] == {"field": "lines"}
    res = rep.post(records_url(), json={"values": {"name": "N", "lines": [{"qty": 1}]}})
    assert res.status_code == 403 and res.json()["details"] == {"field": "lines"}
    # The rows are as they were; the sub-table the rep may see stays writable.
    org.ok(rep.patch(url, json={"version": seen["version"], "values": {"items": [{"qty": 6}]}}))
    shown = org.ok(org.admin.get(url))
    assert [r["qty"] for r in shown["lines"]] == [3] and shown["item_total"] == "6.00"


def test_chains_and_defaults_over_a_hidden_field_hide_their_sub_table(org):
    # A column over a formula of the record that reads the amount; a column
    # whose default reads it; a field of the record whose default reads it.
    org.publish({**CONTRACT, "fields": [
        *CONTRACT["fields"],
        fdef("double", "formula", result_type="decimal", expression="record.amount * 2"),
        fdef("costs", "sub_table", fields=[
            fdef("qty", "integer"),
            fdef("cost", "formula", result_type="decimal",
                 expression="coalesce(parent.double, 0) + row.qty")]),
        fdef("steps", "sub_table", fields=[
            fdef("qty", "integer"),
            fdef("price", "currency", default_expr="parent.amount / 10")]),
        fdef("fee", "currency", default_expr="record.amount / 10")]})
    made = org.ok(org.admin.post(records_url(), json={"values": {
        "name": "E2", "amount": "100.00", "costs": [{"qty": 1}], "steps": [{"qty": 1}]}}), 201)
    assert made["fee"] == "10.00", made
    org.ok(org.admin.post(f"{records_url()}/transfer", json={
        "record_ids": [made["id"]], "owner": org.user_ids["rep_east"]}))
    rep = org.clients["rep_east"]
    seen = org.ok(rep.get(f"{records_url()}/{made['id']}"))
    assert not {"amount", "double", "costs", "steps", "fee"} & set(seen), seen
    res = rep.patch(f"{records_url()}/{made['id']}", json={
        "version": seen["version"], "values": {"fee": "1.00"}})
    assert res.status_code == 403 and res.json()["details"] == {"field": "fee"}
    # A role that names the sub-table (or the field) itself decides for it.
    org.role("rep", {**REP, "contract": {**REP["contract"], "fields": {
        "amount": "hidden", "costs": "read_only", "fee": "editable"}}})
    seen = org.ok(rep.get(f"{records_url()}/{made['id']}"))
    assert (seen["costs"], seen["fee"]) == (made["costs"], "10.00")
    assert "steps" not in seen and "double" not in seen


def test_formulas_reading_the_whole_record_or_old_values_are_hidden_too(org):
    org.publish({**CONTRACT, "fields": [
        *CONTRACT["fields"],
        fdef("spelled", "formula", result_type="decimal",
             expression='record["amo" + "unt"] * 2'),
        fdef("before", "formula", result_type="decimal", expression="old.amount"),
        fdef("named", "formula", result_type="text", expression="concat(record.name, '!')")]})
    _set(org, {"name": "E1b"})
    assert org.ok(org.admin.get(f"{records_url()}/{_e1(org)}"))["spelled"] == "200.00"
    seen = org.ok(org.clients["rep_east"].get(f"{records_url()}/{_e1(org)}"))
    assert seen["named"] == "E1b!"
    assert not {"amount", "spelled", "before"} & set(seen), seen


# --- 2. the relation picker -------------------------------------------------------------

PICKER = "/api/apps/crm/forms/contract/fields/account/picker"


def _accounts_with_codes(org: OrgWorld) -> None:
    # Reps may not see an account's code; the form is searched by name and
    # code and sorted by code.
    org.publish({**ACCOUNT, "fields": [*ACCOUNT["fields"], fdef("code")],
                   "search_fields": ["name", "code"], "default_sort": ["code"]})
    org.role("rep", {**REP, "account": {**REP["account"], "fields": {"code": "hidden"}}})
    org.ok(org.clients["rep_east"].post(records_url("account"), json={
        "values": {"name": "acc-E2"}}), 201)
    accounts = org.ok(org.admin.get(records_url("account")))["items"]
    for acc, code in zip(sorted(accounts, key=lambda a: a["name"]), ("K-7731", "K-1000", "K-2"),
                         strict=True):
        org.ok(org.admin.patch(f"{records_url('account')}/{acc['id']}", json={
            "version": acc["version"], "values": {"code": code}}))


def test_the_picker_does_not_find_a_record_by_a_value_hidden_from_the_caller(org):
    _accounts_with_codes(org)
    rep = org.clients["rep_east"]
    assert org.ok(rep.get(PICKER, params={"search": "K-7731"}))["items"] == []
    assert org.ok(rep.get(PICKER, params={"search": "K-77"}))["items"] == []
    assert [i["title"] for i in org.ok(rep.get(PICKER, params={"search": "acc-E1"}))[
        "items"]] == ["acc-E1"]
    # Whoever may see the code still finds the account by it.
    org.role("rep", REP)
    assert [i["title"] for i in org.ok(rep.get(PICKER, params={"search": "K-7731"}))[
        "items"]] == ["acc-E1"]


def test_the_picker_does_not_page_by_a_value_hidden_from_the_caller(org):
    _accounts_with_codes(org)
    rep = org.clients["rep_east"]
    first = org.ok(rep.get(PICKER, params={"limit": 1}))
    cursor = first["next_cursor"]
    decoded = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    assert "K-" not in decoded and "code" not in decoded
    rest = org.ok(rep.get(PICKER, params={"limit": 1, "after": cursor}))
    assert {first["items"][0]["title"], rest["items"][0]["title"]} == {"acc-E1", "acc-E2"}
