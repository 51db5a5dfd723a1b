"""The CRM package (apps_catalog/crm) validates, installs and loads its demo
company on every backend — the company is package data (data/demo, made by
apps_catalog/crm/tools/generate_demo.py), loaded by the platform's generic
data-file features: org fixture, $owner, $created_at, relative dates."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from fastapi.testclient import TestClient

from tangram.clock import FrozenClock
from tangram.engines.context import EngineContext
from tangram.engines.directory import departments_table, user_departments_table
from tangram.engines.flows.tables import notifications_table
from tangram.engines.forms.registry import get_runtime
from tangram.engines.reports.service import run_report
from tangram.platform.auth.service import find_user_by_username
from tangram.platform.packages.export import validate_files
from tangram.platform.packages.install import install_package
from tangram.platform.packages.loader import load_package
from tangram.platform.packages.source import read_package

CRM = Path(__file__).resolve().parents[2] / "apps_catalog" / "crm"
DEMO_PASSWORD = "tangram-demo"  # noqa: S105 - the demo users' password, printed by ./run demo


def test_the_crm_package_validates():
    report = validate_files(read_package(CRM))
    assert report["valid"], report["errors"]
    assert {"lead", "account", "contact", "follow_up", "opportunity", "quote", "product",
            "contract", "payment_plan", "payment", "ticket", "task"} <= set(
        report["definitions"]["form"])
    assert report["data"]["demo"]["lead"] == 2000


def _login(app, username: str) -> TestClient:
    client = TestClient(app)
    res = client.post("/api/auth/login", json={"username": username, "password": DEMO_PASSWORD})
    assert res.status_code == 200, res.text
    return TestClient(app, headers={"Authorization": f"Bearer {res.json()['access_token']}"})


def _account_ids(client: TestClient) -> set[str]:
    ids: set[str] = set()
    params: dict[str, str | int] = {"limit": 500}
    while True:
        res = client.get("/api/apps/crm/forms/account/records", params=params)
        assert res.status_code == 200, res.text
        ids |= {r["id"] for r in res.json()["items"]}
        if not res.json().get("next_cursor"):
            return ids
        params["after"] = res.json()["next_cursor"]


def test_the_crm_installs_with_its_demo_company(app_factory):
    clock = FrozenClock()
    app = app_factory(clock=clock)
    with app.state.sessions.begin() as s:
        result = install_package(EngineContext(session=s, clock=clock),
                                 load_package(read_package(CRM)), demo=True)
    rows = result["rows"]
    assert rows["lead"] == 2000 and rows["account"] == 600 and rows["opportunity"] == 1500
    assert rows["product_category"] == 6 and rows["contract"] > 100 and rows["ticket"] > 100
    today = clock.today("Asia/Shanghai")
    with app.state.sessions.begin() as s:
        acc = get_runtime(s, "crm", "account").table
        opp = get_runtime(s, "crm", "opportunity").table
        levels = dict(s.execute(sa.select(acc.c.level, sa.func.count())
                                .group_by(acc.c.level)).all())
        stages = dict(s.execute(sa.select(opp.c.stage, sa.func.count())
                                .group_by(opp.c.stage)).all())
        owners = s.execute(sa.select(sa.func.count(sa.distinct(opp.c.owner)))).scalar()
        months = {d.strftime("%Y-%m") for (d,) in s.execute(sa.select(opp.c.created_at))}
        first, last = s.execute(sa.select(sa.func.min(opp.c.created_at),
                                          sa.func.max(opp.c.created_at))).one()
        closed = s.execute(sa.select(sa.func.max(opp.c.closed_on))).scalar()
        rep01 = find_user_by_username(s, "rep01")
        assert rep01 is not None
        own = s.execute(sa.select(sa.func.count()).where(acc.c.owner == rep01.id)).scalar()
    assert levels.get("vip", 0) > 0 and levels["normal"] > levels.get("vip", 0)  # the rollup
    assert set(stages) == {"qualification", "discovery", "proposal", "negotiation", "won",
                           "lost"}
    assert stages["won"] < stages["lost"]
    assert owners == 12 and len(months) >= 17
    # Relative dates: 18 months of history up to the install day, whatever day that is.
    assert clock.now() - timedelta(days=541) < first and last <= clock.now()
    assert closed is not None and closed <= today
    # The demo users sign in; a rep sees exactly their own accounts, the director all.
    assert 20 < own < 80
    assert len(_account_ids(_login(app, "rep01"))) == own
    assert len(_account_ids(_login(app, "director"))) == 600
    # Risk control and service have demo users: a large contract's risk step
    # is theirs, not the administrators'.
    for username, forms in (("risk", {"account", "contract"}),
                            ("service", {"account", "contact", "contract", "ticket", "task"})):
        nav = _login(app, username).get("/api/apps/crm/navigation")
        assert nav.status_code == 200, nav.text
        assert {f["key"] for f in nav.json()["forms"]} == forms, username
        assert len(_account_ids(_login(app, username))) == 600  # both read every account
    with app.state.sessions.begin() as s:
        opp_t = get_runtime(s, "crm", "opportunity").table
        reached = dict(s.execute(sa.select(opp_t.c.stage_reached, sa.func.count())
                                 .where(opp_t.c.stage == "lost")
                                 .group_by(opp_t.c.stage_reached)).all())
    # Lost deals keep how far they got: the funnel counts them at every stage before.
    assert set(reached) == {"qualification", "discovery", "proposal", "negotiation"}

    # Follow-ups are history: loaded with their own times, they start no
    # "new follow-up" or "new lead" automation — the accounts keep the last
    # follow-up the data gives them, nobody is told about 1,800 old leads.
    with app.state.sessions.begin() as s:
        fu = get_runtime(s, "crm", "follow_up").table
        per_account = dict(s.execute(sa.select(fu.c.account, sa.func.max(fu.c.created_at))
                                     .group_by(fu.c.account)).all())
        last = dict(s.execute(sa.select(acc.c.id, acc.c.last_follow_up)).all())
        dormant = s.execute(sa.select(sa.func.count()).where(acc.c.status == "dormant")
                            ).scalar()
        told = s.execute(sa.select(notifications_table.c.title)).scalars().all()
        active = run_report(EngineContext(session=s, clock=clock), app="crm",
                            key="active_accounts", parameters={"period": {"last_n_days": 365}})
    assert len(per_account) == 600 and per_account == last
    # A new lead goes to a rep of its province's region, the least loaded one;
    # a province no region covers, to any rep.
    director = _login(app, "director")
    owners = []
    for i, (name, province, city) in enumerate((("周立", "上海市", "上海市"),
                                                ("吴敏", "广东省", "深圳市"),
                                                ("郑华", "四川省", "成都市"))):
        res = director.post("/api/apps/crm/forms/lead/records", json={"values": {
            "name": name, "company": f"{name}科技有限公司", "source": "expo",
            "mobile": f"1390000000{i}", "region": {"province": province, "city": city}}})
        assert res.status_code == 201, res.text
        owners.append(res.json()["owner"])
    with app.state.sessions.begin() as s:
        ud, d = user_departments_table, departments_table
        region_of = {str(u): ext for u, ext in s.execute(
            sa.select(ud.c.user_id, d.c.external_id).join(d, d.c.id == ud.c.department_id))}
        parent = dict(s.execute(sa.select(d.c.external_id, d.c.parent_id)).all())
        ext = dict(s.execute(sa.select(d.c.id, d.c.external_id)).all())
    teams = [region_of[o] for o in owners]
    assert [ext[parent[t]] for t in teams[:2]] == ["east", "south"], teams
    assert ext[parent[teams[2]]] in ("east", "north", "south")

    # Only the director's alerts about today's deals closing soon while early.
    assert dormant > 0 and 0 < len(told) < 20, told
    assert all("仍处于早期阶段" in title for title in told), told
    assert len(active["rows"]) >= 12 and all(row["accounts"] > 0 for row in active["rows"])
