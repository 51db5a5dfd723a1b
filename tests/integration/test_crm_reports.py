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


def records(crm: Crm, form: str) -> pd.DataFrame:
    res = crm["director"].get(f"{BASE}/forms/{form}/records", params={"limit": 500})
    assert res.status_code == 200, res.text
    return pd.DataFrame(res.json()["items"])


def visible(frame: pd.DataFrame, crm: Crm, who: str) -> pd.DataFrame:
    """The rows a viewer's row scope keeps: a rep their own, the others all (one team)."""
    if who.startswith("rep"):
        return frame[frame["owner"].astype(str) == crm.ids[who]]
    return frame


def pipeline(crm: Crm) -> None:
    """Two reps' closed and open opportunities, created on different days."""
    it = crm.create("rep1", "account", name="上海鼎华信息技术有限公司", industry="it")["id"]
    fin = crm.create("rep2", "account", name="北京瑞通金融服务有限公司", industry="finance")["id"]

    def opp(rep: str, account: str, amount: str, source: str, stage: str, closed: str | None
            ) -> None:
        extra = {"lost_reason": "price"} if stage == "lost" else {}
        crm.create(rep, "opportunity", name=f"{rep}-{amount}", account=account, amount=amount,
                   source=source, stage=stage, closed_on=closed, **extra)

    opp("rep1", it, "300000", "website", "won", "2026-02-04")
    opp("rep1", it, "50000", "website", "lost", "2026-02-10")
    crm.clock.advance(days=9, hours=17)  # 2026-01-15 02:00 Shanghai
    opp("rep1", it, "100000", "expo", "won", "2026-03-02")
    opp("rep2", fin, "200000", "website", "won", "2026-03-05")
    opp("rep2", fin, "80000", "expo", "lost", "2026-03-20")
    opp("rep2", fin, "70000", "expo", "won", "2026-03-21")
    opp("rep2", fin, "90000", "website", "negotiation", None)


def opportunities(crm: Crm) -> pd.DataFrame:
    opps = records(crm, "opportunity")
    accounts = records(crm, "account").set_index("id")["industry"]
    opps["industry"] = opps["account"].map(accounts)
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

    cycle = {(r["source"], r["industry"]): (r["deals"], Decimal(r["avg_days"]),
                                            Decimal(r["min_days"]), Decimal(r["max_days"]))
             for r in run(crm, who, "sales_cycle")["rows"]}
    assert cycle == {k: (len(g), q(g["days"].mean(), "0.1"), q(g["days"].min(), "0.1"),
                         q(g["days"].max(), "0.1"))
                     for k, g in won.groupby(["source", "industry"])}
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
    leads = records(crm, "lead")
    for who, params in (("director", {}), ("rep1", {"owner": "me"}), ("rep2", {"owner": "me"})):
        mine = visible(leads, crm, who)
        got = {r["source"]: (r["leads"], r["converted"], r["conversion"])
               for r in run(crm, who, "channel_conversion", **params)["rows"]}
        assert got == {s: (len(g), int((g["status"] == "converted").sum()),
                           str(q((g["status"] == "converted").mean(), "0.0001")))
                       for s, g in mine.groupby("source")}


def test_rfm_per_account_and_segments(crm: Crm):
    accounts = {name: crm.create(rep, "account", name=name)["id"] for rep, name in (
        ("rep1", "甲公司"), ("rep1", "乙公司"), ("rep2", "丙公司"))}

    def contract(account: str, amount: str, signed: str | None) -> None:
        values = {"status": "signed", "sign_date": signed} if signed else {}
        crm.create("director", "contract", title=f"{account}-{amount}",
                   account=accounts[account], amount=amount, **values)

    contract("甲公司", "150000", "2025-11-20")
    contract("甲公司", "120000", "2025-12-28")
    contract("乙公司", "80000", "2025-06-30")
    contract("乙公司", "500000", None)  # a draft: not in RFM
    contract("丙公司", "1200000", "2025-12-01")
    today = date(2026, 1, 5)  # the clock's day

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

    def segment(f: int, m: Decimal) -> tuple[str, str]:
        name = ("核心客户" if f >= 2 and m >= 200000 else "大单客户" if m >= 200000
                else "忠诚客户" if f >= 2 else "一般客户")
        return name, f"F{3 if f >= 3 else 2 if f >= 2 else 1}" \
                     f"M{3 if m >= 1000000 else 2 if m >= 200000 else 1}"

    expected: dict[tuple[str, str], list[Any]] = {}
    for _, g in signed.groupby("name"):
        entry = expected.setdefault(segment(len(g), sum(g["amount"])), [0, Decimal(0)])
        entry[0] += 1
        entry[1] += sum(g["amount"])
    got = {(r["segment"], r["score"]): [r["accounts"], Decimal(r["monetary"])]
           for r in run(crm, "director", "rfm_segments")["rows"]}
    assert got == expected
    # Contract amounts are hidden from reps: the RFM report is refused, not leaked.
    res = crm["rep1"].post(f"{BASE}/reports/rfm_accounts/run", json={})
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
        crm.create(rep, "opportunity", name=f"{rep}-{closed}", account=acc if rep == "rep1"
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
