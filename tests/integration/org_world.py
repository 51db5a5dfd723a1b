"""A small sales organization behind the HTTP API, for permission tests.

    Sales (director)
    ├── East (manager_east is head; rep_east)
    └── West (rep_west)

Roles of app ``crm``: rep (own accounts and contracts, contract amount
hidden), manager (department and below, amount read-only), director (all,
every action). Contracts E1 (rep_east), W1 (rep_west), M1 (manager_east).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi.testclient import TestClient

from tests.factories import field as fdef
from tests.factories import form_body

ACCOUNT = form_body("account", fdef("name"), fdef("industry"))
CONTRACT = form_body("contract", fdef("name", required=True), fdef("amount", "currency"),
                     fdef("account", "relation", target="account"))
ALL_ACTIONS = ["read", "create", "update", "delete", "restore", "export", "print"]
ROLES: dict[str, dict[str, Any]] = {
    "rep": {"account": {"actions": ["read", "create", "update"], "scope": "own"},
            "contract": {"actions": ["read", "create", "update"], "scope": "own",
                         "fields": {"amount": "hidden"}}},
    "manager": {"account": {"actions": ["read"], "scope": "department_tree"},
                "contract": {"actions": ["read", "update"], "scope": "department_tree",
                             "fields": {"amount": "read_only"}}},
    "director": {"account": {"actions": ALL_ACTIONS, "scope": "all"},
                 "contract": {"actions": ALL_ACTIONS, "scope": "all"}},
}
USERS = {"rep_east": ("East", "rep"), "rep_west": ("West", "rep"),
         "manager_east": ("East", "manager"), "director": ("Sales", "director")}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def records_url(form: str = "contract") -> str:
    return f"/api/apps/crm/forms/{form}/records"


@dataclass
class OrgWorld:
    admin: TestClient
    app: Any
    clients: dict[str, TestClient] = field(default_factory=dict)
    user_ids: dict[str, str] = field(default_factory=dict)
    departments: dict[str, str] = field(default_factory=dict)
    contracts: dict[str, dict[str, Any]] = field(default_factory=dict)
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def ok(self, res: Any, status: int = 200) -> Any:
        assert res.status_code == status, res.text
        return res.json() if res.content else None

    def move(self, username: str, department: str) -> None:
        self.ok(self.admin.put(f"/api/org/users/{self.user_ids[username]}/departments", json={
            "departments": [{"department_id": self.departments[department]}]}), 204)

    def publish(self, body: dict[str, Any]) -> None:
        """Save ``body`` as a form's draft and publish it, as the administrator."""
        self.ok(self.admin.put(f"/api/apps/crm/forms/{body['key']}/draft",
                               json={"definition": body}))
        self.ok(self.admin.post(f"/api/apps/crm/forms/{body['key']}/publish", json={}))

    def role(self, key: str, forms: dict[str, Any]) -> None:
        """Save role ``key`` of app crm with its ``forms`` grants."""
        self.ok(self.admin.put(f"/api/apps/crm/roles/{key}", json={"definition": {
            "key": key, "label": {"en": key}, "forms": forms}}))

    def names(self, username: str, form: str = "contract") -> set[str]:
        res = self.clients[username].get(records_url(form))
        return {r["name"] for r in self.ok(res)["items"]}


def build(admin: TestClient, app: Any, make_user: Any) -> OrgWorld:
    w = OrgWorld(admin=admin, app=app)
    w.ok(admin.post("/api/apps", json={"key": "crm", "name": {"en": "CRM"}}), 201)
    for body in (ACCOUNT, CONTRACT):
        w.ok(admin.put(f"/api/apps/crm/forms/{body['key']}/draft", json={"definition": body}))
        w.ok(admin.post(f"/api/apps/crm/forms/{body['key']}/publish", json={}))
    sales = w.ok(admin.post("/api/org/departments", json={"name": "Sales"}), 201)["id"]
    w.departments["Sales"] = sales
    for name in ("East", "West"):
        w.departments[name] = w.ok(admin.post("/api/org/departments", json={
            "name": name, "parent_id": sales}), 201)["id"]
    for key, forms in ROLES.items():
        w.ok(admin.put(f"/api/apps/crm/roles/{key}", json={"definition": {
            "key": key, "label": {"en": key}, "forms": forms}}))
    for username, (dept, role) in USERS.items():
        user_id, token = make_user(username)
        w.user_ids[username] = str(user_id)
        w.clients[username] = TestClient(app, headers=bearer(token))
        w.ok(admin.put(f"/api/org/users/{user_id}/departments", json={"departments": [{
            "department_id": w.departments[dept], "is_head": role == "manager"}]}), 204)
        w.ok(admin.post("/api/apps/crm/role-assignments", json={
            "role": role, "user_id": str(user_id)}), 201)
    for name, owner in (("E1", "rep_east"), ("W1", "rep_west")):
        w.accounts[name] = w.ok(w.clients[owner].post(records_url("account"), json={
            "values": {"name": f"acc-{name}", "industry": "ICT"}}), 201)
    for name, owner in (("E1", "rep_east"), ("W1", "rep_west"), ("M1", "director")):
        w.contracts[name] = w.ok(admin.post(records_url(), json={"values": {
            "name": name, "amount": "100.00",
            "account": w.accounts.get(name, {}).get("id")}}), 201)
    # The director made M1 for the manager: ownership moves as an audited action.
    w.ok(admin.post(f"{records_url()}/transfer", json={
        "record_ids": [w.contracts["E1"]["id"]], "owner": w.user_ids["rep_east"]}))
    w.ok(admin.post(f"{records_url()}/transfer", json={
        "record_ids": [w.contracts["W1"]["id"]], "owner": w.user_ids["rep_west"]}))
    w.ok(admin.post(f"{records_url()}/{w.contracts['M1']['id']}/transfer", json={
        "owner": w.user_ids["manager_east"]}))
    return w
