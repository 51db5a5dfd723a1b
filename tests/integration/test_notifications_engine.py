"""Notifications and outbound webhooks on SQLite and PostgreSQL, against real
local peers: an SMTP server (aiosmtpd) and HTTP receivers standing in for
DingTalk, WeCom and a webhook consumer."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from urllib.parse import quote_plus

import pytest
import sqlalchemy as sa

from tangram.engines.access import AllowAll
from tangram.engines.context import Actor
from tangram.engines.forms.records import create_record, update_record
from tangram.engines.notify import deliveries, service, webhooks
from tangram.engines.notify.channels import MailSettings
from tangram.engines.notify.tables import deliveries_table
from tangram.engines.notify.templates import render_template
from tangram.errors import DefinitionInvalid, NotFound, PermissionDenied
from tests.flow_factories import FlowWorld, end, flow_body, start
from tests.peers import http_receiver, smtp_server


@pytest.fixture
def world(engine):
    # An app built earlier in this process installed its role-policy resolver;
    # these engine tests act as owners who may read everything.
    webhooks.set_owner_resolver(None)
    w = FlowWorld(engine)
    w.user("alice")
    w.user("admin", admin=True)
    with w.sessions.begin() as s:
        s.execute(sa.text("UPDATE users SET email = 'alice@example.com' WHERE username = 'alice'"))
    return w


def send_due(world, mail=None):
    return deliveries.run_due_deliveries(world.sessions, world.clock, mail=mail)


def notify_flow(world, channels):
    world.publish_flow(flow_body(
        "welcome", start(trigger="record_created", next="tell"),
        {"type": "action", "key": "tell", "next": "end", "action": {
            "kind": "notify", "to": [{"kind": "user", "users": ["alice"]}],
            "title": "新合同：{{ record.title }}", "body": "金额 {{ record.amount }} 元",
            "channels": channels}},
        end()))


def test_notify_action_reaches_inbox_email_and_dingtalk_robot(world):
    with smtp_server() as smtp, http_receiver() as robot:
        world.run(service.create_group_channel, key="sales-ding", kind="dingtalk",
                  label="销售群", config={"webhook_url": f"{robot.url}/robot/send?access_token=t1",
                                          "secret": "SECabc"},
                  actor=world.actor_of("admin"))
        world.run(service.set_preferences, channels={"email": True},
                  actor=world.actor_of("alice"))
        notify_flow(world, ["sales-ding"])
        world.contract(title="华东框架协议", amount="1200.50")
        mail = MailSettings(host=smtp.host, port=smtp.port, sender="crm@example.com")
        assert send_due(world, mail) == 2

        [message] = smtp.messages
        assert message["Subject"] == "新合同：华东框架协议"
        assert message["To"] == "alice@example.com"
        assert message.get_content().strip() == "金额 1200.50 元"

        [call] = robot.requests
        assert call.path == "/robot/send" and call.query["access_token"] == "t1"
        timestamp = call.query["timestamp"]
        expected = base64.b64encode(hmac.new(b"SECabc", f"{timestamp}\nSECabc".encode(),
                                             hashlib.sha256).digest()).decode()
        assert call.query["sign"] == expected  # parse_qs decoded the URL-encoding
        assert int(timestamp) == int(world.clock.now().timestamp() * 1000)
        assert call.json() == {"msgtype": "text",
                               "text": {"content": "新合同：华东框架协议\n金额 1200.50 元"}}

    alice = world.actor_of("alice")
    inbox = world.run(service.inbox, actor=alice)
    assert inbox["unread"] == 1 and inbox["items"][0]["title"] == "新合同：华东框架协议"
    assert world.run(service.mark_read, actor=alice) == 1
    assert world.run(service.unread_count, actor=alice) == 0


def test_in_app_can_be_turned_off_and_wecom_robot_gets_its_key(world):
    with http_receiver() as robot:
        world.run(service.create_group_channel, key="ops-wecom", kind="wecom", label="运维群",
                  config={"key": "k-123", "base_url": f"{robot.url}/cgi-bin/webhook/send"},
                  actor=world.actor_of("admin"))
        world.run(service.set_preferences, channels={"in_app": False},
                  actor=world.actor_of("alice"))
        notify_flow(world, ["ops-wecom"])
        world.contract(title="合同A")
        assert send_due(world) == 1
        [call] = robot.requests
        assert call.path == "/cgi-bin/webhook/send" and call.query == {"key": "k-123"}
        assert call.json()["text"]["content"].startswith("新合同：合同A")
    assert world.run(service.unread_count, actor=world.actor_of("alice")) == 0


def test_robot_refusal_is_logged_and_retried(world):
    with http_receiver() as robot:
        robot.answer = {"errcode": 310000, "errmsg": "sign not match"}
        world.run(service.create_group_channel, key="g", kind="dingtalk", label="g",
                  config={"webhook_url": f"{robot.url}/robot/send?access_token=t"},
                  actor=world.actor_of("admin"))
        world.run(service.notify, user_ids=[], title="hi", group_channels=["g"])
        send_due(world)
    with world.sessions.begin() as s:
        row = s.execute(sa.select(deliveries_table)).mappings().one()
    assert row["status"] == "queued" and "310000" in row["last_error"]


def test_group_channels_are_for_administrators_and_checked(world):
    with pytest.raises(PermissionDenied):
        world.run(service.create_group_channel, key="x", kind="wecom", label="x",
                  config={"key": "k"}, actor=world.actor_of("alice"))
    with pytest.raises(DefinitionInvalid, match="not a group channel"):
        world.run(service.create_group_channel, key="x", kind="email", label="x", config={},
                  actor=world.actor_of("admin"))
    with pytest.raises(NotFound, match="no group channel 'missing'"):
        world.run(service.notify, user_ids=[], title="t", group_channels=["missing"])


def test_template_sandbox_refuses_attribute_escapes():
    assert render_template("你好 {{ user.name }}", {"user": {"name": "王五"}}) == "你好 王五"
    with pytest.raises(DefinitionInvalid, match="sandbox does not allow"):
        render_template("{{ ''.__class__.__mro__ }}", {})
    with pytest.raises(DefinitionInvalid, match="sandbox does not allow"):
        render_template("{{ record.__init__.__globals__ }}", {"record": {}})
    with pytest.raises(DefinitionInvalid, match="unknown variable"):
        render_template("{{ nobody }}", {})


# --------------------------------------------------------------------------- webhooks

def verify(secret: str, received) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, received.headers["x-tangram-signature"])


def test_webhook_is_signed_retried_after_500_and_replayed(world):
    alice = world.actor_of("alice")
    with http_receiver() as receiver:
        sub = world.run(webhooks.create_subscription, app=world.app, form="contract",
                        events=["created", "updated"], url=f"{receiver.url}/hook",
                        actor=alice)
        receiver.statuses = [500]
        rec = world.run(lambda ctx: create_record(ctx, app=world.app, form="contract",
                                                  data={"title": "合同B", "amount": "10"}))
        assert send_due(world) == 1
        assert send_due(world) == 0  # not due before the backoff
        world.clock.advance(timedelta(seconds=31))
        assert send_due(world) == 1

        first, second = receiver.requests
        assert first.body == second.body and verify(sub["secret"], second)
        assert not verify("wrong-secret", second)
        assert second.headers["x-tangram-timestamp"] == str(int(world.clock.now().timestamp()))
        payload = second.json()
        assert payload["event"] == "created" and payload["record"]["title"] == "合同B"

        [delivery] = world.run(webhooks.list_deliveries, subscription_id=sub["id"], actor=alice)
        assert delivery["status"] == "done" and delivery["attempts"] == 2
        log = world.run(deliveries.get_delivery, delivery_id=delivery["id"], actor=alice)["log"]
        assert [a["status_code"] for a in log] == [500, 200]

        world.run(deliveries.replay, delivery_id=delivery["id"], actor=alice)
        assert send_due(world) == 1
        assert len(receiver.requests) == 3 and verify(sub["secret"], receiver.requests[2])
        assert receiver.requests[2].json()["record_id"] == rec["id"]

        with pytest.raises(PermissionDenied):
            world.run(deliveries.replay, delivery_id=delivery["id"],
                      actor=Actor(id=world.user("mallory")))


def test_webhook_fails_after_max_attempts(world):
    with http_receiver() as receiver:
        world.run(webhooks.create_subscription, app=world.app, form="contract",
                  events=["created"], url=f"{receiver.url}/hook",
                  actor=world.actor_of("alice"))
        receiver.statuses = [503] * 10
        world.contract()
        for _ in range(5):
            send_due(world)
            world.clock.advance(timedelta(hours=7))
        assert send_due(world) == 0
    with world.sessions.begin() as s:
        row = s.execute(sa.select(deliveries_table)).mappings().one()
    assert row["status"] == "failed" and row["attempts"] == 5
    assert row["last_status_code"] == 503


class HidesAmount(AllowAll):
    def field_access(self, actor, app, form):
        return {"amount": "hidden"}


class SeesNothing(AllowAll):
    def check_row(self, actor, app, form, row, action):
        raise NotFound("out of scope")


def _create_then_edit(world) -> None:
    """A contract C (amount 5), then edited to D (amount 6)."""
    rec = world.run(lambda ctx: create_record(ctx, app=world.app, form="contract",
                                              data={"title": "C", "amount": "5"}))
    world.run(lambda ctx: update_record(ctx, app=world.app, form="contract",
                                        record_id=rec["id"], changes={"amount": "6", "title": "D"},
                                        expected_version=rec["version"]))


@pytest.mark.parametrize("policy, expected", [(HidesAmount(), 1), (SeesNothing(), 0)])
def test_webhook_payload_respects_the_owner_permissions(world, policy, expected):
    webhooks.set_owner_resolver(lambda ctx, owner_id: (Actor(id=owner_id), policy))
    try:
        with http_receiver() as receiver:
            world.run(webhooks.create_subscription, app=world.app, form="contract",
                      events=["updated"], url=f"{receiver.url}/hook",
                      actor=world.actor_of("alice"))
            _create_then_edit(world)
            send_due(world)
            assert len(receiver.requests) == expected
            if expected:
                payload = receiver.requests[0].json()
                assert "amount" not in payload["record"] and payload["record"]["title"] == "D"
                assert payload["changed_fields"] == ["title"]
                assert "amount" not in json.dumps(payload)
    finally:
        webhooks.set_owner_resolver(None)


def test_webhook_filters_cannot_learn_hidden_fields(world):
    # An owner who may not see amount cannot watch it, nor probe it with a
    # condition: it never counts as changed and reads as none.
    webhooks.set_owner_resolver(lambda ctx, owner_id: (Actor(id=owner_id), HidesAmount()))
    try:
        alice = world.actor_of("alice")
        world.run(webhooks.create_subscription, app=world.app, form="contract",
                  events=["updated"], url="https://x.example/watch", fields=["amount"],
                  actor=alice)
        world.run(webhooks.create_subscription, app=world.app, form="contract",
                  events=["updated"], url="https://x.example/probe",
                  condition="record.amount > 5", actor=alice)
        world.run(webhooks.create_subscription, app=world.app, form="contract",
                  events=["updated"], url="https://x.example/title",
                  condition='record.title == "D" and old.title == "C"', actor=alice)
        _create_then_edit(world)
        with world.sessions.begin() as s:
            urls = [r["payload"]["url"] for r in s.execute(sa.select(deliveries_table))
                    .mappings()]
        assert urls == ["https://x.example/title"]  # amount read as none
    finally:
        webhooks.set_owner_resolver(None)


def test_a_webhook_condition_that_cannot_be_evaluated_is_no_match_and_is_logged(
        world, caplog):
    world.run(webhooks.create_subscription, app=world.app, form="contract",
              events=["updated"], url="https://x.example/odd",
              condition="record.title > 5", actor=world.actor_of("alice"))  # text vs number
    with caplog.at_level("WARNING", logger="tangram.engines.notify.webhooks"):
        _create_then_edit(world)
    with world.sessions.begin() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(deliveries_table)).scalar() == 0
    assert any("record.title > 5" in r.getMessage() for r in caplog.records)


def test_subscription_checks_events_and_url(world):
    alice = world.actor_of("alice")
    with pytest.raises(DefinitionInvalid, match="events must be"):
        world.run(webhooks.create_subscription, app=world.app, form="contract",
                  events=["exploded"], url="https://x.example", actor=alice)
    with pytest.raises(DefinitionInvalid, match="http"):
        world.run(webhooks.create_subscription, app=world.app, form="contract",
                  events=["created"], url="file:///etc/passwd", actor=alice)


def test_dingtalk_sign_is_url_encoded():
    digest = base64.b64encode(hmac.new(b"s", b"1700000000000\ns", hashlib.sha256).digest())
    from tangram.engines.notify.channels import dingtalk_sign
    assert dingtalk_sign("s", 1700000000000) == quote_plus(digest.decode())
