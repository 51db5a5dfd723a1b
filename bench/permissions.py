"""Permissions benchmark: a scoped listing against an unscoped one.

Run: ``uv run python -m bench.permissions`` (PostgreSQL too when
TANGRAM_TEST_POSTGRES_URL is set). A form holds N rows (default 1,000,000 on
PostgreSQL, 200,000 on SQLite; set TANGRAM_BENCH_ROWS to change both) owned by
the 200 users of a 25-department org tree. It times listing the first 50
records through the records service — as a sales rep whose role's scope is
"own" (RolePolicy: grants, memberships and shares read per request, the scope
in the WHERE clause) and as an administrator (no predicate) — and prints both
side by side, ending with

    bench.permissions: scoped_over_unscoped=<ratio>

(the PostgreSQL ratio when PostgreSQL ran, else SQLite's). Bench rows are
written with raw inserts (no validation, audit or events) to keep setup short.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bench.common import databases, median_of
from tangram.db import new_id
from tangram.engines.context import Actor, EngineContext
from tangram.engines.directory import departments_table, user_departments_table, users_table
from tangram.engines.forms import records
from tangram.engines.forms.query import ListQuery
from tangram.engines.forms.registry import get_runtime
from tangram.platform.permissions import roles
from tangram.platform.permissions.policy import RolePolicy
from tests.factories import World, field, form_body

N_USERS = 200
REPEAT = 15
BATCH = 20_000
NOW = datetime(2026, 1, 5, tzinfo=UTC)


def row_count(backend: str) -> int:
    default = 1_000_000 if backend == "postgresql" else 200_000
    return int(os.environ.get("TANGRAM_BENCH_ROWS", default))


def build_org(world: World) -> list[uuid.UUID]:
    """HQ → 4 regions → 5 teams each; 200 users, 8 per team."""
    with world.sessions.begin() as s:
        root = new_id()
        depts = [{"id": root, "parent_id": None, "name": "HQ", "created_at": NOW}]
        teams = []
        for r in range(4):
            region = new_id()
            depts.append({"id": region, "parent_id": root, "name": f"R{r}", "created_at": NOW})
            for t in range(5):
                team = new_id()
                teams.append(team)
                depts.append({"id": team, "parent_id": region, "name": f"T{r}{t}",
                              "created_at": NOW})
        s.execute(departments_table.insert(), depts)
        users = [new_id() for _ in range(N_USERS)]
        s.execute(users_table.insert(), [
            {"id": u, "username": f"rep{i}", "display_name": f"Rep {i}", "is_admin": False,
             "status": "active", "created_at": NOW, "updated_at": NOW,
             "primary_department_id": teams[i % len(teams)]} for i, u in enumerate(users)])
        s.execute(user_departments_table.insert(), [
            {"user_id": u, "department_id": teams[i % len(teams)], "is_head": False}
            for i, u in enumerate(users)])
        roles.publish_role(s, app=world.app, body={
            "key": "rep", "label": {"en": "Rep"},
            "forms": {"deal": {"actions": ["read"], "scope": "own"}}}, actor_id=None, now=NOW)
        for u in users:
            roles.assign_role(s, app=world.app, role="rep", user_id=u, actor_id=None, now=NOW)
    return users


def fill(world: World, users: list[uuid.UUID], n: int) -> None:
    with world.sessions.begin() as s:
        table = get_runtime(s, world.app, "deal").table
    rng = random.Random(5)
    start = time.perf_counter()
    done = 0
    while done < n:
        size = min(BATCH, n - done)
        rows = []
        for i in range(done, done + size):
            at = NOW + timedelta(seconds=i)
            owner = users[rng.randrange(N_USERS)]
            rows.append({"id": new_id(), "created_at": at, "updated_at": at, "created_by": owner,
                         "updated_by": owner, "owner": owner, "version": 1, "name": f"deal {i}",
                         "amount": rng.randrange(1_000_000)})
        with world.engine.begin() as conn:
            conn.execute(table.insert(), rows)
        done += size
    with world.engine.begin() as conn:
        if world.engine.dialect.name == "postgresql":
            conn.execute(sa.text(f'ANALYZE "{table.name}"'))  # a bench-made table name
        else:
            conn.exec_driver_sql("ANALYZE")
    print(f"  {n:,} rows inserted in {time.perf_counter() - start:.1f} s")


def listing_time(world: World, actor: Actor) -> tuple[float, int]:
    count = 0

    def once() -> None:
        nonlocal count
        with world.sessions.begin() as s:
            ctx = EngineContext(session=s, actor=actor, clock=world.clock,
                                policy=RolePolicy(s, clock=world.clock))
            count = len(records.list_records(ctx, app=world.app, form="deal",
                                             query=ListQuery(limit=50))["items"])

    once()  # warm caches (compiled form, statement cache)
    return median_of(once, repeat=REPEAT), count


def main() -> None:
    ratios: dict[str, float] = {}
    with databases() as engines:
        for backend, engine in engines:
            world = World(engine, "crm")
            world.publish(form_body("deal", field("name"), field("amount", "integer")))
            users = build_org(world)
            n = row_count(backend)
            print(f"{backend}: {N_USERS} users in a 25-department tree")
            fill(world, users, n)
            rep = Actor(id=users[7], username="rep7")
            admin = Actor(id=None, username="admin", is_admin=True)
            scoped, seen = listing_time(world, rep)
            unscoped, _ = listing_time(world, admin)
            assert seen == 50, f"the rep should see a full page, saw {seen}"
            ratios[backend] = scoped / unscoped
            print(f"  list 50 of {n:,}: rep (own scope) {scoped * 1000:.2f} ms | admin "
                  f"(no scope) {unscoped * 1000:.2f} ms | ratio {ratios[backend]:.2f}")
    final = ratios.get("postgresql", ratios.get("sqlite", 0.0))
    print(f"bench.permissions: scoped_over_unscoped={final:.2f}")


if __name__ == "__main__":
    main()
