"""Print templates over HTTP with the CRM package (apps_catalog/crm): the
contract prints as HTML and PDF with its customer, amount (in figures and
capital numerals) and payment plan; the viewer's print right, row scope and
field rules apply; the sandbox refuses escapes; nothing is fetched from the
network. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tangram.db import create_engine_from_url
from tangram.engines.context import EngineContext
from tangram.engines.printing.render import FetchLog, render_pdf, render_text
from tangram.engines.templates import TemplateInvalid
from tangram.platform.app import create_app
from tangram.platform.auth.service import create_user, issue_session
from tangram.platform.packages.install import install_package
from tangram.platform.packages.loader import load_package
from tangram.platform.packages.source import read_package
from tangram.platform.schema import create_platform_tables
from tangram.settings import Settings
from tests.conftest import BACKENDS, POSTGRES_URL, _pg_schema_url
from tests.integration.conftest import TEST_PASSWORD

CRM = Path(__file__).resolve().parents[2] / "apps_catalog" / "crm"
BASE = "/api/apps/crm"
CUSTOMER = "上海华创精密制造有限公司"


class World:
    """The CRM with an admin, a manager over rep1 and rep2, and a service user
    (reads contracts, may not print them). One contract owned by rep1 with
    two payment plan installments. Built once per module and backend (the
    tests add templates and records under keys of their own)."""

    def __init__(self, app: Any, make_user: Any) -> None:
        self.app = app
        with self.app.state.sessions.begin() as session:
            install_package(EngineContext(session=session), load_package(read_package(CRM)))
        _, token = make_user("admin", is_admin=True, display_name="管理员", app=self.app)
        self.admin = TestClient(self.app, headers={"Authorization": f"Bearer {token}"})
        east = self._post("/api/org/departments", {"name": "华东", "parent_id": None})["id"]
        self.ids: dict[str, str] = {}
        self.clients: dict[str, TestClient] = {}
        for name, head, role in (("manager", True, "sales_manager"),
                                 ("rep1", False, "sales_rep"), ("rep2", False, "sales_rep"),
                                 ("service", False, "service")):
            uid, tok = make_user(name, display_name=f"用户{name}", app=self.app)
            self.ids[name] = str(uid)
            self.clients[name] = TestClient(self.app, headers={"Authorization": f"Bearer {tok}"})
            if role != "service":
                res = self.admin.put(f"/api/org/users/{uid}/departments", json={
                    "departments": [{"department_id": east, "is_head": head}],
                    "primary_department_id": east})
                assert res.status_code == 204, res.text
            self._post(f"{BASE}/role-assignments", {"role": role, "user_id": str(uid)})
        self.account = self._record("account", name=CUSTOMER,
                                    region={"province": "上海市", "city": "上海市"})
        self.contract = self._record("contract", title="CRM 私有化部署合同",
                                     account=self.account, amount="1200000.00")
        self.plans = [self._record("payment_plan", contract=self.contract, installment=i,
                                   due_date=f"2026-0{i + 2}-15", amount=amount)
                      for i, amount in ((1, "800000.00"), (2, "400000.00"))]
        for form, rid in (("account", self.account), ("contract", self.contract),
                          *(("payment_plan", p) for p in self.plans)):
            res = self.admin.post(f"{BASE}/forms/{form}/records/{rid}/transfer",
                                  json={"owner": self.ids["rep1"]})
            assert res.status_code == 200, res.text

    def _post(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        res = self.admin.post(url, json=body)
        assert res.status_code == 201, res.text
        return res.json()

    def _record(self, form: str, **values: Any) -> str:
        values = {k: v for k, v in values.items() if v is not None}
        return str(self._post(f"{BASE}/forms/{form}/records", {"values": values})["id"])

    def __getitem__(self, name: str) -> TestClient:
        return self.clients[name]

    def print_url(self, template: str = "contract_print", rid: str | None = None,
                  form: str = "contract") -> str:
        return f"{BASE}/forms/{form}/records/{rid or self.contract}/print/{template}"


@pytest.fixture(scope="module", params=BACKENDS)
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("printing")
    schema = f"t_{secrets.token_hex(6)}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'test.db'}"
    else:
        admin = create_engine_from_url(POSTGRES_URL, poolclass=sa.NullPool)
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        url = _pg_schema_url(schema)
    app = create_app(Settings(database_url=url, var_dir=tmp, environment="test",
                              session_hours=24))
    create_platform_tables(app.state.engine)

    def make_user(username: str, *, is_admin: bool = False, display_name: str | None = None,
                  app: Any = app) -> tuple[Any, str]:
        with app.state.sessions.begin() as session:
            user = create_user(session, username=username, password=TEST_PASSWORD,
                               display_name=display_name, is_admin=is_admin, language="zh",
                               clock=app.state.clock)
            issued = issue_session(session, user_id=user.id, kind="bearer",
                                   lifetime=timedelta(hours=24), clock=app.state.clock)
        return user.id, issued.token

    try:
        yield World(app, make_user)
    finally:
        app.state.engine.dispose()
        if request.param != "sqlite":
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


def poppler(tool: str) -> str:
    """A poppler-utils tool: .ci/run installs them, so under CI a missing one fails."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: .ci/run installs poppler-utils")
        pytest.skip(f"{tool} (poppler-utils) is not installed on this machine")
    return path


def pdftotext(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "print.pdf"
    path.write_bytes(pdf)
    return subprocess.run([poppler("pdftotext"), "-enc", "UTF-8", str(path), "-"],
                          check=True, capture_output=True, text=True).stdout


def embedded_fonts(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "fonts.pdf"
    path.write_bytes(pdf)
    return subprocess.run([poppler("pdffonts"), str(path)], check=True, capture_output=True,
                          text=True).stdout


def template(**overrides: Any) -> dict[str, Any]:
    return {"definition": {"label": {"zh": "测试", "en": "Test"}, "form": "contract",
                           "body": "<p>{{ record.title }}</p>", **overrides}}


# --------------------------------------------------------------------------- printing

def test_contract_pdf_over_http_has_customer_and_amount(world: World, tmp_path: Path) -> None:
    res = world["manager"].get(world.print_url(), params={"format": "pdf"})
    assert res.status_code == 200, res.text
    assert res.headers["content-type"] == "application/pdf"
    assert res.content.startswith(b"%PDF-")
    disposition = res.headers["content-disposition"]
    assert disposition.startswith("inline; filename=")
    encoded = disposition.split("filename*=UTF-8''")[1]
    assert unquote(encoded).endswith("-CRM 私有化部署合同.pdf")
    assert unquote(encoded).startswith("HT-")
    text = pdftotext(res.content, tmp_path)
    flat = "".join(text.split())
    assert CUSTOMER in flat
    assert "¥1,200,000.00" in flat
    assert "壹佰贰拾万元整" in flat
    assert "捌拾万元整" in flat and "肆拾万元整" in flat  # the payment plan rows
    # The Chinese text is drawn with a font that has its glyphs (not boxes).
    assert re.search(r"WenQuanYi|NotoSansCJK|NotoSerifCJK|SourceHan",
                     embedded_fonts(res.content, tmp_path))


def test_html_print_has_linked_and_related_rows(world: World) -> None:
    res = world["manager"].get(world.print_url())
    assert res.status_code == 200, res.text
    assert res.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in res.headers["content-security-policy"]
    html = res.text
    assert CUSTOMER in html
    assert "上海市/上海市" in html  # a field of the linked account
    assert "¥1,200,000.00" in html and "人民币壹佰贰拾万元整" in html
    first, second = html.index("第1期"), html.index("第2期")
    assert first < second  # sorted by installment
    assert "2026-03-15" in html and "¥800,000.00" in html and "¥400,000.00" in html
    assert "用户rep1" in html  # the owner's name
    assert "@page { size: A4 portrait; margin: 20.0mm 18.0mm 20.0mm 18.0mm; }" in html
    assert "WenQuanYi Zen Hei" in html


def test_sub_table_rows_and_raw_values_print(world: World) -> None:
    opp = world._record("opportunity", name="一期项目", account=world.account,
                        amount="300000", stage="proposal")
    product = world._record("product", name="私有化许可")
    quote = world._record("quote", opportunity=opp, account=world.account, lines=[
        {"product": product, "qty": 3, "unit_price": "1000.50", "discount": "10"},
        {"product": product, "qty": 1, "unit_price": "99.00"}])
    body = ("{% for line in record.lines %}<tr><td>{{ loop.index }}</td>"
            "<td>{{ line.product }}</td><td>{{ line.qty }}</td><td>{{ line.unit_price }}</td>"
            "<td>{{ line.discount }}</td><td>{{ (line.qty.raw * line.unit_price.raw) | money }}"
            "</td></tr>{% endfor %}<p>{{ record.account.name }}|{{ record.opportunity }}</p>")
    res = world.admin.put(f"{BASE}/print-templates/quote_sheet", json=template(
        form="quote", body=body, label={"zh": "报价单", "en": "Quote"}))
    assert res.status_code == 200, res.text
    html = world.admin.get(world.print_url("quote_sheet", quote, "quote")).text
    assert "<td>1</td><td>私有化许可</td><td>3</td><td>¥1,000.50</td><td>10.00%</td>" \
        "<td>¥3,001.50</td>" in html
    assert "<td>2</td><td>私有化许可</td><td>1</td><td>¥99.00</td><td>0.00%</td><td>¥99.00</td>" \
        in html
    assert f"<p>{CUSTOMER}|一期项目</p>" in html


def test_hidden_amount_is_absent_for_the_rep(world: World, tmp_path: Path) -> None:
    html = world["rep1"].get(world.print_url()).text
    assert CUSTOMER in html and "第1期" in html  # the rep's own contract and plans
    assert "1,200,000" not in html and "壹佰贰拾万" not in html
    assert "金额不可见" in html
    res = world.admin.put(f"{BASE}/print-templates/leak", json=template(
        body="[{{ record.amount }}|{{ record.amount.raw }}|{{ record['amount'] }}|"
             "{{ record.amount | rmb_upper }}]"))
    assert res.status_code == 200, res.text
    assert "[|||]" in world["rep1"].get(world.print_url("leak")).text
    assert "[¥1,200,000.00|1200000.00|¥1,200,000.00|壹佰贰拾万元整]" in \
        world["manager"].get(world.print_url("leak")).text
    pdf = world["rep1"].get(world.print_url(), params={"format": "pdf"}).content
    text = "".join(pdftotext(pdf, tmp_path).split())
    assert CUSTOMER in text and "1,200,000" not in text and "壹佰贰拾万" not in text


def test_print_needs_the_print_right(world: World) -> None:
    assert world["service"].get(f"{BASE}/forms/contract/records/{world.contract}"
                                ).status_code == 200  # may read it …
    res = world["service"].get(world.print_url())
    assert res.status_code == 403, res.text  # … but not print it
    assert res.json()["code"] == "permission_denied"
    meta = world["service"].get(f"{BASE}/forms/contract").json()
    assert meta["print_templates"] == []
    meta = world["manager"].get(f"{BASE}/forms/contract").json()
    offered = {t["key"]: t["label"] for t in meta["print_templates"]}
    assert offered["contract_print"]["zh"] == "合同打印"


def test_record_out_of_scope_is_not_found(world: World) -> None:
    res = world["rep2"].get(world.print_url())
    assert res.status_code == 404, res.text
    assert CUSTOMER not in res.text
    assert world["rep2"].get(world.print_url(rid="0190f0f0-0000-7000-8000-000000000000")
                             ).status_code == 404
    assert world["manager"].get(world.print_url("no_such_template")).status_code == 404
    res = world["manager"].get(world.print_url(), params={"format": "docx"})
    assert res.status_code == 422 and "html, pdf" in res.text


# --------------------------------------------------------------------------- the sandbox

@pytest.mark.parametrize("body", [
    "{{ ''.__class__.__mro__ }}",
    "<p>ok</p>\n{{ record.__init__ }}",
    "{{ record['__class__'] }}",
    "{{ related.plans.__class__.__base__.__subclasses__() }}",
])
def test_saving_a_template_with_an_attribute_escape_is_refused(world: World, body: str) -> None:
    res = world.admin.put(f"{BASE}/print-templates/escape", json=template(body=body))
    assert res.status_code == 422, res.text
    error = res.json()
    assert error["code"] == "template_invalid"
    assert error["errors"][0]["path"] == "$.body"
    assert "sandbox does not allow '__" in error["message"]
    assert f"line {body.count(chr(10)) + 1}" in error["message"]
    assert world.admin.get(f"{BASE}/print-templates/escape").status_code == 404


def test_sandbox_refuses_escapes_at_render_time(world: World) -> None:
    # Built from strings at run time, so no check before rendering can see them.
    for body in ("{{ record | attr('__' ~ 'init__') }}",
                 "{{ (''|attr('__cl' ~ 'ass__')).__name__ }}"):
        with pytest.raises(TemplateInvalid, match="sandbox does not allow") as caught:
            render_text(body, {"record": object()})
        assert caught.value.code == "template_invalid"


def test_a_macro_that_calls_itself_without_end_is_refused(world: World) -> None:
    # Always recursing: refused when saved
    for body in ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
                 "{% macro a() %}{{ b() }}{% endmacro %}\n{% macro b() %}{{ a() }}{% endmacro %}"):
        res = world.admin.put(f"{BASE}/print-templates/loop", json=template(body=body))
        assert res.status_code == 422, res.text
        assert res.json()["code"] == "template_invalid"
        assert "always calls itself" in res.json()["message"]
    # Recursion under a condition may stop, so it saves; if it does not, printing
    # is a clear 422, not a server error
    body = "{% macro m(n) %}{% if n %}{{ m(n) }}{% endif %}{% endmacro %}{{ m(1) }}"
    res = world.admin.put(f"{BASE}/print-templates/loop", json=template(body=body))
    assert res.status_code == 200, res.text
    res = world["manager"].get(world.print_url("loop"), params={"format": "html"})
    assert res.status_code == 422, res.text
    assert res.json()["code"] == "template_invalid"
    assert "too deeply" in res.json()["message"]
    # A recursion that stops prints
    body = "{% macro m(n) %}{{ n }}{% if n %}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(3) }}"
    assert world.admin.put(f"{BASE}/print-templates/loop",
                           json=template(body=body)).status_code == 200
    res = world["manager"].get(world.print_url("loop"), params={"format": "html"})
    assert res.status_code == 200 and "3210" in res.text


def test_template_syntax_error_on_save_names_the_line(world: World) -> None:
    body = "<h1>{{ record.title }}</h1>\n<table>\n{% for in related.plans %}\n</table>"
    res = world.admin.put(f"{BASE}/print-templates/broken", json=template(body=body))
    assert res.status_code == 422, res.text
    assert res.json()["code"] == "template_invalid"
    assert "syntax error at line 3" in res.json()["message"]
    res = world.admin.put(f"{BASE}/print-templates/broken", json=template(
        body="{{ record.amount | no_such_filter }}"))
    assert res.status_code == 422 and "no_such_filter" in res.text
    res = world.admin.put(f"{BASE}/print-templates/broken", json=template(
        body="<p>\n{{ record.amunt }}</p>", related=[{"key": "plans", "form": "payment_plan",
                                                      "via": "account"}]))
    assert res.status_code == 422
    messages = [e["message"] for e in res.json()["errors"]]
    assert any("line 2: record.amunt" in m for m in messages)
    assert any("no relation field 'account' pointing at form 'contract'" in m
               for m in messages)


# --------------------------------------------------------------------------- no fetching

@pytest.fixture
def web_server() -> Iterator[tuple[str, list[str]]]:
    """A local web server that records every request it gets."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.end_headers()
            self.wfile.write(b"p { color: red }")

        def log_message(self, *args: Any) -> None:
            """Silent: tests read what the peer received, not its access log."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def test_remote_urls_in_a_template_are_not_fetched(world: World, tmp_path: Path,
                                                   web_server: tuple[str, list[str]]) -> None:
    url, hits = web_server
    dot = ("data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4"
           "2mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    body = (f'<link rel="stylesheet" href="{url}/style.css"><img src="{url}/logo.png">'
            f'<img src="file:///etc/passwd"><img src="{dot}"><p>{{{{ record.title }}}}</p>')
    res = world.admin.put(f"{BASE}/print-templates/remote", json=template(
        body=body, css=f"@import url({url}/more.css); p {{ background: url({url}/bg.png) }}"))
    assert res.status_code == 200, res.text
    res = world["manager"].get(world.print_url("remote"), params={"format": "pdf"})
    assert res.status_code == 200, res.text
    assert "CRM 私有化部署合同" in pdftotext(res.content, tmp_path)
    assert hits == []
    log = FetchLog()
    render_pdf(f'<img src="{url}/x.png"><img src="{dot}">', fetched=log)
    assert log.refused == [f"{url}/x.png"] and hits == []


# --------------------------------------------------------------------------- definitions

def test_templates_crud_for_builders(world: World) -> None:
    listed = world["manager"].get(f"{BASE}/print-templates", params={"form": "contract"})
    assert "contract_print" in [t["key"] for t in listed.json()]
    assert all(t["form"] == "contract" for t in listed.json())
    assert world["manager"].put(f"{BASE}/print-templates/mine",
                                json=template()).status_code == 403
    res = world.admin.put(f"{BASE}/print-templates/mine", json=template(
        paper={"size": "A5", "orientation": "landscape"}, file_name="合同-{{ record.number }}"))
    assert res.status_code == 200 and res.json()["version"] == 1
    res = world.admin.put(f"{BASE}/print-templates/mine", json=template(
        body="<p>v2 {{ record.title }}</p>"))
    assert res.json()["version"] == 2
    got = world.admin.get(f"{BASE}/print-templates/mine").json()
    assert got["version"] == 2 and got["definition"]["paper"]["size"] == "A4"
    res = world["manager"].get(world.print_url("mine"), params={"download": "true"})
    assert "v2 CRM 私有化部署合同" in res.text
    assert res.headers["content-disposition"].startswith("attachment; filename=")
    assert world.admin.delete(f"{BASE}/print-templates/mine").status_code == 204
    assert world["manager"].get(world.print_url("mine")).status_code == 404
    res = world.admin.put(f"{BASE}/print-templates/other", json=template(form="nope"))
    assert res.status_code == 422 and "no published form 'nope'" in res.text
