"""Report compilation without a database: the dialect constructs' exact SQL on
both dialects, the shape of a compiled report, refusals, and registries that
agree with the metamodel and the docs."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tangram.clock import FrozenClock
from tangram.db.types import ExactDecimal, UTCDateTime
from tangram.engines.context import EngineContext
from tangram.engines.forms.tables import build_tables
from tangram.engines.reports import compiler as compiler_module
from tangram.engines.reports import registry as reg
from tangram.engines.reports.charts import CHART_TYPES, chart_kinds_in_model
from tangram.engines.reports.compiler import compile_report
from tangram.engines.reports.dialect import AsFloat, BinIndex, DateBucket, ShiftPeriod
from tangram.errors import DefinitionInvalid
from tangram.metamodel.forms import Form
from tangram.metamodel.reports import Report
from tests.factories import field, form_body, label

DOC = Path(__file__).resolve().parents[2] / "docs" / "reports.md"
t = sa.table("t", sa.column("at", UTCDateTime()), sa.column("day", sa.Date()),
             sa.column("amount", ExactDecimal(18, 2)))


def sql(expr: Any, dialect: Any) -> str:
    return str(sa.select(expr).compile(dialect=dialect(),
                                       compile_kwargs={"literal_binds": True}))


def test_month_bucket_of_a_datetime_per_dialect() -> None:
    b = DateBucket(t.c.at, "month", "Asia/Shanghai")
    assert sql(b, postgresql.dialect) == (
        "SELECT CAST(date_trunc('month', timezone('Asia/Shanghai', t.at)) AS DATE) AS anon_1"
        " \nFROM t")
    assert sql(b, sqlite.dialect) == (
        "SELECT date(datetime(t.at, '+480 minutes'), 'start of month') AS anon_1 \nFROM t")


def test_iso_week_and_quarter_on_sqlite() -> None:
    assert "date(t.day, '-6 days', 'weekday 1')" in sql(DateBucket(t.c.day, "week", None),
                                                        sqlite.dialect)
    quarter = sql(DateBucket(t.c.day, "quarter", None), sqlite.dialect)
    assert "printf('-%d months', (CAST(strftime('%m', t.day) AS INTEGER) - 1) % 3)" in quarter


def test_dst_zone_uses_its_transitions_on_sqlite() -> None:
    text = sql(DateBucket(t.c.at, "day", "Europe/Berlin"), sqlite.dialect)
    assert "WHEN (t.at < '2026-03-29 01:00:00') THEN '+60 minutes'" in text
    assert "WHEN (t.at < '2026-10-25 01:00:00') THEN '+120 minutes'" in text


def test_shift_bin_float_per_dialect() -> None:
    assert sql(ShiftPeriod(t.c.day, "quarter", -1), postgresql.dialect) == (
        "SELECT CAST(t.day + CAST('3 months' AS INTERVAL) * -1 AS DATE) AS anon_1 \nFROM t")
    assert "date(t.day, '-3 months')" in sql(ShiftPeriod(t.c.day, "quarter", -1),
                                             sqlite.dialect)
    binned = BinIndex(t.c.amount, origin=Decimal("0"), width=Decimal("1000.5"), scale=2)
    assert ("CAST(floor((CAST(t.amount AS NUMERIC) - 0) / CAST(1000.5 AS NUMERIC)) AS BIGINT)"
            in sql(binned, postgresql.dialect))
    assert "(t.amount - 0) / 100050" in sql(binned, sqlite.dialect)
    assert "CAST(t.amount AS FLOAT) / (100.0 + 0.0)" in sql(AsFloat(t.c.amount, 2), sqlite.dialect)


# --------------------------------------------------------------------------- whole reports

FORMS = {
    "account": form_body("account", field("name"), field("industry")),
    "opportunity": form_body(
        "opportunity", field("name"), field("amount", "currency"), field("closed_at", "datetime"),
        field("account", "relation", target="account"),
        field("lines", "sub_table", fields=[field("qty", "integer")])),
}


class _Scope:
    def check_form_action(self, *a: Any) -> None:
        return None

    def row_predicate(self, actor: Any, app: str, form: str, table: sa.Table,
                      action: str) -> Any:
        return table.c.owner == sa.bindparam("viewer", "u1") if form == "opportunity" else None

    def field_access(self, *a: Any) -> dict[str, str]:
        return {}


@pytest.fixture
def ctx(monkeypatch: pytest.MonkeyPatch) -> EngineContext:
    # A fresh version id per form and test: compiled reports are cached by it.
    tables = {k: SimpleNamespace(tables=build_tables("crm", Form.model_validate(v)),
                                 version_id=uuid.uuid4()) for k, v in FORMS.items()}
    monkeypatch.setattr(compiler_module, "app_runtimes", lambda session, app: tables)
    session = SimpleNamespace(get_bind=lambda: SimpleNamespace(dialect=postgresql.dialect()))
    return EngineContext(session=session, clock=FrozenClock(), policy=_Scope())  # type: ignore[arg-type]


def report(**body: Any) -> Report:
    return Report.model_validate({"key": "r", "label": label("r"), "form": "opportunity",
                                  **body})


def test_compiled_report_is_one_statement_with_scope_and_joins(ctx: EngineContext) -> None:
    compiled = compile_report(ctx, app="crm", report=report(
        dimensions=[{"type": "value", "key": "industry", "field": "account.industry"},
                    {"type": "date", "key": "month", "field": "closed_at", "bucket": "month"}],
        measures=[{"agg": "sum", "key": "total", "field": "amount"},
                  {"agg": "sum", "key": "qty", "field": "lines.qty"}],
        filter={"field": "amount", "op": "gt", "value": "100"}))
    text, params = compiled.sql(postgresql.dialect())
    assert text.count("SELECT") >= 5 and "UNION ALL" in text
    assert "LEFT OUTER JOIN r_crm__account AS j1 ON j1.id = r_crm__opportunity.account " \
        "AND j1.deleted_at IS NULL" in text
    # The sub-table is pre-aggregated per record before it is joined.
    assert re.search(r"LEFT OUTER JOIN \(SELECT c_qty\.parent_id AS k, sum\(c_qty\.qty\) AS s "
                     r"\nFROM r_crm__opportunity__lines AS c_qty GROUP BY c_qty\.parent_id\)",
                     text)
    assert "r_crm__opportunity.owner = %(viewer)s" in text and params["viewer"] == "u1"
    assert Decimal("100") in params.values()
    assert compiled.forms == ("account", "opportunity")


def test_bad_definitions_are_refused_before_any_sql(ctx: EngineContext) -> None:
    with pytest.raises(DefinitionInvalid) as err:
        compile_report(ctx, app="crm", report=report(
            measures=[{"agg": "avg", "key": "x", "field": "account.name"},
                      {"agg": "count", "key": "y", "field": "account.nme"}]))
    assert [(e.path, e.code) for e in err.value.errors] == [
        ("$.measures[0].field", "aggregate_not_allowed"), ("$.measures[1].field",
                                                            "unknown_field")]
    assert "did you mean 'name'" in err.value.errors[1].message


@pytest.mark.parametrize("body", [
    {"key": "r; drop", "label": label("r"), "form": "opportunity",
     "measures": [{"agg": "count", "key": "n"}]},
    {"key": "r", "label": label("r"), "form": "opportunity",
     "measures": [{"agg": "count", "key": "n\"--"}]},
    {"key": "r", "label": label("r"), "form": "opportunity",
     "measures": [{"agg": "sum", "key": "n", "field": "amount) --"}]},
    {"key": "r", "label": label("r"), "form": "opportunity",
     "measures": [{"agg": "exec", "key": "n"}]},
])
def test_injection_in_keys_is_refused_by_the_model(body: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Report.model_validate(body)


def test_registries_match_the_metamodel() -> None:
    assert set(CHART_TYPES) == chart_kinds_in_model()


def _doc_keys() -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)`", DOC.read_text(encoding="utf-8"), re.M))


@pytest.mark.parametrize("key", [*reg.MEASURES, *reg.DERIVED, *reg.BUCKETS,
                                 *reg.PARAMETER_TYPES, *CHART_TYPES])
def test_every_registry_entry_is_documented(key: str) -> None:
    assert key in _doc_keys(), f"{key!r} is missing from docs/reports.md"


def test_calculated_field_constructs_per_dialect() -> None:
    from tangram.engines.reports.dialect import DatePart, DaysBetween, ExactDivide, RoundTo

    divided = ExactDivide(t.c.amount, sa.literal(3, sa.BigInteger), a_scale=2, b_scale=0,
                          scale=6)
    assert ("round(CAST(t.amount AS NUMERIC) / CAST(nullif(CAST(3 AS NUMERIC), 0) AS "
            "NUMERIC), 6)") in sql(divided, postgresql.dialect)
    assert "CAST(round((CAST(t.amount AS FLOAT) / (nullif(CAST(3 AS FLOAT), 0.0) + 0.0)) " \
        "* 10000.0) AS BIGINT)" in sql(divided, sqlite.dialect)
    rounded = RoundTo(t.c.amount, scale=2, digits=0)
    assert "CAST(round(CAST(t.amount AS NUMERIC), 0) AS BIGINT)" in sql(rounded,
                                                                        postgresql.dialect)
    assert "CASE WHEN (t.amount >= 0) THEN (t.amount + 50) / 100 ELSE (t.amount - 50) / 100 " \
        "END" in sql(rounded, sqlite.dialect)
    assert "CAST(t.day AS DATE) - CAST(t.day AS DATE)" in sql(DaysBetween(t.c.day, t.c.day),
                                                              postgresql.dialect)
    assert "julianday(t.day) - julianday(t.day)" in sql(DaysBetween(t.c.day, t.c.day),
                                                        sqlite.dialect)
    assert "EXTRACT(isodow FROM CAST(t.day AS DATE))" in sql(DatePart(t.c.day, "weekday"),
                                                             postgresql.dialect)
    assert "(CAST(strftime('%w', t.day) AS BIGINT) + 6) % 7 + 1" in sql(
        DatePart(t.c.day, "weekday"), sqlite.dialect)


def test_calculated_fields_compile_to_bound_parameters(ctx: EngineContext) -> None:
    compiled = compile_report(ctx, app="crm", report=report(
        dimensions=[{"type": "value", "key": "big", "expression":
                     "iif(record.amount > 1000.5, \"big\", \"small\")"}],
        measures=[{"agg": "sum", "key": "w", "expression": "record.amount * 2"}]))
    text, params = compiled.sql(postgresql.dialect())
    assert "'big'" not in text and "small" not in text and "1000.5" not in text
    assert {"big", "small", Decimal("1000.5"), 2} <= set(params.values())
    assert "CASE WHEN (r_crm__opportunity.amount > %(" in text


def _constructs() -> list[Any]:
    from tangram.engines.reports.dialect import (
        DatePart,
        DaysBetween,
        ExactDivide,
        Median,
        RoundTo,
    )

    return [DateBucket(t.c.at, "month", "Asia/Shanghai"), ShiftPeriod(t.c.day, "month", 1),
            BinIndex(t.c.amount, origin=Decimal(0), width=Decimal(10), scale=2),
            AsFloat(t.c.amount, 2), Median(t.c.amount, 2),
            ExactDivide(t.c.amount, t.c.amount, a_scale=2, b_scale=2, scale=4),
            RoundTo(t.c.amount, scale=2, digits=0), DaysBetween(t.c.day, t.c.day),
            DatePart(t.c.day, "weekday")]


def test_dialect_constructs_are_cacheable_by_everything_they_render_from() -> None:
    # SQLAlchemy caches compiled SQL by the statement's cache key: each
    # construct has one (no recompiling per execution) …
    for built, again in zip(_constructs(), _constructs(), strict=True):
        key = sa.select(built)._generate_cache_key()
        assert key is not None, type(built).__name__
        assert key == sa.select(again)._generate_cache_key(), type(built).__name__
    # … and a key that differs whenever the SQL it renders would.
    variants = [DateBucket(t.c.at, "month", "Europe/Berlin"),
                DateBucket(t.c.at, "week", "Asia/Shanghai"), DateBucket(t.c.day, "month", None),
                ShiftPeriod(t.c.day, "month", 2),
                BinIndex(t.c.amount, origin=Decimal(5), width=Decimal(10), scale=2),
                BinIndex(t.c.amount, origin=Decimal(0), width=Decimal(20), scale=2),
                AsFloat(t.c.amount, 0)]
    keys = {sa.select(v)._generate_cache_key().key for v in [*_constructs(), *variants]}
    assert len(keys) == len(_constructs()) + len(variants)


def test_cached_sql_never_serves_another_time_zone() -> None:
    # Same statement shape, other zone: the engine's compiled cache must not
    # hand back the first zone's offsets (bound at compile time).
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        conn.exec_driver_sql("CREATE TABLE t (at TEXT, day TEXT, amount INTEGER)")
        conn.exec_driver_sql("INSERT INTO t VALUES ('2026-01-31 20:00:00.000000', NULL, 0)")
        days = [conn.execute(sa.select(DateBucket(t.c.at, "day", zone))).scalar_one()
                for zone in ("Asia/Shanghai", "America/New_York", "Asia/Shanghai")]
    assert [str(d) for d in days] == ["2026-02-01", "2026-01-31", "2026-02-01"]
