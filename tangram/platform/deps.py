"""Dependency aliases: the way routers get a session, the caller and an engine context.

    @router.get("/things")
    def list_things(ctx: ContextDep) -> list[Thing]: ...

``SessionDep`` commits when the route returns and rolls back when it raises;
its exit runs before the response is sent (``scope="function"``), so a failed
commit becomes an error response instead of a lost write behind a 200.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, OAuth2PasswordBearer
from sqlalchemy.orm import Session

from tangram.clock import Clock
from tangram.engines.access import AccessPolicy
from tangram.engines.context import Actor, EngineContext
from tangram.errors import NotAuthenticated, PermissionDenied
from tangram.platform.auth.messages import text
from tangram.platform.auth.service import (
    LANGUAGES,
    ResolvedSession,
    UserAccount,
    resolve_token,
)
from tangram.settings import Settings

SESSION_COOKIE = "tangram_session"
LOGIN_URL = "/api/auth/login"

# Declared for the OpenAPI document (the docs' "Authorize" button); both are
# optional here because current_auth accepts either and explains what is missing.
bearer_scheme = OAuth2PasswordBearer(tokenUrl=LOGIN_URL, auto_error=False)
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        try:
            yield session
        except BaseException:
            session.rollback()
            raise
        session.commit()


SettingsDep = Annotated[Settings, Depends(get_settings)]
ClockDep = Annotated[Clock, Depends(get_clock)]
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


@dataclass(frozen=True)
class Authenticated:
    """Who is calling, through which login session, and how the token came."""

    actor: Actor
    user: UserAccount
    session_id: uuid.UUID
    via_cookie: bool


def enforce_csrf(request: Request, *, via_cookie: bool) -> None:
    """Check point for cross-site request forgery protection.

    Called for every authenticated request, after the credentials are known.
    Bearer-token requests cannot be forged by another site; cookie-authenticated
    unsafe requests (POST/PUT/PATCH/DELETE) can. Issue 5 (CSRF, lockout, roles)
    fills this in; until then every request is accepted.
    """


def current_auth(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    clock: ClockDep,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Authenticated:
    language = request_language(request, settings)
    # An Authorization header, when sent, is the only credential looked at.
    if request.headers.get("authorization") is not None:
        if not bearer:
            raise NotAuthenticated(text("bearer_malformed", language))
        token, via_cookie = bearer, False
    elif cookie:
        token, via_cookie = cookie, True
    else:
        raise NotAuthenticated(text("sign_in_required", language, cookie=SESSION_COOKIE,
                                    login_url=LOGIN_URL))
    resolved: ResolvedSession = resolve_token(session, token, clock=clock, language=language)
    enforce_csrf(request, via_cookie=via_cookie)
    return Authenticated(actor=resolved.user.as_actor(), user=resolved.user,
                         session_id=resolved.id, via_cookie=via_cookie)


CurrentAuth = Annotated[Authenticated, Depends(current_auth)]


def current_actor(auth: CurrentAuth) -> Actor:
    return auth.actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


def admin_actor(request: Request, actor: CurrentActor, settings: SettingsDep) -> Actor:
    if not actor.is_admin:
        raise PermissionDenied(text("admin_required",
                                    request_language(request, settings, actor)))
    return actor


AdminActor = Annotated[Actor, Depends(admin_actor)]


def request_language(request: Request, settings: Settings, actor: Actor | None = None) -> str:
    """The first supported language of Accept-Language (by q-value), else the
    user's own language, else the organization default."""
    for lang in _accepted_languages(request.headers.get("accept-language", "")):
        if lang in LANGUAGES:
            return lang
    if actor is not None and actor.language in LANGUAGES:
        return actor.language
    return settings.default_language


def _accepted_languages(header: str) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, position, tag.split("-")[0].lower()))
    return [tag for _, _, tag in sorted(ranked)]


def engine_context(request: Request, session: SessionDep, actor: CurrentActor,
                   settings: SettingsDep, clock: ClockDep) -> EngineContext:
    policy: AccessPolicy = request.app.state.policy
    return EngineContext(
        session=session, actor=actor, clock=clock,
        language=request_language(request, settings, actor),
        timezone=settings.timezone, policy=policy,
    )


ContextDep = Annotated[EngineContext, Depends(engine_context)]
