"""HTTP fixtures: an app on each backend (``db_url``), clients and users.

    def test_something(admin_client, make_user, app_factory): ...

- ``app_factory(*, clock=None, policy=None, **settings)`` builds an app on
  this test's database (tables created) — for a FrozenClock or a policy.
- ``app`` is ``app_factory()``; ``client`` an unauthenticated TestClient on it.
- ``make_user(username, *, is_admin=False, ..., app=None) -> (user_id, token)``
  creates a user and a bearer session (on ``app`` unless another app is given);
  send ``{"Authorization": f"Bearer {token}"}``.
- ``admin_token`` / ``admin_client``: a fresh administrator and a client that
  sends its token on every request.

Passwords are hashed with argon2's cheapest profile here (the real one costs
~150 ms a hash); the ``user_password`` fixture is every fixture user's password.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher, profiles
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tangram.clock import Clock
from tangram.engines.access import AccessPolicy
from tangram.platform.app import create_app
from tangram.platform.auth import passwords
from tangram.platform.auth.service import create_user, issue_session
from tangram.platform.schema import create_platform_tables
from tangram.settings import Settings

TEST_PASSWORD = "correct-horse-battery"

AppFactory = Callable[..., FastAPI]
MakeUser = Callable[..., tuple[uuid.UUID, str]]


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "hasher", PasswordHasher.from_parameters(profiles.CHEAPEST))


@pytest.fixture
def user_password() -> str:
    return TEST_PASSWORD


@pytest.fixture
def app_factory(db_url: str, tmp_path: Path) -> Iterator[AppFactory]:
    built: list[FastAPI] = []

    def build(*, clock: Clock | None = None, policy: AccessPolicy | None = None,
              **settings: Any) -> FastAPI:
        options: dict[str, Any] = {"database_url": db_url, "var_dir": tmp_path,
                                   "environment": "test", **settings}
        app = create_app(Settings(**options), clock=clock, policy=policy)
        create_platform_tables(app.state.engine)
        built.append(app)
        return app

    yield build
    for app in built:
        app.state.engine.dispose()


@pytest.fixture
def app(app_factory: AppFactory) -> FastAPI:
    return app_factory()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def make_user(app: FastAPI) -> MakeUser:
    default_app = app

    def make(username: str, *, is_admin: bool = False, password: str = TEST_PASSWORD,
             display_name: str | None = None, language: str = "zh",
             email: str | None = None, app: FastAPI | None = None) -> tuple[uuid.UUID, str]:
        target = app or default_app
        settings: Settings = target.state.settings
        with target.state.sessions.begin() as session:
            user = create_user(session, username=username, password=password,
                               display_name=display_name, email=email, is_admin=is_admin,
                               language=language, clock=target.state.clock)
            issued = issue_session(session, user_id=user.id, kind="bearer",
                                   lifetime=timedelta(hours=settings.session_hours),
                                   clock=target.state.clock)
        return user.id, issued.token

    return make


@pytest.fixture
def admin_token(make_user: MakeUser) -> str:
    return make_user("admin", is_admin=True, display_name="Administrator")[1]


@pytest.fixture
def admin_client(app: FastAPI, admin_token: str) -> Iterator[TestClient]:
    with TestClient(app, headers={"Authorization": f"Bearer {admin_token}"}) as test_client:
        yield test_client
