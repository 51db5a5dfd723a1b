"""Login rate limiting, on two keys:

- **per username**: after ``max_failures`` failed sign-ins for one username
  within ``window``, the username is locked for ``lock_for`` — even the right
  password is refused until then (429 ``rate_limited`` with Retry-After);
- **per client address**: after ``max_failures`` failed sign-ins from one IP
  address — for any usernames — within the address rules' ``window``, every
  sign-in from that address is refused for ``lock_for``. This slows a client
  that guesses many usernames (one or two tries each, below the per-username
  lockout). A successful sign-in does not reset the address's count (an
  attacker could otherwise reset it with an account of their own).

Counts live in the database (``login_attempts``) so that every API process
sees them; unknown usernames are counted like real ones, so the lockout does
not tell which usernames exist. Addresses share the table under the key
``ip:<address>`` — usernames cannot contain ``:``.
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

ADDRESS_KEY_PREFIX = "ip:"


@dataclass(frozen=True)
class LockoutRules:
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lock_for: timedelta = timedelta(minutes=15)

    @property
    def enabled(self) -> bool:
        return self.max_failures > 0


def address_key(address: str) -> str:
    """The ``login_attempts`` key of a client address."""
    return ADDRESS_KEY_PREFIX + address


class LoginLocked(RateLimited):
    def __init__(self, username: str, until: datetime, now: datetime) -> None:
        self.retry_after = max(1, math.ceil((until - now).total_seconds()))
        super().__init__(
            f"Too many failed sign-ins for {username!r}; try again in "
            f"{math.ceil(self.retry_after / 60)} minute(s).",
            details={"retry_after": self.retry_after})


class AddressBlocked(RateLimited):
    def __init__(self, address: str, until: datetime, now: datetime) -> None:
        self.retry_after = max(1, math.ceil((until - now).total_seconds()))
        super().__init__(
            f"Too many failed sign-ins from your address ({address}); try again in "
            f"{math.ceil(self.retry_after / 60)} minute(s).",
            details={"retry_after": self.retry_after})


def _locked_until(session: Session, key: str, now: datetime) -> datetime | None:
    t = login_attempts_table
    row = session.execute(sa.select(t.c.locked_until).where(t.c.username == key)).first()
    if row is not None and row.locked_until is not None and row.locked_until > now:
        return row.locked_until  # type: ignore[no-any-return]
    return None


def check_not_locked(session: Session, *, username: str, now: datetime) -> None:
    until = _locked_until(session, username, now)
    if until is not None:
        raise LoginLocked(username, until, now)


def check_address_not_blocked(session: Session, *, address: str, now: datetime) -> None:
    until = _locked_until(session, address_key(address), now)
    if until is not None:
        raise AddressBlocked(address, until, now)


def record_address_failure(session: Session, *, address: str, now: datetime,
                           rules: LockoutRules) -> None:
    """Count a failed sign-in from ``address`` (no-op when the rules are off)."""
    if rules.enabled:
        record_failure(session, username=address_key(address), now=now, rules=rules,
                       audit_action="login.ip_block")


def record_failure(session: Session, *, username: str, now: datetime,
                   rules: LockoutRules, audit_action: str = "login.lockout") -> None:
    """Count a failed sign-in of ``username`` (or an address key) — call in a
    transaction of its own: the sign-in request itself fails and rolls back."""
    t = login_attempts_table
    row = session.execute(sa.select(t).where(t.c.username == username)
                          .with_for_update()).first()
    if row is None:
        try:
            with session.begin_nested():
                session.execute(t.insert().values(username=username, failures=1,
                                                  first_failure_at=now, locked_until=None))
        except sa.exc.IntegrityError:  # a concurrent failure inserted it first
            record_failure(session, username=username, now=now, rules=rules,
                           audit_action=audit_action)
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
        audit.record(session, action=audit_action, target=username, actor_id=None, at=now,
                     until=locked_until, failures=failures)


def record_success(session: Session, *, username: str) -> None:
    t = login_attempts_table
    session.execute(t.delete().where(t.c.username == username))
