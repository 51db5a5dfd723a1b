"""A package's data sets on SQLite and PostgreSQL: the org fixture
(``data/<set>/_org.json``), rows' owners and creation times (``$owner``,
``$created_at``) and relative dates (``$date``, ``$datetime``) — loaded by
the generic installer, idempotent where they can be, every problem reported
with its file and JSON path, nothing installed on a problem."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tangram.engines.directory import departments_table, user_departments_table, users_table
from tangram.engines.forms.query import ListQuery
from tangram.engines.forms.records import list_records
from tangram.engines.forms.registry import get_runtime
from tangram.platform.auth.service import authenticate
from tangram.platform.packages.errors import PackageInvalid
from tangram.platform.packages.export import export_app, validate_files
from tangram.platform.packages.install import install_package, load_demo
from tangram.platform.packages.loader import load_package
from tangram.platform.packages.store import find_installed
from tangram.platform.permissions.tables import role_assignments_table
from tests.factories import World
from tests.package_factories import as_files, helpdesk_v1, label

PASSWORD = "demo-pass-2026"  # noqa: S105 - a test fixture's password


@pytest.fixture
def world(engine: Engine) -> World:
    return World(engine)  # FrozenClock: 2026-01-05 01:00 UTC, 09:00 in Asia/Shanghai


def demo_package() -> dict[str, Any]:
    """The help desk with a demo support team whose tickets have history."""
    pkg = copy.deepcopy(helpdesk_v1())
    pkg["forms/ticket.json"]["fields"] += [
        {"key": "due", "type": "date", "label": label("截止", "Due")},
        {"key": "opened", "type": "datetime", "label": label("打开", "Opened")}]
    pkg["data/demo/_org.json"] = {
        "departments": [{"id": "support", "parent_id": None, "name": "客服部"},
                        {"id": "l1", "parent_id": "support", "name": "一线"}],
        "users": [{"id": "lead", "name": "林主管", "mobile": "13900000001",
                   "department_ids": ["support"], "is_head": ["support"],
                   "password": PASSWORD},
                  {"id": "agent1", "name": "王一", "department_ids": ["l1"],
                   "password": PASSWORD},
                  {"id": "agent2", "name": "李二", "department_ids": ["l1"]}],
        "roles": [{"role": "agent", "users": ["lead"]},
                  {"role": "agent", "departments": ["l1"], "include_sub_departments": False}]}
    pkg["data/demo/customer.json"] = [
        {"$ref": "initech", "$owner": "lead", "$created_at": {"$date": "-1y"},
         "name": "Initech", "tier": "gold"}]
    pkg["data/demo/ticket.json"] = [
        {"$owner": "agent1", "$created_at": {"$datetime": "-45d 10:30"}, "subject": "Old",
         "customer": {"$ref": "initech"}, "due": {"$date": "-1m"},
         "opened": {"$datetime": "-45d 10:30"}},
        {"$owner": "agent2", "subject": "Mine", "due": {"$date": "+2w"}},
        {"$created_at": "2025-12-01T08:00:00", "subject": "Stamped"},
        {"subject": "Plain"}]
    return pkg


def install(world: World, pkg: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return world.run(install_package, load_package(as_files(pkg)), **kwargs)


def tickets(world: World) -> dict[str, Any]:
    with world.sessions.begin() as s:
        t = get_runtime(s, "helpdesk", "ticket").table
        names = dict(s.execute(sa.select(users_table.c.id, users_table.c.username)).all())
        return {r.subject: (names.get(r.owner), names.get(r.created_by), r.created_at,
                            r.updated_at, r.due, r.opened)
                for r in s.execute(sa.select(t))}


def org_state(world: World) -> tuple[Any, ...]:
    with world.sessions.begin() as s:
        return (s.execute(sa.select(sa.func.count()).select_from(users_table)).scalar(),
                s.execute(sa.select(sa.func.count()).select_from(departments_table)).scalar(),
                sorted((r.role, bool(r.user_id), r.include_sub_departments) for r in s.execute(
                    sa.select(role_assignments_table).where(
                        role_assignments_table.c.app == "helpdesk"))),
                s.execute(sa.select(users_table.c.password_hash).where(
                    users_table.c.username == "lead")).scalar())


def boss(world: World) -> Any:
    """An administrator who installs (an Actor, and a user row)."""
    from tangram.db import new_id
    from tangram.engines.context import Actor

    admin = Actor(id=new_id(), username="boss", is_admin=True)
    with world.sessions.begin() as s:
        s.execute(users_table.insert().values(id=admin.id, username="boss", display_name="Boss",
                                              is_admin=True, created_at=world.clock.now(),
                                              updated_at=world.clock.now()))
    return admin


def test_a_row_may_be_given_no_owner(world):
    # Installed by a person, rows without $owner are theirs; "$owner": null
    # (a lead in a public pool) leaves the record without an owner.
    admin = boss(world)
    pkg = demo_package()
    pkg["data/demo/ticket.json"].append({"$owner": None, "$created_at": {"$date": "-2d"},
                                         "subject": "Pooled"})
    world.run(install_package, load_package(as_files(pkg)), demo=True, actor=admin)
    rows = tickets(world)
    assert rows["Plain"][:2] == ("boss", "boss")
    assert rows["Pooled"][:2] == (None, "boss")  # no owner; created by the installer
    assert rows["Pooled"][2] == datetime(2026, 1, 2, 16, 0, tzinfo=UTC)


def test_the_demo_set_brings_its_team_and_history(world):
    result = install(world, demo_package(), demo=True)
    assert result["rows"] == {"customer": 3, "ticket": 5}  # seed + demo
    rows = tickets(world)
    old = rows["Old"]
    assert old[:2] == ("agent1", "agent1")  # owner and creator
    assert old[2] == old[3] == datetime(2025, 11, 21, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai
    assert old[4] == date(2025, 12, 5) and old[5] == old[2]
    mine = rows["Mine"]
    assert mine[:2] == ("agent2", "agent2") and mine[2] == world.clock.now()
    assert mine[4] == date(2026, 1, 19)
    stamped = rows["Stamped"]
    assert stamped[0] is None and stamped[2] == datetime(2025, 12, 1, 0, 0, tzinfo=UTC)
    assert rows["Plain"][:3] == (None, None, world.clock.now())
    with world.sessions.begin() as s:
        c = get_runtime(s, "helpdesk", "customer").table
        initech = s.execute(sa.select(c).where(c.c.name == "Initech")).one()
        assert initech.created_at == datetime(2025, 1, 4, 16, 0, tzinfo=UTC)  # midnight local
        assert initech.ticket_count == 1
        # The org: heads, memberships, passwords only where given, role holders.
        lead = authenticate(s, username="lead", password=PASSWORD)
        authenticate(s, username="agent1", password=PASSWORD)
        heads = s.execute(sa.select(departments_table.c.external_id).join(
            user_departments_table, user_departments_table.c.department_id ==
            departments_table.c.id).where(user_departments_table.c.user_id == lead.id,
                                          user_departments_table.c.is_head)).scalars().all()
        assert heads == ["support"]
        assert s.execute(sa.select(users_table.c.password_hash, users_table.c.mobile).where(
            users_table.c.username == "agent2")).one() == (None, None)
    assert org_state(world)[2] == [("agent", False, False), ("agent", True, True)]


def test_loading_the_org_fixture_again_changes_nothing(world):
    install(world, demo_package(), demo=True)
    before = org_state(world)
    again = demo_package()
    del again["data/demo/customer.json"], again["data/demo/ticket.json"]
    world.run(load_demo, load_package(as_files(again)))
    assert org_state(world) == before


def test_an_owner_who_is_not_a_user_is_refused_naming_every_row(world):
    pkg = demo_package()
    pkg["data/demo/ticket.json"][1]["$owner"] = "nobody"
    pkg["data/demo/ticket.json"][3]["$owner"] = "ghost"
    with pytest.raises(PackageInvalid) as err:
        install(world, pkg, demo=True)
    assert {(e.file, e.path, e.code) for e in err.value.errors} == {
        ("data/demo/ticket.json", "$[1].$owner", "data_owner"),
        ("data/demo/ticket.json", "$[3].$owner", "data_owner")}
    assert "'nobody'" in err.value.errors[0].message
    with world.sessions.begin() as s:
        assert find_installed(s, "helpdesk") is None
        assert s.execute(sa.select(users_table.c.id).where(
            users_table.c.username == "lead")).first() is None  # the fixture rolled back too


def test_validation_reports_every_data_problem_at_once():
    pkg = demo_package()
    pkg["data/seed/_org.json"] = {"users": [{"id": "ops", "name": "运维",
                                             "password": PASSWORD}], "teams": []}
    org = pkg["data/demo/_org.json"]
    org["users"][1]["department_ids"] = ["l2"]
    org["users"][2]["password"] = "short"
    org["roles"].append({"role": "admin", "users": ["lead"]})
    org["roles"].append({"role": "agent"})
    pkg["data/demo/ticket.json"][0]["due"] = {"$date": "45 days ago"}
    pkg["data/demo/ticket.json"][1]["opened"] = {"$datetime": "-2d 9am"}
    pkg["data/demo/ticket.json"][2]["$owner"] = ["lead"]
    pkg["data/demo/ticket.json"][3]["$creatd_at"] = {"$date": "-1d"}
    report = validate_files(as_files(pkg), deep=False)
    assert not report["valid"]
    found = {(e["file"], e["path"], e["code"]) for e in report["errors"]}
    assert found == {
        ("data/seed/_org.json", "$.teams", "data_org"),
        ("data/seed/_org.json", "$.users[0].password", "data_password"),
        ("data/demo/_org.json", "$.users[1].department_ids", "data_org"),
        ("data/demo/_org.json", "$.users[2].password", "data_password"),
        ("data/demo/_org.json", "$.roles[2].role", "unknown_role"),
        ("data/demo/_org.json", "$.roles[3]", "data_org"),
        ("data/demo/ticket.json", "$[0].due", "data_date"),
        ("data/demo/ticket.json", "$[1].opened", "data_date"),
        ("data/demo/ticket.json", "$[2].$owner", "data_owner"),
        ("data/demo/ticket.json", "$[3].$creatd_at", "data_key")}


def test_the_seed_org_fixture_and_directives_survive_an_export(world):
    pkg = demo_package()
    pkg["data/seed/_org.json"] = {"departments": [{"id": "hq", "name": "总部"}],
                                  "users": [{"id": "ops", "name": "运维",
                                             "department_ids": ["hq"]}]}
    pkg["data/seed/ticket.json"][0].update({"$owner": "ops", "due": {"$date": "+1d"}})
    pkg["tools/generate.py"] = "print('a developer tool, never read')\n"
    install(world, pkg)
    exported = world.run(export_app, "helpdesk", layer=False)
    assert "data/seed/_org.json" in exported and "tools/generate.py" not in exported
    again = load_package(exported)
    assert again.org["seed"] == pkg["data/seed/_org.json"]
    assert again.data["seed"]["ticket"][0]["due"] == {"$date": "+1d"}
    assert "demo" not in again.org
    assert tickets(world)["Printer"][:2] == ("ops", "ops")


def test_rows_of_the_past_are_numbered_in_their_own_period(world):
    # A ticket of 2025-11 is TK-202511-…, not numbered for the install month.
    pkg = demo_package()
    pkg["forms/ticket.json"]["fields"].append(
        {"key": "number", "type": "autonumber", "pattern": "TK-{YYYY}{MM}-{seq:3}",
         "label": label("编号", "Number")})
    pkg["data/demo/ticket.json"].append(
        {"$created_at": {"$datetime": "-46d 09:00"}, "subject": "Older"})
    install(world, pkg, demo=True)
    with world.sessions.begin() as s:
        t = get_runtime(s, "helpdesk", "ticket").table
        numbers = dict(s.execute(sa.select(t.c.subject, t.c.number)).all())
    # The clock stands in 2026-01; "-45d"/"-46d" fall in 2025-11, 2025-12-01 in 2025-12.
    assert numbers["Older"] == "TK-202511-001" and numbers["Old"] == "TK-202511-002"
    assert numbers["Stamped"] == "TK-202512-001"
    assert numbers["Mine"].startswith("TK-202601-") and numbers["Plain"].startswith("TK-202601-")


def test_validation_refuses_an_owner_install_would_refuse():
    pkg = demo_package()
    pkg["data/demo/ticket.json"][1]["$owner"] = "ghost"       # in no fixture, no user
    pkg["data/seed/ticket.json"][0]["$owner"] = "lead"        # the demo fixture's: not yet
    report = validate_files(as_files(pkg))
    assert not report["valid"]
    assert {(e["file"], e["path"], e["code"]) for e in report["errors"]} == {
        ("data/demo/ticket.json", "$[1].$owner", "data_owner"),
        ("data/seed/ticket.json", "$[0].$owner", "data_owner")}
    assert "'ghost'" in report["errors"][0]["message"] + report["errors"][1]["message"]
    # Users of the installation the package is validated for count, as at install.
    report = validate_files(as_files(pkg), users=lambda names: names & {"ghost", "lead"})
    assert report["valid"], report["errors"]


def owner_defaults_package() -> dict[str, Any]:
    pkg = demo_package()
    pkg["forms/ticket.json"]["fields"] += [
        {"key": "handler", "type": "user", "label": label("处理人", "Handler"),
         "default_expr": "user.id"},
        {"key": "team", "type": "department", "label": label("部门", "Team"),
         "default_expr": "user.department"},
        {"key": "steps", "type": "sub_table", "label": label("步骤", "Steps"),
         "fields": [{"key": "what", "type": "text", "label": label("内容", "What")},
                    {"key": "by", "type": "user", "label": label("人", "By"),
                     "default_expr": "user.id"}]}]
    pkg["data/demo/ticket.json"][0]["steps"] = [{"what": "called"}]
    return pkg


def test_defaults_that_read_user_are_computed_as_the_rows_owner(world):
    admin = boss(world)
    world.run(install_package, load_package(as_files(owner_defaults_package())), demo=True,
              actor=admin)
    with world.sessions.begin() as s:
        t = get_runtime(s, "helpdesk", "ticket").table
        names = dict(s.execute(sa.select(users_table.c.id, users_table.c.username)).all())
        depts = dict(s.execute(sa.select(departments_table.c.id,
                                         departments_table.c.external_id)).all())
        rows = {r.subject: (names.get(r.handler), depts.get(r.team))
                for r in s.execute(sa.select(t))}
    steps = world.run(lambda ctx: next(r for r in list_records(
        ctx, app="helpdesk", form="ticket", query=ListQuery(limit=50))["items"]
        if r["subject"] == "Old")["steps"])
    assert rows["Old"] == ("agent1", "l1")        # $owner agent1, of team l1
    assert rows["Mine"] == ("agent2", "l1")
    assert rows["Plain"] == ("boss", None)        # no $owner: the installer's
    assert names[uuid.UUID(str(steps[0]["by"]))] == "agent1"
