"""Data alerts on SQLite and PostgreSQL: a report measure checked on a
schedule with a frozen clock; an alert fires once per crossing, notifies its
recipients, each in their language, recovers and fires again. Expected values
are the sums of the rows the test wrote."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from tangram.clock import FrozenClock
from tangram.engines.directory import users_table
from tangram.engines.flows import assignees
from tangram.engines.flows.tables import notifications_table
from tangram.engines.flows.worker import run_due
from tangram.engines.forms import records
from tangram.engines.forms.query import FilterInvalid
from tangram.engines.reports import alerts
from tangram.engines.reports import service as reports
from tangram.errors import DefinitionInvalid
from tangram.metamodel import storage
from tests.factories import World, field, form_body, label

OPPORTUNITY = form_body(
    "opportunity", field("name"), field("amount", "currency"), field("region"),
    field("stage", "select", options=[{"value": s, "label": label(s)} for s in ("won", "lost")]),
    field("won_at", "datetime"))
REPORT = {"label": label("Won weekly"), "form": "opportunity",
          "filter": {"field": "stage", "op": "eq", "value": "won"},
          "dimensions": [{"type": "date", "key": "week", "field": "won_at", "bucket": "week"}],
          "measures": [{"agg": "sum", "key": "won", "field": "amount"},
                       {"agg": "count", "key": "n"},
                       {"agg": "share", "key": "s", "of": "won"}]}
# Monday 5 Jan 2026, 09:00 in Shanghai.
START = datetime(2026, 1, 5, 1, 0, tzinfo=UTC)


class Sales:
    def __init__(self, engine: Engine) -> None:
        self.world = World(engine)
        self.world.clock.set(START - timedelta(hours=1))
        self.world.publish(OPPORTUNITY)
        self.world.run(reports.save_report_draft, app="demo", key="won_weekly", body=REPORT)
        self.world.run(reports.publish_report, app="demo", key="won_weekly")
        self.director = self.user("director", language="en")
        self.zhang = self.user("zhang", language="zh")

    def user(self, username: str, *, language: str) -> uuid.UUID:
        user_id, now = uuid.uuid4(), self.world.clock.now()
        with self.world.sessions.begin() as s:
            s.execute(users_table.insert().values(
                id=user_id, username=username, display_name=username, language=language,
                created_at=now, updated_at=now))
        return user_id

    def sale(self, amount: str, *, region: str = "east", at: datetime = START,
             stage: str = "won") -> dict[str, Any]:
        return self.world.run(records.create_record, app="demo", form="opportunity", data={
            "name": "o", "amount": amount, "region": region, "stage": stage,
            "won_at": at.isoformat()}, owner=None)

    def change(self, rec: dict[str, Any], **changes: Any) -> dict[str, Any]:
        return self.world.run(records.update_record, app="demo", form="opportunity",
                              record_id=rec["id"], changes=changes,
                              expected_version=rec["version"])

    def alert(self, **definition: Any) -> dict[str, Any]:
        body = {"label": "Won alert", "report": "won_weekly", "measure": "won",
                "recipients": [str(self.director)], **definition}
        return self.world.run(alerts.create_alert, app="demo", body=body,
                              actor=self._owner())

    def _owner(self) -> Any:
        from tangram.engines.context import Actor

        return Actor(id=uuid.uuid4(), username="manager", is_admin=True)

    def tick(self, **delta: float) -> None:
        self.world.clock.advance(**delta)
        run_due(self.world.engine, self.world.clock)

    def firings(self, alert: dict[str, Any]) -> list[dict[str, Any]]:
        with self.world.sessions.begin() as s:
            f = alerts.firings_table
            return [dict(r) for r in s.execute(
                sa.select(f).where(f.c.alert_id == uuid.UUID(alert["id"]))
                .order_by(f.c.fired_at)).mappings()]

    def state(self, alert: dict[str, Any]) -> dict[str, Any]:
        with self.world.sessions.begin() as s:
            t = alerts.alerts_table
            row = s.execute(sa.select(t).where(t.c.id == uuid.UUID(alert["id"]))).mappings()
            return dict(row.one())

    def inbox(self, user: uuid.UUID | None = None) -> list[str]:
        """The titles of the alert notifications of ``user`` (the director)."""
        return [title for title, _ in self.notes(user)]

    def notes(self, user: uuid.UUID | None = None) -> list[tuple[str, str]]:
        with self.world.sessions.begin() as s:
            n = notifications_table
            return [tuple(r) for r in s.execute(sa.select(n.c.title, n.c.body).where(
                n.c.user_id == (user or self.director), n.c.kind == "report_alert")
                .order_by(n.c.created_at))]

    def package_alert(self, body: dict[str, Any]) -> None:
        """Publish a package alert (``alerts/`` of an app package)."""
        with self.world.sessions.begin() as s:
            now = self.world.clock.now()
            storage.save_draft(s, app="demo", kind="alert", key=body["key"], body=body,
                               user_id=None, now=now)
            row = storage.get_definition(s, app="demo", kind="alert", key=body["key"],
                                         lock=True)
            storage.record_version(s, definition=row, body=row.draft or {}, user_id=None,
                                   now=now)


@pytest.fixture
def sales(engine: Engine) -> Sales:
    return Sales(engine)


def test_threshold_alert_fires_once_per_crossing(sales: Sales) -> None:
    first = sales.sale("500.00")
    sales.sale("99.00", stage="lost")  # outside the report's filter
    alert = sales.alert(condition={"type": "above", "threshold": "1000"},
                        schedule="0 9 * * *")
    assert alert["state"] == "normal"
    assert alert["next_check_at"] == START.isoformat().replace("+00:00", "Z")

    sales.tick(hours=1)  # 09:00: 500 is not above 1000
    assert sales.state(alert)["last_value"] == "500.00" and sales.firings(alert) == []

    second = sales.sale("600.00")  # 1100 > 1000
    sales.tick(hours=12)  # 21:00: nothing due (the schedule is daily at 09:00)
    assert sales.firings(alert) == []
    sales.tick(hours=12)  # Tuesday 09:00: crossed
    fired = sales.firings(alert)
    assert [(f["value"], f["recipients"]) for f in fired] == [("1100.00", [str(sales.director)])]
    assert sales.state(alert)["state"] == "crossed"
    assert sales.inbox() == ["Won alert: 1100.00 is above 1000"]

    sales.sale("1.00")  # still crossed (1101)
    sales.tick(days=1)
    sales.tick(days=1)
    assert len(sales.firings(alert)) == 1 and len(sales.inbox()) == 1
    assert sales.state(alert)["last_value"] == "1101.00"

    sales.change(second, stage="lost")  # 501: recovered, silently
    sales.tick(days=1)
    assert sales.state(alert)["state"] == "normal" and len(sales.firings(alert)) == 1

    sales.change(first, amount="2000.00")  # 2001: crosses again
    sales.tick(days=1)
    assert [f["value"] for f in sales.firings(alert)] == ["1100.00", "2001.00"]
    assert len(sales.inbox()) == 2


def test_weekly_drop_alert_per_region(sales: Sales) -> None:
    week = timedelta(days=7)
    # The week of 22 Dec 2025 and of 29 Dec; west does not drop, east drops 30%.
    sales.sale("1000.00", at=START - 2 * week + timedelta(hours=3))
    sales.sale("700.00", at=START - week + timedelta(days=6, hours=14))  # Sun 4 Jan 23:00 local
    sales.sale("100.00", region="west", at=START - 2 * week)
    sales.sale("500.00", region="west", at=START - week)
    sales.sale("5000.00", at=START + timedelta(hours=1))  # this week: not complete yet
    alert = sales.alert(condition={"type": "change", "period": "week", "direction": "down",
                                   "percent": "20"},
                        filter={"field": "region", "op": "eq", "value": "east"},
                        schedule="0 9 * * 1")
    west = sales.alert(condition={"type": "change", "period": "week", "percent": "20"},
                       filter={"field": "region", "op": "eq", "value": "west"},
                       schedule="0 9 * * 1")
    sales.tick(hours=1)  # Monday 09:00
    fired = sales.firings(alert)
    assert [(f["value"], f["previous_value"]) for f in fired] == [("700.00", "1000.00")]
    assert "下降30.0%" in fired[0]["message"]  # in the owner's language (the engine's: zh)
    assert sales.inbox() == ["Won alert: 700.00 in the week from 2025-12-29, down 30.0% "
                             "from 1000.00"]
    assert sales.firings(west) == []  # +400%: not a drop

    # Next Monday: last week (5000) vs the week before (700): recovered.
    sales.tick(days=7)
    assert sales.state(alert)["state"] == "normal"
    # The week after has 3000: -40% from 5000, a new crossing.
    sales.sale("3000.00", at=START + week + timedelta(days=2))
    sales.tick(days=7)
    assert [f["value"] for f in sales.firings(alert)] == ["700.00", "3000.00"]


def test_each_recipient_reads_the_alert_in_their_language(sales: Sales) -> None:
    sales.sale("1100.00")
    sales.sale("300.00", at=START - timedelta(days=7))
    sales.sale("1000.00", at=START - timedelta(days=14))
    both = [str(sales.director), str(sales.zhang)]
    big = sales.alert(label={"zh": "大单提醒", "en": "Big deals"}, recipients=both,
                      condition={"type": "above", "threshold": "1000"})
    assert big["label"] == {"zh": "大单提醒", "en": "Big deals"}  # kept for editing
    drop = sales.alert(label={"zh": "周赢单下降", "en": "Weekly drop"}, recipients=both,
                       condition={"type": "change", "period": "week", "percent": "50"},
                       schedule="0 9 * * 1")
    monthly = sales.alert(label="月度上升", recipients=both, schedule="0 9 * * 1",
                          condition={"type": "change", "period": "month", "direction": "up",
                                     "percent": "10"})
    sales.tick(hours=1)  # Monday 5 Jan 09:00
    assert [len(sales.firings(a)) for a in (big, drop, monthly)] == [1, 1, 0]
    assert sorted(sales.notes(sales.director)) == [
        ("Big deals: 2400.00 is above 1000", "Big deals: 2400.00 is above 1000"),
        ("Weekly drop: 300.00 in the week from 2025-12-29, down 70.0% from 1000.00",
         "Weekly drop: 300.00 in the week from 2025-12-29, down 70.0% from 1000.00")]
    assert sorted(sales.inbox(sales.zhang)) == [
        "周赢单下降：2025-12-29起的一周为300.00，比前一周的1000.00下降70.0%",
        "大单提醒：当前值2400.00，高于1000"]

    sales.sale("2000.00", at=START - timedelta(days=40))  # 26 November
    sales.sale("5000.00", at=START - timedelta(days=20))  # 16 December
    sales.tick(days=7)  # Monday 12 Jan: December (6300) vs November (2000)
    # A plain label reads the same in every language.
    assert sales.inbox(sales.zhang)[-1] == (
        "月度上升：2025-12-01起的一个月为6300.00，比前一个月的2000.00上升215.0%")
    assert sales.inbox()[-1] == ("月度上升: 6300.00 in the month from 2025-12-01, up 215.0% "
                                 "from 2000.00")


def test_package_alert_copies_keep_the_label_in_both_languages(
        sales: Sales, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(assignees, "role_members", lambda session, app, role: [
        sales.director, sales.zhang] if role == "sales_manager" else [])
    sales.package_alert({"key": "big_week", "label": {"zh": "大单周", "en": "Big week"},
                         "report": "won_weekly", "measure": "won", "role": "sales_manager",
                         "condition": {"type": "above", "threshold": "1000"}})
    sales.sale("1500.00")
    sales.tick(minutes=1)  # the worker's pass makes the copies …
    sales.tick(hours=1)  # … and checks them at 09:00
    with sales.world.sessions.begin() as s:
        t = alerts.alerts_table
        labels = [r.definition["label"] for r in s.execute(sa.select(t)).all()]
    assert labels == [{"zh": "大单周", "en": "Big week"}] * 2
    assert sales.inbox() == ["Big week: 1500.00 is above 1000"]
    assert sales.inbox(sales.zhang) == ["大单周：当前值1500.00，高于1000"]


def test_bad_alerts_are_refused_with_their_path(sales: Sales) -> None:
    cases = [
        ({"measure": "nope", "condition": {"type": "above", "threshold": "1"}}, "$.measure"),
        ({"measure": "s", "condition": {"type": "above", "threshold": "1"}}, "$.measure"),
        ({"condition": {"type": "above", "threshold": "1"}, "schedule": "every day"},
         "$.schedule"),
        ({"condition": {"type": "change", "period": "week", "percent": "0"}},
         "$.condition.percent"),
        ({"condition": {"type": "change", "period": "week", "percent": "5",
                        "date_field": "name"}}, "$.condition.date_field"),
        ({"condition": {"type": "above", "threshold": "1"},
          "filter": {"field": "nope", "op": "eq", "value": 1}}, "$.filter.field"),
        ({"condition": {"type": "above", "threshold": "1"}, "label": ""}, "$.label"),
        ({"condition": {"type": "above", "threshold": "1"}, "label": {"chinese": "提醒"}},
         "$.label"),
        ({"condition": {"type": "above", "threshold": "1"}, "label": {"zh": " "}}, "$.label"),
        ({"condition": {"type": "above", "threshold": "1"}, "label": 7}, "$.label"),
    ]
    for definition, path in cases:
        with pytest.raises((DefinitionInvalid, FilterInvalid)) as err:
            sales.alert(**definition)
        assert err.value.errors[0].path == path, definition


def test_alert_api(app_factory: Any, make_user: Any) -> None:
    clock = FrozenClock(START)
    app = app_factory(clock=clock)
    _, token = make_user("boss", is_admin=True, language="en", app=app)
    c = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert c.post("/api/apps", json={"key": "demo", "name": label("Demo")}).status_code == 201
    assert c.put("/api/apps/demo/forms/opportunity/draft",
                 json={"definition": OPPORTUNITY}).status_code == 200
    assert c.post("/api/apps/demo/forms/opportunity/publish", json={}).status_code == 200
    assert c.put("/api/apps/demo/reports/won_weekly/draft",
                 json={"definition": REPORT}).status_code == 200
    assert c.post("/api/apps/demo/reports/won_weekly/publish", json={}).status_code == 200
    for amount in ("300.00", "800.00"):
        r = c.post("/api/apps/demo/forms/opportunity/records", json={"values": {
            "name": "o", "amount": amount, "stage": "won", "won_at": START.isoformat()}})
        assert r.status_code == 201, r.text
    me = c.get("/api/auth/me").json()["id"]
    definition = {"label": {"zh": "大单周", "en": "Big week"}, "report": "won_weekly",
                  "measure": "won",
                  "condition": {"type": "above", "threshold": "1000"},
                  "schedule": "0 9 * * 1", "recipients": [me]}
    created = c.post("/api/apps/demo/alerts", json={"definition": definition})
    assert created.status_code == 201, created.text
    alert_id = created.json()["id"]
    assert [(a["id"], a["label"]) for a in c.get("/api/apps/demo/alerts").json()] == [
        (alert_id, {"zh": "大单周", "en": "Big week"})]
    checked = c.post(f"/api/apps/demo/alerts/{alert_id}/check").json()
    assert checked["fired"] is True and checked["state"] == "crossed"
    assert c.post(f"/api/apps/demo/alerts/{alert_id}/check").json()["fired"] is False
    firings = c.get(f"/api/apps/demo/alerts/{alert_id}/firings").json()
    assert [f["value"] for f in firings] == ["1100.00"]
    # The owner reads English: the firing and their notification say it in English.
    assert firings[0]["message"] == "Big week: 1100.00 is above 1000"
    assert [n["title"] for n in c.get("/api/notifications").json()["items"]
            if n["kind"] == "report_alert"] == ["Big week: 1100.00 is above 1000"]
    raised = {**definition, "condition": {"type": "above", "threshold": "5000"}}
    updated = c.put(f"/api/apps/demo/alerts/{alert_id}", json={"definition": raised})
    assert updated.status_code == 200 and updated.json()["state"] == "normal"
    bad = c.post("/api/apps/demo/alerts", json={"definition": {**definition, "measure": "zz"}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.measure"
    bad = c.post("/api/apps/demo/alerts", json={"definition": {**definition, "label": {}}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.label"
    rep_id, other = make_user("rep", app=app)
    assert c.get(f"/api/apps/demo/alerts/{alert_id}",
                 headers={"Authorization": f"Bearer {other}"}).status_code in (403, 404)
    # A recipient must be able to see the report (no texts into anyone's inbox).
    bad = c.post("/api/apps/demo/alerts", json={"definition": {
        **definition, "recipients": [me, str(rep_id)]}})
    assert bad.status_code == 422 and bad.json()["errors"][0]["path"] == "$.recipients[1]"
    # An API token (even the owner's) reads alerts but does not change them.
    made = c.post("/api/tokens", json={"name": "ro", "apps": ["demo"], "actions": ["read"]})
    assert made.status_code == 201, made.text
    tok = {"Authorization": f"Bearer {made.json()['token']}"}
    assert c.get(f"/api/apps/demo/alerts/{alert_id}", headers=tok).status_code == 200
    refused = [c.post("/api/apps/demo/alerts", json={"definition": definition}, headers=tok),
               c.put(f"/api/apps/demo/alerts/{alert_id}", json={"definition": raised},
                     headers=tok),
               c.post(f"/api/apps/demo/alerts/{alert_id}/check", headers=tok),
               c.delete(f"/api/apps/demo/alerts/{alert_id}", headers=tok)]
    assert [r.status_code for r in refused] == [403] * 4
    assert c.delete(f"/api/apps/demo/alerts/{alert_id}").status_code == 204
    assert c.get(f"/api/apps/demo/alerts/{alert_id}").status_code == 404
    assert Decimal(firings[0]["value"]) == Decimal("1100.00")
