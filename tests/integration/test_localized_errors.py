"""The errors people meet in daily work, over HTTP, in the caller's language:
the same failing request says its ``message`` in Chinese when it asks for zh
(Accept-Language) and in English when it asks for en; ``code``, ``errors[].code``
and ``details`` never change. Without Accept-Language an error is said in the
signed-in user's own language, else in the organization's default — the rule
every other answer follows.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.engines.access import AllowAll
from tests.factories import field, label
from tests.flow_factories import CONTRACT_FORM, approval, contract_app_admin, end, flow_body, start

BASE = "/api/apps/crm"
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}
EN = {"Accept-Language": "en-US,en;q=0.8"}


def in_both(send: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answers to one failing request sent in zh and in en: same status,
    same code, same details, same error codes and fields."""
    zh, en = send(ZH), send(EN)
    assert zh.status_code == en.status_code, (zh.text, en.text)
    zh_body, en_body = zh.json(), en.json()
    assert zh_body["code"] == en_body["code"]
    assert zh_body.get("details") == en_body.get("details")
    assert [(e["code"], e.get("field")) for e in zh_body.get("errors", [])] == \
        [(e["code"], e.get("field")) for e in en_body.get("errors", [])]
    return zh_body, en_body


class Office:
    """App ``crm`` with the contract form (a lock rule on status) and a
    two-step approval ``f`` (nodes a → b), under AllowAll; users by name."""

    def __init__(self, app_factory: Any, make_user: Any, **settings: Any) -> None:
        self.clock = FrozenClock()
        self.app = app_factory(clock=self.clock, policy=AllowAll(),
                               session_hours=24 * 365, **settings)
        self.admin = contract_app_admin(self.app, make_user)
        locked = {**CONTRACT_FORM, "lock": {
            "when": "record.status == 'approved'",
            "message": {"zh": "已批准的合同不能修改", "en": "an approved contract is final"}}}
        self.ok(self.admin.put(f"{BASE}/forms/contract/draft", json={"definition": locked}))
        self.ok(self.admin.post(f"{BASE}/forms/contract/publish", json={}))
        self.clients: dict[str, TestClient] = {}
        self.tokens: dict[str, str] = {}
        for name, language in (("rep", "zh"), ("fin", "zh"), ("boss", "zh"), ("mary", "en")):
            _, token = make_user(name, language=language, app=self.app)
            self.tokens[name] = token
            self.clients[name] = TestClient(self.app,
                                            headers={"Authorization": f"Bearer {token}"})
        self.ok(self.admin.put(f"{BASE}/flows/f/draft", json={"definition": flow_body(
            "f", start(), approval("a", "fin", next="b", actions=[
                "approve", "reject", "transfer", "add_signer", "cc"]),
            approval("b", "boss", actions=["approve", "reject"]), end())}))
        self.ok(self.admin.post(f"{BASE}/flows/f/publish", json={}))

    def __getitem__(self, name: str) -> TestClient:
        return self.clients[name]

    @staticmethod
    def ok(res: Any) -> Any:
        assert res.status_code in (200, 201, 204), res.text
        return res.json() if res.content else None

    def contract(self, **values: Any) -> dict[str, Any]:
        return self.ok(self["rep"].post(f"{BASE}/forms/contract/records", json={
            "values": {"title": "HT-1", "amount": "1000", "status": "draft", **values}}))

    def submit(self) -> tuple[str, str]:
        record = self.contract()
        started = self.ok(self["rep"].post(f"{BASE}/flows/f/start",
                                           json={"record_id": record["id"]}))
        return started["id"], record["id"]

    def task_of(self, name: str) -> dict[str, Any]:
        [task] = self.ok(self[name].get("/api/flows/tasks", params={"box": "todo"}))["items"]
        return task  # type: ignore[no-any-return]


@pytest.fixture
def office(app_factory, make_user) -> Office:
    return Office(app_factory, make_user)


# --- flow tasks -------------------------------------------------------------------------

def test_a_task_decided_twice(office):
    office.submit()
    task = office.task_of("fin")
    url = f"/api/flows/tasks/{task['id']}/approve"
    office.ok(office["fin"].post(url, json={}))
    zh, en = in_both(lambda h: office["fin"].post(url, json={}, headers=h))
    assert zh == {"code": "conflict", "message": "该任务已被处理（已同意）"}
    assert en == {"code": "conflict", "message": "this task was already decided (approved)"}


def test_someone_elses_task(office):
    office.submit()
    task = office.task_of("fin")
    zh, en = in_both(lambda h: office["boss"].post(f"/api/flows/tasks/{task['id']}/approve",
                                                   json={}, headers=h))
    assert zh == {"code": "permission_denied", "message": "该任务已分配给他人，您无权处理"}
    assert en == {"code": "permission_denied",
                  "message": "this task is assigned to someone else"}


def test_a_stale_task_version(office):
    office.submit()
    task = office.task_of("fin")
    zh, en = in_both(lambda h: office["fin"].post(
        f"/api/flows/tasks/{task['id']}/reject", json={"version": task["version"] + 1},
        headers=h))
    assert zh["message"] == "任务已发生变化，请刷新后重试"
    assert en["message"].startswith("the task changed since you read it")
    assert zh["details"] == {"current_version": task["version"]}


def test_a_comment_needs_text(office):
    iid, _ = office.submit()
    zh, en = in_both(lambda h: office["rep"].post(f"/api/flows/instances/{iid}/comment",
                                                  json={"comment": ""}, headers=h))
    assert zh["code"] == "validation_failed"
    assert zh["message"] == "1 处填写有误" and en["message"] == "1 validation error(s)"
    assert zh["errors"] == [{"code": "required", "field": "comment",
                             "message": "请填写评论内容"}]
    assert en["errors"] == [{"code": "required", "field": "comment",
                             "message": "a comment needs text"}]


def test_transfer_targets_refused(office):
    office.submit()
    task = office.task_of("fin")
    url = f"/api/flows/tasks/{task['id']}/transfer"
    zh, en = in_both(lambda h: office["fin"].post(url, json={"users": ["fin"]}, headers=h))
    assert zh["errors"][0]["message"] == "不能转交给自己，请选择其他人"
    assert en["errors"][0]["message"] == ("you cannot transfer a task to yourself; name "
                                          "someone else")
    zh, en = in_both(lambda h: office["fin"].post(url, json={"users": ["rep"]}, headers=h))
    assert zh["errors"][0]["message"] == ("用户“rep”是此申请的提交人，不能审批自己的申请，"
                                          "请选择其他人")
    assert en["errors"][0]["message"].startswith("'rep' submitted this request")
    zh, en = in_both(lambda h: office["fin"].post(url, json={"users": ["nobody"]},
                                                  headers=h))
    assert zh["errors"][0]["message"] == "转交需要指定一位有效用户（用户名或 ID）"
    assert en["errors"][0]["message"] == ("transfer needs one active user (usernames or ids); "
                                          "got ['nobody']")


def test_an_action_the_node_does_not_offer(office):
    office.submit()
    office.ok(office["fin"].post(f"/api/flows/tasks/{office.task_of('fin')['id']}/approve",
                                 json={}))
    task = office.task_of("boss")
    zh, en = in_both(lambda h: office["boss"].post(f"/api/flows/tasks/{task['id']}/transfer",
                                                   json={"users": ["mary"]}, headers=h))
    assert zh["message"] == "「b」环节不能执行“转交”，可用的操作：同意、拒绝"
    assert en["message"] == ("action 'transfer' is not allowed at node 'b'; allowed: "
                             "approve, reject")


def test_withdraw_refused_after_an_approver_acted(office):
    iid, _ = office.submit()
    office.ok(office["fin"].post(f"/api/flows/tasks/{office.task_of('fin')['id']}/approve",
                                 json={}))
    zh, en = in_both(lambda h: office["rep"].post(f"/api/flows/instances/{iid}/withdraw",
                                                  json={}, headers=h))
    assert zh == {"code": "conflict", "message": "审批人已在「a」环节处理，无法撤回"}
    assert en == {"code": "conflict", "message": "this request cannot be withdrawn: an "
                  "approver already acted at node 'a'"}
    zh, en = in_both(lambda h: office["fin"].post(f"/api/flows/instances/{iid}/urge",
                                                  json={}, headers=h))
    assert zh["message"] == "只有提交人可以催办此申请"
    assert en["message"] == "only the submitter may urge this request"


def test_a_closed_request(office):
    iid, _ = office.submit()
    office.ok(office["rep"].post(f"/api/flows/instances/{iid}/withdraw", json={}))
    zh, en = in_both(lambda h: office["fin"].post(f"/api/flows/instances/{iid}/my-task/approve",
                                                  json={}, headers=h))
    assert zh["message"] == "该申请已结束（已撤回，结果：已撤回）"
    assert en["message"] == "the request is already withdrawn (withdrawn)"


# --- records ----------------------------------------------------------------------------

def test_a_stale_record_version(office):
    record = office.contract()
    office.ok(office["rep"].patch(f"{BASE}/forms/contract/records/{record['id']}",
                                  json={"values": {"title": "HT-2"},
                                        "version": record["version"]}))
    zh, en = in_both(lambda h: office["rep"].patch(
        f"{BASE}/forms/contract/records/{record['id']}",
        json={"values": {"title": "HT-3"}, "version": record["version"]}, headers=h))
    assert zh["code"] == "conflict"
    assert zh["message"] == "记录已被他人修改，请刷新后重试"
    assert en["message"].endswith("; reload and retry")
    assert zh["details"] == {"current_version": record["version"] + 1}


def test_a_missing_record(office):
    url = f"{BASE}/forms/contract/records/01a219a5-e501-76df-9efb-7d7704f798a3"
    zh, en = in_both(lambda h: office["rep"].get(url, headers=h))
    assert zh == {"code": "not_found", "message": "记录不存在或已被删除"}
    assert en == {"code": "not_found", "message": "record 01a219a5-e501-76df-9efb-7d7704f798a3 "
                  "of form 'contract' does not exist"}


def test_a_locked_record(office):
    record = office.contract(status="approved")
    zh, en = in_both(lambda h: office["rep"].patch(
        f"{BASE}/forms/contract/records/{record['id']}",
        json={"values": {"title": "HT-9"}, "version": record["version"]}, headers=h))
    assert zh["code"] == "record_locked"
    assert zh["message"] == "记录已锁定，不能修改（title）：已批准的合同不能修改"
    assert en["message"] == (f"record {record['id']} is locked and cannot be changed (title): "
                             "an approved contract is final")
    zh, en = in_both(lambda h: office["rep"].delete(
        f"{BASE}/forms/contract/records/{record['id']}", headers=h))
    assert zh["message"] == "记录已锁定，不能删除：已批准的合同不能修改"


def without_language(client: TestClient) -> TestClient:
    """``client`` no longer sends Accept-Language (as scripts and integrations
    often do not)."""
    client.headers.pop("Accept-Language", None)
    return client


def test_without_accept_language_errors_follow_the_users_own_language(office):
    record = office.contract()
    stale = {"values": {"title": "x"}, "version": 99}
    url = f"{BASE}/forms/contract/records/{record['id']}"
    res = without_language(office["rep"]).patch(url, json=stale)
    assert res.status_code == 409
    assert res.json()["message"].startswith("记录已被他人修改")
    # an English-speaking user reads English; the header still wins over both
    assert without_language(office["mary"]).patch(url, json=stale).json()[
        "message"].startswith(f"record {record['id']} was changed by someone else")
    assert office["rep"].patch(url, json=stale, headers=EN).json()["message"].startswith(
        f"record {record['id']} was changed by someone else")


def test_without_accept_language_anonymous_errors_follow_the_organization(app_factory):
    for default, expected in (("zh", "没有这个接口：GET /api/no/such"),
                              ("en", "No such endpoint: GET /api/no/such")):
        client = without_language(TestClient(app_factory(default_language=default)))
        res = client.get("/api/no/such")
        assert res.status_code == 404 and res.json()["message"] == expected + (
            "。" if default == "zh" else ".")
        res = client.put("/api/auth/login", json={})
        assert res.status_code == 405
        assert res.json()["message"] == {"zh": "/api/auth/login 不接受 PUT 请求。",
                                          "en": "PUT is not allowed on /api/auth/login."}[default]


# --- permissions and signing in ------------------------------------------------------

def test_a_field_the_role_makes_read_only(app_factory, make_user):
    app = app_factory()
    admin = contract_app_admin(app, make_user)
    assert admin.put(f"{BASE}/forms/contract/draft", json={"definition": {
        **CONTRACT_FORM, "fields": [field("title", label={"zh": "标题", "en": "Title"}),
                                    *CONTRACT_FORM["fields"][1:]]}}).status_code == 200
    assert admin.post(f"{BASE}/forms/contract/publish", json={}).status_code == 200
    assert admin.put(f"{BASE}/roles/rep", json={"definition": {
        "key": "rep", "label": label("rep"), "forms": {"contract": {
            "actions": ["read", "create", "update"], "scope": "all",
            "fields": {"title": "read_only"}}}}}).status_code in (200, 201)
    uid, token = make_user("rep", app=app)
    assert admin.post(f"{BASE}/role-assignments",
                      json={"role": "rep", "user_id": str(uid)}).status_code == 201
    rep = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    zh, en = in_both(lambda h: rep.post(f"{BASE}/forms/contract/records",
                                        json={"values": {"title": "HT-1"}}, headers=h))
    assert zh == {"code": "permission_denied", "details": {"field": "title"},
                  "message": "您无权修改字段“标题”：该字段对您只读"}
    assert en["message"] == "you may not set field 'title' (Title): it is read-only for you"


def test_administrators_only(app, make_user):
    _, zh_token = make_user("wang", language="zh")
    _, en_token = make_user("mary", language="en")
    url = "/api/org/users"
    zh, en = in_both(lambda h: TestClient(app).get(url, headers={
        "Authorization": f"Bearer {zh_token}", **h}))
    assert zh == {"code": "permission_denied", "message": "只有管理员可以执行此操作。"}
    assert en == {"code": "permission_denied", "message": "Only administrators may do this."}
    # Without Accept-Language: the user's own language.
    client = without_language(TestClient(app))
    assert client.get(url, headers={"Authorization": f"Bearer {zh_token}"}).json()[
        "message"] == "只有管理员可以执行此操作。"
    assert client.get(url, headers={"Authorization": f"Bearer {en_token}"}).json()[
        "message"] == "Only administrators may do this."


def test_not_signed_in_and_session_expired(app_factory, make_user):
    clock = FrozenClock()
    app = app_factory(clock=clock, session_hours=1)
    client = TestClient(app)
    zh, en = in_both(lambda h: client.get("/api/auth/me", headers=h))
    assert zh["code"] == "not_authenticated" and zh["message"].startswith("请先登录")
    assert en["message"].startswith("Sign in first")
    # Without Accept-Language: the organization's default language (zh).
    assert without_language(TestClient(app)).get("/api/auth/me").json()[
        "message"].startswith("请先登录")
    _, token = make_user("li", language="en", app=app)
    clock.advance(hours=2)
    zh, en = in_both(lambda h: client.get("/api/auth/me", headers={
        "Authorization": f"Bearer {token}", **h}))
    assert zh["code"] == "session_expired"
    assert zh["message"].startswith("登录已于 ") and zh["message"].endswith("过期，请重新登录。")
    assert en["message"].startswith("This session expired at ")


def test_sign_in_locked_after_failures(app_factory, make_user):
    app = app_factory(login_max_failures=2, login_lockout_minutes=15)
    make_user("zhao", app=app)
    client = TestClient(app)
    body = {"username": "zhao", "password": "Wrong-pass-1"}
    assert [client.post("/api/auth/login", json=body).status_code for _ in range(2)] == \
        [401, 401]
    zh, en = in_both(lambda h: client.post("/api/auth/login", json=body, headers=h))
    assert zh["code"] == "rate_limited"
    assert zh["message"] == "尝试次数过多，请 15 分钟后再试。"
    assert en["message"] == "Too many failed sign-ins for 'zhao'; try again in 15 minute(s)."
    assert zh["details"] == {"retry_after": 900}


def test_an_upload_too_large(app_factory, make_user):
    app = app_factory(max_upload_mb=1)
    _, token = make_user("li", app=app)
    client = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    big = b"x" * ((1 << 20) + 1)
    zh, en = in_both(lambda h: client.post("/api/files", files={"file": ("a.bin", big)},
                                           headers=h))
    assert zh["code"] == "limit_exceeded"
    assert zh["message"] == "内容超出大小上限：file is larger than 1 MB"
    assert en["message"] == "file is larger than 1 MB"


# --- malformed requests --------------------------------------------------------------

def test_the_summary_of_a_malformed_body(office):
    record = office.contract()
    zh, en = in_both(lambda h: office["rep"].patch(
        f"{BASE}/forms/contract/records/{record['id']}", json={"valuez": {}}, headers=h))
    assert zh["code"] == "request_invalid"
    assert zh["message"].startswith("请求格式不正确：") and zh["message"].endswith("。")
    assert en["message"].startswith("The request is not valid: ")
    # pydantic's text per field is the same in both
    assert zh["errors"] == en["errors"]


def test_a_session_expiry_message_keeps_english_in_the_error_itself(app_factory, make_user):
    """``message`` of the raised error stays English (logs, code reading it)."""
    from tangram.errors import TangramError
    from tangram.platform.auth.service import resolve_token

    clock = FrozenClock()
    app = app_factory(clock=clock, session_hours=1)
    _, token = make_user("li", app=app)
    clock.advance(hours=1, minutes=1)
    with app.state.sessions() as s, pytest.raises(TangramError) as raised:
        resolve_token(s, token, clock=clock, language="zh")
    assert raised.value.message.startswith("This session expired at ")
    assert raised.value.as_dict("zh")["message"].startswith("登录已于 ")
    assert raised.value.language == "zh"



def test_role_refusals_and_records_out_of_sight(admin_client, app, make_user):
    from tests.integration.org_world import build, records_url

    org = build(admin_client, app, make_user)
    rep = org.clients["rep_east"]
    e1, w1 = org.contracts["E1"]["id"], org.contracts["W1"]["id"]
    zh, en = in_both(lambda h: rep.delete(f"{records_url()}/{e1}", headers=h))
    assert zh["code"] == "permission_denied" and zh["message"] == "您的角色没有删除此表单记录的权限"
    assert en["message"] == ("you may not delete records of form 'contract' in app 'crm': "
                             "none of your roles allows it")
    # A record outside the rep's scope is "not found", as one that does not exist.
    zh, en = in_both(lambda h: rep.get(f"{records_url()}/{w1}", headers=h))
    assert zh["code"] == "not_found" and zh["message"] == "记录不存在或已被删除"
    assert en["message"] == f"record {w1} of form 'contract' does not exist"
    # The manager may see the team's contracts but update only with the role's
    # own scope: reading one outside it (W1) and updating one inside it (E1).
    org.role("manager", {
        "account": {"actions": ["read"], "scope": "department_tree"},
        "contract": [{"actions": ["read"], "scope": "all"},
                     {"actions": ["update"], "scope": "department_tree"}]})
    w1_version = org.contracts["W1"]["version"]
    manager = org.clients["manager_east"]
    zh, en = in_both(lambda h: manager.patch(f"{records_url()}/{w1}", headers=h, json={
        "version": w1_version, "values": {"name": "W1b"}}))
    assert zh["message"] == "您可以查看此记录，但没有修改它的权限"
    assert en["message"] == f"you may see record {w1} of form 'contract' but not update it"
