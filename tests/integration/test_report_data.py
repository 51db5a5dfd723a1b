"""The report engine against real data on SQLite and PostgreSQL.

A seeded CRM (contacts, accounts with parents, opportunities with sub-table
lines and multi-relation contacts, three owners) is written through the form
engine; every expected answer is computed independently with pandas over the
raw rows the test generated, never from the engine's output.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tangram.engines.context import EngineContext
from tangram.engines.directory import users_table
from tangram.engines.forms import records
from tangram.engines.reports import cache
from tangram.engines.reports.compiler import compile_report
from tangram.engines.reports.results import execute
from tangram.engines.reports.service import run_definition
from tangram.errors import DefinitionInvalid, PermissionDenied
from tangram.metamodel.reports import Report
from tests.factories import World, field, form_body, label

STAGES = ["lead", "qualified", "proposal", "won", "lost"]
INDUSTRIES = ["mfg", "svc", "retail"]
REGIONS = ["华东", "华南", "华北"]
# Edges: ISO weeks across year ends, and UTC instants whose Shanghai day differs.
EDGE_INSTANTS = [
    datetime(2025, 12, 28, 3, 0, tzinfo=UTC),    # Sun: 2025-W52
    datetime(2025, 12, 28, 16, 30, tzinfo=UTC),  # Mon 29 Dec local: 2026-W01
    datetime(2025, 12, 31, 16, 30, tzinfo=UTC),  # 1 Jan 2026 00:30 local: year 2026
    datetime(2026, 1, 4, 15, 59, tzinfo=UTC),    # Sun 4 Jan 23:59 local: 2026-W01
    datetime(2026, 1, 4, 16, 0, tzinfo=UTC),     # Mon 5 Jan 00:00 local: 2026-W02
    datetime(2024, 12, 29, 17, 0, tzinfo=UTC),   # Mon 30 Dec 2024 local: 2025-W01
    datetime(2020, 12, 31, 12, 0, tzinfo=UTC),   # Thu: 2020-W53
    datetime(2026, 3, 31, 16, 0, tzinfo=UTC),    # 1 Apr local: Q2
]


def opts(*values: str) -> list[dict[str, Any]]:
    return [{"value": v, "label": {"zh": f"{v}-zh", "en": f"{v}-en"}} for v in values]


FORMS = [
    form_body("contact", field("name"), field("age", "integer")),
    form_body("account", field("name"), field("industry", "select", options=opts(*INDUSTRIES)),
              field("region"), field("parent", "relation", target="account")),
    form_body("opportunity", field("name"), field("amount", "currency"),
              field("stage", "select", options=opts(*STAGES)),
              field("closed_at", "datetime"), field("close_date", "date"),
              field("probability", "integer"),
              field("account", "relation", target="account"),
              field("contacts", "multi_relation", target="contact"),
              field("note", "long_text"),
              field("lines", "sub_table", fields=[field("product"), field("qty", "integer"),
                                                  field("price", "currency")])),
]


@dataclass
class Crm:
    world: World
    users: list[uuid.UUID]
    opps: pd.DataFrame  # one row per opportunity, with account columns joined
    lines: pd.DataFrame
    links: pd.DataFrame  # opportunity id, contact id, age
    accounts: pd.DataFrame

    def ctx(self, session: Any, **kw: Any) -> EngineContext:
        return EngineContext(session=session, actor=self.world.actor, clock=self.world.clock,
                             language="en", **kw)

    def run(self, body: dict[str, Any], params: dict[str, Any] | None = None,
            **ctx_kw: Any) -> Any:
        report = Report.model_validate({"key": "r", "label": label("R"), "form": "opportunity",
                                        **body})
        with self.world.sessions.begin() as s:
            compiled = compile_report(self.ctx(s, **ctx_kw), app="demo", report=report,
                                      parameters=params)
            return execute(s, compiled, language="en")


def build_crm(engine: Engine, *, n: int = 60, seed: int = 7) -> Crm:
    rnd = random.Random(seed)
    world = World(engine)
    for body in FORMS:
        world.publish(body)
    users = []
    with world.sessions.begin() as s:
        for i in range(3):
            uid = uuid.uuid4()
            s.execute(users_table.insert().values(
                id=uid, username=f"rep{i}", display_name=f"Rep {i}", created_at=world.clock.now(),
                updated_at=world.clock.now()))
            users.append(uid)

    def create(form: str, values: dict[str, Any], owner: uuid.UUID | None = None) -> str:
        rec = world.run(records.create_record, app="demo", form=form, data=values, owner=owner)
        return str(rec["id"])

    contacts = []
    for i in range(6):
        age = rnd.choice([None, *range(20, 60)])
        cid = create("contact", {"name": f"c{i}", "age": age})
        contacts.append({"id": cid, "age": age})
    accounts = []
    for i in range(8):
        parent = accounts[rnd.randrange(len(accounts))]["id"] if accounts and i % 2 else None
        industry = rnd.choice([*INDUSTRIES, None])
        region = rnd.choice(REGIONS)
        aid = create("account", {"name": f"a{i}", "industry": industry, "region": region,
                                 "parent": parent})
        accounts.append({"id": aid, "name": f"a{i}", "industry": industry, "region": region,
                         "parent": parent})
    acc = pd.DataFrame(accounts)
    opps, lines, links = [], [], []
    base = datetime(2025, 6, 1, tzinfo=UTC)
    for i in range(n):
        closed = EDGE_INSTANTS[i] if i < len(EDGE_INSTANTS) else \
            base + timedelta(minutes=rnd.randrange(0, 60 * 24 * 400))
        amount = Decimal(rnd.randrange(0, 5_000_000)) / 100 if i % 9 else None
        account = rnd.choice([*(a["id"] for a in accounts), None])
        my_lines = [{"product": rnd.choice("pqr"), "qty": rnd.randrange(1, 5),
                     "price": str(Decimal(rnd.randrange(100, 90000)) / 100)}
                    for _ in range(rnd.randrange(0, 4))]
        my_contacts = rnd.sample([c["id"] for c in contacts], rnd.randrange(0, 3))
        owner = rnd.choice(users)
        values = {"name": f"o{i}", "amount": str(amount) if amount is not None else None,
                  "stage": STAGES[rnd.randrange(5)] if i % 7 else None,
                  "closed_at": closed.isoformat(), "close_date": closed.date().isoformat(),
                  "probability": rnd.randrange(0, 101), "account": account,
                  "contacts": my_contacts, "lines": my_lines}
        oid = create("opportunity", values, owner=owner)
        opps.append({"id": oid, **values, "amount": amount, "closed_at": closed,
                     "owner": owner})
        for line in my_lines:
            lines.append({"opp": oid, **line, "price": Decimal(line["price"])})
        for cid in my_contacts:
            links.append({"opp": oid, "contact": cid,
                          "age": next(c["age"] for c in contacts if c["id"] == cid)})
    frame = pd.DataFrame(opps).merge(
        acc.rename(columns={"id": "account", "name": "account_name"}), on="account", how="left")
    return Crm(world=world, users=users, opps=frame,
               lines=pd.DataFrame(lines, columns=["opp", "product", "qty", "price"]),
               links=pd.DataFrame(links, columns=["opp", "contact", "age"]), accounts=acc)


@pytest.fixture
def crm(engine: Engine) -> Crm:
    cache.clear()
    return build_crm(engine)


def rows_by(result: Any, dim: str) -> dict[Any, dict[str, Any]]:
    frame = result.frame
    return {rec[dim]: rec for rec in frame.to_dict(orient="records")}


def test_smoke(crm: Crm) -> None:
    result = crm.run({"dimensions": [{"type": "value", "key": "stage", "field": "stage"}],
                      "measures": [{"agg": "count", "key": "n"},
                                   {"agg": "sum", "key": "total", "field": "amount"}]})
    expected = crm.opps.groupby("stage", dropna=False).size()
    got = rows_by(result, "stage")
    for stage, count in expected.items():
        key = None if pd.isna(stage) else stage
        assert got[key]["n"] == count
    assert result.totals["n"] == len(crm.opps)


def _dec(value: Any) -> Decimal | None:
    return None if value is None or pd.isna(value) else Decimal(str(value))


def _key(value: Any) -> Any:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def test_every_measure_matches_pandas(crm: Crm, backend: str) -> None:
    measures = [{"agg": "count", "key": "n"},
                {"agg": "count", "key": "n_amount", "field": "amount"},
                {"agg": "count_distinct", "key": "accounts", "field": "account"},
                {"agg": "sum", "key": "total", "field": "amount"},
                {"agg": "avg", "key": "mean", "field": "amount"},
                {"agg": "min", "key": "low", "field": "amount"},
                {"agg": "max", "key": "high", "field": "amount"},
                {"agg": "max", "key": "last", "field": "closed_at"}]
    if backend == "postgresql":
        measures.append({"agg": "median", "key": "mid", "field": "amount"})
    result = crm.run({"dimensions": [{"type": "value", "key": "stage", "field": "stage"}],
                      "measures": measures})
    got = rows_by(result, "stage")
    opps = crm.opps.assign(amount_f=crm.opps.amount.map(lambda v: None if v is None else
                                                         float(v)))
    cent = Decimal("0.01")
    for stage, group in opps.groupby(opps.stage.fillna("~"), dropna=False):
        row = got[None if stage == "~" else stage]
        amounts = [a for a in group.amount if a is not None]
        assert row["n"] == len(group)
        assert row["n_amount"] == len(amounts)
        assert row["accounts"] == group.account.dropna().nunique()
        assert row["total"] == (sum(amounts) if amounts else None)
        if amounts:
            mean = (sum(amounts) / len(amounts)).quantize(cent)
            assert abs(row["mean"] - mean) <= cent
            assert row["low"] == min(amounts) and row["high"] == max(amounts)
        assert row["last"] == group.closed_at.max()
        if backend == "postgresql" and amounts:
            assert abs(row["mid"] - Decimal(str(pd.Series(amounts, dtype=float).median()))
                       .quantize(cent)) <= cent
    assert result.totals["total"] == sum(a for a in crm.opps.amount if a is not None)
    assert result.totals["n"] == len(crm.opps)
    assert result.totals["accounts"] == crm.opps.account.dropna().nunique()


def test_median_is_refused_on_sqlite(crm: Crm, backend: str) -> None:
    if backend != "sqlite":
        pytest.skip("SQLite only")
    with pytest.raises(DefinitionInvalid) as err:
        crm.run({"measures": [{"agg": "median", "key": "mid", "field": "amount"}]})
    assert err.value.errors[0].path == "$.measures[0].agg"
    assert "PostgreSQL" in err.value.errors[0].message


def _local_bucket(ts: pd.Series, bucket: str) -> pd.Series:
    local = ts.dt.tz_convert("Asia/Shanghai").dt.tz_localize(None).dt.normalize()
    if bucket == "week":
        local = local - pd.to_timedelta(local.dt.day_of_week, unit="D")
    elif bucket == "month":
        local = local.dt.to_period("M").dt.start_time
    elif bucket == "quarter":
        local = local.dt.to_period("Q").dt.start_time
    elif bucket == "year":
        local = local.dt.to_period("Y").dt.start_time
    return local.dt.date


@pytest.mark.parametrize("bucket", ["day", "week", "month", "quarter", "year"])
def test_date_buckets_in_the_organization_time_zone(crm: Crm, bucket: str) -> None:
    result = crm.run({"dimensions": [{"type": "date", "key": "p", "field": "closed_at",
                                      "bucket": bucket}],
                      "measures": [{"agg": "count", "key": "n"}]})
    closed = pd.to_datetime(pd.Series(list(crm.opps.closed_at)), utc=True)
    expected = _local_bucket(closed, bucket).value_counts().to_dict()
    got = {rec["p"]: rec["n"] for rec in result.frame.to_dict(orient="records")}
    assert got == expected
    labels = dict(zip(result.frame.p, result.frame.p__label, strict=True))
    if bucket == "week":
        assert labels[datetime(2025, 12, 29).date()] == "2026-W01"
        assert labels[datetime(2025, 12, 22).date()] == "2025-W52"
        assert labels[datetime(2024, 12, 30).date()] == "2025-W01"
        assert labels[datetime(2020, 12, 28).date()] == "2020-W53"
    if bucket == "year":
        # 31 Dec 2025 16:30 UTC is 1 Jan 2026 in Shanghai.
        assert labels[datetime(2026, 1, 1).date()] == "2026"
    if bucket == "quarter":
        assert labels[datetime(2026, 4, 1).date()] == "2026-Q2"


def test_week_bucket_of_a_date_field(crm: Crm) -> None:
    result = crm.run({"dimensions": [{"type": "date", "key": "w", "field": "close_date",
                                      "bucket": "week"}],
                      "measures": [{"agg": "count", "key": "n"}]})
    days = pd.to_datetime(pd.Series([d for d in crm.opps.close_date]))
    expected = (days - pd.to_timedelta(days.dt.day_of_week, unit="D")).dt.date.value_counts()
    got = {rec["w"]: rec["n"] for rec in result.frame.to_dict(orient="records")}
    assert got == expected.to_dict()


def test_relation_paths_multi_level(crm: Crm) -> None:
    result = crm.run({"dimensions": [
        {"type": "value", "key": "industry", "field": "account.industry"},
        {"type": "value", "key": "parent_industry", "field": "account.parent.industry"}],
        "measures": [{"agg": "sum", "key": "total", "field": "amount"},
                     {"agg": "count", "key": "n"}]})
    parents = crm.accounts.set_index("id")
    opps = crm.opps.assign(parent_industry=crm.opps.parent.map(
        lambda p: parents.industry.get(p) if isinstance(p, str) else None))
    expected: dict[Any, Any] = {}
    for rec in opps.to_dict(orient="records"):
        k = (_key(rec["industry"]), _key(rec["parent_industry"]))
        n, total = expected.get(k, (0, None))
        amount = rec["amount"]
        total = total if amount is None else (amount if total is None else total + amount)
        expected[k] = (n + 1, total)
    got = {(r["industry"], r["parent_industry"]): (r["n"], r["total"])
           for r in result.frame.to_dict(orient="records")}
    assert got == expected
    assert result.column("industry").label == {"zh": "industry", "en": "industry"}
    labels = dict(zip(result.frame.industry, result.frame.industry__label, strict=True))
    assert labels.get("mfg", "mfg-en") == "mfg-en"


def test_to_many_paths_are_not_double_counted(crm: Crm) -> None:
    result = crm.run({"dimensions": [{"type": "value", "key": "stage", "field": "stage"}],
                      "measures": [{"agg": "count", "key": "n"},
                                   {"agg": "sum", "key": "total", "field": "amount"},
                                   {"agg": "sum", "key": "qty", "field": "lines.qty"},
                                   {"agg": "count", "key": "n_lines", "field": "lines.qty"},
                                   {"agg": "avg", "key": "price", "field": "lines.price"},
                                   {"agg": "max", "key": "oldest", "field": "contacts.age"},
                                   {"agg": "sum", "key": "ages", "field": "contacts.age"}]})
    got = rows_by(result, "stage")
    stage_of = {o: _key(s) for o, s in zip(crm.opps.id, crm.opps.stage, strict=True)}
    line_stages = [stage_of[o] for o in crm.lines.opp]
    link_stages = [stage_of[o] for o in crm.links.opp]
    for stage, group in crm.opps.groupby(crm.opps.stage.fillna("~")):
        key = None if stage == "~" else stage
        row = got[key]
        assert row["n"] == len(group)  # the joins did not multiply records
        amounts = [a for a in group.amount if a is not None]
        assert row["total"] == (sum(amounts) if amounts else None)
        my_lines = crm.lines[[s == key for s in line_stages]]
        assert row["qty"] == (int(my_lines.qty.sum()) if len(my_lines) else None)
        assert row["n_lines"] == len(my_lines)
        if len(my_lines):
            mean = sum(my_lines.price) / len(my_lines)
            assert abs(row["price"] - mean) <= Decimal("0.01")
        ages = [a for a, s in zip(crm.links.age, link_stages, strict=True)
                if s == key and _key(a) is not None]
        assert row["oldest"] == (max(ages) if ages else None)
        assert row["ages"] == (sum(ages) if ages else None)
    assert result.totals["qty"] == int(crm.lines.qty.sum())


def test_filters_and_parameters(crm: Crm) -> None:
    body = {"parameters": [
        {"key": "owner", "label": label("Owner"), "type": "user"},
        {"key": "period", "label": label("Period"), "type": "date_range"},
        {"key": "min_amount", "label": label("Min"), "type": "number", "default": "10000"}],
        "filter": {"and": [{"field": "owner", "op": "eq", "value": {"$param": "owner"}},
                           {"field": "close_date", "op": "between",
                            "value": {"$param": "period"}},
                           {"field": "amount", "op": "gte", "value": {"$param": "min_amount"}}]},
        "measures": [{"agg": "count", "key": "n"}]}
    opps = crm.opps
    big = opps.amount.map(lambda a: a is not None and a >= 10000)
    assert crm.run(body).frame.n[0] == big.sum()
    owner = crm.users[1]
    result = crm.run(body, {"owner": str(owner), "period": ["2025-09-01", "2025-12-31"]})
    in_period = opps.close_date.between("2025-09-01", "2025-12-31")
    assert result.frame.n[0] == (big & in_period & (opps.owner == owner)).sum()
    assert result.compiled.parameters["owner"] == str(owner)


def test_pivot_rows_by_columns(crm: Crm) -> None:
    result = crm.run({"dimensions": [{"type": "value", "key": "stage", "field": "stage"},
                                     {"type": "value", "key": "region",
                                      "field": "account.region"}],
                      "measures": [{"agg": "count", "key": "n"}],
                      "pivot": {"rows": ["stage"], "columns": ["region"]}})
    wide = result.pivot()
    expected = crm.opps.assign(stage=crm.opps.stage.fillna("(empty)"),
                               region=crm.opps.region.fillna("(empty)"))
    counts = expected.groupby(["stage", "region"]).size()
    for (stage, region), n in counts.items():
        stage_label = stage if stage == "(empty)" else f"{stage}-en"
        assert wide.loc[stage_label, ("n", region)] == n


def test_top_n_with_others(crm: Crm) -> None:
    result = crm.run({"dimensions": [{"type": "value", "key": "account", "field": "account"}],
                      "measures": [{"agg": "count", "key": "n"},
                                   {"agg": "sum", "key": "total", "field": "amount"},
                                   {"agg": "avg", "key": "mean", "field": "amount"},
                                   {"agg": "share", "key": "share", "of": "n"}],
                      "sort": ["-n", "account"], "limit": 3, "others": True})
    frame = result.frame
    assert list(frame._others) == [0, 0, 0, 1]
    counts: dict[Any, int] = {}
    for account in crm.opps.account:
        counts[_key(account)] = counts.get(_key(account), 0) + 1
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))[:3]
    assert list(frame.n[:3]) == [n for _, n in top]
    top_keys = [k for k, _ in top]
    assert [None if a is None else str(a) for a in frame.account[:3]] == top_keys
    assert frame.n[3] == len(crm.opps) - sum(n for _, n in top)
    rest = crm.opps[[_key(a) not in top_keys for a in crm.opps.account]]
    amounts = [a for a in rest.amount if a is not None]
    assert frame.total[3] == sum(amounts)
    assert abs(frame["mean"][3] - sum(amounts) / len(amounts)) <= Decimal("0.01")
    assert frame.account__label[3] == "Others"
    assert abs(sum(frame.share) - 1.0) < 1e-9


def test_funnel_conversions(crm: Crm) -> None:
    from tangram.engines.reports.charts import chart_spec

    result = crm.run({"dimensions": [{"type": "value", "key": "stage", "field": "stage"}],
                      "measures": [{"agg": "count", "key": "n"}],
                      "chart": {"type": "funnel", "stage": "stage", "value": "n",
                                "stages": ["lead", "qualified", "proposal", "won"],
                                "cumulative": True}})
    spec = chart_spec(result)
    counts = crm.opps.stage.value_counts()
    order = ["lead", "qualified", "proposal", "won"]
    reached = [sum(counts.get(s, 0) for s in order[i:]) for i in range(4)]
    assert list(result.frame.stage) == order
    assert list(result.frame.n) == reached
    conv = list(result.frame._conversion)
    assert conv[0] is None
    for i in range(1, 4):
        assert conv[i] == pytest.approx(reached[i] / reached[i - 1])
    assert "$schema" in spec and "url" not in str(spec["layer"][0].get("data", {}))


def test_period_over_period_running_total_share_ratio(crm: Crm) -> None:
    result = crm.run({"dimensions": [{"type": "date", "key": "month", "field": "closed_at",
                                      "bucket": "month"}],
                      "measures": [{"agg": "count", "key": "n"},
                                   {"agg": "count", "key": "n_amount", "field": "amount"},
                                   {"agg": "change", "key": "growth", "of": "n"},
                                   {"agg": "change", "key": "delta", "of": "n",
                                    "mode": "absolute"},
                                   {"agg": "running_total", "key": "cum", "of": "n"},
                                   {"agg": "share", "key": "share", "of": "n"},
                                   {"agg": "ratio", "key": "filled", "numerator": "n_amount",
                                    "denominator": "n"}]})
    closed = pd.to_datetime(pd.Series(list(crm.opps.closed_at)), utc=True)
    months = _local_bucket(closed, "month")
    counts = months.value_counts().sort_index()
    filled = pd.Series([a is not None for a in crm.opps.amount]).groupby(months).sum()
    frame = result.frame
    assert list(frame.month) == list(counts.index)
    running = 0
    for rec in frame.to_dict(orient="records"):
        n = counts[rec["month"]]
        running += n
        prev_month = (pd.Timestamp(rec["month"]) - pd.DateOffset(months=1)).date()
        prev = counts.get(prev_month)
        if prev is None:  # no record in the previous calendar month: no comparison
            assert rec["growth"] is None and rec["delta"] is None
        else:
            assert rec["growth"] == pytest.approx((n - prev) / prev)
            assert rec["delta"] == n - prev
        assert rec["cum"] == running
        assert rec["share"] == pytest.approx(n / len(crm.opps))
        assert rec["filled"] == pytest.approx(filled[rec["month"]] / n)


def test_numeric_bins(crm: Crm) -> None:
    result = crm.run({"dimensions": [{"type": "bin", "key": "band", "field": "amount",
                                      "width": "10000.50", "origin": "-0.25"}],
                      "measures": [{"agg": "count", "key": "n"}]})
    width, origin = Decimal("10000.50"), Decimal("-0.25")
    expected: dict[Any, int] = {}
    for a in crm.opps.amount:
        lo = None if a is None else origin + ((a - origin) // width) * width
        expected[lo] = expected.get(lo, 0) + 1
    got = {rec["band"]: rec["n"] for rec in result.frame.to_dict(orient="records")}
    assert got == expected


class OwnerScope:
    """A test policy: a viewer sees only the opportunities they own, and not
    the account's region."""

    def __init__(self, owner: uuid.UUID, hidden: dict[str, str] | None = None) -> None:
        self.owner = owner
        self.hidden = hidden or {}

    def check_form_action(self, actor: Any, app: str, form: str, action: str) -> None:
        return None

    def row_predicate(self, actor: Any, app: str, form: str, table: sa.Table,
                      action: str) -> Any:
        return table.c.owner == self.owner if form == "opportunity" else None

    def check_row(self, *args: Any) -> None:
        return None

    def field_access(self, actor: Any, app: str, form: str) -> dict[str, str]:
        return {k: "hidden" for f, k in self.hidden.items() if f == form}


def test_row_scope_is_inside_the_query(crm: Crm) -> None:
    owner = crm.users[2]
    body = {"dimensions": [{"type": "value", "key": "stage", "field": "stage"}],
            "measures": [{"agg": "count", "key": "n"},
                         {"agg": "sum", "key": "qty", "field": "lines.qty"}]}
    result = crm.run(body, policy=OwnerScope(owner))
    mine = crm.opps[crm.opps.owner == owner]
    assert result.totals["n"] == len(mine)
    assert sorted(result.frame.n) == sorted(mine.stage.map(_key).value_counts(dropna=False))
    qty = crm.lines[crm.lines.opp.isin(mine.id)].qty.sum()
    assert result.totals["qty"] == (int(qty) if qty else None)


def test_hidden_field_refused_with_its_path(crm: Crm) -> None:
    body = {"dimensions": [{"type": "value", "key": "region", "field": "account.region"}],
            "measures": [{"agg": "count", "key": "n"}]}
    with pytest.raises(PermissionDenied) as err:
        crm.run(body, policy=OwnerScope(crm.users[0], {"account": "region"}))
    assert err.value.errors[0].path == "$.dimensions[0].field"
    assert "account.region" in err.value.errors[0].message
    with pytest.raises(PermissionDenied):
        crm.run({"filter": {"field": "account.region", "op": "eq", "value": "华东"},
                 "measures": [{"agg": "count", "key": "n"}]},
                policy=OwnerScope(crm.users[0], {"account": "region"}))


def test_cache_hits_until_a_write_to_a_source_form(crm: Crm) -> None:
    report = Report.model_validate({
        "key": "r", "label": label("R"), "form": "opportunity",
        "dimensions": [{"type": "value", "key": "industry", "field": "account.industry"}],
        "measures": [{"agg": "count", "key": "n"}]})

    def run() -> Any:
        with crm.world.sessions.begin() as s:
            return run_definition(crm.ctx(s), app="demo", report=report, version=1)[0]

    first = run()
    assert run() is first  # served from the cache
    account = crm.accounts.id[0]
    crm.world.run(records.update_record, app="demo", form="account", record_id=account,
                  changes={"industry": "svc"}, expected_version=1)
    third = run()
    assert third is not first  # the account write invalidated it
    with crm.world.sessions.begin() as s:
        narrow = run_definition(crm.ctx(s, policy=OwnerScope(crm.users[0])), app="demo",
                                report=report, version=1)[0]
    assert narrow is not third and narrow.totals["n"] < third.totals["n"]


def test_csv_and_xlsx_contents(crm: Crm) -> None:
    import io

    from openpyxl import load_workbook

    from tangram.engines.reports.export import to_csv, to_xlsx

    result = crm.run({"dimensions": [{"type": "value", "key": "stage", "field": "stage",
                                      "label": {"en": "Stage", "zh": "阶段"}}],
                      "measures": [{"agg": "sum", "key": "total", "field": "amount",
                                    "label": {"en": "Amount", "zh": "金额"}}],
                      "sort": ["stage"]})
    text = to_csv(result).decode("utf-8-sig")
    lines = text.strip().splitlines()
    assert lines[0] == "Stage,Amount"
    won = sum(a for a, s in zip(crm.opps.amount, crm.opps.stage, strict=True)
              if s == "won" and a is not None)
    assert f"won-en,{won}" in lines
    total = sum(a for a in crm.opps.amount if a is not None)
    assert lines[-1] == f"Total,{total}"
    ws = load_workbook(io.BytesIO(to_xlsx(result))).active
    rows = list(ws.iter_rows(values_only=True))
    assert rows[0] == ("Stage", "Amount")
    assert ("won-en", pytest.approx(float(won))) in [(r[0], r[1]) for r in rows]
    assert rows[-1][0] == "Total" and rows[-1][1] == pytest.approx(float(total))


def test_columns_sharing_a_title_are_all_exported(crm: Crm) -> None:
    from tangram.engines.reports.export import to_csv

    # Unlabelled measures take their field's title: the sum and the average
    # of the amount share one.
    result = crm.run({"dimensions": [{"type": "value", "key": "stage", "field": "stage",
                                      "label": {"en": "Stage", "zh": "阶段"}}],
                      "measures": [{"agg": "sum", "key": "total", "field": "amount"},
                                   {"agg": "avg", "key": "avg_amount", "field": "amount"}],
                      "sort": ["stage"]})
    lines = to_csv(result).decode("utf-8-sig").strip().splitlines()
    title = result.title("total")
    assert result.title("avg_amount") == title
    assert lines[0] == f"Stage,{title} (total),{title} (avg_amount)"
    total = sum(a for a in crm.opps.amount if a is not None)
    assert lines[-1].startswith(f"Total,{total},")


@pytest.mark.parametrize(("body", "path", "code"), [
    ({"measures": [{"agg": "sum", "key": "x", "field": "amout"}]},
     "$.measures[0].field", "unknown_field"),
    ({"measures": [{"agg": "sum", "key": "x", "field": "name"}]},
     "$.measures[0].field", "aggregate_not_allowed"),
    ({"measures": [{"agg": "count", "key": "x", "field":
                    "account.parent.parent.parent.parent.name"}]},
     "$.measures[0].field", "too_deep"),
    ({"measures": [{"agg": "count", "key": "x", "field": "account.parent.parent.name"}]},
     "$.measures[0].field", "cyclic_path"),
    ({"dimensions": [{"type": "value", "key": "p", "field": "lines.product"}],
      "measures": [{"agg": "count", "key": "n"}]}, "$.dimensions[0].field",
     "to_many_dimension"),
    ({"dimensions": [{"type": "date", "key": "p", "field": "name", "bucket": "month"}],
      "measures": [{"agg": "count", "key": "n"}]}, "$.dimensions[0].field", "not_a_date"),
    ({"dimensions": [{"type": "value", "key": "p", "field": "name", "by": "department"}],
      "measures": [{"agg": "count", "key": "n"}]}, "$.dimensions[0].by", "not_a_user"),
    ({"measures": [{"agg": "count", "key": "n"}, {"agg": "share", "key": "s", "of": "zz"}]},
     "$.measures[1].of", "unknown_measure"),
    ({"measures": [{"agg": "count", "key": "n"}], "sort": ["-nn"]}, "$.sort[0]", "unknown_key"),
    ({"filter": {"field": "stage", "op": "eq", "value": {"$param": "nope"}},
      "measures": [{"agg": "count", "key": "n"}]}, "$.filter.value", "unknown_parameter"),
])
def test_bad_definitions_name_the_path(crm: Crm, body: dict[str, Any], path: str,
                                       code: str) -> None:
    with pytest.raises(DefinitionInvalid) as err:
        crm.run(body)
    assert (err.value.errors[0].path, err.value.errors[0].code) == (path, code)


def test_injection_in_values_is_only_data(crm: Crm) -> None:
    evil = "won'; DROP TABLE definitions; --"
    result = crm.run({"filter": {"field": "account.name", "op": "eq", "value": evil},
                      "measures": [{"agg": "count", "key": "n"}]})
    assert result.frame.n[0] == 0
    assert crm.run({"measures": [{"agg": "count", "key": "n"}]}).frame.n[0] == len(crm.opps)
