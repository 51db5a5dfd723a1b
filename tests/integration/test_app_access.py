"""Who may reach an app's definitions — and a matrix of every route the
server has, generated from its route table: each route names the access
class it belongs to, and each class is checked by calling the route as a
caller who must be refused. A new route without an entry fails the suite.

The data routes (records and below) have their detailed per-user matrix in
test_permission_matrix.py; here they are checked as "form rights" (a
signed-in user with no role in the app is refused)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tangram.platform.app import create_app
from tangram.settings import Settings
from tests.factories import field as fdef
from tests.factories import form_body, label
from tests.flow_factories import end, flow_body, start
from tests.integration.org_world import OrgWorld, bearer, build

# --- every route, by access class --------------------------------------------------------
#
# anyone       no credentials needed (sign-in, health, API docs)
# token        authenticated by a token of its own (public forms, inbound webhooks)
# signed_in    any signed-in user (their own things, or catalogs): no credentials -> 401
# admin        administrators: a signed-in member gets 403
# builder      administrators and the app's builders: a signed-in member gets 403
# member       members of the app (admins, builders, role holders): an outsider gets 403
# form_rights  decided by the caller's roles on the form: an outsider gets 403
# by_object    a signed-in user; the object in the path decides (its owner, its app's
#              builders): no credentials -> 401, an id the caller cannot reach -> 404

ACCESS: dict[str, set[tuple[str, str]]] = {
    "anyone": {("POST", "/api/auth/login"), ("GET", "/api/health")},
    "token": {("GET", "/api/public/forms/{token}"), ("POST", "/api/public/forms/{token}"),
              ("POST", "/api/hooks/flows/{app}/{flow}")},
    "signed_in": {
        ("POST", "/api/auth/logout"), ("GET", "/api/auth/me"), ("POST", "/api/auth/password"),
        ("GET", "/api/meta/field-types"), ("GET", "/api/meta/filter-operators"),
        ("GET", "/api/meta/functions"), ("GET", "/api/meta/function-categories"),
        ("GET", "/api/meta/field-type-categories"),
        ("GET", "/api/meta/regions"),
        ("GET", "/api/meta/schemas"),
        ("GET", "/api/meta/schemas/{name}"), ("GET", "/api/meta/flows"),
        ("GET", "/api/meta/reports"),
        ("GET", "/api/directory/users"), ("GET", "/api/directory/departments"),
        ("GET", "/api/apps"), ("GET", "/api/apps/{app}"), ("GET", "/api/apps/{app}/forms"),
        ("GET", "/api/apps/{app}/forms/{form}/versions"),
        ("GET", "/api/apps/{app}/forms/{form}/versions/{version}"),
        ("POST", "/api/files"), ("GET", "/api/files/{file_id}"),
        ("GET", "/api/tokens"), ("POST", "/api/tokens"), ("DELETE", "/api/tokens/{token_id}"),
        ("GET", "/api/flows/tasks"), ("GET", "/api/flows/tasks/counts"),
        ("GET", "/api/flows/tasks/{task_id}"),
        ("POST", "/api/flows/tasks/{task_id}/{action}"), ("GET", "/api/flows/notifications"),
        ("GET", "/api/flows/instances/{instance_id}"),
        ("POST", "/api/flows/instances/{instance_id}/{action}"),
        ("POST", "/api/flows/instances/{instance_id}/my-task/{action}"),
        ("POST", "/api/apps/{app}/flows/{flow}/start"),
        ("GET", "/api/notifications"), ("GET", "/api/notifications/channels"),
        ("GET", "/api/notifications/preferences"), ("PUT", "/api/notifications/preferences"),
        ("GET", "/api/notifications/group-channels"),
        ("POST", "/api/notifications/read"), ("GET", "/api/notifications/unread-count"),
    },
    "admin": {
        ("POST", "/api/apps"), ("GET", "/api/apps/{app}/role-assignments"),
        ("POST", "/api/apps/{app}/role-assignments"),
        ("DELETE", "/api/apps/{app}/role-assignments/{assignment_id}"),
        ("PUT", "/api/apps/{app}/builders/{user_id}"),
        ("GET", "/api/org/audit"), ("GET", "/api/org/departments"),
        ("POST", "/api/org/departments"), ("PATCH", "/api/org/departments/{dept_id}"),
        ("POST", "/api/org/import"), ("GET", "/api/org/users"),
        ("PUT", "/api/org/users/{user_id}/departments"),
        ("POST", "/api/org/users/{user_id}/disable"), ("POST", "/api/org/users/{user_id}/enable"),
        ("POST", "/api/org/users/{user_id}/password"),
        ("GET", "/api/packages"), ("POST", "/api/packages/install"),
        ("POST", "/api/packages/upgrade"), ("POST", "/api/packages/validate"),
        ("DELETE", "/api/packages/{app}"), ("GET", "/api/packages/{app}/customizations"),
        ("GET", "/api/packages/{app}/export"),
        ("GET", "/api/admin/flows/instances"),
        ("POST", "/api/admin/flows/instances/{instance_id}/cancel"),
        ("POST", "/api/admin/flows/instances/{instance_id}/retry"),
        ("GET", "/api/apps/{app}/reports/{key}/draft"),
        ("PUT", "/api/apps/{app}/reports/{key}/draft"),
        ("POST", "/api/apps/{app}/reports/{key}/validate"),
        ("POST", "/api/apps/{app}/reports/{key}/publish"),
        ("POST", "/api/apps/{app}/reports/{key}/sql"),
        ("PUT", "/api/apps/{app}/dashboards/{key}"),
        ("DELETE", "/api/apps/{app}/dashboards/{key}"),
        ("POST", "/api/notifications/group-channels"),
        ("DELETE", "/api/notifications/group-channels/{key}"),
    },
    "builder": {
        ("PUT", "/api/apps/{app}"), ("GET", "/api/apps/{app}/forms/{form}/draft"),
        ("PUT", "/api/apps/{app}/forms/{form}/draft"),
        ("POST", "/api/apps/{app}/forms/{form}/publish"),
        ("POST", "/api/apps/{app}/forms/{form}/fields/{field_id}/purge"),
        ("GET", "/api/apps/{app}/roles"), ("PUT", "/api/apps/{app}/roles/{key}"),
        ("PUT", "/api/apps/{app}/calendars/{key}"),
        ("GET", "/api/apps/{app}/flows/{flow}/draft"),
        ("PUT", "/api/apps/{app}/flows/{flow}/draft"),
        ("POST", "/api/apps/{app}/flows/{flow}/validate"),
        ("POST", "/api/apps/{app}/flows/{flow}/publish"),
        ("POST", "/api/apps/{app}/flows/{flow}/webhook-token"),
        ("GET", "/api/apps/{app}/forms/{form}/public-forms"),
        ("POST", "/api/apps/{app}/forms/{form}/public-forms"),
        ("DELETE", "/api/apps/{app}/public-forms/{token}"),
        ("PUT", "/api/apps/{app}/print-templates/{key}"),
        ("DELETE", "/api/apps/{app}/print-templates/{key}"),
        ("GET", "/api/apps/{app}/forms/{form}/webhooks"),
        ("POST", "/api/apps/{app}/forms/{form}/webhooks"),
    },
    "member": {
        ("GET", "/api/apps/{app}/navigation"),
        ("GET", "/api/apps/{app}/calendars"), ("GET", "/api/apps/{app}/calendars/{key}"),
        ("GET", "/api/apps/{app}/flows"), ("GET", "/api/apps/{app}/flows/{flow}/versions"),
        ("GET", "/api/apps/{app}/flows/{flow}/versions/{version}"),
        ("GET", "/api/apps/{app}/reports"), ("GET", "/api/apps/{app}/reports/{key}"),
        ("POST", "/api/apps/{app}/reports/{key}/run"),
        ("POST", "/api/apps/{app}/reports/{key}/drilldown"),
        ("POST", "/api/apps/{app}/reports/{key}/export/{fmt}"),
        ("POST", "/api/apps/{app}/reports/{key}/kpi"),
        ("GET", "/api/apps/{app}/dashboards"), ("GET", "/api/apps/{app}/dashboards/{key}"),
        ("POST", "/api/apps/{app}/dashboards/{key}/run"),
        ("GET", "/api/apps/{app}/print-templates"),
        ("GET", "/api/apps/{app}/print-templates/{key}"),
        # Report alerts: members; the alert's report decides further.
        ("GET", "/api/apps/{app}/alerts"), ("POST", "/api/apps/{app}/alerts"),
        ("GET", "/api/apps/{app}/alerts/{alert_id}"),
        ("PUT", "/api/apps/{app}/alerts/{alert_id}"),
        ("DELETE", "/api/apps/{app}/alerts/{alert_id}"),
        ("GET", "/api/apps/{app}/alerts/{alert_id}/firings"),
        ("POST", "/api/apps/{app}/alerts/{alert_id}/check"),
    },
    "form_rights": {
        ("GET", "/api/apps/{app}/forms/{form}"),
        ("GET", "/api/apps/{app}/forms/{form}/fields/{field}/picker"),
        ("POST", "/api/apps/{app}/forms/{form}/imports"),
        ("GET", "/api/apps/{app}/forms/{form}/export"),
        ("POST", "/api/apps/{app}/forms/{form}/export"),
    },
    "by_object": {
        ("GET", "/api/apps/{app}/forms/{form}/imports/{job_id}"),
        ("GET", "/api/apps/{app}/forms/{form}/imports/{job_id}/errors"),
        ("POST", "/api/apps/{app}/forms/{form}/imports/{job_id}/preview"),
        ("POST", "/api/apps/{app}/forms/{form}/imports/{job_id}/resume"),
        ("POST", "/api/apps/{app}/forms/{form}/imports/{job_id}/start"),
        ("DELETE", "/api/webhooks/{webhook_id}"),
        ("GET", "/api/webhooks/{webhook_id}/deliveries"),
        ("GET", "/api/deliveries/{delivery_id}"),
        ("POST", "/api/deliveries/{delivery_id}/replay"),
    },
}
DATA_PREFIX = "/api/apps/{app}/forms/{form}/records"

# Minimal valid bodies, so that a route's permission check (not its body
# validation) answers.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/apps/{app}/forms/{form}/imports"): None,
}


def all_routes() -> set[tuple[str, str]]:
    app = create_app(Settings(database_url="sqlite://", environment="test"))
    try:
        return {(method.upper(), path) for path, operations in app.openapi()["paths"].items()
                for method in operations}
    finally:
        app.state.engine.dispose()


def classified() -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for kind, routes in ACCESS.items():
        for route in routes:
            assert route not in out, f"{route} is in two access classes"
            out[route] = kind
    return out


def test_every_route_has_an_access_class():
    routes = {r for r in all_routes() if not r[1].startswith(DATA_PREFIX)}
    known = classified()
    missing = sorted(routes - set(known))
    assert not missing, (f"routes without an entry in ACCESS ({__file__}): {missing} — say "
                         "who may call each, and the access test checks it")
    assert sorted(set(known) - routes) == [], "ACCESS lists routes the server does not have"


def _url(path: str) -> str:
    values = {"app": "crm", "form": "contract", "field": "account", "key": "k", "flow": "f",
              "name": "form", "version": "1", "fmt": "csv", "action": "approve",
              "token": "t" * 20}
    for part in path.split("/"):
        if part.startswith("{"):
            name = part[1:-1]
            path = path.replace(part, values.get(name, str(uuid.uuid4())))
    return path


def _call(client: TestClient, method: str, path: str) -> Any:
    url = _url(path)
    if (method, path) == ("POST", "/api/apps/{app}/forms/{form}/imports"):
        return client.post(url, files={"file": ("a.csv", b"name\nx\n", "text/csv")})
    if method in ("GET", "DELETE"):
        return client.request(method, url)
    return client.request(method, url, json=BODIES.get((method, path), {}))


@pytest.fixture
def org(admin_client, app, make_user) -> OrgWorld:
    return build(admin_client, app, make_user)


@pytest.fixture
def outsider(org: OrgWorld, app, make_user) -> TestClient:
    """A signed-in user with no role in app crm."""
    _, token = make_user("outsider")
    return TestClient(app, headers=bearer(token))


def test_each_access_class_refuses_who_it_must(org, app, outsider):
    anonymous = TestClient(app)
    member = org.clients["rep_east"]  # holds role "rep" in crm; not admin nor builder
    wrong: list[str] = []
    for route, kind in sorted(classified().items()):
        method, path = route
        if kind == "signed_in":
            got = _call(anonymous, method, path).status_code
            if got != 401:
                wrong.append(f"{method} {path}: anonymous got {got}, not 401")
        elif kind in ("admin", "builder"):
            got = _call(member, method, path).status_code
            if got != 403:
                wrong.append(f"{method} {path}: a member got {got}, not 403")
        elif kind == "by_object":
            got = (_call(anonymous, method, path).status_code,
                   _call(member, method, path).status_code)
            if got != (401, 404):
                wrong.append(f"{method} {path}: anonymous, member got {got}, not (401, 404)")
        elif kind in ("member", "form_rights"):
            got = _call(outsider, method, path).status_code
            if got != 403:
                wrong.append(f"{method} {path}: an outsider got {got}, not 403")
    assert not wrong, "\n".join(wrong)


# --- definitions follow membership and what the roles can read ------------------------------

SALARY = form_body("salary", fdef("person"), fdef("pay", "currency"))


def _report(form: str) -> dict[str, Any]:
    return {"label": label(form), "form": form, "measures": [{"agg": "count", "key": "n"}],
            "chart": {"type": "table"}}


@pytest.fixture
def defs(org: OrgWorld) -> OrgWorld:
    admin = org.admin
    org.ok(admin.put("/api/apps/crm/forms/salary/draft", json={"definition": SALARY}))
    org.ok(admin.post("/api/apps/crm/forms/salary/publish", json={}))
    org.ok(admin.post("/api/apps/crm/forms/salary/records", json={"values": {"person": "a"}}),
           201)
    org.ok(admin.put("/api/apps/crm/roles/hr", json={"definition": {
        "key": "hr", "label": {"en": "HR"}, "forms": {
            "salary": {"actions": ["read"], "scope": "all"}}}}))
    org.ok(admin.post("/api/apps/crm/role-assignments", json={
        "role": "hr", "user_id": org.user_ids["director"]}), 201)
    for key, form in (("deals", "contract"), ("pay", "salary")):
        org.ok(admin.put(f"/api/apps/crm/reports/{key}/draft", json={"definition": _report(form)}))
        org.ok(admin.post(f"/api/apps/crm/reports/{key}/publish", json={}))
    org.ok(admin.put("/api/apps/crm/reports/unpublished/draft", json={
        "definition": _report("contract")}))
    for key, reports in (("sales", ["deals"]), ("hr", ["pay"]), ("mixed", ["deals", "pay"])):
        org.ok(admin.put(f"/api/apps/crm/dashboards/{key}", json={"definition": {
            "label": label(key), "widgets": [{"key": f"w_{r}", "report": r, "x": 0, "y": i * 4}
                                             for i, r in enumerate(reports)]}}))
    org.ok(admin.put("/api/apps/crm/flows/approve/draft", json={"definition": flow_body(
        "approve", start("manual", next="end"), end())}))
    org.ok(admin.post("/api/apps/crm/flows/approve/publish", json={}))
    return org


def test_an_outsider_lists_and_reads_no_definitions(defs, outsider):
    for url in ("/api/apps/crm/flows", "/api/apps/crm/flows/approve/versions",
                "/api/apps/crm/flows/approve/versions/1", "/api/apps/crm/reports",
                "/api/apps/crm/reports/deals", "/api/apps/crm/dashboards",
                "/api/apps/crm/dashboards/sales"):
        res = outsider.get(url)
        assert res.status_code == 403, url
        assert res.json()["code"] == "permission_denied"
    assert outsider.post("/api/apps/crm/reports/deals/run", json={}).status_code == 403
    assert outsider.post("/api/apps/crm/dashboards/sales/run", json={}).status_code == 403


def test_reports_and_dashboards_follow_what_the_roles_can_read(defs):
    rep, director = defs.clients["rep_east"], defs.clients["director"]
    assert [r["key"] for r in defs.ok(rep.get("/api/apps/crm/reports"))] == ["deals"]
    assert sorted(r["key"] for r in defs.ok(director.get("/api/apps/crm/reports"))) == [
        "deals", "pay"]
    assert len(defs.ok(defs.admin.get("/api/apps/crm/reports"))) == 3  # with the draft
    denied = rep.get("/api/apps/crm/reports/pay")
    assert denied.status_code == 403 and denied.json()["details"]["form"] == "salary"
    assert rep.post("/api/apps/crm/reports/pay/run", json={}).status_code == 403
    assert rep.post("/api/apps/crm/reports/pay/export/csv", json={}).status_code == 403
    assert rep.post("/api/apps/crm/reports/deals/run", json={"draft": True}).status_code == 403
    # The rep's run counts only the rep's own contracts.
    ran = defs.ok(rep.post("/api/apps/crm/reports/deals/run", json={}))
    assert ran["rows"][0]["n"] == 1
    assert [d["key"] for d in defs.ok(rep.get("/api/apps/crm/dashboards"))] == [
        "mixed", "sales"]
    assert rep.get("/api/apps/crm/dashboards/hr").status_code == 403
    mixed = defs.ok(rep.get("/api/apps/crm/dashboards/mixed"))
    assert [w["report"] for w in mixed["widgets"]] == ["deals"]
    ran = defs.ok(rep.post("/api/apps/crm/dashboards/mixed/run", json={}))
    assert [w["report"] for w in ran["widgets"]] == ["deals"]
    assert [w["report"] for w in defs.ok(director.get("/api/apps/crm/dashboards/mixed"))[
        "widgets"]] == ["deals", "pay"]
    assert [f["key"] for f in defs.ok(rep.get("/api/apps/crm/flows"))] == ["approve"]


def test_a_token_reaches_the_definitions_of_its_apps_only(defs):
    made = defs.ok(defs.clients["rep_east"].post("/api/tokens", json={
        "name": "bi", "apps": ["erp"], "actions": ["read"]}), 201)
    with TestClient(defs.app, headers=bearer(made["token"])) as client:
        res = client.get("/api/apps/crm/reports")
        assert res.status_code == 403 and "token" in res.json()["message"]
