"""Public forms on both backends: anonymous definition and submission through
HTTP, UTM capture, honeypot, per-IP rate limit, size limits, validation; and a
submission starting a flow like any new record."""

from __future__ import annotations

import pytest

from tangram.engines.notify import service as notify_service
from tangram.engines.publicforms import service
from tangram.errors import DefinitionInvalid
from tests.factories import field, form_body
from tests.flow_factories import FlowWorld, end, flow_body, start

LEAD = form_body("lead", field("name", required=True), field("mobile", "phone"),
                 field("source"), field("campaign"), field("notes", "long_text"))


@pytest.fixture
def published(admin_client):
    assert admin_client.post("/api/apps", json={"key": "crm", "name": {"zh": "客户管理"}}
                             ).status_code == 201
    assert admin_client.put("/api/apps/crm/forms/lead/draft",
                            json={"definition": LEAD}).status_code == 200
    assert admin_client.post("/api/apps/crm/forms/lead/publish", json={}).status_code == 200
    r = admin_client.post("/api/apps/crm/forms/lead/public-forms", json={
        "fields": ["name", "mobile", "notes"], "max_per_hour": 3,
        "utm_fields": {"utm_source": "source", "utm_campaign": "campaign"}})
    assert r.status_code == 201, r.text
    return r.json()


def test_anonymous_definition_shows_only_published_fields(client, published):
    r = client.get(published["url"])
    assert r.status_code == 200
    assert [f["key"] for f in r.json()["fields"]] == ["name", "mobile", "notes"]
    assert r.json()["honeypot"] == "website"
    assert client.get("/api/public/forms/nope").status_code == 404


def test_submission_captures_utm_and_validates(client, admin_client, published):
    r = client.post(published["url"] + "?utm_source=baidu&utm_campaign=spring",
                    json={"values": {"name": "张三", "mobile": "13812345678"}})
    assert r.status_code == 201, r.text
    rec = admin_client.get(f"/api/apps/crm/forms/lead/records/{r.json()['id']}").json()
    assert (rec["name"], rec["source"], rec["campaign"]) == ("张三", "baidu", "spring")

    r = client.post(published["url"], json={"values": {"mobile": "123"}})
    assert r.status_code == 422
    assert {e["field"] for e in r.json()["errors"]} >= {"name"}
    r = client.post(published["url"], json={"values": {"name": "x", "source": "forged"}})
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "field_not_public"


def test_honeypot_rate_limit_and_size_limits(client, admin_client, published):
    r = client.post(published["url"], json={"values": {"name": "bot", "website": "http://spam"}})
    assert r.status_code == 201 and "id" not in r.json()
    listed = admin_client.get("/api/apps/crm/forms/lead/records").json()["items"]
    assert listed == []

    r = client.post(published["url"], json={"values": {"name": "长", "notes": "字" * 5001}})
    assert r.status_code == 413
    r = client.post(published["url"], content=b'{"values": {"notes": "' + b"x" * 70_000 + b'"}}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 413

    # Three per hour from one address (the honeypot hit counted too).
    assert client.post(published["url"], json={"values": {"name": "a"}}).status_code == 201
    r = client.post(published["url"], json={"values": {"name": "b"}})
    assert r.status_code == 201
    r = client.post(published["url"], json={"values": {"name": "c"}})
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert r.headers["Retry-After"] == "3600"


def test_builders_only_publish_and_unpublish(app, client, make_user, admin_client, published):
    _, token = make_user("dave")
    r = client.post("/api/apps/crm/forms/lead/public-forms", json={},
                    headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    r = admin_client.post("/api/apps/crm/forms/lead/public-forms", json={"fields": ["nope"]})
    assert r.status_code == 422 and "unknown field 'nope'" in r.json()["message"]
    assert admin_client.delete(f"/api/apps/crm/public-forms/{published['token']}"
                               ).status_code == 204
    assert client.get(published["url"]).status_code == 404


def test_a_public_submission_starts_flows(engine):
    world = FlowWorld(engine)
    alice = world.user("alice")
    world.publish_flow(flow_body(
        "welcome", start(trigger="record_created", next="tell"),
        {"type": "action", "key": "tell", "next": "end", "action": {
            "kind": "notify", "to": [{"kind": "user", "users": ["alice"]}],
            "title": "网站新线索：{{ record.title }}"}},
        end()))
    pf = world.run(service.publish_public_form, app=world.app, form="contract",
                   fields=["title"], actor=world.actor_of("alice"))
    with pytest.raises(DefinitionInvalid):
        world.run(service.publish_public_form, app=world.app, form="contract",
                  utm_fields={"utm_x": "title"}, actor=world.actor_of("alice"))
    world.run(service.submit, token=pf["token"], values={"title": "官网询价"}, utm={},
              ip="203.0.113.7")
    inbox = world.run(notify_service.inbox, actor=world.actor_of("alice"))
    assert [n["title"] for n in inbox["items"]] == ["网站新线索：官网询价"]
    assert alice is not None
