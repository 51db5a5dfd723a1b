"""Login rate limiting: after ``max_failures`` failed sign-ins for one username
within ``window``, the username is locked for ``lock_for`` — even the right
password is refused until then (429 ``rate_limited`` with Retry-After).

Counts live in the database (``login_attempts``) so that every API process
sees them; unknown usernames are counted like real ones, so the lockout does
not tell which usernames exist.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.errors import RateLimited
from tangram.platform.permissions import audit
from tangram.platform.permissions.tables import login_attempts_table


@dataclass(frozen=True)
class LockoutRules:
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)


class LoginLocked(RateLimited):
    def __init__(self, username: str, until: datetime, now: datetime) -> None:
        self.retry_after = max(1, math.ceil((until - now).total_seconds()))
        super().__init__(
            f"Too many failed sign-ins for {username!r}; try again in "
            f"{math.ceil(self.retry_after / 60)} minute(s).",
            details={"retry_after": self.retry_after})


def check_not_locked(session: Session, *, username: str, now: datetime) -> None:
    t = login_attempts_table
    row = session.execute(sa.select(t.c.locked_until).where(t.c.username == username)).first()
    if row is not None and row.locked_until is not None and row.locked_until > now:
        raise LoginLocked(username, row.locked_until, now)


def record_failure(session: Session, *, username: str, now: datetime,
                   rules: LockoutRules) -> None:
    """Count a failed sign-in (call in a transaction of its own: the sign-in
    request itself fails and rolls back)."""
    t = login_attempts_table
    row = session.execute(sa.select(t).where(t.c.username == username)
                          .with_for_update()).first()
    if row is None:
        try:
            with session.begin_nested():
                session.execute(t.insert().values(username=username, failures=1,
                                                  first_failure_at=now, locked_until=None))
        except sa.exc.IntegrityError:  # a concurrent failure inserted it first
            record_failure(session, username=username, now=now, rules=rules)
        return
    fresh = now - row.first_failure_at > rules.window or (
        row.locked_until is not None and row.locked_until <= now)
    failures = 1 if fresh else row.failures + 1
    locked_until = now + rules.lock_for if failures >= rules.max_failures else None
    session.execute(t.update().where(t.c.username == username).values(
        failures=0 if locked_until else failures,
        first_failure_at=now if fresh or locked_until else row.first_failure_at,
        locked_until=locked_until))
    if locked_until is not None:
        audit.record(session, action="login.lockout", target=username, actor_id=None, at=now,
                     until=locked_until, failures=failures)


def record_success(session: Session, *, username: str) -> None:
    t = login_attempts_table
    session.execute(t.delete().where(t.c.username == username))
