"""Permissions through the HTTP API as real users, on SQLite and PostgreSQL:
field rules on write, relations, union of roles, department moves, sharing,
API tokens, disabled users, login lockout, CSRF, the audit log, app builders."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.platform.deps import SESSION_COOKIE
from tests.factories import field as fdef
from tests.integration.org_world import ROLES, OrgWorld, bearer, build, records_url


@pytest.fixture
def org(admin_client, app, make_user) -> OrgWorld:
    return build(admin_client, app, make_user)


def _e1(org):
    return org.contracts["E1"]["id"]


# --- field rules ------------------------------------------------------------------------

def test_a_hidden_field_in_a_write_is_refused_naming_the_field(org):
    rep = org.clients["rep_east"]
    res = rep.post(records_url(), json={"values": {"name": "X", "amount": "5.00"}})
    assert res.status_code == 403
    assert res.json()["details"] == {"field": "amount"} and "amount" in res.json()["message"]
    res = rep.patch(f"{records_url()}/{_e1(org)}", json={"version": 2,
                                                         "values": {"amount": "1.00"}})
    assert res.status_code == 403 and res.json()["details"]["field"] == "amount"


def test_a_read_only_field_is_shown_but_not_writable(org):
    manager = org.clients["manager_east"]
    rec = org.ok(manager.get(f"{records_url()}/{_e1(org)}"))
    assert rec["amount"] == "100.00"
    res = manager.patch(f"{records_url()}/{_e1(org)}", json={"version": rec["version"],
                                                             "values": {"amount": "1.00"}})
    assert res.status_code == 403 and res.json()["details"]["field"] == "amount"
    meta = org.ok(manager.get("/api/apps/crm/forms/contract"))
    assert meta["field_access"]["amount"] == "read_only"
    assert meta["actions"] == ["read", "update"]


def test_hidden_fields_are_gone_from_reads_history_metadata_and_filters(org):
    org.ok(org.admin.patch(f"{records_url()}/{_e1(org)}", json={
        "version": 2, "values": {"amount": "200.00", "name": "E1b"}}))
    rep = org.clients["rep_east"]
    assert "amount" not in org.ok(rep.get(f"{records_url()}/{_e1(org)}"))
    history = org.ok(rep.get(f"{records_url()}/{_e1(org)}/history"))["items"]
    assert history[0]["changes"] == {"name": {"old": "E1", "new": "E1b"}}
    meta = org.ok(rep.get("/api/apps/crm/forms/contract"))
    assert "amount" not in [f["key"] for f in meta["definition"]["fields"]]
    res = rep.post(f"{records_url()}/query", json={
        "filter": {"field": "amount", "op": "gt", "value": "1"}})
    assert res.status_code == 403 and res.json()["details"]["field"] == "amount"
    assert rep.get(records_url(), params={"sort": "-amount"}).status_code == 403


def _publish(org: OrgWorld, body: dict) -> None:
    org.ok(org.admin.put(f"/api/apps/crm/forms/{body['key']}/draft", json={"definition": body}))
    org.ok(org.admin.post(f"/api/apps/crm/forms/{body['key']}/publish", json={}))


def test_computed_fields_over_a_hidden_field_are_hidden_too(org):
    # Reps may not see contract amounts: neither a sum of them on the account,
    # nor a formula over that sum (its band gives the amount away), nor one
    # over the amount itself; a count of contracts reads no amount and stays.
    from tests.integration.org_world import ACCOUNT, CONTRACT

    _publish(org, {**CONTRACT, "fields": [*CONTRACT["fields"], fdef(
        "double", "formula", result_type="decimal", expression="record.amount * 2")]})
    _publish(org, {**ACCOUNT, "fields": [
        *ACCOUNT["fields"],
        fdef("total", "rollup", source={"form": "contract", "via": "account"},
             aggregate="sum", field="amount"),
        fdef("contracts", "rollup", source={"form": "contract", "via": "account"}),
        # A count reads no amount, but its filter does.
        fdef("large", "rollup", source={"form": "contract", "via": "account"},
             filter={"field": "amount", "op": "gte", "value": "50"}),
        fdef("band", "formula", result_type="text",
             expression='iif(coalesce(record.total, 0) >= 100, "big", "small")'),
        fdef("label2", "formula", result_type="text", expression='concat("band ", record.band)')]})
    acc = org.accounts["E1"]["id"]
    rep, manager = org.clients["rep_east"], org.clients["manager_east"]
    seen = org.ok(rep.get(f"{records_url('account')}/{acc}"))
    assert seen["contracts"] == 1
    assert not {"total", "band", "label2", "large"} & set(seen)
    assert "double" not in org.ok(rep.get(f"{records_url()}/{_e1(org)}"))
    meta = org.ok(rep.get("/api/apps/crm/forms/account"))
    shown_fields = [f["key"] for f in meta["definition"]["fields"]]
    assert "contracts" in shown_fields and not {"total", "band", "label2"} & set(shown_fields)
    assert "band" not in meta["field_access"]
    res = rep.post(f"{records_url('account')}/query", json={
        "filter": {"field": "band", "op": "eq", "value": "big"}})
    assert res.status_code == 403 and res.json()["details"]["field"] == "band"
    # The manager may read amounts (read-only): everything shows.
    shown = org.ok(manager.get(f"{records_url('account')}/{acc}"))
    assert (shown["total"], shown["band"], shown["label2"]) == ("100.00", "big", "band big")
    # A role that names the computed field decides for it: the band, on purpose.
    forms = {**ROLES["rep"], "account": {**ROLES["rep"]["account"],
                                         "fields": {"band": "read_only"}}}
    org.ok(org.admin.put("/api/apps/crm/roles/rep", json={"definition": {
        "key": "rep", "label": {"en": "rep"}, "forms": forms}}))
    seen = org.ok(rep.get(f"{records_url('account')}/{acc}"))
    assert (seen["band"], seen["label2"]) == ("big", "band big") and "total" not in seen


def test_a_child_row_moves_its_parents_rollup_without_the_right_to_update_the_parent(org):
    # Rollups are kept by the platform: a clerk who may add contracts but only
    # read accounts adds one, and the account's total follows; editing the
    # account itself stays refused.
    from tests.integration.org_world import ACCOUNT

    _publish(org, {**ACCOUNT, "fields": [*ACCOUNT["fields"], fdef(
        "total", "rollup", source={"form": "contract", "via": "account"},
        aggregate="sum", field="amount")]})
    org.ok(org.admin.put("/api/apps/crm/roles/clerk", json={"definition": {
        "key": "clerk", "label": {"en": "clerk"}, "forms": {
            "account": {"actions": ["read"], "scope": "all"},
            "contract": {"actions": ["read", "create"], "scope": "own"}}}}))
    uid = org.user_ids["rep_west"]
    org.ok(org.admin.post("/api/apps/crm/role-assignments", json={"role": "clerk",
                                                                  "user_id": uid}), 201)
    clerk, acc = org.clients["rep_west"], org.accounts["E1"]["id"]
    org.ok(clerk.post(records_url(), json={"values": {"name": "C1", "amount": "40.00",
                                                      "account": acc}}), 201)
    assert org.ok(org.admin.get(f"{records_url('account')}/{acc}"))["total"] == "140.00"
    seen = org.ok(clerk.get(f"{records_url('account')}/{acc}"))
    res = clerk.patch(f"{records_url('account')}/{acc}", json={
        "version": seen["version"], "values": {"industry": "x"}})
    assert res.status_code == 403


# --- relations ------------------------------------------------------------------------------

def test_a_record_out_of_scope_cannot_be_linked_or_seen_through_a_relation(org):
    rep = org.clients["rep_east"]
    foreign = org.accounts["W1"]["id"]
    res = rep.post(records_url(), json={"values": {"name": "X", "account": foreign}})
    assert res.status_code == 422
    assert [(e["field"], e["code"]) for e in res.json()["errors"]] == [
        ("account", "relation_missing")]
    own = org.accounts["E1"]["id"]
    assert org.ok(rep.post(records_url(), json={"values": {"name": "Y", "account": own}}),
                  201)["account"] == own
    # Filtering through the relation stays inside the rep's own scope.
    by_owner = org.ok(rep.post(f"{records_url()}/query", json={"filter": {
        "field": "account.industry", "op": "eq", "value": "ICT"}}))["items"]
    assert {r["name"] for r in by_owner} == {"E1", "Y"}


def _with_referrer(org: OrgWorld) -> None:
    """contract.referrer: a relation to account that may link outside the scope."""
    from tests.integration.org_world import CONTRACT

    body = {**CONTRACT, "fields": [*CONTRACT["fields"], fdef(
        "referrer", "relation", target="account", link_outside_scope=True)]}
    org.ok(org.admin.put("/api/apps/crm/forms/contract/draft", json={"definition": body}))
    org.ok(org.admin.post("/api/apps/crm/forms/contract/publish", json={}))


def test_a_field_may_allow_links_outside_the_scope_and_only_that_field(org):
    _with_referrer(org)
    rep = org.clients["rep_east"]
    own, foreign = org.accounts["E1"]["id"], org.accounts["W1"]["id"]
    res = rep.post(records_url(), json={"values": {
        "name": "X", "account": foreign, "referrer": foreign}})
    assert res.status_code == 422
    assert [(e["field"], e["code"]) for e in res.json()["errors"]] == [
        ("account", "relation_missing")]
    made = org.ok(rep.post(records_url(), json={"values": {
        "name": "X", "account": own, "referrer": foreign}}), 201)
    assert made["referrer"] == foreign
    res = rep.patch(f"{records_url()}/{made['id']}", json={
        "version": made["version"], "values": {"account": foreign}})
    assert res.status_code == 422 and res.json()["errors"][0]["field"] == "account"
    changed = org.ok(rep.patch(f"{records_url()}/{made['id']}", json={
        "version": made["version"], "values": {"referrer": own}}))
    assert changed["referrer"] == own
    # Outside the scope, but still a live record of the target form.
    gone = org.ok(org.admin.post(records_url("account"), json={"values": {"name": "gone"}}),
                  201)["id"]
    org.ok(org.admin.delete(f"{records_url('account')}/{gone}"), 204)
    res = rep.post(records_url(), json={"values": {"name": "Z", "referrer": gone}})
    assert [(e["field"], e["code"]) for e in res.json()["errors"]] == [
        ("referrer", "relation_missing")]


def test_the_relation_picker_offers_what_a_save_accepts(org):
    _with_referrer(org)
    picker = "/api/apps/crm/forms/contract/fields/{}/picker"
    rep = org.clients["rep_east"]
    scoped = org.ok(rep.get(picker.format("account")))
    assert [i["title"] for i in scoped["items"]] == ["acc-E1"]
    assert scoped["target"] == "account" and scoped["link_outside_scope"] is False
    assert set(scoped["items"][0]) == {"id", "title"}
    wide = org.ok(rep.get(picker.format("referrer")))
    assert sorted(i["title"] for i in wide["items"]) == ["acc-E1", "acc-W1"]
    assert org.ok(rep.get(picker.format("account"), params={"search": "W1"}))["items"] == []
    assert [i["title"] for i in org.ok(rep.get(picker.format("referrer"), params={
        "search": "W1"}))["items"]] == ["acc-W1"]
    first = org.ok(rep.get(picker.format("referrer"), params={"limit": 1}))
    rest = org.ok(rep.get(picker.format("referrer"), params={
        "limit": 1, "after": first["next_cursor"]}))
    assert {first["items"][0]["title"], rest["items"][0]["title"]} == {"acc-E1", "acc-W1"}
    # The manager may update contracts: the picker follows the manager's scope.
    assert [i["title"] for i in org.ok(org.clients["manager_east"].get(
        picker.format("account")))["items"]] == ["acc-E1"]
    assert rep.get(picker.format("name")).status_code == 404
    # A role that may only read contracts has nothing to link.
    org.ok(org.admin.put("/api/apps/crm/roles/reader", json={"definition": {
        "key": "reader", "label": {"en": "Reader"}, "forms": {
            "contract": {"actions": ["read"], "scope": "all"}}}}))
    org.ok(org.admin.post("/api/apps/crm/role-assignments", json={
        "role": "reader", "department_id": org.departments["Sales"]}), 201)
    org.ok(org.admin.delete(f"/api/apps/crm/role-assignments/{_assignment_id(org, 'manager')}"),
           204)
    res = org.clients["manager_east"].get(picker.format("account"))
    assert res.status_code == 403 and res.json()["details"] == {"field": "account"}
    schema = org.ok(org.admin.get("/api/meta/schemas/form"))
    assert "link_outside_scope" in str(schema)


def _assignment_id(org: OrgWorld, role: str) -> str:
    listed = org.ok(org.admin.get("/api/apps/crm/role-assignments"))
    return next(a["id"] for a in listed if a["role"] == role)


# --- union of roles and department moves ---------------------------------------------------

def test_roles_combine_as_a_union_of_rows_and_fields(org):
    org.ok(org.admin.put("/api/apps/crm/roles/auditor", json={"definition": {
        "key": "auditor", "label": {"en": "Auditor"}, "forms": {"contract": {
            "actions": ["read"], "scope": "expression",
            "filter": {"field": "name", "op": "in", "value": ["M1"]},
            "fields": {"amount": "read_only"}}}}}))
    assert org.names("rep_west") == {"W1"}
    # Given to the West department: its member rep_west gets it too.
    org.ok(org.admin.post("/api/apps/crm/role-assignments", json={
        "role": "auditor", "department_id": org.departments["West"]}), 201)
    assert org.names("rep_west") == {"W1", "M1"}
    items = org.ok(org.clients["rep_west"].get(records_url()))["items"]
    assert all(item["amount"] == "100.00" for item in items)  # read_only beats hidden
    res = org.clients["rep_west"].patch(f"{records_url()}/{items[0]['id']}", json={
        "version": items[0]["version"], "values": {"amount": "1.00"}})
    assert res.status_code == 403


def test_a_role_may_give_each_action_its_own_scope(org):
    # A clerk reads every contract but edits and deletes only the team's and
    # exports only their own: one role, three grants on one form.
    org.ok(org.admin.put("/api/apps/crm/roles/manager", json={"definition": {
        "key": "manager", "label": {"en": "Manager"}, "forms": {
            "account": {"actions": ["read"], "scope": "department_tree"},
            "contract": [
                {"actions": ["read"], "scope": "all", "fields": {"amount": "hidden"}},
                {"actions": ["read", "update", "delete"], "scope": "department_tree",
                 "fields": {"amount": "read_only"}},
                {"actions": ["export"], "scope": "own"}]}}}))
    manager = org.clients["manager_east"]
    assert org.names("manager_east") == {"E1", "W1", "M1"}
    w1 = org.contracts["W1"]
    res = manager.patch(f"{records_url()}/{w1['id']}", json={
        "version": w1["version"], "values": {"name": "W1 renamed"}})
    assert res.status_code == 403 and "not update" in res.json()["message"]
    assert manager.delete(f"{records_url()}/{w1['id']}").status_code == 403
    e1 = org.ok(manager.get(f"{records_url()}/{org.contracts['E1']['id']}"))
    res = manager.patch(f"{records_url()}/{e1['id']}", json={
        "version": e1["version"], "values": {"name": "E1 renamed"}})
    assert res.status_code == 200, res.text
    # Fields: the most open level among the grants (read_only beats hidden).
    items = org.ok(manager.get(records_url()))["items"]
    assert {i["amount"] for i in items} == {"100.00"}
    exported = manager.get("/api/apps/crm/forms/contract/export", params={"format": "csv"})
    assert exported.status_code == 200, exported.text
    assert "M1" in exported.text and "E1" not in exported.text
    # The metadata names every action some grant allows.
    meta = org.ok(manager.get("/api/apps/crm/forms/contract"))
    assert {"read", "update", "delete", "export"} <= set(meta["actions"])


def test_a_role_with_grant_lists_is_checked_grant_by_grant(org):
    def refused(forms: dict) -> set[str]:
        res = org.admin.put("/api/apps/crm/roles/bad", json={"definition": {
            "key": "bad", "label": {"en": "bad"}, "forms": forms}})
        assert res.status_code == 422, res.text
        return {e["path"] for e in res.json()["errors"]}

    forms = {"contract": [{"actions": ["read"], "scope": "all"},
                          {"actions": ["delete"], "scope": "expression",
                           "filter": {"field": "amout", "op": "eq", "value": 1},
                           "fields": {"secret": "hidden"}}],
             "invoice": [{"actions": ["read"]}, {"actions": ["update"]}]}
    assert refused({**forms, "account": []}) == {"$.forms.account"}  # the shape first
    # Then every grant against the app: an unknown form is named once.
    assert refused(forms) == {"$.forms.contract[1].fields.secret",
                              "$.forms.contract[1].filter.field", "$.forms.invoice"}
    assert refused({"contract": [{"actions": ["read"]}, {"actions": ["fly"]}]}) == {
        "$.forms.contract[1].actions[0]"}


def test_department_moves_change_what_a_manager_sees_at_once(org):
    assert org.names("manager_east") == {"E1", "M1"}
    org.move("rep_west", "East")
    assert org.names("manager_east") == {"E1", "M1", "W1"}
    org.move("rep_east", "West")
    assert org.names("manager_east") == {"M1", "W1"}
    assert org.names("director") == {"E1", "M1", "W1"}


def _auditor_role(org: OrgWorld) -> None:
    org.ok(org.admin.put("/api/apps/crm/roles/auditor", json={"definition": {
        "key": "auditor", "label": {"en": "Auditor"}, "forms": {"contract": {
            "actions": ["read"], "scope": "all"}}}}))


def _role_holders(org: OrgWorld, role: str) -> set[str]:
    from tangram.platform.permissions import grants

    with org.app.state.sessions() as s:
        return {str(u) for u in grants.role_holders(s, app="crm", role=role)}


def test_a_department_role_reaches_its_sub_departments_until_the_user_moves_out(org):
    _auditor_role(org)
    org.departments["East-1"] = org.ok(org.admin.post("/api/org/departments", json={
        "name": "East-1", "parent_id": org.departments["East"]}), 201)["id"]
    org.move("rep_west", "East-1")
    assert org.names("rep_west") == {"W1"}
    given = org.ok(org.admin.post("/api/apps/crm/role-assignments", json={
        "role": "auditor", "department_id": org.departments["Sales"]}), 201)
    assert given["include_sub_departments"] is True
    # Sales > East > East-1: two levels below the department the role is given to.
    assert org.names("rep_west") == {"E1", "W1", "M1"}
    assert org.user_ids["rep_west"] in _role_holders(org, "auditor")
    org.move("rep_west", "West")
    assert org.names("rep_west") == {"E1", "W1", "M1"}  # West is below Sales too
    # Moved out of the tree: the role is gone with the next request.
    org.departments["Other"] = org.ok(org.admin.post("/api/org/departments", json={
        "name": "Other"}), 201)["id"]
    org.move("rep_west", "Other")
    assert org.names("rep_west") == {"W1"}
    assert org.user_ids["rep_west"] not in _role_holders(org, "auditor")


def test_a_department_role_can_be_limited_to_its_direct_members(org):
    _auditor_role(org)
    body = {"role": "auditor", "department_id": org.departments["Sales"],
            "include_sub_departments": False}
    given = org.ok(org.admin.post("/api/apps/crm/role-assignments", json=body), 201)
    assert given["include_sub_departments"] is False
    assert org.names("rep_west") == {"W1"}  # West is below Sales: not reached
    assert org.names("director") == {"E1", "W1", "M1"}
    assert _role_holders(org, "auditor") == {org.user_ids["director"]}
    listed = org.ok(org.admin.get("/api/apps/crm/role-assignments"))
    assert [a["include_sub_departments"] for a in listed if a["role"] == "auditor"] == [False]
    # Assigning again with the option switched changes the assignment (audited).
    again = org.ok(org.admin.post("/api/apps/crm/role-assignments", json={
        **body, "include_sub_departments": True}), 201)
    assert again["id"] == given["id"] and again["include_sub_departments"] is True
    assert org.names("rep_west") == {"E1", "W1", "M1"}
    audit = org.ok(org.admin.get("/api/org/audit", params={"action": "role.assign"}))["items"]
    assert audit[0]["details"]["include_sub_departments"] is True


def test_a_share_widens_the_scope_for_read_or_edit(org):
    west = org.clients["rep_west"]
    assert west.get(f"{records_url()}/{_e1(org)}").status_code == 404
    share = org.ok(org.clients["rep_east"].post(f"{records_url()}/{_e1(org)}/shares", json={
        "user_id": org.user_ids["rep_west"], "access": "read"}), 201)
    assert org.names("rep_west") == {"W1", "E1"}
    rec = org.ok(west.get(f"{records_url()}/{_e1(org)}"))
    assert west.patch(f"{records_url()}/{_e1(org)}", json={
        "version": rec["version"], "values": {"name": "E1!"}}).status_code == 403
    org.ok(org.clients["rep_east"].post(f"{records_url()}/{_e1(org)}/shares", json={
        "user_id": org.user_ids["rep_west"], "access": "edit"}), 201)
    org.ok(west.patch(f"{records_url()}/{_e1(org)}", json={
        "version": rec["version"], "values": {"name": "E1!"}}))
    org.ok(org.clients["rep_east"].delete(
        f"{records_url()}/{_e1(org)}/shares/{share['id']}"), 204)
    assert west.get(f"{records_url()}/{_e1(org)}").status_code == 404


def test_ownership_transfer_is_audited_and_moves_the_record(org):
    ids = [org.contracts["E1"]["id"], org.contracts["M1"]["id"]]
    org.ok(org.admin.post(f"{records_url()}/transfer", json={
        "record_ids": ids, "owner": org.user_ids["rep_west"]}))
    assert org.names("rep_west") == {"W1", "E1", "M1"}
    assert org.names("rep_east") == set()
    history = org.ok(org.admin.get(f"{records_url()}/{ids[0]}/history"))["items"]
    assert history[0]["action"] == "transfer"
    assert history[0]["changes"]["owner"]["new"] == org.user_ids["rep_west"]
    audit = org.ok(org.admin.get("/api/org/audit", params={"action": "record.transfer"}))
    assert sorted(audit["items"][0]["details"]["records"]) == sorted(ids)


def test_a_transfer_from_a_stale_copy_is_refused(org):
    w1 = org.ok(org.admin.get(f"{records_url()}/{org.contracts['W1']['id']}"))
    url = f"{records_url()}/{w1['id']}/transfer"
    moved = org.ok(org.admin.post(url, json={"owner": org.user_ids["rep_east"],
                                             "version": w1["version"]}))
    assert moved["version"] == w1["version"] + 1
    # Someone else, with the copy read before that transfer: 409, nothing moves.
    res = org.admin.post(url, json={"owner": org.user_ids["manager_east"],
                                    "version": w1["version"]})
    assert res.status_code == 409, res.text
    assert res.json()["details"]["current_version"] == moved["version"]
    assert org.names("rep_east") == {"E1", "W1"}


# --- tokens and disabled users -------------------------------------------------------------

def test_api_tokens_are_scoped_shown_once_and_revocable(org):
    rep = org.clients["rep_east"]
    made = org.ok(rep.post("/api/tokens", json={"name": "ERP", "apps": ["crm"],
                                                "actions": ["read"]}), 201)
    token = made["token"]
    assert token.startswith("tgm_")
    listed = org.ok(rep.get("/api/tokens"))
    assert [t["name"] for t in listed] == ["ERP"] and "token" not in listed[0]
    assert listed[0]["last_used_at"] is None
    with TestClient(org.app, headers=bearer(token)) as erp:
        assert {r["name"] for r in org.ok(erp.get(records_url()))["items"]} == {"E1"}
        res = erp.post(records_url(), json={"values": {"name": "Z"}})
        assert res.status_code == 403 and "API token" in res.json()["message"]
        assert erp.get("/api/tokens").status_code == 403  # tokens cannot make tokens
        assert org.ok(rep.get("/api/tokens"))[0]["last_used_at"] is not None
        org.ok(rep.delete(f"/api/tokens/{made['id']}"), 204)
        assert erp.get(records_url()).status_code == 401
    audit = org.ok(org.admin.get("/api/org/audit"))["items"]
    assert {"token.create", "token.revoke"} <= {e["action"] for e in audit}


def test_a_disabled_user_is_locked_out_at_once(org):
    rep = org.clients["rep_east"]
    token = org.ok(rep.post("/api/tokens", json={"name": "t", "apps": ["*"],
                                                 "actions": ["read"]}), 201)["token"]
    org.ok(org.admin.post(f"/api/org/users/{org.user_ids['rep_east']}/disable"), 204)
    assert rep.get(records_url()).status_code == 401
    with TestClient(org.app, headers=bearer(token)) as erp:
        res = erp.get(records_url())
        assert res.status_code == 401 and res.json()["code"] == "account_disabled"
    org.ok(org.admin.post(f"/api/org/users/{org.user_ids['rep_east']}/enable"), 204)
    assert rep.get(records_url()).status_code == 200


def test_members_cannot_manage_roles_and_builders_edit_only_their_apps(org):
    rep = org.clients["rep_east"]
    assert rep.post("/api/apps/crm/role-assignments", json={
        "role": "director", "user_id": org.user_ids["rep_east"]}).status_code == 403
    assert rep.get("/api/org/departments").status_code == 403
    body = {"definition": {"key": "note", "label": {"en": "Note"},
                           "fields": [{"key": "text", "type": "text", "label": {"en": "t"}}]}}
    assert rep.put("/api/apps/crm/forms/note/draft", json=body).status_code == 403
    org.ok(org.admin.put(f"/api/apps/crm/builders/{org.user_ids['rep_east']}",
                         json={"granted": True}), 204)
    org.ok(rep.put("/api/apps/crm/forms/note/draft", json=body))
    org.ok(org.admin.post("/api/apps", json={"key": "hr", "name": {"en": "HR"}}), 201)
    assert rep.put("/api/apps/hr/forms/note/draft", json=body).status_code == 403
    actions = {e["action"] for e in org.ok(org.admin.get("/api/org/audit"))["items"]}
    assert {"role.publish", "role.assign", "app_builder.grant",
            "user.departments"} <= actions


def test_a_role_naming_an_unknown_field_is_refused(org):
    res = org.admin.put("/api/apps/crm/roles/bad", json={"definition": {
        "key": "bad", "label": {"en": "bad"}, "forms": {"contract": {
            "actions": ["read"], "scope": "expression",
            "filter": {"field": "amout", "op": "eq", "value": {"$user": "nope"}},
            "fields": {"secret": "hidden"}}}}})
    assert res.status_code == 422
    assert {e["path"] for e in res.json()["errors"]} == {
        "$.forms.contract.fields.secret", "$.forms.contract.filter"}


# --- sign-in security ----------------------------------------------------------------------

def test_login_locks_after_repeated_failures(app_factory, make_user, user_password):
    clock = FrozenClock()
    app = app_factory(clock=clock, login_max_failures=3, login_lockout_minutes=10)
    make_user("li.lei", app=app)
    with TestClient(app) as client:
        def login(password):
            return client.post("/api/auth/login", json={"username": "li.lei",
                                                        "password": password})
        assert [login("wrong-pass").status_code for _ in range(3)] == [401, 401, 401]
        locked = login(user_password)
        assert locked.status_code == 429 and locked.json()["code"] == "rate_limited"
        assert locked.headers["retry-after"] == "600"
        clock.advance(minutes=11)
        assert login(user_password).status_code == 200


def test_cookie_writes_need_the_csrf_header_and_the_same_origin(org, app, user_password):
    with TestClient(app) as browser:
        org.ok(browser.post("/api/auth/login", json={"username": "rep_east",
                                                     "password": user_password}))
        assert browser.cookies.get(SESSION_COOKIE)
        assert browser.get(records_url()).status_code == 200  # safe method: no check
        res = browser.post(records_url(), json={"values": {"name": "C"}})
        assert res.status_code == 403 and res.json()["code"] == "csrf_failed"
        forged = browser.post(records_url(), json={"values": {"name": "C"}}, headers={
            "X-Requested-With": "fetch", "Origin": "https://evil.example"})
        assert forged.status_code == 403 and "evil.example" in forged.json()["message"]
        ok = browser.post(records_url(), json={"values": {"name": "C"}}, headers={
            "X-Requested-With": "fetch", "Origin": "http://testserver"})
        assert ok.status_code == 201


def test_the_password_policy_is_enforced(admin_client, make_user):
    with pytest.raises(Exception) as info:
        make_user("weak", password="password")
    assert "most common" in str(info.value)
    with pytest.raises(Exception) as info:
        make_user("digits", password="12345678987")
    assert "mix at least two" in str(info.value)


def test_no_picker_for_a_relation_nobody_sets_by_hand(org):
    # A read-only relation that may link outside the scope (filled by the
    # platform) would list every account to anyone who asked its picker.
    from tests.integration.org_world import CONTRACT

    body = {**CONTRACT, "fields": [*CONTRACT["fields"], fdef(
        "filled", "relation", target="account", link_outside_scope=True, read_only=True)]}
    org.ok(org.admin.put("/api/apps/crm/forms/contract/draft", json={"definition": body}))
    org.ok(org.admin.post("/api/apps/crm/forms/contract/publish", json={}))
    res = org.clients["rep_east"].get("/api/apps/crm/forms/contract/fields/filled/picker")
    assert res.status_code == 403 and res.json()["details"] == {"field": "filled"}
    assert "read-only" in res.json()["message"]


def test_a_linked_records_title_hidden_by_the_readers_roles_is_not_shown_beside_the_link(org):
    # The manager may not see accounts' names: a contract list, its export and
    # its print show the link without the account's title (the id only).
    org.ok(org.admin.put("/api/apps/crm/roles/manager", json={"definition": {
        "key": "manager", "label": {"en": "Manager"}, "forms": {
            "account": {"actions": ["read"], "scope": "department_tree",
                        "fields": {"name": "hidden"}},
            "contract": {"actions": ["read", "export"], "scope": "department_tree"}}}}))
    e1 = org.contracts["E1"]["id"]
    account_id = org.accounts["E1"]["id"]
    director = org.ok(org.clients["director"].get(f"{records_url()}/{e1}"))
    assert director["_display"]["account"] == "acc-E1"
    manager = org.clients["manager_east"]
    seen = org.ok(manager.get(f"{records_url()}/{e1}"))
    assert seen["account"] == account_id and seen["_display"].get("account") is None
    listed = {i["id"]: i for i in org.ok(manager.get(records_url()))["items"]}
    assert listed[e1]["_display"].get("account") is None
    exported = manager.get("/api/apps/crm/forms/contract/export", params={"format": "csv"})
    assert exported.status_code == 200, exported.text
    assert "acc-E1" not in exported.text and account_id in exported.text
