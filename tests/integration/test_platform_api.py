"""The platform shell through HTTP: health, docs, errors, headers, auth on
every route, transactions and the engine context."""

from __future__ import annotations

import re
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from pydantic import BaseModel

from tangram.db import new_id
from tangram.engines.directory import departments_table
from tangram.errors import Conflict, ErrorItem, ValidationFailed
from tangram.metamodel.storage import json_schema
from tangram.platform.app import create_app
from tangram.platform.deps import ContextDep, SessionDep
from tangram.settings import Settings

# Routes anyone may call; every other route must answer 401 without a login.
PUBLIC_ROUTES = {
    ("POST", "/api/auth/login"),
    ("GET", "/api/health"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/docs"),
    ("GET", "/api/redoc"),
    ("GET", "/api/docs/assets/{name}"),
    ("POST", "/api/hooks/flows/{app}/{flow}"),  # authenticated by the flow's webhook token
    ("GET", "/api/public/forms/{token}"),  # public forms: anonymous by design
    ("POST", "/api/public/forms/{token}"),
}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_checks_the_database(client):
    res = client.get("/api/health")
    assert res.status_code == 200
    assert res.json() == {"status": "ok", "database": "ok"}


def test_health_reports_an_unreachable_database(tmp_path):
    # Port 1 on loopback: nothing listens, so the connection is refused at once.
    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none",
                              var_dir=tmp_path, environment="test"))
    with TestClient(app) as c:
        res = c.get("/api/health")
    assert res.status_code == 503
    assert res.json() == {"status": "error", "database": "error"}


def api_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path) of every HTTP route, also those of included routers
    (FastAPI keeps included routers nested; iter_route_contexts flattens)."""
    return sorted((method, ctx.path) for ctx in iter_route_contexts(app.routes)
                  for method in (ctx.methods or ()))


def test_every_route_but_the_public_ones_requires_a_login(app, client):
    checked = 0
    for method, route_path in api_routes(app):
        if method not in {"HEAD", "OPTIONS"}:
            if (method, route_path) in PUBLIC_ROUTES:
                continue
            path = re.sub(r"\{[^}/]+\}", "x", route_path)
            res = client.request(method, path)
            assert res.status_code == 401, f"{method} {route_path} answered {res.status_code}"
            assert res.json()["code"] == "not_authenticated"
            checked += 1
    assert checked >= 4  # logout, me, schema list, schema


def test_public_routes_exist(app):
    assert set(api_routes(app)) >= PUBLIC_ROUTES


def test_security_headers_on_every_response(client):
    for res in (client.get("/api/health"), client.get("/api/auth/me"),
                client.get("/api/nowhere"), client.get("/api/docs")):
        assert res.headers["x-content-type-options"] == "nosniff"
        assert res.headers["x-frame-options"] == "DENY"
        assert res.headers["referrer-policy"] == "same-origin"
        csp = res.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "unsafe-eval" not in csp


def test_docs_are_served_offline(client):
    for page in ("/api/docs", "/api/redoc"):
        res = client.get(page)
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/html")
        html = res.text
        assert not re.search(r"""(src|href)=["']?https?://""", html), html
        assert "<script>" not in html  # no inline script: the CSP allows only 'self'
        assets = re.findall(r"""(?:src|href)="([^"]+)\"""", html)
        assert assets
        for url in assets:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 0
    assert client.get("/api/docs").text.count("/api/openapi.json") == 1
    assert client.get("/api/docs/assets/..%2Fapp.py").status_code == 404


def test_openapi_document_describes_the_api(client):
    spec = client.get("/api/openapi.json").json()
    assert "/api/auth/login" in spec["paths"]
    login_body = spec["paths"]["/api/auth/login"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/x-www-form-urlencoded"} <= set(login_body)
    schemes = spec["components"]["securitySchemes"]
    assert any(s.get("type") == "oauth2" for s in schemes.values())
    assert "/api/docs" not in spec["paths"]


def test_schema_endpoints(admin_client):
    listing = admin_client.get("/api/meta/schemas")
    assert listing.status_code == 200
    names = [s["name"] for s in listing.json()["schemas"]]
    assert "form" in names
    form = admin_client.get("/api/meta/schemas/form")
    assert form.status_code == 200
    assert form.json() == json_schema("form")
    assert "fields" in form.json()["properties"]
    missing = admin_client.get("/api/meta/schemas/nope")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert "form" in missing.json()["message"]  # says what is available


def test_unknown_path_and_method_use_the_error_shape(admin_client):
    missing = admin_client.get("/api/no/such/thing")
    assert missing.status_code == 404
    assert missing.json() == {"code": "not_found",
                              "message": "No such endpoint: GET /api/no/such/thing."}
    wrong = admin_client.delete("/api/health")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method_not_allowed"


# --- routes that exist only in these tests ------------------------------------------

class Widget(BaseModel):
    name: str
    size: int


def _test_router() -> APIRouter:
    router = APIRouter(prefix="/api/test")

    @router.post("/widgets")
    def create_widget(widget: Widget, ctx: ContextDep) -> dict[str, Any]:
        return {"name": widget.name}

    @router.post("/invalid")
    def invalid(ctx: ContextDep) -> None:
        raise ValidationFailed([ErrorItem(code="pattern", field="phone",
                                          message="use 11 digits")])

    @router.post("/departments")
    def add_department(session: SessionDep, ctx: ContextDep, fail: bool = False
                       ) -> dict[str, str]:
        dept_id = new_id()
        session.execute(departments_table.insert().values(
            id=dept_id, name="Kept only on success", created_at=ctx.now()))
        if fail:
            raise Conflict("something lost a race")
        return {"id": str(dept_id)}

    @router.get("/context")
    def context(ctx: ContextDep) -> dict[str, Any]:
        return {"language": ctx.language, "timezone": ctx.timezone,
                "username": ctx.actor.username, "policy": type(ctx.policy).__name__}

    return router


@pytest.fixture
def test_app(app: FastAPI) -> FastAPI:
    app.include_router(_test_router())
    return app


def test_tangram_errors_render_with_their_status_and_items(test_app, admin_client):
    res = admin_client.post("/api/test/invalid")
    assert res.status_code == 422
    assert res.json() == {
        "code": "validation_failed", "message": "1 validation error(s)",
        "errors": [{"field": "phone", "code": "pattern", "message": "use 11 digits"}],
    }


def test_request_validation_errors_use_the_same_shape(test_app, admin_client):
    res = admin_client.post("/api/test/widgets", json={"size": "big"})
    assert res.status_code == 422
    body = res.json()
    assert body["code"] == "request_invalid"
    assert {(e["field"], e["code"]) for e in body["errors"]} == {
        ("body.name", "missing"), ("body.size", "int_parsing")}
    assert "body.name" in body["message"] and "body.size" in body["message"]


def test_session_commits_on_success_and_rolls_back_on_error(test_app, admin_client):
    ok = admin_client.post("/api/test/departments")
    assert ok.status_code == 200
    failed = admin_client.post("/api/test/departments", params={"fail": "true"})
    assert failed.status_code == 409
    with test_app.state.engine.connect() as conn:
        ids = conn.execute(sa.select(departments_table.c.id)).scalars().all()
    assert [str(i) for i in ids] == [ok.json()["id"]]


@pytest.mark.parametrize(("header", "user_language", "expected"), [
    (None, "en", "en"),
    (None, "zh", "zh"),
    ("en-US,en;q=0.9", "zh", "en"),
    ("fr-FR, zh-CN;q=0.8, en;q=0.5", "en", "zh"),
    ("de", "en", "en"),
])
def test_engine_context_language(test_app, make_user, header, user_language, expected):
    _, token = make_user("speaker", language=user_language)
    headers = bearer(token) | ({"Accept-Language": header} if header else {})
    with TestClient(test_app) as c:
        if header is None:
            c.headers.pop("Accept-Language")
        ctx = c.get("/api/test/context", headers=headers).json()
    assert ctx["language"] == expected
    assert ctx["timezone"] == "Asia/Shanghai"
    assert ctx["username"] == "speaker"
    assert ctx["policy"] == "RolePolicy"


def test_app_state_holds_what_the_factory_was_given(app_factory):
    from tangram.clock import FrozenClock
    from tangram.engines.access import AllowAll

    clock, policy = FrozenClock(), AllowAll()
    app = app_factory(clock=clock, policy=policy)
    assert app.state.clock is clock
    assert app.state.policy is policy
    assert app.state.settings.environment == "test"
    assert app.state.engine is app.state.sessions.kw["bind"]
