"""Accounts and login sessions: the functions the HTTP routes and the CLI wrap.

Usage::

    user = create_user(session, username="li.lei", password="s3cret-pass", clock=clock)
    issued = issue_session(session, user_id=user.id, kind="bearer",
                           lifetime=timedelta(hours=12), clock=clock)
    resolve_token(session, issued.token, clock=clock).user.username  # "li.lei"
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session

from tangram.clock import SYSTEM_CLOCK, Clock
from tangram.db import new_id
from tangram.engines.context import Actor
from tangram.engines.directory import departments_table, user_departments_table, users_table
from tangram.errors import Conflict, ErrorItem, NotAuthenticated, NotFound, ValidationFailed
from tangram.i18n import Msg
from tangram.platform.auth import password_policy, passwords
from tangram.platform.auth.tables import auth_sessions_table

SessionKind = Literal["browser", "bearer"]

LANGUAGES = ("zh", "en")


def pick_language(asked: Iterable[str], user_language: str | None, default: str) -> str:
    """The language to answer in: the first supported one asked for (HTTP
    Accept-Language, the CLI's --lang), else the user's own, else the
    organization default."""
    for lang in asked:
        if lang in LANGUAGES:
            return lang
    return user_language if user_language is not None and user_language in LANGUAGES \
        else default
USERNAME_PATTERN = re.compile(r"^[\w.@+-]{1,100}$")
MIN_PASSWORD_LENGTH = password_policy.MIN_LENGTH
MAX_PASSWORD_LENGTH = password_policy.MAX_LENGTH
# A session's last_seen_at is refreshed at most this often, so that ordinary
# requests do not each write a row.
LAST_SEEN_RESOLUTION = timedelta(minutes=1)


class InvalidCredentials(NotAuthenticated):
    code = "invalid_credentials"


class AccountDisabled(NotAuthenticated):
    code = "account_disabled"


class SessionInvalid(NotAuthenticated):
    code = "session_invalid"


class SessionExpired(NotAuthenticated):
    code = "session_expired"


@dataclass(frozen=True)
class DepartmentMembership:
    id: uuid.UUID
    name: str
    is_head: bool


@dataclass(frozen=True)
class UserAccount:
    id: uuid.UUID
    username: str
    display_name: str
    email: str | None
    is_admin: bool
    status: str
    language: str
    timezone: str
    primary_department_id: uuid.UUID | None
    departments: tuple[DepartmentMembership, ...] = ()

    @property
    def is_active(self) -> bool:
        return self.status == "active"

    def as_actor(self) -> Actor:
        dept_ids = tuple(d.id for d in self.departments)
        return Actor(
            id=self.id, username=self.username, display_name=self.display_name,
            is_admin=self.is_admin, department_ids=dept_ids,
            primary_department_id=self.primary_department_id
            or (dept_ids[0] if dept_ids else None),
            language=self.language, timezone=self.timezone,
        )


@dataclass(frozen=True)
class IssuedSession:
    id: uuid.UUID
    token: str
    kind: SessionKind
    expires_at: datetime


@dataclass(frozen=True)
class ResolvedSession:
    id: uuid.UUID
    kind: SessionKind
    expires_at: datetime
    user: UserAccount


# --- users -------------------------------------------------------------------

def normalize_username(username: str) -> str:
    """Usernames are compared case-insensitively: stored and looked up in lower case."""
    return username.strip().lower()


def create_user(session: Session, *, username: str, password: str,
                display_name: str | None = None, email: str | None = None,
                is_admin: bool = False, language: str = "zh",
                timezone: str = "Asia/Shanghai", clock: Clock = SYSTEM_CLOCK) -> UserAccount:
    """Create an active user with a hashed password; refuses a taken username."""
    username = normalize_username(username)
    _check_new_user(username=username, password=password, language=language,
                    timezone=timezone)
    if find_user_by_username(session, username) is not None:
        raise Conflict(f"A user named {username!r} already exists.",
                       errors=[ErrorItem(code="duplicate", field="username",
                                         message=f"{username!r} is taken")])
    now = clock.now()
    user_id = new_id()
    session.execute(users_table.insert().values(
        id=user_id, username=username, display_name=(display_name or username).strip(),
        email=email, password_hash=passwords.hash_password(password), is_admin=is_admin,
        status="active", language=language, timezone=timezone, created_at=now,
        updated_at=now))
    return get_user(session, user_id)


def _check_new_user(*, username: str, password: str, language: str, timezone: str) -> None:
    errors = []
    if not USERNAME_PATTERN.match(username):
        errors.append(ErrorItem(
            code="pattern", field="username",
            message="use 1 to 100 letters, digits or the characters . _ @ + -"))
    errors.extend(_password_errors(username, password, "password"))
    if language not in LANGUAGES:
        errors.append(ErrorItem(code="options", field="language",
                                message=f"use one of: {', '.join(LANGUAGES)}"))
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(ErrorItem(code="timezone", field="timezone",
                                message=f"{timezone!r} is not an IANA time zone name"))
    if errors:
        raise ValidationFailed(errors, "The user cannot be created: "
                               + "; ".join(f"{e.field}: {e.message}" for e in errors))


def _password_errors(username: str, password: str, field: str) -> list[ErrorItem]:
    return [ErrorItem(code=f"password_{code}" if code != "length" else code, field=field,
                      message=problem)
            for code, problem in password_policy.problems(username, password)]


def set_password(session: Session, *, user_id: uuid.UUID, password: str,
                 keep_session: uuid.UUID | None = None, field: str = "password",
                 clock: Clock = SYSTEM_CLOCK) -> int:
    """Give the user a new password (the password policy applies; errors name
    ``field``). Their login sessions end, but ``keep_session`` (the one that
    changed its own password); API tokens stay valid. Returns how many
    sessions ended."""
    user = get_user(session, user_id)
    errors = _password_errors(user.username, password, field)
    if errors:
        raise ValidationFailed(errors, "The password is not accepted: "
                               + "; ".join(e.message for e in errors))
    now = clock.now()
    session.execute(users_table.update().where(users_table.c.id == user_id).values(
        password_hash=passwords.hash_password(password), updated_at=now))
    s = auth_sessions_table
    ended = session.execute(s.update().where(
        s.c.user_id == user_id, s.c.revoked_at.is_(None),
        s.c.id != keep_session if keep_session is not None else sa.true())
        .values(revoked_at=now))
    return cast(CursorResult[Any], ended).rowcount


def check_password(session: Session, *, user_id: uuid.UUID, password: str) -> bool:
    """Whether ``password`` is the user's current one."""
    row = session.execute(sa.select(users_table.c.password_hash)
                          .where(users_table.c.id == user_id)).first()
    if row is None or row.password_hash is None:
        passwords.burn_verification(password)
        return False
    return passwords.verify_password(row.password_hash, password)


def find_user_by_username(session: Session, username: str) -> UserAccount | None:
    row = session.execute(sa.select(users_table).where(
        users_table.c.username == normalize_username(username))).first()
    return _account(session, row) if row else None


def get_user(session: Session, user_id: uuid.UUID) -> UserAccount:
    row = session.execute(sa.select(users_table).where(users_table.c.id == user_id)).first()
    if row is None:
        raise NotFound(f"User {user_id} does not exist.")
    return _account(session, row)


def list_users(session: Session) -> list[UserAccount]:
    rows = session.execute(sa.select(users_table).order_by(users_table.c.username)).all()
    return [_account(session, r) for r in rows]


def set_user_active(session: Session, *, user_id: uuid.UUID, active: bool,
                    clock: Clock = SYSTEM_CLOCK) -> None:
    """Enable or disable an account; a disabled user's sessions stop working at once."""
    result = session.execute(users_table.update().where(users_table.c.id == user_id).values(
        status="active" if active else "disabled", updated_at=clock.now()))
    if cast(CursorResult[Any], result).rowcount == 0:
        raise NotFound(f"User {user_id} does not exist.")


def _account(session: Session, row: Any) -> UserAccount:
    ud, d = user_departments_table, departments_table
    memberships = session.execute(
        sa.select(d.c.id, d.c.name, ud.c.is_head)
        .join(ud, ud.c.department_id == d.c.id)
        .where(ud.c.user_id == row.id)
        .order_by(d.c.name, d.c.id)).all()
    return UserAccount(
        id=row.id, username=row.username, display_name=row.display_name, email=row.email,
        is_admin=bool(row.is_admin), status=row.status, language=row.language,
        timezone=row.timezone, primary_department_id=row.primary_department_id,
        departments=tuple(DepartmentMembership(m.id, m.name, bool(m.is_head))
                          for m in memberships),
    )


# --- authentication ------------------------------------------------------------

def authenticate(session: Session, *, username: str, password: str,
                 clock: Clock = SYSTEM_CLOCK, language: str = "en") -> UserAccount:
    """The user with these credentials, or InvalidCredentials (same message for
    an unknown username and a wrong password, and the same argon2 work, so the
    answer does not tell which usernames exist)."""
    row = session.execute(sa.select(users_table.c.id, users_table.c.password_hash)
                          .where(users_table.c.username == normalize_username(username))
                          ).first()
    if row is None or row.password_hash is None:
        passwords.burn_verification(password)
        raise InvalidCredentials(Msg("invalid_credentials"), language=language)
    if not passwords.verify_password(row.password_hash, password):
        raise InvalidCredentials(Msg("invalid_credentials"), language=language)
    user = get_user(session, row.id)
    if not user.is_active:
        # Only said to someone who knows the password.
        raise AccountDisabled(Msg("account_disabled", username=user.username), language=language)
    if passwords.needs_rehash(row.password_hash):
        session.execute(users_table.update().where(users_table.c.id == row.id).values(
            password_hash=passwords.hash_password(password), updated_at=clock.now()))
    return user


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_session(session: Session, *, user_id: uuid.UUID, kind: SessionKind,
                  lifetime: timedelta, clock: Clock = SYSTEM_CLOCK,
                  user_agent: str | None = None) -> IssuedSession:
    """Start a login session; the returned token is shown once and never stored."""
    token = secrets.token_urlsafe(32)
    now = clock.now()
    session_id = new_id()
    expires_at = now + lifetime
    session.execute(auth_sessions_table.insert().values(
        id=session_id, user_id=user_id, token_hash=hash_token(token), kind=kind,
        created_at=now, expires_at=expires_at, last_seen_at=now, revoked_at=None,
        user_agent=(user_agent or None) and user_agent[:300]))
    return IssuedSession(id=session_id, token=token, kind=kind, expires_at=expires_at)


def resolve_token(session: Session, token: str, *, clock: Clock = SYSTEM_CLOCK,
                  language: str = "en") -> ResolvedSession:
    """The live session a token belongs to, or NotAuthenticated saying why not."""
    s = auth_sessions_table
    row = None
    if 0 < len(token) <= 200:
        row = session.execute(sa.select(s).where(s.c.token_hash == hash_token(token))).first()
    if row is None:
        raise SessionInvalid(Msg("token_unknown"), language=language)
    if row.revoked_at is not None:
        raise SessionInvalid(Msg("session_revoked"), language=language)
    now = clock.now()
    if row.expires_at <= now:
        raise SessionExpired(Msg("session_expired",
                                 expires_at=row.expires_at.isoformat(timespec="seconds")),
                             language=language)
    user = get_user(session, row.user_id)
    if not user.is_active:
        raise AccountDisabled(Msg("account_disabled", username=user.username), language=language)
    if now - row.last_seen_at >= LAST_SEEN_RESOLUTION:
        session.execute(s.update().where(s.c.id == row.id).values(last_seen_at=now))
    return ResolvedSession(id=row.id, kind=row.kind, expires_at=row.expires_at, user=user)


def revoke_session(session: Session, *, session_id: uuid.UUID,
                   clock: Clock = SYSTEM_CLOCK) -> None:
    s = auth_sessions_table
    session.execute(s.update().where(s.c.id == session_id, s.c.revoked_at.is_(None))
                    .values(revoked_at=clock.now()))


def revoke_user_sessions(session: Session, *, user_id: uuid.UUID,
                         clock: Clock = SYSTEM_CLOCK) -> int:
    """Sign a user out everywhere; returns how many sessions were open."""
    s = auth_sessions_table
    result = session.execute(s.update().where(s.c.user_id == user_id, s.c.revoked_at.is_(None))
                             .values(revoked_at=clock.now()))
    return cast(CursorResult[Any], result).rowcount
