"""Nothing of a field hidden from a user in what the API tells them about
forms, over HTTP on SQLite and PostgreSQL: the unknown-field message of a
path through a relation (records list, query, export) lists only the linked
form's fields they may see, while analysts checking a definition at publish
time still get every field; and form metadata leaves out what sub-tables,
``old.`` conditions and ``fill_from`` would say of a hidden field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.factories import field as fdef
from tests.integration.org_world import ACCOUNT, CONTRACT, ROLES, OrgWorld, build, records_url

# The account's credit limit is hidden from reps (on the account form, the far
# end of contract.account); they may export their contracts.
ACCOUNT_WITH_LIMIT = {**ACCOUNT, "fields": [*ACCOUNT["fields"], fdef("credit_limit", "currency"),
                                            fdef("opened", "date")]}
REP = {"account": {**ROLES["rep"]["account"], "fields": {"credit_limit": "hidden"}},
       "contract": {**ROLES["rep"]["contract"],
                    "actions": [*ROLES["rep"]["contract"]["actions"], "export"]}}


@pytest.fixture
def org(admin_client, app, make_user) -> OrgWorld:
    world = build(admin_client, app, make_user)
    _publish(world, ACCOUNT_WITH_LIMIT)
    _role(world, "rep", REP)
    return world


def _publish(org: OrgWorld, body: dict[str, Any], client: TestClient | None = None) -> Any:
    client = client or org.admin
    org.ok(client.put(f"/api/apps/crm/forms/{body['key']}/draft", json={"definition": body}))
    return client.post(f"/api/apps/crm/forms/{body['key']}/publish", json={})


def _role(org: OrgWorld, key: str, forms: dict[str, Any]) -> None:
    org.ok(org.admin.put(f"/api/apps/crm/roles/{key}", json={"definition": {
        "key": key, "label": {"en": key}, "forms": forms}}))


def _refusal(res: Any) -> str:
    assert res.status_code == 422, res.text
    assert res.json()["errors"][0]["code"] == "unknown_field", res.text
    return res.text


# --- 1. an unknown field at the far end of a relation path -------------------------------

BAD_PATHS = [{"sort": "account.credit_limt"},  # close to the hidden field's key
             {"filter": '{"field": "account.credit", "op": "eq", "value": "1"}'},
             {"filter": '{"field": "account.nope", "op": "eq", "value": "1"}'}]


def _body(params: dict[str, str]) -> dict[str, Any]:
    """The same query as a JSON body (POST /records/query, POST /export)."""
    return {"sort": [params["sort"]]} if "sort" in params else {
        "filter": json.loads(params["filter"])}


@pytest.mark.parametrize("params", BAD_PATHS)
def test_a_path_to_an_unknown_field_lists_only_the_linked_fields_the_caller_may_see(
        org, params):
    rep = org.clients["rep_east"]
    for res in (rep.get(records_url(), params=params),
                rep.post(f"{records_url()}/query", json=_body(params)),
                rep.get("/api/apps/crm/forms/contract/export", params=params),
                rep.post("/api/apps/crm/forms/contract/export", json=_body(params))):
        text = _refusal(res)
        assert "credit_limit" not in text
        assert "in form 'account'" in text and "industry, opened" in text
    # Someone who may see the field is still offered it.
    text = _refusal(org.admin.get(records_url(), params=params))
    assert "industry, credit_limit, opened" in text


def test_the_hidden_field_itself_is_still_refused_by_name(org):
    rep = org.clients["rep_east"]
    res = rep.get(records_url(), params={"sort": "account.credit_limit"})
    assert res.status_code == 403 and res.json()["details"] == {"field": "account.credit_limit"}
    assert org.ok(rep.get(records_url(), params={"sort": "account.opened"}))["items"]


def test_analysts_checking_a_definition_at_publish_time_still_see_every_field(org):
    # A builder of the app whose own role hides the credit limit: a view with
    # a wrong path is refused at publish with the whole list of the linked
    # form's fields — the definition is for every role, not for theirs.
    org.ok(org.admin.put(f"/api/apps/crm/builders/{org.user_ids['rep_east']}",
                         json={"granted": True}), 204)
    rep = org.clients["rep_east"]
    res = _publish(org, {**CONTRACT, "views": [{
        "key": "bad", "label": {"en": "bad"},
        "filter": {"field": "account.credit_limt", "op": "gt", "value": "1"}}]}, rep)
    assert res.status_code == 422, res.text
    assert "did you mean 'credit_limit'?" in res.text
    # As a user of the records, the same builder is not offered it.
    assert "credit_limit" not in _refusal(rep.get(records_url(), params=BAD_PATHS[0]))


# --- 2. form metadata: sub-tables, old. conditions, fill_from ----------------------------

SUB_TABLE = fdef("lines", "sub_table", fields=[
    fdef("qty", "integer", visible_when="parent.amount > 10",
         required_when="row.note != 'x'"),
    fdef("price", "currency", required_when="parent.amount > 0",
         default_expr="parent.amount / 10"),
    fdef("share", "formula", result_type="decimal", expression="parent.amount * row.qty"),
    fdef("twice", "formula", result_type="decimal", expression="row.share * 2"),
    fdef("half", "formula", result_type="decimal", expression="row.qty / 2"),
    fdef("note", "text", visible_when="row.share > 1"),
    fdef("account", "relation", target="account"),
    fdef("limit", "currency", fill_from="account.credit_limit"),
    fdef("industry", "text", fill_from="account.industry"),
], rules=[
    {"assert": "row.qty <= parent.amount", "message": {"en": "too many"}, "fields": ["qty"]},
    {"assert": "row.twice < 1000", "message": {"en": "too big"}, "fields": ["twice"]},
    {"assert": "row.qty > 0", "message": {"en": "positive"}, "fields": ["qty", "share"]},
    {"assert": "row.qty < 100", "when": "parent.amount > 5", "message": {"en": "cap"}},
])
LAID_OUT = {**CONTRACT, "fields": [
    *CONTRACT["fields"], SUB_TABLE,
    fdef("stage", "text"),
    fdef("limit", "currency", fill_from="account.credit_limit"),
    fdef("industry", "text", fill_from="account.industry")],
    "rules": [{"assert": "record.stage != 'x'", "when": "old.amount != record.amount",
               "message": {"en": "amount changed"}},
              {"assert": "record.stage != 'y'", "when": "old.stage != record.stage",
               "message": {"en": "stage changed"}, "fields": ["stage"]}]}


def _lines(definition: dict[str, Any]) -> dict[str, Any]:
    return next(f for f in definition["fields"] if f["key"] == "lines")


def test_sub_tables_say_nothing_of_a_hidden_field_of_their_record(org):
    org.ok(_publish(org, LAID_OUT))
    # A column computed from the hidden amount would hide the whole sub-table
    # (docs/permissions.md): the role names it, to keep it shown.
    _role(org, "rep", {**REP, "contract": {
        **REP["contract"], "fields": {**REP["contract"]["fields"], "lines": "editable"}}})
    rep = org.clients["rep_east"]
    meta = org.ok(rep.get("/api/apps/crm/forms/contract"))
    definition = meta["definition"]
    assert "amount" not in str(definition) and "credit_limit" not in str(definition)
    lines = _lines(definition)
    columns = {c["key"]: c for c in lines["fields"]}
    # The formula computed from the hidden amount is left out, and so is one over it.
    assert list(columns) == ["qty", "price", "half", "note", "account", "limit", "industry"]
    assert "visible_when" not in columns["qty"]
    assert columns["qty"]["required_when"] == "row.note != 'x'"
    assert "required_when" not in columns["price"] and "default_expr" not in columns["price"]
    assert "visible_when" not in columns["note"]  # it read the column left out
    assert columns["half"]["expression"] == "row.qty / 2"
    assert "fill_from" not in columns["limit"]
    assert columns["industry"]["fill_from"] == "account.industry"
    assert [(r["assert"], r["fields"]) for r in lines["rules"]] == [("row.qty > 0", ["qty"])]


def test_the_form_itself_says_nothing_of_old_values_or_fill_from_sources_it_hides(org):
    org.ok(_publish(org, LAID_OUT))
    definition = org.ok(org.clients["rep_east"].get("/api/apps/crm/forms/contract"))[
        "definition"]
    fields = {f["key"]: f for f in definition["fields"]}
    assert "fill_from" not in fields["limit"]
    assert fields["industry"]["fill_from"] == "account.industry"
    assert [r["message"]["en"] for r in definition["rules"]] == ["stage changed"]


def test_those_who_may_see_the_fields_get_the_whole_definition(org):
    org.ok(_publish(org, LAID_OUT))
    for client in (org.admin, org.clients["manager_east"]):  # the manager: amount read-only
        definition = org.ok(client.get("/api/apps/crm/forms/contract"))["definition"]
        lines = _lines(definition)
        assert len(lines["fields"]) == len(SUB_TABLE["fields"])
        assert len(lines["rules"]) == len(SUB_TABLE["rules"])
        assert len(definition["rules"]) == 2
    # The manager reads accounts without the credit limit hidden: fill_from stays.
    fields = {f["key"]: f for f in org.ok(org.admin.get(
        "/api/apps/crm/forms/contract"))["definition"]["fields"]}
    assert fields["limit"]["fill_from"] == "account.credit_limit"


def test_a_hidden_sub_table_is_left_out_with_its_columns(org):
    org.ok(_publish(org, LAID_OUT))
    _role(org, "rep", {**REP, "contract": {**REP["contract"],
                                           "fields": {"amount": "hidden", "lines": "hidden"}}})
    meta = org.ok(org.clients["rep_east"].get("/api/apps/crm/forms/contract"))
    assert "lines" not in meta["field_access"]
    text = json.dumps(meta["definition"])
    assert "lines" not in text and "qty" not in text and "amount" not in text
