"""Notifications and webhooks through the HTTP API, as real users, on both
backends — including the denied paths."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from fastapi.testclient import TestClient

from tangram.engines.notify.deliveries import run_due_deliveries
from tests.factories import field, form_body
from tests.peers import http_receiver


@pytest.fixture
def crm(admin_client):
    r = admin_client.post("/api/apps", json={"key": "crm", "name": {"zh": "客户管理"}})
    assert r.status_code == 201, r.text
    lead = form_body("lead", field("name", required=True), field("mobile", "phone"),
                     field("status", "select", options=[{"value": v, "label": {"en": v}}
                                                         for v in ("new", "won", "lost")]),
                     field("budget", "decimal"))
    assert admin_client.put("/api/apps/crm/forms/lead/draft",
                            json={"definition": lead}).status_code == 200
    assert admin_client.post("/api/apps/crm/forms/lead/publish", json={}).status_code == 200
    return admin_client


def test_webhook_lifecycle_over_http(app, crm, make_user):
    with http_receiver() as receiver:
        r = crm.post("/api/apps/crm/forms/lead/webhooks",
                     json={"events": ["created"], "url": f"{receiver.url}/in"})
        assert r.status_code == 201, r.text
        sub = r.json()
        assert len(sub["secret"]) >= 32
        listed = crm.get("/api/apps/crm/forms/lead/webhooks").json()["items"]
        assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]

        receiver.statuses = [500]
        crm.post("/api/apps/crm/forms/lead/records", json={"values": {"name": "李雷"}})
        run_due_deliveries(app.state.sessions, app.state.clock)
        [delivery] = crm.get(f"/api/webhooks/{sub['id']}/deliveries").json()["items"]
        assert delivery["status"] == "queued" and delivery["last_status_code"] == 500

        r = crm.post(f"/api/deliveries/{delivery['id']}/replay")
        assert r.status_code == 200 and r.json()["status"] == "queued"
        run_due_deliveries(app.state.sessions, app.state.clock)
        detail = crm.get(f"/api/deliveries/{delivery['id']}").json()
        assert detail["status"] == "done"
        assert [a["status_code"] for a in detail["log"]] == [500, 200]
        last = receiver.requests[-1]
        expected = "sha256=" + hmac.new(sub["secret"].encode(), last.body,
                                        hashlib.sha256).hexdigest()
        assert last.headers["x-tangram-signature"] == expected
        assert last.json()["record"]["name"] == "李雷"
        # Every timestamp in UTC with "Z", as everywhere in the API.
        stamps = [sub["created_at"], last.json()["at"], detail["created_at"],
                  detail["next_attempt_at"], detail["finished_at"],
                  *(a["at"] for a in detail["log"])]
        assert all(s.endswith("Z") and "+00:00" not in s for s in stamps), stamps

        # Another user neither sees nor replays it; builders only manage their apps.
        _, token = make_user("bob")
        with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as bob:
            assert bob.get(f"/api/deliveries/{delivery['id']}").status_code == 403
            assert bob.post(f"/api/deliveries/{delivery['id']}/replay").status_code == 403
            assert bob.get(f"/api/webhooks/{sub['id']}/deliveries").status_code == 404
            assert bob.post("/api/apps/crm/forms/lead/webhooks",
                            json={"events": ["created"], "url": "https://x.example"}
                            ).status_code == 403
        assert crm.delete(f"/api/webhooks/{sub['id']}").status_code == 204


def test_a_webhook_may_send_only_the_changes_that_matter(app, crm):
    # The finance system wants to hear of a deal once: when it is won.
    url = "https://finance.example/hooks/won"
    r = crm.post("/api/apps/crm/forms/lead/webhooks", json={
        "events": ["updated"], "url": url, "fields": ["status"],
        "condition": 'record.status == "won" and old.status != "won" and record.budget > 100'})
    assert r.status_code == 201, r.text
    assert (r.json()["fields"], r.json()["condition"].startswith("record.status")) == (
        ["status"], True)
    lead = crm.post("/api/apps/crm/forms/lead/records", json={"values": {
        "name": "李雷", "status": "new", "budget": "500"}}).json()

    def update(**values) -> None:
        nonlocal lead
        res = crm.patch(f"/api/apps/crm/forms/lead/records/{lead['id']}",
                        json={"version": lead["version"], "values": values})
        assert res.status_code == 200, res.text
        lead = res.json()

    update(mobile="13812345678")  # not the watched field
    update(status="lost")  # watched, but the condition is false
    update(status="won")  # sent
    update(budget="900")  # won already, but not a status change
    sub = r.json()["id"]
    sent = crm.get(f"/api/webhooks/{sub}/deliveries").json()["items"]
    assert [d["payload"]["body"]["record"]["status"] for d in sent] == ["won"]
    # Mistakes are named, and nothing is subscribed.
    bad = crm.post("/api/apps/crm/forms/lead/webhooks", json={
        "events": ["updated"], "url": url, "fields": ["stauts"],
        "condition": "record.amount > (1"})
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"fields[0]", "condition"}
    unknown = crm.post("/api/apps/crm/forms/lead/webhooks", json={
        "events": ["updated"], "url": url, "condition": "record.amount > 1"})
    assert unknown.status_code == 422 and "record.amount" in unknown.json()["errors"][0][
        "message"]
    assert len(crm.get("/api/apps/crm/forms/lead/webhooks").json()["items"]) == 1


def test_inbox_preferences_and_group_channels_over_http(app, client, make_user, admin_client):
    _, token = make_user("carol")
    headers = {"Authorization": f"Bearer {token}"}
    prefs = client.get("/api/notifications/preferences", headers=headers).json()
    assert {c["channel"]: c["enabled"] for c in prefs["channels"]} == {"in_app": True,
                                                                       "email": False}
    r = client.put("/api/notifications/preferences", headers=headers,
                   json={"channels": {"email": True, "dingtalk": True}})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "channels.dingtalk"
    r = client.put("/api/notifications/preferences", headers=headers,
                   json={"channels": {"email": True}})
    assert {c["channel"]: c["enabled"] for c in r.json()["channels"]}["email"] is True

    assert client.get("/api/notifications/unread-count", headers=headers).json() == \
        {"unread": 0}
    assert client.post("/api/notifications/read", headers=headers,
                       json={}).json() == {"marked": 0, "unread": 0}

    body = {"key": "sales", "kind": "dingtalk", "label": "销售群",
            "config": {"webhook_url": "https://oapi.dingtalk.com/robot/send?access_token=x",
                       "secret": "SEC1"}}
    assert client.post("/api/notifications/group-channels", headers=headers,
                       json=body).status_code == 403
    r = admin_client.post("/api/notifications/group-channels", json=body)
    assert r.status_code == 201 and "config" not in r.json()
    assert admin_client.post("/api/notifications/group-channels", json=body).status_code == 409
    items = client.get("/api/notifications/group-channels", headers=headers).json()["items"]
    assert [c["key"] for c in items] == ["sales"] and "config" not in items[0]
    assert items[0]["created_at"].endswith("Z")
    kinds = client.get("/api/notifications/channels", headers=headers).json()["items"]
    assert {k["key"] for k in kinds} == {"in_app", "email", "dingtalk", "wecom"}
    assert admin_client.delete("/api/notifications/group-channels/sales").status_code == 204
