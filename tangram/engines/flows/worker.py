"""The worker: due triggers, timers and jobs, each claimed so that it runs
exactly once with any number of workers.

Claiming is one short transaction: ``SELECT … FOR UPDATE SKIP LOCKED`` (on
SQLite the single worker's BEGIN IMMEDIATE serializes instead) sets
``claimed_by`` and a lease. Finishing is another transaction that first
locks the instance, then changes the timer or job with ``WHERE claimed_by =
me AND lease_until > now`` — a worker whose lease ran out (it was paused or
presumed dead, and another worker took over) changes nothing and gives up.
A worker killed mid-step leaves its claim to expire; the step's own
transaction never committed, so the next worker runs it once.

    stop = threading.Event()
    run_worker(engine, SYSTEM_CLOCK, stop)
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from tangram.clock import Clock
from tangram.db import session_factory
from tangram.engines.context import EngineContext
from tangram.engines.flows import actions, approvals
from tangram.engines.flows.runtime import Execution, FlowError, Run, error_text, open_run
from tangram.engines.flows.tables import jobs_table, timers_table
from tangram.engines.flows.triggers import tick_due_triggers
from tangram.engines.notify.deliveries import run_due_deliveries
from tangram.engines.reports.alerts import run_due_alerts
from tangram.errors import Conflict, TangramError

log = logging.getLogger(__name__)

DEFAULT_LEASE = timedelta(minutes=2)
TIMER_KINDS: dict[str, Callable[[Run, Execution, Mapping[str, Any]], None]] = {}


def _fire_delay(run: Run, execution: Execution, payload: Mapping[str, Any]) -> None:
    from tangram.engines.flows.runtime import fire_delay

    fire_delay(run, execution, payload)


TIMER_KINDS.update({"timeout": approvals.fire_timeout, "delay": _fire_delay})


class LeaseLost(Conflict):
    """The claim expired and the timer or job may belong to another worker now."""

    code = "lease_lost"


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Worker:
    sessions: sessionmaker[Session]
    clock: Clock
    worker_id: str
    timezone: str = "Asia/Shanghai"
    lease: timedelta = DEFAULT_LEASE
    batch: int = 50

    def ctx(self, session: Session) -> EngineContext:
        return EngineContext(session=session, clock=self.clock, timezone=self.timezone)

    # claims
    def _claim(self, table: sa.Table, due_col: str, ready: sa.ColumnElement[bool],
               values: dict[str, Any]) -> list[uuid.UUID]:
        with self.sessions.begin() as s:
            now = self.clock.now()
            ids = list(s.execute(
                sa.select(table.c.id).where(ready, table.c[due_col] <= now)
                .order_by(table.c[due_col]).limit(self.batch)
                .with_for_update(skip_locked=True)).scalars())
            if ids:
                s.execute(table.update().where(table.c.id.in_(ids)).values(
                    claimed_by=self.worker_id, lease_until=now + self.lease, **values))
            return ids

    def claim_timers(self) -> list[uuid.UUID]:
        t = timers_table
        now = self.clock.now()
        return self._claim(t, "due_at", sa.and_(
            t.c.status == "pending",
            sa.or_(t.c.lease_until.is_(None), t.c.lease_until < now)), {})

    def claim_jobs(self) -> list[uuid.UUID]:
        j = jobs_table
        now = self.clock.now()
        ready = sa.or_(j.c.status == "queued",
                       sa.and_(j.c.status == "running", j.c.lease_until < now))
        return self._claim(j, "run_at", ready, {"status": "running",
                                                "attempts": j.c.attempts + 1})

    # timers
    def fire_timer(self, timer_id: uuid.UUID) -> bool:
        """Fire one claimed timer in one transaction; False if it did nothing."""
        with self.sessions.begin() as s:
            ctx = self.ctx(s)
            t = timers_table
            timer = s.execute(sa.select(t).where(t.c.id == timer_id)).mappings().first()
            if timer is None:
                return False
            run = open_run(ctx, timer["instance_id"], require_running=False)
            res = s.execute(t.update().where(
                t.c.id == timer_id, t.c.status == "pending", t.c.claimed_by == self.worker_id,
                t.c.lease_until > self.clock.now()).values(status="fired",
                                                           fired_at=self.clock.now()))
            if cast(sa.CursorResult[Any], res).rowcount != 1:
                return False  # cancelled meanwhile, or our lease ran out
            execution = run.get_execution(timer["execution_id"])
            if not run.running or execution is None or execution["status"] != "active":
                return False  # the step it guarded is over: a late timer does nothing
            try:
                TIMER_KINDS[timer["kind"]](run, execution, timer["payload"])
            except TangramError as exc:
                run.fail(f"node {execution['node']!r}: {error_text(exc)}",
                         execution=execution)
            run.end_step()
            return True

    # jobs
    def run_job(self, job_id: uuid.UUID) -> bool:
        """Perform one claimed job: the call outside a transaction, then the
        result in one transaction that only a worker still holding the lease
        may commit."""
        with self.sessions.begin() as s:
            job = s.execute(sa.select(jobs_table).where(jobs_table.c.id == job_id)
                            ).mappings().first()
        if job is None or job["claimed_by"] != self.worker_id:
            return False
        request = job["payload"].get("request")
        result: dict[str, Any] | None = None
        error: str | None = None
        transient = True
        if request is not None:
            spec_kind = job["payload"].get("kind", "http")
            try:
                call = actions.ACTION_KINDS[spec_kind].call
                assert call is not None
                result = call(request)
            except TangramError as exc:
                error, transient = exc.message, actions.is_transient(exc)
            except Exception as exc:  # the receiver's failure must not kill the worker
                error = f"{type(exc).__name__}: {exc}"
        return self.complete_job(job_id, result=result, error=error, transient=transient)

    def complete_job(self, job_id: uuid.UUID, *, result: dict[str, Any] | None,
                     error: str | None, transient: bool = True) -> bool:
        """Record a job's outcome. A failure is retried (with backoff) only if
        ``transient`` and attempts are left; otherwise the instance fails."""
        with self.sessions.begin() as s:
            ctx = self.ctx(s)
            j = jobs_table
            job = s.execute(sa.select(j).where(j.c.id == job_id)).mappings().first()
            if job is None:
                return False
            run = open_run(ctx, job["instance_id"], require_running=False)
            mine = sa.and_(j.c.id == job_id, j.c.status == "running",
                           j.c.claimed_by == self.worker_id,
                           j.c.lease_until > self.clock.now())
            still = s.execute(sa.select(j.c.id).where(mine)).first()
            if still is None:
                raise LeaseLost(f"job {job_id}: the claim of {self.worker_id} expired; "
                                "another worker owns it now")
            execution = run.get_execution(job["execution_id"])
            if not run.running or execution is None or execution["status"] != "active":
                s.execute(j.update().where(mine).values(status="cancelled",
                                                        finished_at=self.clock.now()))
                return False
            node = run.node(execution["node"])
            if error is None and job["payload"].get("request") is None:
                # A database action that failed inline: retry it in this transaction.
                try:
                    actions.run_in_savepoint(run, execution, node.action)
                except actions.ActionFailed as failed:
                    error, transient = failed.message, failed.transient
            if error is not None:
                self._job_failed(run, execution, dict(job), node, error, transient=transient)
            else:
                s.execute(j.update().where(mine).values(status="done",
                                                        finished_at=self.clock.now()))
                run.history("action_done", node=node.key, result=result or {},
                            attempt=job["attempts"])
                run.leave(execution, [node.next], decision="done")
            run.end_step()
            return True

    def _job_failed(self, run: Run, execution: Execution, job: Mapping[str, Any], node: Any,
                    error: str, *, transient: bool) -> None:
        j = jobs_table
        now = self.clock.now()
        attempts = int(job["attempts"])
        run.history("action_failed", node=node.key, error=error, attempt=attempts)
        if not transient or attempts >= int(job["max_attempts"]):
            run.execute(j.update().where(j.c.id == job["id"]).values(
                status="failed", last_error=error, finished_at=now))
            tried = f" (after {attempts} attempt{'s' if attempts != 1 else ''})"
            run.fail(f"node {node.key!r}: {error}" + (tried if transient else ""),
                     execution=execution)
            return
        run.execute(j.update().where(j.c.id == job["id"]).values(
            status="queued", last_error=error, claimed_by=None, lease_until=None,
            run_at=now + actions.backoff(node.action, attempts)))

    # one pass
    def run_once(self) -> int:
        """Everything due now: triggers, timers, jobs. Returns how much was done."""
        done = 0
        with self.sessions.begin() as s:
            done += tick_due_triggers(self.ctx(s))
        for timer_id in self.claim_timers():
            done += self._guarded(self.fire_timer, timer_id)
        for job_id in self.claim_jobs():
            done += self._guarded(self.run_job, job_id)
        # Outbound webhooks, emails and robot messages (tangram.engines.notify).
        done += run_due_deliveries(self.sessions, self.clock)
        # Report data alerts due now (tangram.engines.reports.alerts).
        done += run_due_alerts(self.sessions, self.clock, timezone=self.timezone)
        return done

    def _guarded(self, fn: Callable[[uuid.UUID], bool], item: uuid.UUID) -> int:
        try:
            return 1 if fn(item) else 0
        except LeaseLost:
            log.warning("lease lost on %s", item)
            return 0
        except FlowError:
            raise
        except Exception:
            # One bad item must not stop the others; its claim expires and
            # it is tried again.
            log.exception("flow worker: %s failed", item)
            return 0


def run_due(engine: Engine, clock: Clock, *, worker_id: str = "test-worker",
            timezone: str = "Asia/Shanghai", rounds: int = 10) -> int:
    """Run passes until nothing is due (tests and the CLI's ``--once``)."""
    worker = Worker(session_factory(engine), clock, worker_id, timezone=timezone)
    total = 0
    for _ in range(rounds):
        n = worker.run_once()
        total += n
        if n == 0:
            break
    return total


def run_worker(engine: Engine, clock: Clock, stop_event: threading.Event, *,
               poll_seconds: float = 1.0, worker_id: str | None = None,
               timezone: str = "Asia/Shanghai", lease: timedelta = DEFAULT_LEASE) -> None:
    """Loop until ``stop_event`` is set, sleeping ``poll_seconds`` when idle."""
    worker = Worker(session_factory(engine), clock, worker_id or default_worker_id(),
                    timezone=timezone, lease=lease)
    log.info("flow worker %s started", worker.worker_id)
    while not stop_event.is_set():
        try:
            busy = worker.run_once()
        except Exception:
            log.exception("flow worker pass failed")
            busy = 0
        if not busy:
            stop_event.wait(poll_seconds)
    log.info("flow worker %s stopped", worker.worker_id)
