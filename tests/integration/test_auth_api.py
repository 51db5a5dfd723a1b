"""Signing in and out through HTTP, as a browser and as an API client."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.db import new_id
from tangram.engines.directory import departments_table, user_departments_table
from tangram.platform.auth import passwords
from tangram.platform.auth.service import set_user_active
from tangram.platform.auth.tables import auth_sessions_table
from tangram.platform.deps import SESSION_COOKIE, AdminActor

PASSWORD = "correct-horse-battery"  # tests/integration/conftest.py's user_password


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_login_with_the_oauth2_form_returns_a_bearer_token(client, make_user):
    user_id, _ = make_user("li.lei", display_name="李雷")
    res = client.post("/api/auth/login", data={"username": "li.lei",
                                               "password": PASSWORD})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["token_type"] == "bearer"
    assert body["user"]["id"] == str(user_id)
    assert body["user"]["display_name"] == "李雷"
    assert "password_hash" not in body["user"]
    assert body["expires_at"]
    me = TestClient(client.app).get("/api/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "li.lei"


def test_login_with_json_sets_an_http_only_lax_cookie_that_authenticates(client, make_user):
    make_user("han.meimei")
    res = client.post("/api/auth/login", json={"username": "han.meimei",
                                               "password": PASSWORD})
    assert res.status_code == 200, res.text
    cookie = res.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie
    # The client now holds only the cookie, no Authorization header.
    me = client.get("/api/auth/me")
    assert me.status_code == 200, me.text
    assert me.json()["username"] == "han.meimei"


def test_cookie_is_secure_when_configured(app_factory, make_user):
    app = app_factory(cookie_secure=True)
    make_user("secure.user", app=app)
    with TestClient(app, base_url="https://testserver") as c:
        res = c.post("/api/auth/login", json={"username": "secure.user",
                                              "password": PASSWORD})
    assert res.status_code == 200
    assert "Secure" in res.headers["set-cookie"]


def test_usernames_are_case_insensitive(client, make_user):
    make_user("Wang.Fang")
    res = client.post("/api/auth/login", json={"username": "WANG.fang",
                                               "password": PASSWORD})
    assert res.status_code == 200
    assert res.json()["user"]["username"] == "wang.fang"


def test_wrong_password_and_unknown_user_get_the_same_401(client, make_user, monkeypatch):
    make_user("zhang.wei")
    verifications = []
    real_verify = passwords.verify_password
    monkeypatch.setattr(passwords, "verify_password",
                        lambda h, p: verifications.append(p) or real_verify(h, p))

    english = {"Accept-Language": "en"}
    wrong = client.post("/api/auth/login", headers=english,
                        json={"username": "zhang.wei", "password": "not-the-password"})
    unknown = client.post("/api/auth/login", headers=english,
                          json={"username": "nobody", "password": "not-the-password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    assert wrong.json() == {"code": "invalid_credentials",
                            "message": "The username or password is not correct."}
    # Both paths do the argon2 work, so timing does not reveal which names exist.
    assert verifications == ["not-the-password", "not-the-password"]
    assert "set-cookie" not in wrong.headers
    # Without Accept-Language the organization's default language (zh) is used.
    client.headers.pop("Accept-Language")
    chinese = client.post("/api/auth/login", json={"username": "nobody", "password": "x"})
    assert chinese.json()["message"] == "用户名或密码不正确。"


def test_login_without_fields_is_a_request_error_naming_them(client):
    res = client.post("/api/auth/login", json={"username": "x"})
    assert res.status_code == 422
    body = res.json()
    assert body["code"] == "request_invalid"
    assert [e["field"] for e in body["errors"]] == ["body.password"]
    form = client.post("/api/auth/login", data={})
    assert {e["field"] for e in form.json()["errors"]} == {"body.username", "body.password"}
    broken = client.post("/api/auth/login", content=b"{not json",
                         headers={"content-type": "application/json"})
    assert broken.status_code == 422
    assert broken.json()["errors"][0]["code"] == "json_invalid"


def test_bearer_token_authenticates_and_bad_headers_are_refused(client, make_user):
    user_id, token = make_user("chen.jing")
    assert client.get("/api/auth/me", headers=bearer(token)).json()["id"] == str(user_id)
    for header in (f"Basic {token}", "Bearer ", f"Bearer {token}x", "Bearer"):
        res = client.get("/api/auth/me", headers={"Authorization": header})
        assert res.status_code == 401, header
        assert res.headers["www-authenticate"] == "Bearer"


def test_me_lists_departments(app, client, make_user):
    user_id, token = make_user("liu.yang", language="en")
    dept_id = new_id()
    with app.state.sessions.begin() as s:
        s.execute(departments_table.insert().values(
            id=dept_id, name="Sales", created_at=app.state.clock.now()))
        s.execute(user_departments_table.insert().values(
            user_id=user_id, department_id=dept_id, is_head=True))
    me = client.get("/api/auth/me", headers=bearer(token)).json()
    assert me["departments"] == [{"id": str(dept_id), "name": "Sales", "is_head": True}]
    assert me["language"] == "en"
    assert me["timezone"] == "Asia/Shanghai"
    assert me["is_admin"] is False


def test_logout_revokes_the_session_and_clears_the_cookie(client, make_user):
    make_user("zhao.lei")
    login = client.post("/api/auth/login", json={"username": "zhao.lei",
                                                 "password": PASSWORD}).json()
    token = login["access_token"]
    res = client.post("/api/auth/logout", headers=bearer(token))
    assert res.status_code == 204
    assert f'{SESSION_COOKIE}=""' in res.headers["set-cookie"]
    again = client.get("/api/auth/me", headers=bearer(token))
    assert again.status_code == 401
    assert again.json()["code"] == "session_invalid"
    # The cookie was cleared too: the client is anonymous again.
    assert client.get("/api/auth/me").status_code == 401


def test_logout_needs_a_session(client):
    assert client.post("/api/auth/logout").status_code == 401


def test_logout_with_an_api_token_is_refused_and_the_token_stays_valid(client, make_user):
    _, login_token = make_user("qian.li")
    made = client.post("/api/tokens", headers=bearer(login_token), json={
        "name": "erp", "apps": ["*"], "actions": ["read"]})
    assert made.status_code == 201, made.text
    api_token = made.json()["token"]
    res = client.post("/api/auth/logout", headers=bearer(api_token))
    assert res.status_code == 400
    assert res.json()["code"] == "api_token_logout"
    assert res.json()["details"] == {"token_id": made.json()["id"]}
    assert f"DELETE /api/tokens/{made.json()['id']}" in res.json()["message"]
    assert client.get("/api/apps", headers=bearer(api_token)).status_code == 200
    # The login session that made it is untouched, and revokes it the documented way.
    assert client.delete(f"/api/tokens/{made.json()['id']}",
                         headers=bearer(login_token)).status_code == 204
    assert client.get("/api/apps", headers=bearer(api_token)).status_code == 401


def test_many_usernames_from_one_address_block_the_address(app_factory, make_user):
    clock = FrozenClock()
    app = app_factory(clock=clock, login_max_failures=3, login_ip_max_failures=4,
                      login_ip_lockout_minutes=10)
    make_user("sun.li", app=app)
    guesser = TestClient(app, client=("203.0.113.7", 40000))
    colleague = TestClient(app, client=("198.51.100.2", 40000))

    def login(client, username, password=PASSWORD):
        return client.post("/api/auth/login", json={"username": username,
                                                    "password": password})
    # One wrong guess per username: no username reaches its own lockout.
    assert [login(guesser, f"user{i}", "Wrong-pass-1").status_code
            for i in range(4)] == [401] * 4
    blocked = login(guesser, "sun.li")
    assert blocked.status_code == 429 and blocked.json()["code"] == "rate_limited"
    assert blocked.headers["retry-after"] == "600"
    assert "203.0.113.7" in blocked.json()["message"]
    # Another address is not affected, and the username itself is not locked.
    assert login(colleague, "sun.li").status_code == 200
    clock.advance(minutes=11)
    assert login(guesser, "sun.li").status_code == 200
    with app.state.sessions() as s:
        from tangram.platform.permissions import audit

        entry = audit.entries(s, action="login.ip_block")[0]
    assert entry["target"] == "ip:203.0.113.7"


def test_address_limiting_can_be_turned_off(app_factory, make_user):
    app = app_factory(login_ip_max_failures=0)
    guesser = TestClient(app, client=("203.0.113.8", 40000))
    codes = [guesser.post("/api/auth/login", json={
        "username": f"user{i}", "password": "Wrong-pass-1"}).status_code for i in range(8)]
    assert codes == [401] * 8


def test_expired_session_is_refused(app_factory, make_user):
    clock = FrozenClock()
    app = app_factory(clock=clock, session_hours=2)
    _, token = make_user("sun.li", app=app)
    with TestClient(app) as c:
        assert c.get("/api/auth/me", headers=bearer(token)).status_code == 200
        clock.advance(timedelta(hours=1, minutes=59))
        assert c.get("/api/auth/me", headers=bearer(token)).status_code == 200
        clock.advance(minutes=1)
        res = c.get("/api/auth/me", headers=bearer(token))
    assert res.status_code == 401
    assert res.json()["code"] == "session_expired"


def test_last_seen_is_recorded(app_factory, make_user):
    clock = FrozenClock()
    app = app_factory(clock=clock)
    _, token = make_user("qian.yu", app=app)
    clock.advance(minutes=5)
    with TestClient(app) as c:
        c.get("/api/auth/me", headers=bearer(token))
    with app.state.engine.connect() as conn:
        seen = conn.execute(sa.select(auth_sessions_table.c.last_seen_at)).scalar_one()
    assert seen == clock.now()


def test_disabled_user_is_refused_at_once(app, client, make_user):
    user_id, token = make_user("ma.chao")
    assert client.get("/api/auth/me", headers=bearer(token)).status_code == 200
    with app.state.sessions.begin() as s:
        set_user_active(s, user_id=user_id, active=False)
    res = client.get("/api/auth/me", headers=bearer(token))
    assert res.status_code == 401
    assert res.json()["code"] == "account_disabled"
    login = client.post("/api/auth/login", json={"username": "ma.chao",
                                                 "password": PASSWORD})
    assert login.status_code == 401
    assert login.json()["code"] == "account_disabled"


def test_tokens_are_stored_only_as_hashes(app, client, make_user):
    make_user("he.ping")
    token = client.post("/api/auth/login", json={"username": "he.ping",
                                                 "password": PASSWORD}).json()["access_token"]
    with app.state.engine.connect() as conn:
        rows = conn.execute(sa.select(auth_sessions_table)).all()
    stored = " ".join(str(v) for row in rows for v in row)
    assert token not in stored
    assert {row.kind for row in rows} == {"bearer", "browser"}  # fixture's and the login's


def test_admin_only_dependency(app, make_user):
    router = APIRouter()

    @router.get("/api/test-admin-only")
    def admin_only(actor: AdminActor) -> dict[str, str]:
        return {"username": actor.username}

    app.include_router(router)
    _, user_token = make_user("plain.user")
    _, admin_token = make_user("boss", is_admin=True)
    with TestClient(app) as c:
        denied = c.get("/api/test-admin-only", headers=bearer(user_token))
        allowed = c.get("/api/test-admin-only", headers=bearer(admin_token))
    assert denied.status_code == 403
    assert denied.json()["code"] == "permission_denied"
    assert allowed.json() == {"username": "boss"}


def _login(client, username: str, password: str = PASSWORD):
    return client.post("/api/auth/login", json={"username": username, "password": password})


def test_changing_your_password_ends_your_other_sessions(client, make_user):
    make_user("sun.li")
    here = _login(client, "sun.li").json()["access_token"]
    elsewhere = _login(client, "sun.li").json()["access_token"]
    made = client.post("/api/tokens", headers=bearer(here), json={
        "name": "erp", "apps": ["*"], "actions": ["read"]}).json()["token"]
    wrong = client.post("/api/auth/password", headers=bearer(here), json={
        "current_password": "not-it", "new_password": "a-brand-new-secret"})
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["field"] == "current_password"
    weak = client.post("/api/auth/password", headers=bearer(here), json={
        "current_password": PASSWORD, "new_password": "short"})
    assert weak.status_code == 422 and weak.json()["errors"][0]["field"] == "new_password"
    assert _login(client, "sun.li").status_code == 200  # nothing changed yet
    res = client.post("/api/auth/password", headers=bearer(here), json={
        "current_password": PASSWORD, "new_password": "a-brand-new-secret"})
    assert res.status_code == 204, res.text
    assert client.get("/api/auth/me", headers=bearer(here)).status_code == 200
    assert client.get("/api/auth/me", headers=bearer(elsewhere)).status_code == 401
    assert client.get("/api/apps", headers=bearer(made)).status_code == 200  # tokens stay
    assert _login(client, "sun.li").status_code == 401
    assert _login(client, "sun.li", "a-brand-new-secret").status_code == 200
    # An API token cannot change its user's password.
    assert client.post("/api/auth/password", headers=bearer(made), json={
        "current_password": "a-brand-new-secret", "new_password": "x" * 20}
    ).status_code == 403


def test_an_administrator_sets_a_users_password(client, make_user):
    user_id, _ = make_user("imported.user")
    _, admin = make_user("root", is_admin=True)
    _, other = make_user("not.admin")
    session = _login(client, "imported.user").json()["access_token"]
    body = {"password": "given-by-the-admin"}
    assert client.post(f"/api/org/users/{user_id}/password", headers=bearer(other),
                       json=body).status_code == 403
    weak = client.post(f"/api/org/users/{user_id}/password", headers=bearer(admin),
                       json={"password": "imported.user"})
    assert weak.status_code == 422, weak.text
    res = client.post(f"/api/org/users/{user_id}/password", headers=bearer(admin), json=body)
    assert res.status_code == 204, res.text
    assert client.get("/api/auth/me", headers=bearer(session)).status_code == 401
    assert _login(client, "imported.user", "given-by-the-admin").status_code == 200
    audit = client.get("/api/org/audit", headers=bearer(admin)).json()
    entries = audit["items"] if isinstance(audit, dict) else audit
    assert any(e["action"] == "user.password_set" and e["target"] == str(user_id)
               for e in entries)
