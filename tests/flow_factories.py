"""Factories for flow tests: users and departments, flow bodies from a few
node helpers, and a world that submits, acts and runs the worker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from tangram.db import new_id
from tangram.engines.context import Actor
from tangram.engines.directory import departments_table, user_departments_table, users_table
from tangram.engines.flows import service, tasks, triggers
from tangram.engines.flows.assignees import actor_for
from tangram.engines.flows.tables import (
    history_table,
    instances_table,
    notifications_table,
    tasks_table,
)
from tangram.engines.flows.worker import run_due
from tangram.engines.forms.records import create_record
from tests.factories import World, field, form_body, label


def start(trigger: str = "submitted", next: str = "a", **options: Any) -> dict[str, Any]:
    return {"type": "start", "key": "start", "trigger": {"kind": trigger, **options},
            "next": next}


def approval(key: str, *users: str, next: str = "end", mode: str = "any",
             **options: Any) -> dict[str, Any]:
    assignees = options.pop("assignees", None) or [{"kind": "user", "users": list(users)}]
    return {"type": "approval", "key": key, "label": label(key), "assignees": assignees,
            "mode": mode, "next": next, **options}


def end(key: str = "end", outcome: str = "approved") -> dict[str, Any]:
    return {"type": "end", "key": key, "outcome": outcome}


def flow_body(key: str, *nodes: dict[str, Any], form: str | None = "contract",
              **options: Any) -> dict[str, Any]:
    return {"key": key, "label": label(key), "form": form, "nodes": list(nodes), **options}


CONTRACT_FORM = form_body(
    "contract", field("title"), field("amount", "decimal", scale=2),
    field("status", "select", options=[{"value": v, "label": label(v)} for v in (
        "draft", "in_approval", "approved", "rejected")]),
    field("due_date", "date"), field("manager", "user"))


def contract_app_admin(app: Any, make_user: Any, key: str = "crm") -> Any:
    """An HTTP client of a new administrator, and app ``key`` with the
    contract form published (the flow HTTP tests' starting point)."""
    from fastapi.testclient import TestClient

    _, token = make_user("admin", is_admin=True, app=app)
    admin = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    assert admin.post("/api/apps", json={"key": key, "name": label(key)}).status_code == 201
    assert admin.put(f"/api/apps/{key}/forms/contract/draft",
                     json={"definition": CONTRACT_FORM}).status_code == 200
    assert admin.post(f"/api/apps/{key}/forms/contract/publish", json={}).status_code == 200
    return admin


class FlowWorld(World):
    """An app with a contract form, users by name, and flow helpers."""

    def __init__(self, engine: Engine, **kwargs: Any) -> None:
        super().__init__(engine, **kwargs)
        self.users: dict[str, uuid.UUID] = {}
        self.publish(CONTRACT_FORM)

    def user(self, name: str, *, admin: bool = False, department: uuid.UUID | None = None,
             head: bool = False) -> uuid.UUID:
        uid = new_id()
        now = datetime(2026, 1, 1, tzinfo=UTC)
        with self.sessions.begin() as s:
            s.execute(users_table.insert().values(
                id=uid, username=name, display_name=name, is_admin=admin, created_at=now,
                updated_at=now, primary_department_id=department))
            if department:
                s.execute(user_departments_table.insert().values(
                    user_id=uid, department_id=department, is_head=head))
        self.users[name] = uid
        return uid

    def department(self, name: str, parent: uuid.UUID | None = None) -> uuid.UUID:
        did = new_id()
        with self.sessions.begin() as s:
            s.execute(departments_table.insert().values(
                id=did, name=name, parent_id=parent, created_at=self.clock.now()))
        return did

    def actor_of(self, name: str) -> Actor:
        with self.sessions.begin() as s:
            actor = actor_for(s, self.users[name])
        assert actor is not None
        return actor

    def publish_flow(self, body: dict[str, Any]) -> dict[str, Any]:
        def go(ctx: Any) -> dict[str, Any]:
            service.save_flow_draft(ctx, app=self.app, key=body["key"], body=body)
            return service.publish_flow(ctx, app=self.app, key=body["key"])
        return self.run(go)

    def contract(self, by: str | None = None, **values: Any) -> str:
        data = {"title": "HT-1", "amount": "1000", "status": "draft", **values}
        actor = self.actor_of(by) if by else None
        return self.run(lambda ctx: create_record(ctx, app=self.app, form="contract",
                                                  data=data), actor=actor)["id"]

    def submit(self, flow: str, by: str, record_id: str | None = None,
               **variables: Any) -> uuid.UUID:
        if record_id is None:
            record_id = self.contract()
        return self.run(lambda ctx: triggers.start_by_user(
            ctx, app=self.app, flow=flow, record_id=record_id, variables=variables),
            actor=self.actor_of(by))

    def open_task(self, instance_id: uuid.UUID, user: str) -> dict[str, Any]:
        found = self.tasks(instance_id, user=user, status="open")
        assert len(found) == 1, f"{user} has {len(found)} open tasks: {self.tasks(instance_id)}"
        return found[0]

    def tasks(self, instance_id: uuid.UUID, *, user: str | None = None,
              status: str | None = None) -> list[dict[str, Any]]:
        t = tasks_table
        stmt = sa.select(t).where(t.c.instance_id == instance_id, t.c.kind == "approve")
        if user:
            stmt = stmt.where(t.c.assignee_id == self.users[user])
        if status:
            stmt = stmt.where(t.c.status == status)
        with self.sessions.begin() as s:
            return [dict(r) for r in s.execute(stmt.order_by(t.c.position, t.c.created_at))
                    .mappings()]

    def act(self, instance_id: uuid.UUID, user: str, action: str = "approve",
            **params: Any) -> dict[str, Any]:
        task = self.open_task(instance_id, user)
        return self.act_on(task["id"], user, action, **params)

    def act_on(self, task_id: uuid.UUID, user: str, action: str = "approve",
               **params: Any) -> dict[str, Any]:
        return self.run(lambda ctx: tasks.act_on_task(
            ctx, task_id=task_id, action=action, params=tasks.ActionParams(**params)),
            actor=self.actor_of(user))

    def instance(self, instance_id: uuid.UUID) -> dict[str, Any]:
        with self.sessions.begin() as s:
            row = s.execute(sa.select(instances_table)
                            .where(instances_table.c.id == instance_id)).mappings().one()
            return dict(row)

    def history(self, instance_id: uuid.UUID) -> list[str]:
        h = history_table
        with self.sessions.begin() as s:
            return list(s.execute(sa.select(h.c.action).where(h.c.instance_id == instance_id)
                                  .order_by(h.c.at, h.c.id)).scalars())

    def notifications(self, user: str, kind: str | None = None) -> list[dict[str, Any]]:
        n = notifications_table
        stmt = sa.select(n).where(n.c.user_id == self.users[user])
        if kind:
            stmt = stmt.where(n.c.kind == kind)
        with self.sessions.begin() as s:
            return [dict(r) for r in s.execute(stmt).mappings()]

    def record(self, record_id: str) -> dict[str, Any]:
        from tangram.engines.forms.records import get_record

        return self.run(lambda ctx: get_record(ctx, app=self.app, form="contract",
                                               record_id=record_id))

    def work(self, **kwargs: Any) -> int:
        return run_due(self.engine, self.clock, **kwargs)
