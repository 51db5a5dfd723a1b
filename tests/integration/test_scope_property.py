"""One policy, two forms: on random org charts, records, role assignments and
shares, the rows ``SELECT … WHERE row_predicate`` returns are exactly the rows
``check_row`` lets through — on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tangram.db import new_id
from tangram.engines.forms.registry import get_runtime
from tangram.errors import NotFound, PermissionDenied
from tangram.platform.permissions.policy import RolePolicy
from tangram.platform.permissions.tables import record_shares_table
from tests import permission_factories as pf
from tests.factories import World, field, form_body

APP = "crm"
STATUSES = ["new", "won", "lost"]
N_USERS = 5
# Roles covering every scope kind; the test assigns random subsets of them.
ROLES = {
    "own_rw": pf.grant("deal", ["read", "update"], "own"),
    "dept_r": pf.grant("deal", ["read"], "department"),
    "tree_rw": pf.grant("deal", ["read", "update"], "department_tree"),
    "all_r": pf.grant("deal", ["read"], "all"),
    "pool_r": pf.grant("deal", ["read"], "expression",
                       filter={"field": "owner", "op": "is_empty", "value": True}),
    "won_u": pf.grant("deal", ["read", "update"], "expression",
                      filter={"field": "status", "op": "eq", "value": "won"}),
    "mine_r": pf.grant("deal", ["read"], "expression",
                       filter={"field": "created_by", "op": "eq", "value": {"$user": "id"}}),
    "region_r": pf.grant("deal", ["read"], "expression", filter={
        "field": "region", "op": "in", "value": {"$user": "department_tree"}}),
    "team_or_pool_u": pf.grant("deal", ["read", "update"], "expression", filter={"or": [
        {"field": "owner", "op": "in_department", "value": {"$user": "department_tree"}},
        {"field": "status", "op": "eq", "value": "new"}]}),
    "nothing": pf.grant("deal", ["create"], "all"),
}


@pytest.fixture
def setup(engine):
    world = World(engine, APP)
    world.publish(form_body("deal", field("name"), field("status", "select", options=[
        {"value": s, "label": {"en": s}} for s in STATUSES]), field("region", "department")))
    with world.sessions.begin() as s:
        root = pf.department(s, "HQ")
        east = pf.department(s, "East", root)
        depts = [root, east, pf.department(s, "East-1", east), pf.department(s, "East-2", east),
                 pf.department(s, "West", root)]
        users = [pf.user(s, f"u{i}") for i in range(N_USERS)]
        for key, g in ROLES.items():
            pf.role(s, APP, key, g)
    return world, depts, users


scenario = st.fixed_dictionaries({
    "memberships": st.lists(st.sets(st.integers(0, 4), max_size=2), min_size=N_USERS,
                            max_size=N_USERS),
    "user_roles": st.lists(st.sets(st.sampled_from(sorted(ROLES)), max_size=3),
                           min_size=N_USERS, max_size=N_USERS),
    "dept_roles": st.lists(st.tuples(st.integers(0, 4), st.sampled_from(sorted(ROLES))),
                           max_size=3),
    "rows": st.lists(st.tuples(st.none() | st.integers(0, N_USERS - 1),
                               st.integers(0, N_USERS - 1), st.sampled_from(STATUSES),
                               st.none() | st.integers(0, 4), st.booleans()),
                     min_size=1, max_size=25),
    "shares": st.lists(st.tuples(st.integers(0, 24), st.booleans(), st.integers(0, 4),
                                 st.sampled_from(["read", "edit"])), max_size=4),
})


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(case=scenario)
def test_sql_predicate_and_record_check_agree(setup, case):
    world, depts, users = setup
    session = world.sessions()
    try:
        _check_case(session, depts, users, case)
    finally:
        session.rollback()
        session.close()


def _check_case(session, depts, users, case):
    for u, member_of in zip(users, case["memberships"], strict=True):
        pf.move(session, u, *[depts[i] for i in sorted(member_of)])
    for u, keys in zip(users, case["user_roles"], strict=True):
        for key in keys:
            pf.assign(session, APP, key, user_id=u)
    for d, key in case["dept_roles"]:
        pf.assign(session, APP, key, department_id=depts[d])
    table = get_runtime(session, APP, "deal").table
    ids = []
    for i, (owner, creator, status, region, deleted) in enumerate(case["rows"]):
        rid = new_id()
        ids.append(rid)
        session.execute(table.insert().values(
            id=rid, created_at=pf.NOW, updated_at=pf.NOW, version=1, name=f"d{i}",
            owner=None if owner is None else users[owner], created_by=users[creator],
            status=status, region=None if region is None else depts[region],
            deleted_at=pf.NOW if deleted else None))
    for row_i, to_user, holder, access in case["shares"]:
        if row_i >= len(ids):
            continue
        session.execute(record_shares_table.insert().values(
            id=new_id(), app=APP, form="deal", record_id=ids[row_i], access=access,
            user_id=users[holder] if to_user else None,
            department_id=None if to_user else depts[holder], created_at=pf.NOW))
    rows = [dict(r) for r in session.execute(sa.select(table)).mappings()]
    for u in users:
        who = pf.actor(session, u)
        for action in ("read", "update"):
            policy = RolePolicy(session)
            pred = policy.row_predicate(who, APP, "deal", table, action)
            stmt = sa.select(table.c.id)
            if pred is not None:
                stmt = stmt.where(pred)
            by_sql = {r.id for r in session.execute(stmt)}
            by_check = {r["id"] for r in rows if _allowed(RolePolicy(session), who, r, action)}
            assert by_sql == by_check, (who.username, action)


def _allowed(policy, who, row, action) -> bool:
    try:
        policy.check_row(who, APP, "deal", row, action)
    except (NotFound, PermissionDenied):
        return False
    return True


def test_owner_in_department_of_the_department_tree_is_the_department_tree_scope(setup):
    """Twins with the same memberships, one holding the department_tree scope,
    the other the filter written with in_department: they see the same rows
    (unowned rows and owners in several departments included)."""
    world, depts, users = setup
    root, east, east1, east2, west = depts
    with world.sessions.begin() as s:
        pf.role(s, APP, "tree_r", pf.grant("deal", ["read"], "department_tree"))
        pf.role(s, APP, "in_tree_r", pf.grant("deal", ["read"], "expression", filter={
            "field": "owner", "op": "in_department", "value": {"$user": "department_tree"}}))
        memberships = [(root,), (east,), (east1, west), (east2,), ()]
        twins = []
        for i, member_of in enumerate(memberships):
            pair = (pf.user(s, f"tree{i}", *member_of), pf.user(s, f"expr{i}", *member_of))
            pf.assign(s, APP, "tree_r", user_id=pair[0])
            pf.assign(s, APP, "in_tree_r", user_id=pair[1])
            twins.append(pair)
        owners = [None, *users, *(t for pair in twins for t in pair)]
        for u, member_of in zip(users, memberships, strict=True):
            pf.move(s, u, *member_of)
        table = get_runtime(s, APP, "deal").table
        for i, owner in enumerate(owners):
            s.execute(table.insert().values(
                id=new_id(), created_at=pf.NOW, updated_at=pf.NOW, version=1, name=f"d{i}",
                owner=owner, status="won"))

    def visible(session, who) -> set[str]:
        pred = RolePolicy(session).row_predicate(pf.actor(session, who), APP, "deal", table,
                                                 "read")
        return {r.name for r in session.execute(sa.select(table.c.name).where(pred))}

    with world.sessions() as s:
        seen = [(visible(s, tree), visible(s, expr)) for tree, expr in twins]
    assert all(by_scope == by_filter for by_scope, by_filter in seen)
    assert [len(by_scope) for by_scope, _ in seen] == [12, 9, 3, 3, 0]
