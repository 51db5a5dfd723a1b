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
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, OAuth2PasswordBearer
from sqlalchemy.orm import Session

from tangram.clock import Clock
from tangram.engines.access import AccessPolicy
from tangram.engines.context import Actor, EngineContext
from tangram.errors import NotAuthenticated, PermissionDenied
from tangram.i18n import Msg
from tangram.platform.auth.service import (
    AccountDisabled,
    ResolvedSession,
    SessionInvalid,
    UserAccount,
    get_user,
    pick_language,
    resolve_token,
)
from tangram.platform.permissions import definitions, tokens
from tangram.platform.permissions.roles import is_app_builder
from tangram.platform.permissions.tokens import TokenScope, TokenScopedPolicy
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
    session_id: uuid.UUID  # the login session, or the API token
    via_cookie: bool
    token_scope: TokenScope | None = None  # set when an API token authenticated


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "X-Requested-With"


class CsrfRejected(PermissionDenied):
    code = "csrf_failed"


def enforce_csrf(request: Request, *, via_cookie: bool) -> None:
    """Cross-site request forgery protection for cookie-authenticated writes.

    Bearer-token requests cannot be forged by another site; cookie-authenticated
    unsafe requests (POST/PUT/PATCH/DELETE) can. Those must (1) carry the
    ``X-Requested-With`` header (any value): a cross-site HTML form cannot set
    a header, and a cross-site script can only with a CORS preflight, which
    this API never grants; and (2) when the browser sends ``Origin`` (or, if
    not, ``Referer``), come from this server's own origin.
    """
    if not via_cookie or request.method in SAFE_METHODS:
        return
    own = f"{request.url.scheme}://{request.url.netloc}"
    sent = request.headers.get("origin") or _origin_of(request.headers.get("referer"))
    if sent is not None and sent != "null" and sent.rstrip("/") != own:
        raise CsrfRejected(Msg("csrf_cross_site", sent=sent, own=own))
    if sent == "null" or not request.headers.get(CSRF_HEADER):
        raise CsrfRejected(Msg("csrf_header", method=request.method, header=CSRF_HEADER))


def _origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None


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
            raise NotAuthenticated(Msg("bearer_malformed"), language=language)
        token, via_cookie = bearer, False
    elif cookie:
        token, via_cookie = cookie, True
    else:
        raise NotAuthenticated(Msg("sign_in_required", cookie=SESSION_COOKIE,
                                   login_url=LOGIN_URL), language=language)
    if tokens.is_api_token(token) and not via_cookie:
        return _api_token_auth(request, session, token, clock=clock, language=language)
    resolved: ResolvedSession = resolve_token(session, token, clock=clock, language=language)
    request.state.user_language = resolved.user.language
    enforce_csrf(request, via_cookie=via_cookie)
    return Authenticated(actor=resolved.user.as_actor(), user=resolved.user,
                         session_id=resolved.id, via_cookie=via_cookie)


def _api_token_auth(request: Request, session: Session, token: str, *, clock: Clock,
                    language: str) -> Authenticated:
    scope = tokens.resolve_api_token(session, token, now=clock.now())
    if scope is None:
        raise SessionInvalid(Msg("token_unknown"), language=language)
    user = get_user(session, scope.user_id)
    if not user.is_active:
        raise AccountDisabled(Msg("account_disabled", username=user.username), language=language)
    request.state.user_language = user.language
    return Authenticated(actor=user.as_actor(), user=user, session_id=scope.id,
                         via_cookie=False, token_scope=scope)


CurrentAuth = Annotated[Authenticated, Depends(current_auth)]


def current_actor(auth: CurrentAuth) -> Actor:
    return auth.actor


CurrentActor = Annotated[Actor, Depends(current_actor)]


def _no_api_token(auth: Authenticated) -> None:
    if auth.token_scope is not None:
        raise PermissionDenied(Msg("api_token_not_here"))


# A route that changes what runs on the user's behalf (alerts): a login, not
# an API token (tokens only reach records, within their actions).
def _login_only(auth: CurrentAuth) -> None:
    _no_api_token(auth)


LoginOnly = Annotated[None, Depends(_login_only)]


def admin_actor(request: Request, auth: CurrentAuth, settings: SettingsDep) -> Actor:
    _no_api_token(auth)
    if not auth.actor.is_admin:
        raise PermissionDenied(Msg("admin_required"),
                               language=request_language(request, settings, auth.actor))
    return auth.actor


AdminActor = Annotated[Actor, Depends(admin_actor)]


def builder_actor(app: str, auth: CurrentAuth, session: SessionDep) -> Actor:
    """An administrator, or a builder of the app in the path (platform role)."""
    _no_api_token(auth)
    if not auth.actor.is_admin and not is_app_builder(session, user_id=auth.actor.id,
                                                      app=app):
        raise PermissionDenied(Msg("builder_required", app=app))
    return auth.actor


BuilderActor = Annotated[Actor, Depends(builder_actor)]


def signed_in_actor(auth: CurrentAuth) -> Actor:
    """A user signed in with a login session (not an API token)."""
    _no_api_token(auth)
    return auth.actor


SignedInActor = Annotated[Actor, Depends(signed_in_actor)]


def request_language(request: Request, settings: Settings, actor: Actor | None = None) -> str:
    """The first supported language of Accept-Language (by q-value), else the
    user's own language, else the organization default."""
    return pick_language(_accepted_languages(request.headers.get("accept-language", "")),
                         actor.language if actor is not None else None,
                         settings.default_language)


def error_language(request: Request, raised: str | None = None) -> str:
    """What an error answer is said in: the language the request asks for,
    else the one the code that raised the error chose (``raised``), else the
    signed-in user's own, else the organization default — the order every
    other answer follows (:func:`request_language`)."""
    settings: Settings = request.app.state.settings
    return pick_language(_accepted_languages(request.headers.get("accept-language", "")),
                         raised or getattr(request.state, "user_language", None),
                         settings.default_language)


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


def engine_context(request: Request, session: SessionDep, auth: CurrentAuth,
                   settings: SettingsDep, clock: ClockDep) -> EngineContext:
    policy: AccessPolicy = request.app.state.policy_for(session, clock, settings.timezone)
    if auth.token_scope is not None:
        policy = TokenScopedPolicy(policy, auth.token_scope)
    return EngineContext(
        session=session, actor=auth.actor, clock=clock,
        language=request_language(request, settings, auth.actor),
        timezone=settings.timezone, policy=policy,
    )


ContextDep = Annotated[EngineContext, Depends(engine_context)]


def member_context(app: str, ctx: ContextDep, auth: CurrentAuth) -> EngineContext:
    """The engine context of a member of the app in the path: an administrator,
    a builder of the app, or a holder of one of its roles (an API token: only
    for its apps). Others get 403 (``permissions.definitions``)."""
    definitions.require_member(ctx, app, token=auth.token_scope)
    return ctx


MemberContextDep = Annotated[EngineContext, Depends(member_context)]
