"""The CRM package's analysis reports, KPI cards and region alert, run over HTTP
as the package's own roles (docs: ../shared/domain/crm.md, "Reports and
dashboards"): each expected number is computed independently with pandas from
the raw records the director reads through the records API, then narrowed to
what each viewer may see (a rep: their own records; the manager: the team)."""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from tangram.engines.flows.worker import run_due
from tests.integration.test_crm_scenarios import BASE, Crm

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def crm(app_factory, make_user) -> Crm:
    return Crm(app_factory, make_user)


def q(value: Any, places: str) -> Decimal:
    return Decimal(str(value)).quantize(Decimal(places), rounding=ROUND_HALF_UP)


def run(crm: Crm, who: str, key: str, **parameters: Any) -> dict[str, Any]:
    res = crm[who].post(f"{BASE}/reports/{key}/run", json={"parameters": parameters})
    assert res.status_code == 200, res.text
    return res.json()


def items(crm: Crm, form: str) -> list[dict[str, Any]]:
    """The raw records as the director reads them through the records API."""
    res = crm["director"].get(f"{BASE}/forms/{form}/records", params={"limit": 500})
    assert res.status_code == 200, res.text
    return list(res.json()["items"])


def records(crm: Crm, form: str) -> pd.DataFrame:
    return pd.DataFrame(items(crm, form))


def visible(frame: pd.DataFrame, crm: Crm, who: str) -> pd.DataFrame:
    """The rows a viewer's row scope keeps: a rep their own, the others all (one team)."""
    if who.startswith("rep"):
        return frame[frame["owner"].astype(str) == crm.ids[who]]
    return frame


def pipeline(crm: Crm) -> None:
    """Two reps' closed and open opportunities of each deal type, created on
    different days (no deal type given: new business, the field's default)."""
    it = crm.create("rep1", "account", name="上海鼎华信息技术有限公司", industry="it")["id"]
    fin = crm.create("rep2", "account", name="北京瑞通金融服务有限公司", industry="finance")["id"]

    def opp(rep: str, account: str, amount: str, source: str, stage: str, closed: str | None,
            **deal_type: str) -> None:
        extra = {"lost_reason": "price"} if stage == "lost" else {}
        crm.history(rep, "opportunity", name=f"{rep}-{amount}", account=account, amount=amount,
                    source=source, stage=stage, closed_on=closed, **extra, **deal_type)

    opp("rep1", it, "300000", "website", "won", "2026-02-04")
    opp("rep1", it, "50000", "website", "lost", "2026-02-10", deal_type="upsell")
    opp("rep1", it, "120000", "website", "won", "2026-02-20", deal_type="upsell")
    crm.clock.advance(days=9, hours=17)  # 2026-01-15 02:00 Shanghai
    opp("rep1", it, "100000", "expo", "won", "2026-03-02", deal_type="upsell")
    opp("rep2", fin, "200000", "website", "won", "2026-03-05", deal_type="new")
    opp("rep2", fin, "80000", "expo", "lost", "2026-03-20", deal_type="renewal")
    opp("rep2", fin, "70000", "expo", "won", "2026-03-21", deal_type="renewal")
    opp("rep2", fin, "60000", "website", "won", "2026-04-30", deal_type="renewal")
    opp("rep2", fin, "90000", "website", "negotiation", None)


def opportunities(crm: Crm) -> pd.DataFrame:
    opps = records(crm, "opportunity")
    created = pd.to_datetime(opps["created_at"], utc=True).dt.tz_convert(SHANGHAI).dt.date
    opps["days"] = [(date.fromisoformat(c) - s).days if isinstance(c, str) else None
                    for s, c in zip(created, opps["closed_on"], strict=True)]
    opps["amount"] = opps["amount"].map(Decimal)
    return opps


@pytest.mark.parametrize("who", ["director", "manager", "rep1", "rep2"])
def test_cycle_channel_and_rep_reports_add_up_for_each_viewer(crm: Crm, who: str):
    pipeline(crm)
    opps = visible(opportunities(crm), crm, who)
    won = opps[opps["stage"] == "won"]
    closed = opps[opps["stage"].isin(["won", "lost"])]

    # Sales cycle by source and deal type (new business / upsell / renewal).
    assert set(opps["deal_type"]) <= {"new", "upsell", "renewal"}  # none left empty
    cycle = {(r["source"], r["deal_type"]): (r["deals"], Decimal(r["avg_days"]),
                                             Decimal(r["min_days"]), Decimal(r["max_days"]))
             for r in run(crm, who, "sales_cycle")["rows"]}
    assert cycle == {k: (len(g), q(g["days"].mean(), "0.1"), q(g["days"].min(), "0.1"),
                         q(g["days"].max(), "0.1"))
                     for k, g in won.groupby(["source", "deal_type"])}
    labels = {(r["source__label"], r["deal_type__label"])
              for r in run(crm, who, "sales_cycle")["rows"]}
    assert labels <= {(s, t) for s in ("官网咨询", "展会") for t in ("新客户", "增购", "续约")}
    assert run(crm, who, "sales_cycle")["totals"]["avg_days"] == str(q(won["days"].mean(), "0.1"))

    channel = {r["source"]: (r["closed"], r["won_deals"], r["win_rate"], r["won_amount"],
                             r["avg_deal"]) for r in run(crm, who, "channel_deal_size")["rows"]}
    expected = {}
    for source, g in closed.groupby("source"):
        w = g[g["stage"] == "won"]
        expected[source] = (len(g), len(w), str(q(len(w) / len(g), "0.0001")),
                            str(q(sum(w["amount"]), "0.01")),
                            str(q(sum(w["amount"]) / len(w), "0.01")) if len(w) else None)
    assert channel == expected

    heat = run(crm, who, "rep_heatmap")
    cells = {(crm.names[str(r["rep"])], r["month"]): (r["closed"], r["win_rate"], r["avg_deal"])
             for r in heat["rows"]}
    month = pd.to_datetime(closed["closed_on"]).dt.strftime("%Y-%m-01")
    expected_cells = {}
    for (owner, m), g in closed.groupby([closed["owner"].astype(str), month]):
        w = g[g["stage"] == "won"]
        expected_cells[(crm.names[owner], m)] = (
            len(g), str(q(len(w) / len(g), "0.0001")),
            str(q(sum(w["amount"]) / len(w), "0.01")) if len(w) else None)
    assert cells == expected_cells
    # The pivot's row totals are each rep over every month, from the records.
    pivot = heat["pivot"]
    per_rep = {row[0]: totals for row, totals in zip(pivot["rows"], pivot["row_totals"],
                                                     strict=True)}
    for owner, g in closed.groupby(closed["owner"].astype(str)):
        w = g[g["stage"] == "won"]
        name = next(r["rep__label"] for r in heat["rows"] if str(r["rep"]) == owner)
        assert per_rep[name] == [len(g), str(q(len(w) / len(g), "0.0001")),
                                 str(q(sum(w["amount"]) / len(w), "0.01"))]


def test_lead_conversion_by_source_counts_each_viewers_own_leads(crm: Crm):
    made = [crm.lead("director", f"L{i}", source=s)["id"]
            for i, s in enumerate(["expo", "expo", "website", "website", "website", "ads"])]
    for rid in made[:1] + made[2:4]:
        crm.update("director", "lead", rid, status="converted")
    # A lead in the public pool: every manager's scope holds the whole pool, so
    # the manager's view leaves it out (pool = false).
    crm.lead("director", "公海线索", source="expo", in_pool=True)
    leads = records(crm, "lead")
    got_by: dict[str, dict[str, Any]] = {}
    for who, params in (("director", {}), ("rep1", {"owner": "me"}), ("rep2", {"owner": "me"}),
                        ("manager", {"pool": False})):
        mine = visible(leads, crm, who)
        if params.get("pool") is False:
            mine = mine[~mine["in_pool"].astype(bool)]
        got = got_by[who] = {r["source"]: (r["leads"], r["converted"], r["conversion"])
                             for r in run(crm, who, "channel_conversion", **params)["rows"]}
        assert got == {s: (len(g), int((g["status"] == "converted").sum()),
                           str(q((g["status"] == "converted").mean(), "0.0001")))
                       for s, g in mine.groupby("source")}
    assert got_by["director"]["expo"][0] == got_by["manager"]["expo"][0] + 1
    res = crm["manager"].post(f"{BASE}/reports/channel_conversion/run",
                              json={"parameters": {"pool": "no"}})
    assert res.status_code == 422 and "true or false" in res.text


def test_leaderboards_per_rep_and_team_with_payments(crm: Crm):
    """龙虎榜 per rep and team: won amount and deals, and payments credited to
    the contract's owner (finance records them). A team is the owner's primary
    department: the reps and the manager are east, the director sales."""
    def own_account(who: str) -> str:
        return crm.create(who, "account", name=f"{who} 的客户有限公司")["id"]

    accounts = {who: own_account(who) for who in ("rep1", "rep2", "manager", "director")}
    for who, amount in (("rep1", "300000"), ("rep1", "100000"), ("rep2", "250000"),
                        ("manager", "50000"), ("director", "500000")):
        crm.history(who, "opportunity", name=f"{who}-{amount}", account=accounts[who],
                    amount=amount, stage="won", closed_on="2026-01-05")
    crm.create("rep2", "opportunity", name="open", account=accounts["rep2"], amount="900000")

    def contract(owner: str, amount: str) -> str:
        return str(crm.history(owner, "contract", title=f"{owner}-{amount}",
                               account=accounts[owner], amount=amount, status="signed",
                               sign_date="2026-01-02")["id"])

    c1, c2, c3 = contract("rep1", "300000"), contract("rep2", "200000"), \
        contract("director", "100000")
    for cid, amount in ((c1, "100000"), (c1, "50000"), (c2, "80000"), (c3, "30000")):
        crm.create("fin", "payment", contract=cid, amount=amount, received_on="2026-01-04")

    def board(key: str, dim: str, *measures: str) -> dict[str, tuple[Any, ...]]:
        rows = run(crm, "director", key)["rows"]
        return {r[f"{dim}__label"]: tuple(r[m] for m in measures) for r in rows}

    assert board("leaderboard_teams", "team", "won_amount", "deals_won") == {
        "east": ("700000.00", 4), "sales": ("500000.00", 1)}
    assert board("payments_leaderboard", "rep", "received", "payments") == {
        "rep1": ("150000.00", 2), "rep2": ("80000.00", 1), "director": ("30000.00", 1)}
    assert board("payments_teams", "team", "received", "payments") == {
        "east": ("230000.00", 3), "sales": ("30000.00", 1)}
    # Drill-down of a team: the records of the users whose primary department it is.
    east = next(r["team"] for r in run(crm, "director", "payments_teams")["rows"]
                if r["team__label"] == "east")
    res = crm["director"].post(f"{BASE}/reports/payments_teams/drilldown",
                               json={"element": {"team": east}})
    assert res.status_code == 200, res.text
    drill = res.json()["filter"]
    res = crm["director"].post(f"{BASE}/forms/payment/records/query", json={"filter": drill})
    assert res.status_code == 200, res.text
    assert sorted(r["amount"] for r in res.json()["items"]) == [
        "100000.00", "50000.00", "80000.00"]


def test_rfm_per_account_and_segments(crm: Crm):
    accounts = {name: crm.create(rep, "account", name=name)["id"] for rep, name in (
        ("rep1", "甲公司"), ("rep1", "乙公司"), ("rep2", "丙公司"), ("rep2", "丁公司"),
        ("rep1", "戊公司"), ("rep2", "己公司"), ("rep1", "庚公司"), ("rep2", "辛公司"),
        ("rep1", "壬公司"))}

    def contract(account: str, amount: str, signed: str | None) -> None:
        values = {"status": "signed", "sign_date": signed} if signed else {}
        crm.history("director", "contract", title=f"{account}-{amount}",
                    account=accounts[account], amount=amount, **values)

    # The clock's day is 2026-01-05: one account in each of the eight segments, some
    # on the edges (signed 90 and 365 days ago, exactly 200,000).
    contract("甲公司", "150000", "2025-11-20")
    contract("甲公司", "120000", "2025-12-28")
    contract("乙公司", "80000", "2025-06-30")
    contract("乙公司", "500000", None)  # a draft: not in RFM
    contract("丙公司", "1200000", "2025-12-01")
    contract("丁公司", "300000", "2024-10-10")
    contract("丁公司", "50000", "2024-12-20")
    contract("戊公司", "60000", "2025-10-07")
    contract("己公司", "200000", "2025-01-05")
    contract("庚公司", "30000", "2025-03-01")
    contract("庚公司", "40000", "2025-05-01")
    contract("辛公司", "50000", "2025-12-15")
    contract("辛公司", "60000", "2025-12-30")
    contract("壬公司", "90000", None)  # no signed contract: no RFM, no last signed date
    today = date(2026, 1, 5)

    rows = records(crm, "contract")
    signed = rows[rows["status"] == "signed"].copy()
    names = {v: k for k, v in accounts.items()}
    signed["name"] = signed["account"].map(names)
    signed["amount"] = signed["amount"].map(Decimal)
    signed["days"] = [(today - date.fromisoformat(d)).days for d in signed["sign_date"]]
    rfm = {r["account"]: (r["recency"], r["frequency"], r["monetary"], r["last_signed"])
           for r in run(crm, "director", "rfm_accounts")["rows"]}
    assert rfm == {n: (int(g["days"].min()), len(g), str(q(sum(g["amount"]), "0.01")),
                       max(g["sign_date"])) for n, g in signed.groupby("name")}
    # The account's rollup: the latest sign date of its signed contracts, a date.
    last_signed = {names[r["id"]]: r["last_signed_date"] for r in items(crm, "account")}
    assert last_signed == {n: signed[signed["name"] == n]["sign_date"].max()
                           if n in set(signed["name"]) else None for n in accounts}

    def segment(days: int, f: int, m: Decimal) -> tuple[str, str]:
        r = 3 if days <= 90 else 2 if days <= 365 else 1
        kind = {(True, True): "价值", (True, False): "发展", (False, True): "保持",
                (False, False): "挽留"}[(r == 3, f >= 2)]
        name = f"{'重要' if m >= 200000 else '一般'}{kind}客户"
        return name, f"R{r}F{3 if f >= 3 else 2 if f >= 2 else 1}" \
                     f"M{3 if m >= 1000000 else 2 if m >= 200000 else 1}"

    groups: dict[tuple[str, str], list[Any]] = {}
    for _, g in signed.groupby("name"):
        groups.setdefault(segment(int(g["days"].min()), len(g), sum(g["amount"])), []).append(g)
    expected = {k: [len(gs), Decimal(sum(sum(g["amount"]) for g in gs)),
                    q(sum(int(g["days"].min()) for g in gs) / len(gs), "0.1")]
                for k, gs in groups.items()}
    for who in ("director", "manager"):  # the manager: the reps' accounts, every one here
        got = {(r["segment"], r["score"]): [r["accounts"], Decimal(r["monetary"]),
                                            Decimal(r["recency"])]
               for r in run(crm, who, "rfm_segments")["rows"]}
        assert got == expected
    assert set(expected) == {
        ("重要价值客户", "R3F2M2"), ("一般挽留客户", "R2F1M1"), ("重要发展客户", "R3F1M3"),
        ("重要保持客户", "R1F2M2"), ("一般发展客户", "R3F1M1"), ("重要挽留客户", "R2F1M2"),
        ("一般保持客户", "R2F2M1"), ("一般价值客户", "R3F2M1")}
    # Contract amounts (and the account's signed total) are hidden from reps: the RFM
    # reports are refused, not leaked.
    for key in ("rfm_accounts", "rfm_segments"):
        res = crm["rep1"].post(f"{BASE}/reports/{key}/run", json={})
        assert res.status_code == 403, res.text
    # The director owns these contracts: outside the sales team's scope.
    assert run(crm, "manager", "rfm_accounts")["rows"] == []


def test_customer_growth_by_month_with_active_and_dormant(crm: Crm):
    made = []
    for month_days in (0, 0, 31, 31, 31):  # January twice, February three times
        crm.clock.advance(days=month_days)
        made.append(crm.create("rep1" if len(made) % 2 else "rep2", "account",
                               name=f"客户{len(made)}")["id"])
    crm.update("director", "account", made[0], status="dormant")
    crm.update("director", "account", made[3], status="dormant")
    accounts = records(crm, "account")
    month = pd.to_datetime(accounts["created_at"], utc=True).dt.tz_convert(SHANGHAI) \
        .dt.strftime("%Y-%m-01")
    for who in ("director", "rep1"):
        mine = visible(accounts.assign(month=month), crm, who)
        got = {r["month"]: (r["new"], r["active"], r["dormant"], r["total"])
               for r in run(crm, who, "customer_growth")["rows"]}
        total, expected = 0, {}
        for m, g in mine.groupby("month"):
            total += len(g)
            dormant = int((g["status"] == "dormant").sum())
            expected[m] = (len(g), len(g) - dormant, dormant, total)
        assert got == expected


def test_dormant_accounts_per_month_from_the_day_each_went_dormant(crm: Crm):
    # 2026-01-05 09:00 in Shanghai. Accounts go dormant by the 90-day rule (A, D) or by
    # hand (B, C, E, F, G); a follow-up wakes B, F and G (about its opportunity), a
    # person moves C back.
    made = {name: crm.create(rep, "account", name=name)["id"] for rep, name in (
        ("rep1", "A"), ("rep1", "B"), ("rep1", "C"), ("rep2", "D"), ("rep2", "E"),
        ("rep1", "F"), ("rep2", "G"))}
    deal = crm.create("rep2", "opportunity", name="G-1", account=made["G"], amount="50000")
    for name in ("E", "F"):
        crm.history("director", "contract", title=name, account=made[name], amount="100000",
                    status="signed", sign_date="2025-12-01")

    def follow_up(who: str, name: str) -> None:
        crm.create(who, "follow_up", account=made[name], type="call", summary="回访")

    def state(name: str) -> tuple[str, str | None]:
        record = crm.get("director", "account", made[name])
        return record["status"], record["dormant_since"]

    follow_up("rep1", "A")
    for name in ("B", "E", "F", "G"):
        crm.update("director", "account", made[name], status="dormant")
    assert state("B") == ("dormant", "2026-01-05")  # set by hand: dated today
    crm.run_due(days=31)  # 02-05
    follow_up("rep2", "D")
    crm.run_due(days=59, minutes=1)  # 04-05 09:01: A has gone 90 days without a follow-up
    assert state("A") == ("dormant", "2026-04-05")
    follow_up("rep1", "B")  # woken: back to a prospect, no longer dormant
    follow_up("rep1", "F")  # woken: a customer again
    assert (state("B"), state("F")) == (("initial", None), ("signed", None))
    about_deal = crm.create("rep2", "follow_up", opportunity=deal["id"], type="visit",
                            summary="拜访")
    assert about_deal["account"] == made["G"]  # filled from the opportunity
    assert state("G") == ("initial", None)
    crm.update("director", "account", made["C"], status="dormant")
    crm.run_due(days=31)  # 05-06 09:01: D's 90 days
    crm.update("director", "account", made["C"], status="intent")
    assert state("C") == ("intent", None)
    assert state("D") == ("dormant", "2026-05-06")
    # The record's history shows who dated it: the dormancy flow, with the status.
    history = crm["director"].get(f"{BASE}/forms/account/records/{made['D']}/history")
    assert history.status_code == 200, history.text
    latest = history.json()["items"][0]
    assert (latest["source"], latest["changes"]["dormant_since"]) == (
        "flow", {"old": None, "new": "2026-05-06"})

    accounts = records(crm, "account")
    assert sorted(accounts.dropna(subset=["dormant_since"])["name"]) == ["A", "D", "E"]
    for who in ("director", "manager", "rep1", "rep2"):
        mine = visible(accounts.dropna(subset=["dormant_since"]), crm, who)
        month = pd.to_datetime(mine["dormant_since"]).dt.strftime("%Y-%m-01")
        total, expected = 0, {}
        for m, g in mine.groupby(month):
            total += len(g)
            expected[m] = (len(g), int((g["signed_count"] > 0).sum()), total)
        got = {r["month"]: (r["dormant"], r["customers"], r["total"])
               for r in run(crm, who, "dormant_accounts")["rows"]}
        assert got == expected
    assert {r["month"]: r["dormant"] for r in run(crm, "director", "dormant_accounts")[
        "rows"]} == {"2026-01-01": 1, "2026-04-01": 1, "2026-05-01": 1}
    # The period parameter narrows by the dormant-since date.
    april = run(crm, "director", "dormant_accounts", period="last_month")
    assert [(r["month"], r["dormant"]) for r in april["rows"]] == [("2026-04-01", 1)]


def test_kpi_cards_on_the_cockpit_and_team_view(crm: Crm):
    pipeline(crm)  # now 2026-01-15; won in February and March
    crm.clock.advance(days=50)  # 2026-03-06: March to date vs February to the 6th
    opps = opportunities(crm)
    won = opps[opps["stage"] == "won"]
    for who, board in (("director", "director_cockpit"), ("manager", "manager_view")):
        res = crm[who].post(f"{BASE}/dashboards/{board}/run", json={})
        assert res.status_code == 200, res.text
        widgets = {w["key"]: w for w in res.json()["widgets"]}
        revenue = widgets["kpi_revenue"]["kpi"]
        march = won[won["closed_on"].between("2026-03-01", "2026-03-06")]
        february = won[won["closed_on"].between("2026-02-01", "2026-02-06")]
        assert Decimal(revenue["value"]) == sum(march["amount"])
        assert Decimal(revenue["previous"]["value"]) == sum(february["amount"])
        assert revenue["previous"]["percent"] == pytest.approx(float(
            (sum(march["amount"]) - sum(february["amount"])) / sum(february["amount"]) * 100))
        cycle = widgets["kpi_cycle"]["kpi"]  # this quarter to date
        quarter = won[won["closed_on"].between("2026-01-01", "2026-03-06")]
        assert Decimal(cycle["value"]) == q(quarter["days"].mean(), "0.1")
        assert "error" not in widgets["kpi_conversion"], widgets["kpi_conversion"]
        overdue = widgets["kpi_overdue"]
        assert overdue["result"]["totals"]["installments"] == 0 if "result" in overdue \
            else overdue["rows"][0]["installments"] == 0


def test_a_regions_weekly_won_drop_notifies_its_manager_once(crm: Crm):
    # The package alert gives each sales manager a copy checked with their scope; the
    # worker's pass brings the copies up to date with the role's holders.
    run_due(crm.app.state.engine, crm.clock)
    res = crm["manager"].get(f"{BASE}/alerts")
    assert res.status_code == 200, res.text
    [copy] = res.json()
    assert copy["package_alert"] == "region_weekly_won_drop"
    assert copy["recipients"] == [crm.ids["manager"]]
    assert crm["director"].get(f"{BASE}/alerts").json() == []
    acc = crm.create("rep1", "account", name="杭州云帆科技有限公司")["id"]

    def won(rep: str, amount: str, closed: str) -> None:
        crm.history(rep, "opportunity", name=f"{rep}-{closed}", account=acc if rep == "rep1"
                    else crm.create(rep, "account", name=f"户{closed}{amount}")["id"],
                    amount=amount, stage="won", closed_on=closed)

    # Week of 5 Jan: 100,000; week of 12 Jan: 84,000 (-16%); week of 19 Jan: 90,000 (+7%);
    # week of 26 Jan: 70,000 (-22%).
    won("rep1", "60000", "2026-01-06")
    won("rep2", "40000", "2026-01-09")
    won("rep1", "84000", "2026-01-13")
    won("rep2", "90000", "2026-01-20")
    won("rep1", "70000", "2026-01-27")

    def drop_notes() -> list[str]:
        return [t for t in crm.titles("manager") if "15%" in t or "won_weekly" in t
                or "down" in t]

    crm.clock.advance(days=14, minutes=1)  # Monday 19 Jan 09:01: last week vs the one before
    run_due(crm.app.state.engine, crm.clock)
    assert len(drop_notes()) == 1
    assert "84000" in drop_notes()[0] and "100000" in drop_notes()[0]
    assert not any("down" in t for t in crm.titles("rep1"))
    crm.clock.advance(days=7)  # 26 Jan: +7%, recovered
    run_due(crm.app.state.engine, crm.clock)
    assert len(drop_notes()) == 1
    crm.clock.advance(days=7)  # 2 Feb: -22%, a new crossing
    run_due(crm.app.state.engine, crm.clock)
    assert len(drop_notes()) == 2
    firings = crm["manager"].get(f"{BASE}/alerts/{copy['id']}/firings").json()
    assert [(f["value"], f["previous_value"]) for f in firings] == [
        ("70000.00", "90000.00"), ("84000.00", "100000.00")]
    # A copy follows the package: it cannot be edited or deleted on its own.
    assert crm["manager"].delete(f"{BASE}/alerts/{copy['id']}").status_code == 409


# The reports whose numbers are a state as of today, not a sum over a period: their
# widgets say so in their title instead of taking the dashboards' Period filter.
AS_OF_TODAY = {"open_pipeline", "overdue_payments", "rfm_accounts", "rfm_segments"}


def two_months(crm: Crm) -> None:
    """Leads, accounts, deals and payments in December, January and February:
    created on 5 January and on 4 February, closed and received on both sides
    of January. The clock ends on 2026-02-04 09:00 in Shanghai."""
    acc = {rep: crm.create(rep, "account", name=f"{rep} 一月客户有限公司")["id"]
           for rep in ("rep1", "rep2")}
    for i, source in enumerate(("expo", "expo", "website")):
        crm.lead("director", f"一月线索{i}", source=source)

    def deal(rep: str, amount: str, stage: str, closed: str | None, reason: str = "price"
             ) -> None:
        extra = {"lost_reason": reason} if stage == "lost" else {}
        crm.history(rep, "opportunity", name=f"{rep}-{amount}", account=acc[rep],
                    amount=amount, stage=stage, closed_on=closed, **extra)

    deal("rep1", "100000", "won", "2025-12-20")
    deal("rep1", "300000", "won", "2026-01-04")
    deal("rep2", "200000", "won", "2026-01-05")
    deal("rep2", "80000", "lost", "2026-01-05")
    deal("rep1", "90000", "negotiation", None)
    contract = str(crm.history("rep1", "contract", title="一月合同", account=acc["rep1"],
                               amount="500000", status="signed",
                               sign_date="2025-12-01")["id"])
    for amount, day in (("100000", "2025-12-28"), ("40000", "2026-01-04")):
        crm.create("fin", "payment", contract=contract, amount=amount, received_on=day)
    crm.clock.advance(days=30)  # 2026-02-04 09:00
    acc["rep1"] = crm.create("rep1", "account", name="rep1 二月客户有限公司")["id"]
    for i, source in enumerate(("ads", "website")):
        crm.lead("director", f"二月线索{i}", source=source)
    deal("rep2", "50000", "won", "2026-02-03")
    deal("rep1", "60000", "lost", "2026-02-02", reason="competitor")
    crm.create("fin", "payment", contract=contract, amount="30000", received_on="2026-02-03")


def in_january(values: pd.Series) -> pd.Series:
    """Dates (YYYY-MM-DD) or date-times (UTC) that fall in January 2026 in Shanghai."""
    if values.dropna().astype(str).str.len().max() > 10:
        values = pd.to_datetime(values, utc=True).dt.tz_convert(SHANGHAI).dt.strftime(
            "%Y-%m-%d")
    return values.fillna("").astype(str).str.startswith("2026-01")


def test_the_period_filter_reaches_every_widget_a_period_suits(crm: Crm):
    """The dashboards' Period filter narrows every widget whose report sums over
    time, each by the date that matters for it; the as-of-today widgets and the
    KPI cards (their own period) are not narrowed, and say so."""
    two_months(crm)
    opps, leads, accounts, payments = (records(crm, f) for f in (
        "opportunity", "lead", "account", "payment"))
    won = opps[(opps["stage"] == "won") & in_january(opps["closed_on"])]
    lost = opps[(opps["stage"] == "lost") & in_january(opps["closed_on"])]
    created = opps[in_january(opps["created_at"])]
    assert len(won) == 2 and len(lost) == 1 and len(created) == 5  # and more outside

    def dashboard(who: str, key: str, **filters: Any) -> dict[str, dict[str, Any]]:
        res = crm[who].post(f"{BASE}/dashboards/{key}/run", json={"filters": filters})
        assert res.status_code == 200, res.text
        widgets = {w["key"]: w for w in res.json()["widgets"]}
        assert not [w for w in widgets.values() if "error" in w], widgets
        return widgets

    def rows(widget: dict[str, Any], *columns: str) -> dict[Any, Any]:
        return {r[columns[0]]: tuple(r[c] for c in columns[1:])
                for r in widget["result"]["rows"]}

    def money(values: pd.Series) -> str:
        return str(q(sum(values.map(Decimal)), "0.01"))

    def funnel(frame: pd.DataFrame) -> dict[str, tuple[int]]:
        order = ["qualification", "discovery", "proposal", "negotiation", "won"]
        reached = [order.index(s) for s in frame["stage_reached"]]
        return {s: (sum(r >= i for r in reached),) for i, s in enumerate(order)
                if i in reached}

    for who, board in (("director", "director_cockpit"), ("manager", "manager_view"),
                       ("rep1", "rep_view")):
        everything = dashboard(who, board)
        january = dashboard(who, board, period="last_month")
        for key, widget in january.items():
            report = widget["report"]
            if widget.get("kpi") is not None:  # the card's own period: this month
                assert widget["parameters"].get("period") is None, key
                assert widget["kpi"] == everything[key]["kpi"], key
            elif report in AS_OF_TODAY:
                assert "period" not in widget["parameters"], key
                assert "不受期间筛选" in widget["title"]["zh"], key
                assert "not filtered by period" in widget["title"]["en"], key
                assert widget["result"] == everything[key]["result"], key
            else:
                assert widget["parameters"].get("period") == "last_month", (key, report)
        mine, mine_won = visible(created, crm, who), visible(won, crm, who)
        assert rows(january["funnel"], "stage", "deals") == funnel(mine), who
        assert rows(january["won"], "month", "won") == {"2026-01-01": (money(
            mine_won["amount"]),)}, who
    cockpit = dashboard("director", "director_cockpit", period="last_month")
    assert rows(cockpit["board"], "rep__label", "won_amount", "deals_won") == {
        crm.names[str(o)]: (money(g["amount"]), len(g))
        for o, g in won.groupby(won["owner"].astype(str))}
    assert rows(cockpit["board_teams"], "team__label", "won_amount", "deals_won") == {
        "east": (money(won["amount"]), len(won))}
    assert rows(cockpit["lost"], "reason", "deals") == {
        r: (len(g),) for r, g in lost.groupby("lost_reason")}
    paid = payments[in_january(payments["received_on"])]
    assert rows(cockpit["payments"], "month", "received") == {
        "2026-01-01": (money(paid["amount"]),)}
    new_leads = leads[in_january(leads["created_at"])]
    assert rows(cockpit["sources"], "source", "leads") == {
        s: (len(g),) for s, g in new_leads.groupby("source")}
    assert rows(cockpit["accounts"], "month", "accounts") == {
        "2026-01-01": (int(in_january(accounts["created_at"]).sum()),)}
    # The same reports run on their own take the period as a parameter too.
    assert run(crm, "director", "won_weekly", period="last_month")["totals"]["won"] == \
        money(won["amount"])
