"""The application factory: settings, database, error rendering, security
headers and every router, wired once.

    uvicorn --factory tangram.platform.app:create_app
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tangram.clock import SYSTEM_CLOCK, Clock
from tangram.db import create_engine_from_url, session_factory
from tangram.engines.access import AccessPolicy, AllowAll
from tangram.engines.context import Actor, EngineContext
from tangram.engines.forms.files import LocalFileStore
from tangram.engines.notify import webhooks
from tangram.errors import NotAuthenticated, NotFound, PermissionDenied, TangramError
from tangram.i18n import Msg
from tangram.platform.api import ROUTERS
from tangram.platform.auth.service import get_user
from tangram.platform.deps import error_language
from tangram.platform.permissions.policy import RolePolicy
from tangram.settings import Settings, get_settings

log = logging.getLogger(__name__)

# Swagger UI and ReDoc need inline styles, data: images and (ReDoc) blob: workers;
# scripts come only from our own origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
)


def create_app(settings: Settings | None = None, *, clock: Clock | None = None,
               policy: AccessPolicy | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = _start_worker(app) if settings.in_process_worker and \
            settings.environment != "test" else None
        yield
        if stop is not None:
            stop()
        app.state.engine.dispose()

    app = FastAPI(
        title="Tangram", version=_version(),
        description="No-code app builder: forms, flows and reports.",
        openapi_url="/api/openapi.json", docs_url=None, redoc_url=None,
        swagger_ui_oauth2_redirect_url=None, lifespan=lifespan,
    )
    # Refuses to start a production installation without its own secret.
    app.state.secret_key = settings.resolved_secret_key()
    engine = create_engine_from_url(settings.database_url)
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.clock = clock or SYSTEM_CLOCK
    # The access policy of each request: the one given (tests, embedding), else
    # roles as data — a RolePolicy per database session.
    app.state.policy = policy
    app.state.policy_for = make_policy_factory(policy)
    app.state.file_store = LocalFileStore(settings.files_path)
    # Webhook payloads are what the subscription's owner may read, under the
    # same policy as their requests.
    webhooks.set_owner_resolver(owner_resolver(app.state.policy_for))

    install_error_handlers(app)
    app.add_middleware(SecurityHeadersMiddleware)
    for router in ROUTERS:
        app.include_router(router)
    return app


PolicyFactory = Callable[[Session, Clock, str], AccessPolicy]


def _start_worker(app: FastAPI) -> Callable[[], None]:
    """The flow worker on a thread of this process (``tangram serve`` without
    --no-worker), so a demo needs one command. Returns a function that stops it."""
    import threading

    from tangram.engines.flows.worker import run_worker

    stop_event = threading.Event()
    thread = threading.Thread(
        target=run_worker, name="tangram-flow-worker", daemon=True,
        args=(app.state.engine, app.state.clock, stop_event),
        kwargs={"timezone": app.state.settings.timezone})
    thread.start()

    def stop() -> None:
        stop_event.set()
        thread.join(timeout=10)
    return stop


def owner_resolver(policy_for: PolicyFactory) -> webhooks.OwnerResolver:
    def resolve(ctx: EngineContext, owner_id: uuid.UUID) -> tuple[Actor, AccessPolicy]:
        try:
            user = get_user(ctx.session, owner_id)
        except NotFound:
            return Actor(id=owner_id), DenyAll()
        if not user.is_active:
            return user.as_actor(), DenyAll()
        return user.as_actor(), policy_for(ctx.session, ctx.clock, ctx.timezone)
    return resolve


class DenyAll(AllowAll):
    """The policy of a deleted or disabled webhook owner: sees nothing."""

    def check_form_action(self, actor: Actor, app: str, form: str, action: Any) -> None:
        raise PermissionDenied("the webhook's owner is no longer active")


def make_policy_factory(policy: AccessPolicy | None) -> PolicyFactory:
    if policy is not None:
        return lambda session, clock, timezone: policy
    return lambda session, clock, timezone: RolePolicy(session, clock=clock, timezone=timezone)


def _version() -> str:
    try:
        return version("tangram")
    except PackageNotFoundError:
        return "0.0.0"


# --- errors --------------------------------------------------------------------

def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves as ``{"code", "message", "errors"?: [{field, code, message}]}``.

    Messages are said in the language the request asks for (Accept-Language,
    zh or en) where the error has a catalog message (``i18n.Msg``); without
    one asked for, in the language the error was raised in (English, or the
    caller's for sign-in errors and record validation). ``code`` never changes.
    """
    app.add_exception_handler(TangramError, _tangram_error)
    app.add_exception_handler(RequestValidationError, _request_invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    # Last resort only: Starlette renders this handler in its outermost
    # middleware and then re-raises to the server, which closes the keep-alive
    # connection. Unexpected errors are answered inside the app instead.
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(InternalErrorMiddleware)


async def _tangram_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TangramError)
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthenticated) else None
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers = {"Retry-After": str(retry_after)}
    return JSONResponse(status_code=exc.status,
                        content=exc.as_dict(error_language(request, exc.language)),
                        headers=headers)


def _request_error(err: Mapping[str, Any]) -> dict[str, Any]:
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "json_invalid":
        # pydantic puts the character offset where a field would be
        where = f" at character {loc[1]}" if len(loc) > 1 else ""
        reason = (err.get("ctx") or {}).get("error") or err.get("msg", "invalid JSON")
        return {"field": "body", "code": "json_invalid",
                "message": f"the body is not valid JSON{where}: {reason}"}
    return {"field": ".".join(str(part) for part in loc),
            "code": err.get("type", "invalid"),
            "message": ("unknown key: this request does not take it (check its spelling)"
                        if err.get("type") == "extra_forbidden"
                        else err.get("msg", "invalid value"))}


async def _request_invalid(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_request_error(err) for err in exc.errors()]
    language = error_language(request)
    # The summary in the caller's language; pydantic's texts per field stay English.
    listed = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:3])
    more = Msg("request_invalid_more", count=len(errors) - 3) if len(errors) > 3 else ""
    return JSONResponse(status_code=422, content={
        "code": "request_invalid",
        "message": Msg("request_invalid", listed=listed, more=more).render(language),
        "errors": errors,
    })


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, RecursionError):
        # A body nested so deep that the JSON parser itself gave up (the
        # shallower ones are refused by api.body with the same answer).
        from tangram.platform.api.body import MAX_DEPTH

        return await _request_invalid(request, RequestValidationError([{
            "type": "too_deep", "loc": ("body",),
            "msg": f"the JSON nests deeper than {MAX_DEPTH} levels"}]))
    if exc.status_code == 404 and exc.detail == "Not Found":
        message = Msg("no_such_endpoint", method=request.method, path=request.url.path
                      ).render(error_language(request))
    elif exc.status_code == 405:
        message = Msg("method_not_allowed", method=request.method, path=request.url.path
                      ).render(error_language(request))
    else:
        message = str(exc.detail)
    content: dict[str, Any] = {"code": _HTTP_CODES.get(exc.status_code, "http_error"),
                               "message": message}
    return JSONResponse(status_code=exc.status_code, content=content,
                        headers=getattr(exc, "headers", None))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error in %s %s", request.method, request.url.path,
                  exc_info=exc)
    return JSONResponse(status_code=500, content={
        "code": "internal_error",
        "message": Msg("internal_error").render(error_language(request)),
    })


class InternalErrorMiddleware:
    """Answers an unexpected exception with the ``internal_error`` 500 (logged
    once) without letting it leave the application. Were it to reach the
    server (uvicorn logs "Exception in ASGI application"), the server would
    close the connection after the response, and the client's next request on
    that keep-alive connection would fail with "connection reset"."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            if started:  # too late for an error response: the server must end it
                raise
            response = await _internal_error(Request(scope), exc)
            await response(scope, receive, send)


# --- security headers ------------------------------------------------------------

class SecurityHeadersMiddleware:
    """Adds the security headers to every HTTP response (pure ASGI, so
    streaming and file responses pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
