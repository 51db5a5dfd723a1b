"""Exactly-once under real concurrency, on PostgreSQL only: worker
processes racing for 1,000 due timers, 20 simultaneous approvals of one
task, and a worker killed with SIGKILL in the middle of its run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from tangram.engines.flows import tasks
from tangram.engines.flows.runtime import start_instance
from tangram.engines.flows.tables import history_table, instances_table, notifications_table
from tangram.errors import Conflict
from tests.conftest import POSTGRES_URL
from tests.flow_factories import FlowWorld, approval, end, flow_body, start

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="needs PostgreSQL: set "
                                "TANGRAM_TEST_POSTGRES_URL")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def world(engine, db_url) -> FlowWorld:
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks with SKIP LOCKED across processes: PostgreSQL only")
    w = FlowWorld(engine)
    w.user("alice")
    w.user("bob")
    w.db_url = db_url  # type: ignore[attr-defined]
    return w


def _due_instances(world: FlowWorld, n: int) -> None:
    """``n`` instances each waiting on a delay that is already due in real time."""
    world.publish_flow(flow_body("tick", start("manual", next="wait"), {
        "type": "delay", "key": "wait", "duration": {"minutes": 1}, "next": "note"}, {
        "type": "action", "key": "note", "next": "end", "action": {
            "kind": "notify", "to": [{"kind": "user", "users": ["alice"]}],
            "title": "tick {{ instance.id }}"}}, end(), form=None))
    world.clock.set(datetime.now(UTC) - timedelta(hours=1))
    world.run(lambda ctx: [start_instance(ctx, app=world.app, flow="tick", started_by=None,
                                          trigger="manual") for _ in range(n)])


def _worker(world: FlowWorld, name: str, lease: float = 30) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tests.integration.flow_worker_proc",
                             world.db_url, name, str(lease)], cwd=ROOT)


def _effects(world: FlowWorld) -> tuple[int, int, int]:
    with world.sessions.begin() as s:
        notes = s.execute(sa.select(sa.func.count()).select_from(notifications_table)).scalar()
        ended = s.execute(sa.select(sa.func.count()).select_from(history_table)
                          .where(history_table.c.action == "ended")).scalar()
        running = s.execute(sa.select(sa.func.count()).select_from(instances_table)
                            .where(instances_table.c.status == "running")).scalar()
    return notes, ended, running


def test_two_worker_processes_fire_1000_timers_exactly_once(world):
    _due_instances(world, 1000)
    workers = [_worker(world, f"w{i}") for i in range(2)]
    for w in workers:
        assert w.wait(timeout=300) == 0
    assert _effects(world) == (1000, 1000, 0)
    with world.sessions.begin() as s:
        by_worker = s.execute(sa.text(
            "SELECT claimed_by, count(*) FROM flow_timers GROUP BY claimed_by")).all()
    assert sum(n for _, n in by_worker) == 1000


def test_a_worker_killed_mid_run_leaves_nothing_half_done(world):
    _due_instances(world, 300)
    victim = _worker(world, "victim", lease=2)
    deadline = time.monotonic() + 60
    while _effects(world)[1] < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    notes, ended, running = _effects(world)
    assert notes == ended and running > 0, "the victim should die mid-run"
    time.sleep(2.5)  # its claims expire
    survivor = _worker(world, "survivor", lease=30)
    assert survivor.wait(timeout=300) == 0
    assert _effects(world) == (300, 300, 0)


@pytest.mark.parametrize("by", ["task", "instance"])
def test_twenty_concurrent_approvals_exactly_one_succeeds(world, by):
    world.publish_flow(flow_body("f", start(next="a"), approval("a", "bob"), end()))
    iid = world.submit("f", "alice")
    task = world.open_task(iid, "bob")

    def approve() -> None:
        if by == "task":
            world.act_on(task["id"], "bob")
        else:  # "my task" in the request, as a record page's button does
            world.run(lambda ctx: tasks.act_on_my_task(
                ctx, instance_id=iid, action="approve", params=tasks.ActionParams()),
                actor=world.actor_of("bob"))

    assert sorted(_at_once(20, approve)) == ["409"] * 19 + ["ok"]
    assert world.history(iid).count("approve") == 1


def test_ten_submissions_of_one_record_at_once_start_one_approval(world):
    world.publish_flow(flow_body("f", start(next="a"), approval("a", "bob"), end()))
    rid = world.contract()
    outcomes = _at_once(10, lambda: world.submit("f", "alice", rid))
    assert sorted(outcomes) == ["409"] * 9 + ["ok"]
    with world.sessions.begin() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(instances_table)).scalar() == 1


def _at_once(n: int, fn: Any) -> list[str]:
    """Run ``fn`` in ``n`` threads released together: "ok" or "409" each."""
    barrier = threading.Barrier(n)
    outcomes: list[str] = []
    lock = threading.Lock()

    def run() -> None:
        barrier.wait()
        try:
            fn()
            result = "ok"
        except Conflict:
            result = "409"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes
