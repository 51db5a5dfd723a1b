"""Business calendars over HTTP: an app built over HTTP (not from a package)
gets its calendar from the API, and a flow's working-time timeout counts in
it (holidays and make-up working days included)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.engines.access import AllowAll
from tests.factories import label
from tests.flow_factories import contract_app_admin

CALENDAR = {"label": {"zh": "2026 工作日历", "en": "2026 calendar"},
            "timezone": "Asia/Shanghai",
            "work_hours": [{"start": "09:00", "end": "12:00"}, {"start": "13:00", "end": "18:00"}],
            "weekend": [5, 6], "holidays": ["2026-01-05"], "workdays": []}


def flow(calendar: str) -> dict:
    return {"key": "f", "label": label("f"), "form": "contract", "nodes": [
        {"type": "start", "key": "start", "trigger": {"kind": "submitted"}, "next": "a"},
        {"type": "approval", "key": "a", "label": label("a"), "next": "done",
         "assignees": [{"kind": "user", "users": ["boss"]}],
         "timeouts": [{"after": {"hours": 2}, "time": "working", "calendar": calendar,
                       "actions": [{"kind": "remind"}]}]},
        {"type": "end", "key": "done", "outcome": "approved"}]}


@pytest.fixture
def world(app_factory, make_user):
    # Monday 2026-01-05 09:00 in Shanghai: a holiday in CALENDAR.
    clock = FrozenClock(datetime(2026, 1, 5, 1, 0, tzinfo=UTC))
    app = app_factory(clock=clock, policy=AllowAll())
    admin = contract_app_admin(app, make_user, key="buy")
    clients = {"admin": admin}
    for name in ("boss", "rep"):
        _, tok = make_user(name, app=app)
        clients[name] = TestClient(app, headers={"Authorization": f"Bearer {tok}"})
    return clients


def test_a_calendar_saved_over_http_is_listed_and_used_by_a_flow(world):
    admin = world["admin"]
    res = admin.put("/api/apps/buy/flows/f/draft", json={"definition": flow("cn_2026")})
    assert res.status_code == 200, res.text
    res = admin.post("/api/apps/buy/flows/f/publish", json={})
    assert res.status_code == 422 and "cn_2026" in res.text  # no such calendar yet

    res = admin.put("/api/apps/buy/calendars/cn_2026", json={"definition": CALENDAR})
    assert res.status_code == 200, res.text
    assert res.json() == {"key": "cn_2026", "version": 1}
    assert admin.put("/api/apps/buy/calendars/cn_2026",
                     json={"definition": CALENDAR}).json()["version"] == 2
    listed = admin.get("/api/apps/buy/calendars").json()
    assert listed == [{"key": "cn_2026", "version": 2, "label": CALENDAR["label"],
                       "timezone": "Asia/Shanghai"}]
    got = admin.get("/api/apps/buy/calendars/cn_2026").json()
    assert got["definition"]["holidays"] == ["2026-01-05"]

    res = admin.post("/api/apps/buy/flows/f/publish", json={})
    assert res.status_code == 200, res.text
    rec = admin.post("/api/apps/buy/forms/contract/records", json={"values": {
        "title": "HT-1", "amount": "100", "status": "draft"}})
    assert rec.status_code == 201, rec.text
    res = admin.post("/api/apps/buy/flows/f/start", json={"record_id": rec.json()["id"]})
    assert res.status_code == 201, res.text
    [task] = world["boss"].get("/api/flows/tasks", params={"box": "todo"}).json()["items"]
    # Monday is a holiday: two working hours end Tuesday 11:00 in Shanghai.
    assert task["due_at"] == "2026-01-06T03:00:00Z"


def test_calendar_errors_and_who_may_save_one(world):
    admin = world["admin"]
    res = admin.put("/api/apps/buy/calendars/cal", json={"definition": {
        **CALENDAR, "holidays": ["2026-13-01"]}})
    assert res.status_code == 422
    assert any(e["path"].startswith("$.holidays") for e in res.json()["errors"]), res.text
    res = admin.put("/api/apps/buy/calendars/cal", json={"definition": {
        **CALENDAR, "key": "other"}})
    assert res.status_code == 422 and res.json()["errors"][0]["code"] == "key_mismatch"
    assert admin.get("/api/apps/buy/calendars/cal").status_code == 404
    # Saving is for the app's builders; a signed-in user outside the app is refused.
    assert world["rep"].put("/api/apps/buy/calendars/cal",
                            json={"definition": CALENDAR}).status_code == 403
    assert world["rep"].get("/api/apps/buy/calendars").status_code == 403
