"""The permission matrix, generated from the app's route table: every data
route (under /api/apps/{app}/forms/{form}/records) must have an entry here,
so a new data route without a permission test fails the suite. Each entry
says, for users of different roles and departments, the status they get —
or, for lists, exactly which rows they see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tangram.platform.app import create_app
from tangram.settings import Settings
from tests.integration.org_world import OrgWorld, build, records_url

DATA_PREFIX = "/api/apps/{app}/forms/{form}/records"
ORDER = ["rep_east", "rep_west", "manager_east", "director"]
LIST = {"rep_east": {"E1"}, "rep_west": {"W1"}, "manager_east": {"E1", "M1"},
        "director": {"E1", "W1", "M1"}}
OWNER_SIDE = {"rep_east": 200, "rep_west": 404, "manager_east": 200, "director": 200}

Call = Callable[[OrgWorld, str], Any]


def _e1(w: OrgWorld) -> str:
    return w.contracts["E1"]["id"]


def _version(w: OrgWorld) -> int:
    return w.ok(w.admin.get(f"{records_url()}/{_e1(w)}"))["version"]


def _share(w: OrgWorld) -> str:
    return w.ok(w.admin.post(f"{records_url()}/{_e1(w)}/shares", json={
        "user_id": w.user_ids["rep_west"], "access": "read"}), 201)["id"]


def _deleted(w: OrgWorld) -> None:
    w.admin.delete(f"{records_url()}/{_e1(w)}")


def _printed(w: OrgWorld, user: str) -> Any:
    w.ok(w.admin.put("/api/apps/crm/print-templates/sheet", json={"definition": {
        "label": {"en": "Sheet"}, "form": "contract", "body": "<p>{{ record.name }}</p>"}}))
    return w.clients[user].get(f"{records_url()}/{_e1(w)}/print/sheet")


MATRIX: dict[tuple[str, str], tuple[Call, dict[str, Any]]] = {
    ("GET", ""): (lambda w, u: w.clients[u].get(records_url()), LIST),
    ("POST", "/query"): (lambda w, u: w.clients[u].post(f"{records_url()}/query", json={}),
                         LIST),
    ("POST", ""): (lambda w, u: w.clients[u].post(records_url(), json={
        "values": {"name": f"new-{u}"}}),
        {"rep_east": 201, "rep_west": 201, "manager_east": 403, "director": 201}),
    ("POST", "/bulk"): (lambda w, u: w.clients[u].post(f"{records_url()}/bulk", json={
        "rows": [{"name": f"bulk-{u}"}]}),
        {"rep_east": 201, "rep_west": 201, "manager_east": 403, "director": 201}),
    ("PATCH", "/bulk"): (lambda w, u: w.clients[u].patch(f"{records_url()}/bulk", json={
        "rows": [{"id": _e1(w), "version": _version(w), "values": {"name": "E1"}}]}),
        {**OWNER_SIDE, "rep_west": 422}),
    ("GET", "/{record_id}"): (lambda w, u: w.clients[u].get(f"{records_url()}/{_e1(w)}"),
                              OWNER_SIDE),
    ("PATCH", "/{record_id}"): (lambda w, u: w.clients[u].patch(
        f"{records_url()}/{_e1(w)}", json={"version": _version(w), "values": {"name": "E1"}}),
        OWNER_SIDE),
    ("DELETE", "/{record_id}"): (lambda w, u: w.clients[u].delete(f"{records_url()}/{_e1(w)}"),
                                 {"rep_east": 403, "rep_west": 403, "manager_east": 403,
                                  "director": 204}),
    ("POST", "/{record_id}/restore"): (
        lambda w, u: (_deleted(w), w.clients[u].post(f"{records_url()}/{_e1(w)}/restore"))[1],
        {"rep_east": 403, "rep_west": 403, "manager_east": 403, "director": 200}),
    # only the director's role has the print action
    ("GET", "/{record_id}/print/{template}"): (
        _printed, {"rep_east": 403, "rep_west": 403, "manager_east": 403, "director": 200}),
    ("GET", "/{record_id}/history"): (
        lambda w, u: w.clients[u].get(f"{records_url()}/{_e1(w)}/history"), OWNER_SIDE),
    # the record's flow panel: whoever may read the record
    ("GET", "/{record_id}/flows"): (
        lambda w, u: w.clients[u].get(f"{records_url()}/{_e1(w)}/flows"), OWNER_SIDE),
    ("POST", "/transfer"): (lambda w, u: w.clients[u].post(f"{records_url()}/transfer", json={
        "record_ids": [_e1(w)], "owner": w.user_ids["rep_east"]}), OWNER_SIDE),
    ("POST", "/{record_id}/transfer"): (lambda w, u: w.clients[u].post(
        f"{records_url()}/{_e1(w)}/transfer", json={"owner": w.user_ids["rep_east"]}),
        OWNER_SIDE),
    ("GET", "/{record_id}/shares"): (
        lambda w, u: w.clients[u].get(f"{records_url()}/{_e1(w)}/shares"), OWNER_SIDE),
    ("POST", "/{record_id}/shares"): (lambda w, u: w.clients[u].post(
        f"{records_url()}/{_e1(w)}/shares", json={"department_id": w.departments["West"],
                                                  "access": "read"}),
        # rep_east shared it with West first: rep_west now sees it but may not share it
        {"rep_east": 201, "rep_west": 403, "manager_east": 201, "director": 201}),
    ("DELETE", "/{record_id}/shares/{share_id}"): (lambda w, u: w.clients[u].delete(
        f"{records_url()}/{_e1(w)}/shares/{_share(w)}"),
        # the share (made for rep_west) lets rep_west read the record, not change it
        {"rep_east": 204, "rep_west": 403, "manager_east": 204, "director": 204}),
}


def data_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(database_url="sqlite://", environment="test"))
    try:
        # The OpenAPI document lists every route the app serves (routers included).
        paths = app.openapi()["paths"]
        return {(method.upper(), path.removeprefix(DATA_PREFIX))
                for path, operations in paths.items() if path.startswith(DATA_PREFIX)
                for method in operations}
    finally:
        app.state.engine.dispose()


def test_every_data_route_has_a_permission_entry():
    assert data_routes() == set(MATRIX)


@pytest.fixture
def org(admin_client, app, make_user) -> OrgWorld:
    return build(admin_client, app, make_user)


@pytest.mark.parametrize("route", sorted(MATRIX), ids=lambda r: f"{r[0]} {r[1] or '/'}")
def test_route_permissions(org, route):
    call, expected = MATRIX[route]
    got: dict[str, Any] = {}
    for user in ORDER:
        res = call(org, user)
        if isinstance(expected[user], set):
            assert res.status_code == 200, res.text
            got[user] = {r["name"] for r in res.json()["items"]}
            for item in res.json()["items"]:
                # the rep's role hides the amount everywhere
                assert ("amount" in item) == (user != "rep_east" and user != "rep_west")
        else:
            got[user] = res.status_code
    assert got == expected
