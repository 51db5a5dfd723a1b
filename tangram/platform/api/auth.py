"""Sign in, sign out, and who am I.

``POST /api/auth/login`` takes the OAuth2 password form (what the docs'
"Authorize" button and OAuth2 clients send) or a JSON body (what the web
client sends). It returns the bearer token and also sets it as an HTTP-only
cookie, so a browser needs nothing else.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from tangram.errors import ErrorItem, PermissionDenied, TangramError, ValidationFailed
from tangram.platform.api.body import Body
from tangram.platform.auth.service import (
    InvalidCredentials,
    SessionKind,
    UserAccount,
    authenticate,
    check_password,
    issue_session,
    normalize_username,
    revoke_session,
    set_password,
)
from tangram.platform.deps import (
    SESSION_COOKIE,
    ClockDep,
    CurrentAuth,
    SessionDep,
    SettingsDep,
    request_language,
)
from tangram.platform.permissions import audit, lockout
from tangram.settings import Settings


def lockout_rules(settings: Settings) -> lockout.LockoutRules:
    return lockout.LockoutRules(max_failures=settings.login_max_failures,
                                window=timedelta(minutes=settings.login_lockout_minutes),
                                lock_for=timedelta(minutes=settings.login_lockout_minutes))


def address_rules(settings: Settings) -> lockout.LockoutRules:
    return lockout.LockoutRules(max_failures=settings.login_ip_max_failures,
                                window=timedelta(minutes=settings.login_ip_lockout_minutes),
                                lock_for=timedelta(minutes=settings.login_ip_lockout_minutes))


def client_address(request: Request) -> str:
    """The caller's IP address as the server sees it. Behind a reverse proxy,
    run the server with the proxy's address trusted for X-Forwarded-For
    (uvicorn ``--proxy-headers --forwarded-allow-ips``), or every client
    shares the proxy's address."""
    return request.client.host if request.client else "unknown"


router = APIRouter(prefix="/api/auth", tags=["auth"])


class LoginCredentials(Body):
    username: str = Field(min_length=1, max_length=100)
    password: str = Field(min_length=1, max_length=1024)


class DepartmentPublic(BaseModel):
    id: uuid.UUID
    name: str
    is_head: bool


class UserPublic(BaseModel):
    """A user as the API shows it (never the password hash)."""

    id: uuid.UUID
    username: str
    display_name: str
    email: str | None
    is_admin: bool
    language: str
    timezone: str
    primary_department_id: uuid.UUID | None
    departments: list[DepartmentPublic]

    @classmethod
    def of(cls, user: UserAccount) -> UserPublic:
        return cls(
            id=user.id, username=user.username, display_name=user.display_name,
            email=user.email, is_admin=user.is_admin, language=user.language,
            timezone=user.timezone, primary_department_id=user.primary_department_id,
            departments=[DepartmentPublic(id=d.id, name=d.name, is_head=d.is_head)
                         for d in user.departments],
        )


class LoginResult(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105  (the OAuth2 token type, not a secret)
    expires_at: datetime
    user: UserPublic


_LOGIN_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["username", "password"],
    "properties": {"username": {"type": "string"},
                   "password": {"type": "string", "format": "password"}},
}


class _Login:
    """What a login request carried, and which kind of session it should get."""

    def __init__(self, credentials: LoginCredentials, kind: SessionKind) -> None:
        self.credentials = credentials
        self.kind = kind


async def read_login(request: Request) -> _Login:
    """Credentials from a JSON body (a browser session) or the OAuth2 password
    form (an API client's bearer session)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    data: Any
    if content_type == "application/json":
        try:
            data = await request.json()
        except ValueError as exc:
            raise RequestValidationError([{
                "type": "json_invalid", "loc": ("body",), "input": None,
                "msg": "The body is not valid JSON."}]) from exc
        kind: SessionKind = "browser"
    else:
        form = await request.form()
        data = {k: v for k, v in form.items() if isinstance(v, str)}
        kind = "bearer"
    try:
        return _Login(LoginCredentials.model_validate(data), kind)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors()]) from exc


@router.post(
    "/login", response_model=LoginResult,
    responses={401: {"description": "Wrong username or password (code invalid_credentials)"
                     " or a disabled account (code account_disabled)."},
               429: {"description": "Too many failed sign-ins for this username, or "
                     "from this client address (code rate_limited, Retry-After header)."}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/x-www-form-urlencoded": {"schema": _LOGIN_BODY_SCHEMA},
        "application/json": {"schema": _LOGIN_BODY_SCHEMA},
    }}},
)
def login(login: Annotated[_Login, Depends(read_login)], request: Request, response: Response,
          session: SessionDep, settings: SettingsDep, clock: ClockDep) -> LoginResult:
    username, now = normalize_username(login.credentials.username), clock.now()
    address, by_address = client_address(request), address_rules(settings)
    if by_address.enabled:
        lockout.check_address_not_blocked(session, address=address, now=now)
    lockout.check_not_locked(session, username=username, now=now)
    try:
        user = authenticate(session, username=login.credentials.username,
                            password=login.credentials.password, clock=clock,
                            language=request_language(request, settings))
    except InvalidCredentials:
        lockout.record_failure(session, username=username, now=now,
                               rules=lockout_rules(settings))
        lockout.record_address_failure(session, address=address, now=now, rules=by_address)
        # The count must outlive this failing request (whose session rolls back).
        session.commit()
        raise
    lockout.record_success(session, username=username)
    issued = issue_session(session, user_id=user.id, kind=login.kind,
                           lifetime=timedelta(hours=settings.session_hours), clock=clock,
                           user_agent=request.headers.get("user-agent"))
    _set_session_cookie(response, issued.token, settings)
    return LoginResult(access_token=issued.token, expires_at=issued.expires_at,
                       user=UserPublic.of(user))


class ApiTokenLogout(TangramError):
    """Logout was called with an API token: it is refused rather than
    answered with 204, which would leave an integration believing its token
    is dead while it still works."""

    status = 400
    code = "api_token_logout"


@router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
    responses={400: {"description": "Sent with an API token, which logout does not end "
                     "(code api_token_logout): revoke it with DELETE /api/tokens/{id}."}})
def logout(auth: CurrentAuth, session: SessionDep, settings: SettingsDep,
           clock: ClockDep) -> Response:
    """End the login session of the bearer token or cookie sent."""
    if auth.token_scope is not None:
        raise ApiTokenLogout(
            "this is an API token, not a login session: logout does not end it and it stays "
            f"valid. Revoke it with DELETE /api/tokens/{auth.session_id} from a signed-in "
            "session (its owner or an administrator).",
            details={"token_id": str(auth.session_id)})
    revoke_session(session, session_id=auth.session_id, clock=clock)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=settings.cookie_secure,
                           httponly=True, samesite="lax")
    return response


class PasswordChange(Body):
    current_password: str = Field(min_length=1, max_length=1000)
    new_password: str = Field(min_length=1, max_length=1000)


@router.post(
    "/password", status_code=status.HTTP_204_NO_CONTENT, response_class=Response,
    responses={422: {"description": "Wrong current password (field current_password, "
                     "code invalid_credentials) or a new password the policy refuses."},
               403: {"description": "Sent with an API token: only a login may change "
                     "its password."},
               429: {"description": "Too many wrong current passwords (code rate_limited)."}})
def change_password(body: PasswordChange, auth: CurrentAuth, session: SessionDep,
                    settings: SettingsDep, clock: ClockDep) -> Response:
    """Change your own password: the current one, then the new one. Your other
    login sessions end; this one stays signed in."""
    if auth.token_scope is not None:
        raise PermissionDenied("an API token cannot change its user's password; sign in")
    user, now = auth.user, clock.now()
    lockout.check_not_locked(session, username=user.username, now=now)
    if not check_password(session, user_id=user.id, password=body.current_password):
        lockout.record_failure(session, username=user.username, now=now,
                               rules=lockout_rules(settings))
        session.commit()  # the count outlives this failing request
        raise ValidationFailed([ErrorItem(code="invalid_credentials", field="current_password",
                                          message="the current password is not right")],
                               "the current password is not right; nothing was changed")
    lockout.record_success(session, username=user.username)
    set_password(session, user_id=user.id, password=body.new_password,
                 keep_session=auth.session_id, field="new_password", clock=clock)
    audit.record(session, action="user.password_changed", target=str(user.id),
                 actor_id=user.id, at=now)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=UserPublic)
def me(auth: CurrentAuth) -> UserPublic:
    return UserPublic.of(auth.user)


def _set_session_cookie(response: Response, token: str, settings: Settings) -> None:
    response.set_cookie(SESSION_COOKIE, token, max_age=settings.session_hours * 3600,
                        path="/", secure=settings.cookie_secure, httponly=True,
                        samesite="lax")
