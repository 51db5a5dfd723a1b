"""The filter language and list queries against real data, on SQLite and
PostgreSQL: every operator's matches are checked against expectations
computed in Python over the same rows (a path's value is empty when a link
is empty or points to a deleted record; negative operators match empty
values), plus keyset paging, counting and search."""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tangram.db import new_id
from tangram.engines.forms.query import (
    ListQuery,
    QueryContext,
    build_count,
    build_select,
    compile_filter,
)
from tangram.engines.forms.tables import FormTables, build_tables
from tangram.metamodel.forms import Form

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def label(text: str) -> dict[str, str]:
    return {"zh": text, "en": text}


def fld(key: str, type_: str, **options: Any) -> dict[str, Any]:
    return {"key": key, "type": type_, "label": label(key), **options}


def opts(*values: str) -> list[dict[str, Any]]:
    return [{"value": v, "label": label(v)} for v in values]


INDUSTRY_TREE = [
    {"value": "制造业", "label": label("制造业"), "children": [
        {"value": "汽车零配件", "label": label("汽车零配件"), "children": [
            {"value": "轮胎", "label": label("轮胎")}]},
        {"value": "电子", "label": label("电子")}]},
    {"value": "服务业", "label": label("服务业"), "children": [
        {"value": "咨询", "label": label("咨询")}]},
]

FORMS = [
    {"key": "country", "label": label("国家"), "fields": [fld("name", "text"),
                                                          fld("code", "text")]},
    {"key": "account", "label": label("客户"), "fields": [
        fld("name", "text"), fld("industry", "tree_select", options=INDUSTRY_TREE),
        fld("country", "relation", target="country"),
        fld("parent", "relation", target="account"),
        fld("tags", "tags"), fld("region", "region")]},
    {"key": "product", "label": label("产品"), "fields": [fld("name", "text")]},
    {"key": "opportunity", "label": label("商机"), "search_fields": ["title", "notes"],
     "fields": [
         fld("title", "text"), fld("notes", "long_text"), fld("amount", "currency"),
         fld("probability", "integer"), fld("is_key", "boolean"),
         fld("stage", "select", options=opts("lead", "proposal", "won", "lost")),
         fld("labels", "multi_select", options=opts("hot", "cold", "vip")),
         fld("close_date", "date"), fld("signed_at", "datetime"),
         fld("account", "relation", target="account"),
         fld("products", "multi_relation", target="product")]},
]


# --------------------------------------------------------------------------- the data

@dataclass
class World:
    engine: Engine
    tables: dict[str, FormTables]
    rows: dict[str, dict[uuid.UUID, dict[str, Any]]] = field(default_factory=dict)
    links: dict[uuid.UUID, list[uuid.UUID]] = field(default_factory=dict)  # opp -> products

    @property
    def opp(self) -> FormTables:
        return self.tables["opportunity"]

    def qctx(self, today: date = date(2026, 1, 5)) -> QueryContext:
        return QueryContext(resolve=self.tables.__getitem__, today=today,
                            timezone="Asia/Shanghai",
                            now=datetime.combine(today, datetime.min.time(), SHANGHAI))

    def live(self, form: str = "opportunity") -> list[dict[str, Any]]:
        return [r for r in self.rows[form].values() if r["deleted_at"] is None]

    def value(self, row: dict[str, Any], path: str) -> Any:
        """The Python oracle of a path: None when a link is empty or deleted."""
        *links, last = path.split(".")
        form_of = {"account": "account", "country": "country", "parent": "account"}
        current: dict[str, Any] | None = row
        for link in links:
            assert current is not None
            target = self.rows[form_of[link]].get(current[link])
            if target is None or target["deleted_at"] is not None:
                return None
            current = target
        assert current is not None
        return current[last]

    def ids(self, spec: Any, today: date = date(2026, 1, 5)) -> set[uuid.UUID]:
        t = self.opp.table
        cond = compile_filter(spec, tables=self.opp, qctx=self.qctx(today))
        stmt = sa.select(t.c.id).where(t.c.deleted_at.is_(None))
        if cond is not None:
            stmt = stmt.where(cond)
        with self.engine.connect() as conn:
            return set(conn.scalars(stmt))

    def expected(self, predicate: Callable[[dict[str, Any]], bool]) -> set[uuid.UUID]:
        return {r["id"] for r in self.live() if predicate(r)}


def system(created: datetime, deleted: bool = False) -> dict[str, Any]:
    return {"id": new_id(), "created_at": created, "updated_at": created, "created_by": None,
            "updated_by": None, "owner": None, "version": 1,
            "deleted_at": created if deleted else None}


TITLES = ["上海汽车零配件采购", "折扣50%_特价", "折扣500台", "北京电子年度框架", "Tyre Deal",
          "tyre renewal", "咨询服务续约", "back\\slash 合同", "", None]
NOTES = ["客户关注价格", "需要采购审批", None, "汽车行业标杆", "", "华东区域"]
CLOSE_DATES = [date(2025, 12, 28), date(2025, 12, 29), date(2025, 12, 31), date(2026, 1, 1),
               date(2026, 1, 4), date(2026, 1, 5), date(2026, 1, 11), date(2026, 1, 12),
               date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 31), date(2026, 4, 1),
               date(2025, 1, 1), date(2024, 12, 31), None, None]
SIGNED = [datetime(2025, 12, 31, 15, 59, 59, tzinfo=UTC),  # local 12-31 23:59:59
          datetime(2025, 12, 31, 16, 0, tzinfo=UTC),  # local 01-01 00:00
          datetime(2026, 1, 1, 15, 59, 59, tzinfo=UTC),  # local 01-01 23:59:59
          datetime(2026, 1, 1, 16, 0, tzinfo=UTC),  # local 01-02 00:00
          datetime(2026, 1, 4, 16, 0, tzinfo=UTC),  # local Monday 01-05 00:00
          datetime(2026, 1, 5, 3, 0, tzinfo=UTC), None]
LABELS: list[Any] = [["hot"], ["hot", "vip"], ["cold"], [], None, sa.null(), ["vip", "cold"],
                     ["hot", "cold", "vip"]]


def seed(engine: Engine) -> World:
    md = sa.MetaData()
    tables = {f["key"]: build_tables("qa", Form.model_validate(f), metadata=md) for f in FORMS}
    md.create_all(engine)
    world = World(engine, tables, {k: {} for k in tables})
    rnd = random.Random(20260105)

    def add(form: str, deleted: bool = False, **values: Any) -> uuid.UUID:
        row = system(T0 + timedelta(minutes=len(world.rows[form])), deleted) | values
        world.rows[form][row["id"]] = row
        return row["id"]

    cn = add("country", name="中国", code="CN")
    jp = add("country", name="日本", code="JP")
    gone_country = add("country", deleted=True, name="德国", code="DE")
    group = add("account", name="上汽集团", industry="制造业", country=cn, parent=None,
                tags=["战略"], region={"province": "上海市"})
    accounts = [
        group,
        add("account", name="华域汽车", industry="汽车零配件", country=cn, parent=group,
            tags=["战略", "重点"], region={"province": "上海市", "city": "上海市"}),
        add("account", name="米其林轮胎", industry="轮胎", country=jp, parent=group, tags=[],
            region={"province": "广东省"}),
        add("account", name="东京咨询", industry="咨询", country=jp, parent=None, tags=None,
            region=None),
        add("account", name="无行业公司", industry=None, country=None, parent=None,
            tags=["重点"], region={}),
        add("account", name="柏林电子", industry="电子", country=gone_country, parent=None,
            tags=["海外"], region={"province": "北京市"}),
        add("account", name="已删除客户", deleted=True, industry="制造业", country=cn,
            parent=None, tags=["战略"], region={"province": "上海市"}),
    ]
    world.rows["account"][accounts[3]]["parent"] = accounts[1]  # two levels: 东京 -> 华域 -> 上汽
    products = [add("product", name=n) for n in ("发动机", "变速箱", "轮毂", "雨刷")]
    for i in range(64):
        opp = add(
            "opportunity", deleted=(i % 23 == 22),
            title=TITLES[i % len(TITLES)] if i % 7 else None, notes=NOTES[i % len(NOTES)],
            amount=rnd.choice([None, Decimal("0.00"), Decimal("120000.50"), Decimal("500000"),
                               Decimal("500000.00"), Decimal("999999.99"), Decimal("-5.25")]),
            probability=rnd.choice([None, 0, 10, 50, 50, 90, 100]),
            is_key=rnd.choice([True, False, None]),
            stage=rnd.choice(["lead", "proposal", "won", "lost", None]),
            labels=LABELS[i % len(LABELS)], close_date=CLOSE_DATES[i % len(CLOSE_DATES)],
            signed_at=SIGNED[i % len(SIGNED)],
            account=rnd.choice([*accounts, None, None]))
        world.links[opp] = rnd.sample(products, rnd.choice([0, 0, 1, 2, 3]))

    with engine.begin() as conn:
        for form, rows in world.rows.items():
            conn.execute(tables[form].table.insert(), list(rows.values()))
        join = tables["opportunity"].joins["products"]
        conn.execute(join.insert(), [{"source_id": s, "target_id": t, "position": i}
                                     for s, targets in world.links.items()
                                     for i, t in enumerate(targets)])
    for rows in world.rows.values():  # the oracle sees JSON null like SQL NULL
        for row in rows.values():
            for key, value in row.items():
                if isinstance(value, sa.sql.elements.Null):
                    row[key] = None
    world.products = products  # type: ignore[attr-defined]
    world.accounts = accounts  # type: ignore[attr-defined]
    return world


@pytest.fixture
def world(engine: Engine) -> World:
    return seed(engine)


def check(world: World, cases: list[tuple[Any, Callable[[dict[str, Any]], bool]]],
          today: date = date(2026, 1, 5)) -> None:
    failures = []
    for spec, predicate in cases:
        got, want = world.ids(spec, today), world.expected(predicate)
        if got != want:
            failures.append(f"{spec}: {len(got - want)} unexpected, {len(want - got)} missing")
    assert not failures, "\n".join(failures)


def empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def low(value: Any) -> str:
    return (value or "").lower()


# --------------------------------------------------------------------------- operators

def test_comparison_operators_on_own_columns(world):
    amount = Decimal("500000")
    check(world, [
        ({"field": "amount", "op": "eq", "value": "500000"},
         lambda r: r["amount"] == amount),
        ({"field": "amount", "op": "ne", "value": 500000},
         lambda r: r["amount"] is None or r["amount"] != amount),
        ({"field": "amount", "op": "gte", "value": "500000"},
         lambda r: r["amount"] is not None and r["amount"] >= amount),
        ({"field": "amount", "op": "gt", "value": "500000"},
         lambda r: r["amount"] is not None and r["amount"] > amount),
        ({"field": "amount", "op": "lt", "value": "0.01"},
         lambda r: r["amount"] is not None and r["amount"] < Decimal("0.01")),
        ({"field": "amount", "op": "lte", "value": "-5.25"},
         lambda r: r["amount"] is not None and r["amount"] <= Decimal("-5.25")),
        ({"field": "amount", "op": "between", "value": ["0", "120000.50"]},
         lambda r: r["amount"] is not None and 0 <= r["amount"] <= Decimal("120000.50")),
        ({"field": "probability", "op": "in", "value": ["10", 90]},
         lambda r: r["probability"] in (10, 90)),
        ({"field": "probability", "op": "not_in", "value": [50, 0]},
         lambda r: r["probability"] not in (50, 0)),
        ({"field": "is_key", "op": "eq", "value": True}, lambda r: r["is_key"] is True),
        ({"field": "is_key", "op": "ne", "value": True}, lambda r: r["is_key"] is not True),
        ({"field": "stage", "op": "in", "value": ["won", "lost"]},
         lambda r: r["stage"] in ("won", "lost")),
        ({"field": "close_date", "op": "lt", "value": "2026-01-01"},
         lambda r: r["close_date"] is not None and r["close_date"] < date(2026, 1, 1)),
        ({"field": "signed_at", "op": "gte", "value": "2026-01-01T00:00:00+08:00"},
         lambda r: r["signed_at"] is not None
         and r["signed_at"] >= datetime(2025, 12, 31, 16, tzinfo=UTC)),
        ({"field": "created_at", "op": "between",
          "value": ["2026-01-05T08:10:00Z", "2026-01-05T08:20:00Z"]},
         lambda r: T0 + timedelta(minutes=10) <= r["created_at"] <= T0 + timedelta(minutes=20)),
    ])


def test_text_operators_ignore_case_and_treat_wildcards_literally(world):
    check(world, [
        ({"field": "title", "op": "eq", "value": "Tyre Deal"},
         lambda r: r["title"] == "Tyre Deal"),
        ({"field": "title", "op": "contains", "value": "TYRE"},
         lambda r: "tyre" in low(r["title"])),
        ({"field": "title", "op": "contains", "value": "50%"}, lambda r: "50%" in low(r["title"])),
        # unescaped, "%_" and "_" would match every non-empty title
        ({"field": "title", "op": "contains", "value": "%_"}, lambda r: "%_" in low(r["title"])),
        ({"field": "title", "op": "contains", "value": "_"}, lambda r: "_" in low(r["title"])),
        ({"field": "title", "op": "contains", "value": "k\\s"},
         lambda r: "k\\s" in low(r["title"])),
        ({"field": "title", "op": "not_contains", "value": "汽车"},
         lambda r: "汽车" not in low(r["title"])),
        ({"field": "title", "op": "starts_with", "value": "折扣"},
         lambda r: low(r["title"]).startswith("折扣")),
        ({"field": "title", "op": "ends_with", "value": "DEAL"},
         lambda r: low(r["title"]).endswith("deal")),
        ({"field": "title", "op": "is_empty"}, lambda r: empty(r["title"])),
        ({"field": "title", "op": "is_empty", "value": False}, lambda r: not empty(r["title"])),
    ])


def test_list_fields_json_arrays_and_join_tables(world):
    p0, p1 = world.products[0], world.products[1]
    check(world, [
        ({"field": "labels", "op": "contains_any", "value": ["vip", "cold"]},
         lambda r: bool({"vip", "cold"} & set(r["labels"] or []))),
        ({"field": "labels", "op": "contains_all", "value": ["hot", "vip"]},
         lambda r: {"hot", "vip"} <= set(r["labels"] or [])),
        ({"field": "labels", "op": "contains_all", "value": ["cold"]},
         lambda r: "cold" in (r["labels"] or [])),
        # SQL NULL, JSON null and [] are all empty
        ({"field": "labels", "op": "is_empty"}, lambda r: empty(r["labels"])),
        ({"field": "labels", "op": "is_empty", "value": False},
         lambda r: not empty(r["labels"])),
        ({"field": "products", "op": "contains_any", "value": [str(p0), str(p1)]},
         lambda r: bool({p0, p1} & set(world.links[r["id"]]))),
        ({"field": "products", "op": "contains_all", "value": [str(p0), str(p1)]},
         lambda r: {p0, p1} <= set(world.links[r["id"]])),
        ({"field": "products", "op": "is_empty"}, lambda r: not world.links[r["id"]]),
        ({"field": "account.tags", "op": "contains_any", "value": ["战略"]},
         lambda r: "战略" in (world.value(r, "account.tags") or [])),
        ({"field": "account.tags", "op": "is_empty"},
         lambda r: empty(world.value(r, "account.tags"))),
    ])


def test_relation_paths_two_levels_deep_with_deleted_targets(world):
    def industry_under_manufacturing(v: Any) -> bool:
        return v in ("制造业", "汽车零配件", "轮胎", "电子")

    check(world, [
        ({"field": "account.industry", "op": "eq", "value": "制造业"},
         lambda r: world.value(r, "account.industry") == "制造业"),
        ({"field": "account.industry", "op": "under", "value": "制造业"},
         lambda r: industry_under_manufacturing(world.value(r, "account.industry"))),
        ({"field": "account.industry", "op": "under", "value": "汽车零配件"},
         lambda r: world.value(r, "account.industry") in ("汽车零配件", "轮胎")),
        ({"field": "account.country.code", "op": "eq", "value": "CN"},
         lambda r: world.value(r, "account.country.code") == "CN"),
        ({"field": "account.country.code", "op": "ne", "value": "CN"},
         lambda r: world.value(r, "account.country.code") != "CN"),
        ({"field": "account.country.code", "op": "in", "value": ["DE", "JP"]},
         lambda r: world.value(r, "account.country.code") in ("DE", "JP")),
        ({"field": "account.country.code", "op": "is_empty"},
         lambda r: world.value(r, "account.country.code") is None),
        ({"field": "account.parent.name", "op": "contains", "value": "集团"},
         lambda r: "集团" in (world.value(r, "account.parent.name") or "")),
        ({"field": "account.parent.parent.name", "op": "eq", "value": "上汽集团"},
         lambda r: world.value(r, "account.parent.parent.name") == "上汽集团"),
        ({"field": "account.parent.industry", "op": "not_in", "value": ["制造业"]},
         lambda r: world.value(r, "account.parent.industry") != "制造业"),
        ({"field": "account.region", "op": "eq", "value": "上海市"},
         lambda r: (world.value(r, "account.region") or {}).get("province") == "上海市"),
        ({"field": "account.region", "op": "is_empty"},
         lambda r: empty(world.value(r, "account.region"))),
        ({"field": "account", "op": "is_empty"}, lambda r: r["account"] is None),
    ])


def test_date_ranges_with_an_injected_today_across_month_and_year_edges(world):
    def local_day(r: dict[str, Any]) -> date | None:
        return r["signed_at"].astimezone(SHANGHAI).date() if r["signed_at"] else None

    def close_in(lo: date, hi: date) -> Callable[[dict[str, Any]], bool]:
        return lambda r: r["close_date"] is not None and lo <= r["close_date"] <= hi

    def signed_in(lo: date, hi: date) -> Callable[[dict[str, Any]], bool]:
        return lambda r: (d := local_day(r)) is not None and lo <= d <= hi

    def dr(fld_: str, value: Any) -> dict[str, Any]:
        return {"field": fld_, "op": "date_range", "value": value}

    new_year = date(2026, 1, 1)  # a Thursday; its ISO week starts Monday 2025-12-29
    check(world, [
        (dr("close_date", "today"), close_in(new_year, new_year)),
        (dr("close_date", "yesterday"), close_in(date(2025, 12, 31), date(2025, 12, 31))),
        (dr("close_date", "this_week"), close_in(date(2025, 12, 29), date(2026, 1, 4))),
        (dr("close_date", "last_week"), close_in(date(2025, 12, 22), date(2025, 12, 28))),
        (dr("close_date", "this_month"), close_in(date(2026, 1, 1), date(2026, 1, 31))),
        (dr("close_date", "last_month"), close_in(date(2025, 12, 1), date(2025, 12, 31))),
        (dr("close_date", "this_quarter"), close_in(date(2026, 1, 1), date(2026, 3, 31))),
        (dr("close_date", "this_year"), close_in(date(2026, 1, 1), date(2026, 12, 31))),
        (dr("close_date", "last_year"), close_in(date(2025, 1, 1), date(2025, 12, 31))),
        (dr("close_date", {"last_n_days": 4}), close_in(date(2025, 12, 29), new_year)),
        (dr("close_date", {"next_n_days": 11}), close_in(new_year, date(2026, 1, 11))),
        (dr("signed_at", "today"), signed_in(new_year, new_year)),
        (dr("signed_at", "yesterday"), signed_in(date(2025, 12, 31), date(2025, 12, 31))),
        (dr("signed_at", "last_year"), signed_in(date(2025, 1, 1), date(2025, 12, 31))),
        (dr("signed_at", "this_week"), signed_in(date(2025, 12, 29), date(2026, 1, 4))),
    ], today=new_year)
    check(world, [
        (dr("close_date", "last_month"), close_in(date(2026, 2, 1), date(2026, 2, 28))),
        (dr("close_date", "this_month"), close_in(date(2026, 3, 1), date(2026, 3, 31))),
        (dr("close_date", "next_month"), close_in(date(2026, 4, 1), date(2026, 4, 30))),
        (dr("close_date", "last_quarter"), close_in(date(2025, 10, 1), date(2025, 12, 31))),
        (dr("signed_at", "this_quarter"), signed_in(date(2026, 1, 1), date(2026, 3, 31))),
    ], today=date(2026, 3, 31))
    check(world, [
        (dr("signed_at", "this_week"), signed_in(date(2026, 1, 5), date(2026, 1, 11))),
        (dr("created_at", "today"), lambda r: True),  # every row was created that morning
    ], today=date(2026, 1, 5))


def test_custom_date_ranges_match_whole_local_days_both_ends_included(world):
    """[from, to] dates (either end open) on a date and a date-time field: the
    date-time's days are Shanghai's, so 16:00 UTC on 31 December is 1 January."""
    def local_day(r: dict[str, Any]) -> date | None:
        return r["signed_at"].astimezone(SHANGHAI).date() if r["signed_at"] else None

    def close_in(lo: date | None, hi: date | None) -> Callable[[dict[str, Any]], bool]:
        return lambda r: r["close_date"] is not None and (lo is None or lo <= r["close_date"]) \
            and (hi is None or r["close_date"] <= hi)

    def signed_in(lo: date | None, hi: date | None) -> Callable[[dict[str, Any]], bool]:
        return lambda r: (d := local_day(r)) is not None and (lo is None or lo <= d) \
            and (hi is None or d <= hi)

    def dr(fld_: str, lo: str | None, hi: str | None) -> dict[str, Any]:
        return {"field": fld_, "op": "date_range", "value": [lo, hi]}

    jan1, mar31 = date(2026, 1, 1), date(2026, 3, 31)
    check(world, [
        (dr("close_date", "2026-01-01", "2026-03-31"), close_in(jan1, mar31)),
        (dr("close_date", "2026-01-01", "2026-01-01"), close_in(jan1, jan1)),
        (dr("close_date", "2026-01-01", None), close_in(jan1, None)),
        (dr("close_date", None, "2025-12-31"), close_in(None, date(2025, 12, 31))),
        (dr("close_date", "0001-01-01", "9999-12-31"), close_in(None, None)),
        (dr("signed_at", "2026-01-01", "2026-01-01"), signed_in(jan1, jan1)),
        (dr("signed_at", "2025-12-31", "2026-01-01"), signed_in(date(2025, 12, 31), jan1)),
        (dr("signed_at", "2026-01-02", None), signed_in(date(2026, 1, 2), None)),
        (dr("signed_at", None, "2025-12-31"), signed_in(None, date(2025, 12, 31))),
        (dr("signed_at", "0001-01-01", "9999-12-31"), signed_in(None, None)),
        (dr("created_at", "2026-01-05", "2026-01-05"), lambda r: True),
    ])
    # A custom range does not move with today.
    assert world.ids(dr("close_date", "2026-01-01", "2026-03-31"), date(2027, 6, 1)) == \
        world.expected(close_in(jan1, mar31))


NEGATABLE = [
    {"field": "amount", "op": "eq", "value": "500000"},
    {"field": "amount", "op": "gt", "value": "0"},
    {"field": "stage", "op": "in", "value": ["won"]},
    {"field": "title", "op": "contains", "value": "折扣"},
    {"field": "labels", "op": "contains_any", "value": ["hot"]},
    {"field": "products", "op": "is_empty"},
    {"field": "account.industry", "op": "under", "value": "制造业"},
    {"field": "account.country.code", "op": "eq", "value": "CN"},
    {"field": "account.parent.name", "op": "ne", "value": "上汽集团"},
    {"field": "account.tags", "op": "is_empty", "value": False},
    {"or": [{"field": "is_key", "op": "eq", "value": True},
            {"field": "account.name", "op": "starts_with", "value": "米其林"}]},
]
TWINS = [("eq", "ne"), ("in", "not_in"), ("contains", "not_contains")]


@pytest.mark.parametrize("spec", NEGATABLE, ids=lambda s: str(s.get("field", "or")))
def test_a_filter_and_its_negation_split_the_rows_exactly(world, spec):
    everything = world.expected(lambda r: True)
    matched, negated = world.ids(spec), world.ids({"not": spec})
    assert matched.isdisjoint(negated)
    assert matched | negated == everything
    for positive, negative in TWINS:
        if spec.get("op") == positive:
            assert world.ids({**spec, "op": negative}) == negated


def test_groups_combine_conditions(world):
    check(world, [
        ({"and": [{"field": "amount", "op": "gte", "value": "500000"},
                  {"or": [{"field": "stage", "op": "eq", "value": "won"},
                          {"field": "account.country.code", "op": "eq", "value": "JP"}]}]},
         lambda r: r["amount"] is not None and r["amount"] >= 500000
         and (r["stage"] == "won" or world.value(r, "account.country.code") == "JP")),
        ({"not": {"or": [{"field": "stage", "op": "is_empty"},
                         {"field": "stage", "op": "eq", "value": "lost"}]}},
         lambda r: r["stage"] not in (None, "lost")),
    ])


# --------------------------------------------------------------------------- paging

def page_through(world: World, q: ListQuery, **kw: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    after = None
    with world.engine.connect() as conn:
        while True:
            stmt, cursor_of = build_select(ListQuery(**{**q.__dict__, "after": after}),
                                           tables=world.opp, qctx=world.qctx(), **kw)
            rows = list(conn.execute(stmt).mappings())
            assert len(rows) <= q.limit + 1
            page, more = rows[:q.limit], len(rows) > q.limit
            pages.append([dict(r) for r in page])
            if not more:
                return pages
            after = cursor_of(page[-1])
            assert len(pages) < 50


def python_order(world: World, sort: list[str]) -> list[uuid.UUID]:
    """Expected order: empty values last in both directions, then the id in the
    direction of the last key."""
    rows = world.live()
    id_desc = sort[-1].startswith("-")
    rows.sort(key=lambda r: r["id"], reverse=id_desc)
    for spec in reversed(sort):
        name = spec.lstrip("-")
        present = [r for r in rows if world.value(r, name) is not None]
        absent = [r for r in rows if world.value(r, name) is None]
        present.sort(key=lambda r, n=name: world.value(r, n), reverse=spec.startswith("-"))
        rows = present + absent
    return [r["id"] for r in rows]


@pytest.mark.parametrize("sort", [
    ["-amount"], ["amount"], ["probability", "-close_date"], ["-probability", "amount"],
    ["stage", "-is_key"], ["account.country.code", "-signed_at"],
    ["-account.country.code", "amount"], ["-id"], ["created_at"],
])
def test_keyset_pages_cover_the_sorted_list_without_gaps_or_duplicates(world, sort):
    pages = page_through(world, ListQuery(sort=sort, limit=7))
    ids = [r["id"] for page in pages for r in page]
    assert len(ids) == len(set(ids))
    assert ids == python_order(world, sort)
    assert all(len(page) == 7 for page in pages[:-1])


def test_paging_with_filter_search_and_scope(world):
    spec = {"field": "amount", "op": "is_empty", "value": False}
    scope = world.opp.table.c.stage.is_not(None)
    q = ListQuery(filter=spec, search="折扣", sort=["-amount"], limit=2)
    ids = [r["id"] for page in page_through(world, q, scope=scope) for r in page]
    expected = [i for i in python_order(world, ["-amount"])
                if (r := world.rows["opportunity"][i])["amount"] is not None
                and r["stage"] is not None
                and ("折扣" in (r["title"] or "") or "折扣" in (r["notes"] or ""))]
    assert ids == expected and ids
    with world.engine.connect() as conn:
        total = conn.execute(build_count(q, tables=world.opp, qctx=world.qctx(),
                                         scope=scope)).scalar_one()
    assert total == len(expected)


def test_rows_carry_requested_fields_and_relation_sort_values(world):
    stmt, _ = build_select(ListQuery(fields=["title"], sort=["account.name"], limit=500),
                           tables=world.opp, qctx=world.qctx())
    with world.engine.connect() as conn:
        rows = list(conn.execute(stmt).mappings())
    assert set(rows[0]) == {"id", "created_at", "created_by", "updated_at", "updated_by",
                            "owner", "version", "deleted_at", "title", "_sort_0"}
    assert [r["_sort_0"] for r in rows] == [world.value(world.rows["opportunity"][r["id"]],
                                                        "account.name") for r in rows]
    assert rows[-1]["_sort_0"] is None  # empty values last


def test_count_matches_the_filter(world):
    spec = {"field": "account.industry", "op": "under", "value": "制造业"}
    with world.engine.connect() as conn:
        total = conn.execute(build_count(ListQuery(filter=spec), tables=world.opp,
                                         qctx=world.qctx())).scalar_one()
    assert total == len(world.ids(spec)) > 0


def test_recycle_bin_lists_only_deleted_rows(world):
    pages = page_through(world, ListQuery(deleted=True, limit=500))
    deleted = {r["id"] for r in world.rows["opportunity"].values() if r["deleted_at"]}
    assert {r["id"] for r in pages[0]} == deleted and deleted


# --------------------------------------------------------------------------- search

@pytest.mark.parametrize(("text", "words"), [
    ("汽车", ["汽车"]),
    ("汽车 采购", ["汽车", "采购"]),  # each word in any search field (title or notes)
    ("折扣50%", ["折扣50%"]),  # % is an ordinary character: 折扣500台 does not match
    ("TYRE", ["tyre"]),
    ("汽车\u3000标杆", ["汽车", "标杆"]),  # the ideographic space separates words too
    ("华东 价格", ["华东", "价格"]),
])
def test_search_matches_every_word_in_any_search_field(world, text, words):
    pages = page_through(world, ListQuery(search=text, limit=500))
    got = {r["id"] for r in pages[0]}
    expected = world.expected(lambda r: all(
        w in low(r["title"]) or w in low(r["notes"]) for w in words))
    assert got == expected
