"""Compile tests of the filter language and list queries: definition -> SQL on
both dialects, without a database."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from tangram.engines.forms.date_ranges import DATE_RANGES, resolve_date_range
from tangram.engines.forms.operators import OPERATORS, operator_catalog
from tangram.engines.forms.query import (
    CursorInvalid,
    FilterInvalid,
    ListQuery,
    QueryContext,
    QueryInvalid,
    build_count,
    build_select,
    compile_filter,
    parse_filter,
    validate_filter,
)
from tangram.engines.forms.tables import FormTables, build_tables
from tangram.metamodel.forms import Form

DIALECTS = {"postgresql": postgresql.dialect(), "sqlite": sqlite.dialect()}
INJECTION = "x'; DROP TABLE users; --"


def label(text: str) -> dict[str, str]:
    return {"en": text, "zh": text}


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


def make_forms() -> dict[str, Form]:
    country = Form.model_validate({"key": "country", "label": label("Country"), "fields": [
        fld("name", "text"), fld("code", "text")]})
    account = Form.model_validate({"key": "account", "label": label("Account"), "fields": [
        fld("name", "text"), fld("industry", "tree_select", options=INDUSTRY_TREE),
        fld("country", "relation", target="country"),
        fld("parent", "relation", target="account"),
        fld("tags", "tags"), fld("region", "region"), fld("manager", "user")]})
    product = Form.model_validate({"key": "product", "label": label("Product"),
                                   "fields": [fld("name", "text")]})
    opportunity = Form.model_validate({
        "key": "opportunity", "label": label("Opportunity"),
        "search_fields": ["title", "notes"],
        "fields": [
            fld("title", "text"), fld("notes", "long_text"), fld("amount", "currency"),
            fld("probability", "integer"), fld("is_key", "boolean"),
            fld("stage", "select", options=opts("lead", "proposal", "won", "lost")),
            fld("labels", "multi_select", options=opts("hot", "cold", "vip")),
            fld("close_date", "date"), fld("signed_at", "datetime"),
            fld("account", "relation", target="account"),
            fld("products", "multi_relation", target="product"),
            fld("attachments", "attachment"),
            fld("weighted", "formula", expression="amount * probability / 100"),
            fld("lines", "sub_table", fields=[fld("qty", "integer")]),
        ]})
    return {f.key: f for f in (country, account, product, opportunity)}


@pytest.fixture(scope="module")
def crm() -> dict[str, FormTables]:
    md = sa.MetaData()
    return {key: build_tables("crm", form, metadata=md) for key, form in make_forms().items()}


@pytest.fixture(scope="module")
def qctx(crm: dict[str, FormTables]) -> QueryContext:
    return QueryContext(resolve=crm.__getitem__, today=date(2026, 3, 18),
                        timezone="Asia/Shanghai", now=datetime(2026, 3, 18, 2, 0, tzinfo=UTC))


@pytest.fixture
def opp(crm: dict[str, FormTables]) -> FormTables:
    return crm["opportunity"]


def compiled(cond: Any, table: sa.Table, dialect: str) -> tuple[str, dict[str, Any]]:
    c = sa.select(table.c.id).where(cond).compile(dialect=DIALECTS[dialect])
    return str(c), dict(c.params)


def where_sql(spec: Any, tables: FormTables, qctx: QueryContext, dialect: str
              ) -> tuple[str, dict[str, Any]]:
    cond = compile_filter(spec, tables=tables, qctx=qctx)
    assert cond is not None
    sql, params = compiled(cond, tables.table, dialect)
    return sql.split("WHERE", 1)[1], params


def errors_of(spec: Any, tables: FormTables, qctx: QueryContext) -> list[dict[str, Any]]:
    with pytest.raises(FilterInvalid) as info:
        compile_filter(spec, tables=tables, qctx=qctx)
    assert info.value.code == "filter_invalid"
    assert info.value.status == 422
    assert validate_filter(spec, tables=tables, qctx=qctx)  # same problems, not raised
    return [e.as_dict() for e in info.value.errors]


# --------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("op", ["eq", "ne", "contains", "not_contains", "starts_with",
                                "ends_with"])
def test_values_are_bound_parameters_never_sql_text(opp, qctx, dialect, op):
    sql, params = where_sql({"field": "title", "op": op, "value": INJECTION}, opp, qctx,
                            dialect)
    assert "DROP" not in sql and "'x'" not in sql
    assert any(INJECTION in str(v) for v in params.values())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_list_and_path_values_are_parameters_too(opp, qctx, dialect):
    spec = {"or": [{"field": "title", "op": "in", "value": [INJECTION, "b"]},
                   {"field": "account.country.name", "op": "eq", "value": INJECTION},
                   {"field": "account.country.name", "op": "ne", "value": INJECTION}]}
    sql, params = where_sql(spec, opp, qctx, dialect)
    assert "DROP" not in sql
    assert sum(INJECTION in json.dumps(v, default=str) for v in params.values()) == 3


def test_identifiers_come_only_from_definition_keys(opp, qctx):
    errors = errors_of({"field": 'title" = 1; --', "op": "eq", "value": 1}, opp, qctx)
    assert errors[0]["code"] == "unknown_field" and errors[0]["path"] == "$.field"


def test_values_are_converted_by_the_field_kind(opp, qctx):
    account_id = "0190c0a0-1111-7000-8000-000000000001"
    spec = {"and": [{"field": "amount", "op": "gte", "value": "500000"},
                    {"field": "close_date", "op": "lt", "value": "2026-01-01"},
                    {"field": "account", "op": "eq", "value": account_id},
                    {"field": "is_key", "op": "eq", "value": "yes"},
                    {"field": "probability", "op": "between", "value": ["10", 90]}]}
    sql, params = where_sql(spec, opp, qctx, "postgresql")
    values = list(params.values())
    assert Decimal("500000") in values and date(2026, 1, 1) in values
    assert uuid.UUID(account_id) in values and 10 in values and 90 in values
    assert "is_key = true" in sql  # booleans are rendered by SQLAlchemy, not from input


# --------------------------------------------------------------------------- operators

@pytest.mark.parametrize(("spec", "pg", "lite"), [
    ({"field": "title", "op": "eq", "value": "a"}, "title = %(title_1)s", "title = ?"),
    ({"field": "title", "op": "ne", "value": "a"},
     "r_crm__opportunity.title IS NULL OR r_crm__opportunity.title != %(title_1)s",
     "r_crm__opportunity.title IS NULL OR r_crm__opportunity.title != ?"),
    ({"field": "amount", "op": "lt", "value": 1}, "amount < %(amount_1)s", "amount < ?"),
    ({"field": "amount", "op": "lte", "value": 1}, "amount <= %(amount_1)s", "amount <= ?"),
    ({"field": "amount", "op": "gt", "value": 1}, "amount > %(amount_1)s", "amount > ?"),
    ({"field": "amount", "op": "gte", "value": 1}, "amount >= %(amount_1)s", "amount >= ?"),
    ({"field": "amount", "op": "between", "value": [1, 2]},
     "amount BETWEEN %(amount_1)s", "amount BETWEEN ? AND ?"),
    ({"field": "stage", "op": "in", "value": ["won", "lost"]}, "stage IN (__[POSTCOMPILE",
     "stage IN (__[POSTCOMPILE"),
    ({"field": "stage", "op": "not_in", "value": ["won"]},
     "stage IS NULL OR (r_crm__opportunity.stage NOT IN (__[POSTCOMPILE",
     "stage IS NULL OR (r_crm__opportunity.stage NOT IN (__[POSTCOMPILE"),
    ({"field": "title", "op": "contains", "value": "a"}, "title ILIKE %(title_1)s",
     "lower(r_crm__opportunity.title) LIKE lower(?) ESCAPE '\\'"),
    ({"field": "title", "op": "not_contains", "value": "a"},
     "title IS NULL OR r_crm__opportunity.title NOT ILIKE",
     "title IS NULL OR lower(r_crm__opportunity.title) NOT LIKE lower(?)"),
    ({"field": "title", "op": "is_empty", "value": True},
     "title IS NULL OR r_crm__opportunity.title = %(title_1)s", "title IS NULL OR"),
    ({"field": "amount", "op": "is_empty"}, "amount IS NULL", "amount IS NULL"),
    ({"field": "amount", "op": "is_empty", "value": False}, "amount IS NOT NULL",
     "amount IS NOT NULL"),
    ({"field": "labels", "op": "is_empty"},
     "labels IN ('null'::jsonb, '[]'::jsonb, '{}'::jsonb)",
     "json(r_crm__opportunity.labels) IN ('null', '[]', '{}')"),
    ({"field": "labels", "op": "contains_any", "value": ["hot", "vip"]},
     "labels ?| %(param_1)s::TEXT[]", "EXISTS (SELECT anon_1.value \nFROM json_each("),
    ({"field": "labels", "op": "contains_all", "value": ["hot", "vip"]},
     "labels @> %(param_1)s::JSONB", "count(DISTINCT anon_1.value)"),
    ({"field": "products", "op": "contains_any",
      "value": ["0190c0a0-1111-7000-8000-000000000001"]},
     "r_crm__opportunity.id IN (SELECT r_crm__opportunity__products_1.source_id",
     "r_crm__opportunity.id IN (SELECT r_crm__opportunity__products_1.source_id"),
    ({"field": "products", "op": "is_empty"},
     "NOT (EXISTS (SELECT *", "WHERE r_crm__opportunity__products_1.source_id = "),
    ({"field": "lines", "op": "is_empty"}, "r_crm__opportunity__lines_1.parent_id = "
     "r_crm__opportunity.id", "r_crm__opportunity__lines_1.parent_id = r_crm__opportunity.id"),
    ({"field": "attachments", "op": "is_empty", "value": False}, "NOT (", "NOT ("),
    ({"field": "account.region", "op": "eq", "value": "广东省"},
     "->> %(region_1)s", "JSON_EXTRACT(r_crm__account_1.region, ?)"),
    ({"field": "close_date", "op": "date_range", "value": "this_month"},
     "close_date BETWEEN %(close_date_1)s", "close_date BETWEEN ? AND ?"),
    ({"field": "account.industry", "op": "under", "value": "制造业"}, "industry IN (",
     "industry IN ("),
    ({"field": "owner", "op": "in_department", "value": ["0190c0a0-2222-7000-8000-000000000001"]},
     "owner IN (SELECT user_departments.user_id \nFROM user_departments \nWHERE "
     "user_departments.department_id IN (__[POSTCOMPILE",
     "owner IN (SELECT user_departments.user_id \nFROM user_departments \nWHERE "
     "user_departments.department_id IN (__[POSTCOMPILE"),
])
def test_each_operator_compiles_on_both_dialects(opp, qctx, spec, pg, lite):
    assert pg in where_sql(spec, opp, qctx, "postgresql")[0]
    assert lite in where_sql(spec, opp, qctx, "sqlite")[0]


def test_in_department_takes_department_ids_on_user_fields_only(opp, qctx):
    east = "0190c0a0-2222-7000-8000-000000000001"
    _, params = where_sql({"field": "account.manager", "op": "in_department", "value": east},
                          opp, qctx, "postgresql")
    assert [uuid.UUID(east)] in params.values()  # one id alone is a list of one
    errors = errors_of({"and": [
        {"field": "owner", "op": "in_department", "value": ["east"]},
        {"field": "created_by", "op": "in_department", "value": []},
        {"field": "account", "op": "in_department", "value": [east]}]}, opp, qctx)
    assert [(e["code"], e["path"]) for e in errors] == [
        ("invalid_value", "$.and[0].value[0]"), ("invalid_value", "$.and[1].value"),
        ("operator_not_allowed", "$.and[2].op")]
    assert "expected a department id" in errors[0]["message"]


def test_every_operator_is_covered_by_a_compile_test():
    source = Path(__file__).read_text(encoding="utf-8")
    missing = [key for key in OPERATORS if f'"op": "{key}"' not in source]
    assert not missing


@pytest.mark.parametrize("dialect", DIALECTS)
def test_like_escapes_wildcards_and_backslash(opp, qctx, dialect):
    _, params = where_sql({"field": "title", "op": "contains", "value": "50%_off\\x"}, opp,
                          qctx, dialect)
    assert list(params.values()) == ["%50\\%\\_off\\\\x%"]
    _, params = where_sql({"field": "title", "op": "starts_with", "value": "a_"}, opp, qctx,
                          dialect)
    assert list(params.values()) == ["a\\_%"]
    _, params = where_sql({"field": "title", "op": "ends_with", "value": "%"}, opp, qctx,
                          dialect)
    assert list(params.values()) == ["%\\%"]


def test_under_expands_to_the_node_and_every_descendant(opp, qctx):
    _, params = where_sql({"field": "account.industry", "op": "under", "value": "制造业"},
                          opp, qctx, "postgresql")
    assert sorted(params["industry_1"]) == sorted(["制造业", "汽车零配件", "轮胎", "电子"])


def test_date_range_on_a_date_field_uses_local_days(opp, qctx):
    _, params = where_sql({"field": "close_date", "op": "date_range", "value": "this_week"},
                          opp, qctx, "sqlite")
    # 2026-03-18 is a Wednesday; ISO weeks start on Monday.
    assert list(params.values()) == [date(2026, 3, 16), date(2026, 3, 22)]


def test_date_range_on_a_datetime_field_converts_local_days_to_utc(opp, qctx):
    sql, params = where_sql({"field": "created_at", "op": "date_range", "value": "today"},
                            opp, qctx, "postgresql")
    assert "created_at >= %(created_at_1)s" in sql and "created_at < %(created_at_2)s" in sql
    # Shanghai is UTC+8: 2026-03-18 local = 03-17 16:00 … 03-18 16:00 UTC.
    assert list(params.values()) == [datetime(2026, 3, 17, 16, tzinfo=UTC),
                                     datetime(2026, 3, 18, 16, tzinfo=UTC)]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_date_range_takes_custom_dates_on_a_date_field(opp, qctx, dialect):
    where, params = where_sql({"field": "close_date", "op": "date_range",
                               "value": ["2026-01-01", "2026-03-31"]}, opp, qctx, dialect)
    assert "close_date BETWEEN" in where
    assert list(params.values()) == [date(2026, 1, 1), date(2026, 3, 31)]
    where, params = where_sql({"field": "close_date", "op": "date_range",
                               "value": ["2026-01-01", None]}, opp, qctx, dialect)
    assert "close_date >=" in where and "<" not in where
    assert list(params.values()) == [date(2026, 1, 1)]
    where, params = where_sql({"field": "close_date", "op": "date_range",
                               "value": [None, "2026-03-31"]}, opp, qctx, dialect)
    assert "close_date <=" in where and ">" not in where
    assert list(params.values()) == [date(2026, 3, 31)]


def test_date_range_custom_dates_on_a_datetime_field_are_local_days(opp, qctx):
    sql, params = where_sql({"field": "created_at", "op": "date_range",
                             "value": ["2026-01-01", "2026-03-31"]}, opp, qctx, "postgresql")
    assert "created_at >= %(created_at_1)s" in sql and "created_at < %(created_at_2)s" in sql
    # Local midnight of 1 January to local midnight starting 1 April, Shanghai.
    assert list(params.values()) == [datetime(2025, 12, 31, 16, tzinfo=UTC),
                                     datetime(2026, 3, 31, 16, tzinfo=UTC)]
    sql, params = where_sql({"field": "signed_at", "op": "date_range",
                             "value": [None, "2026-03-31"]}, opp, qctx, "postgresql")
    assert ">=" not in sql and list(params.values()) == [datetime(2026, 3, 31, 16, tzinfo=UTC)]
    # The first and last days an instant can hold: no bound overflows.
    sql, params = where_sql({"field": "signed_at", "op": "date_range",
                             "value": ["0001-01-01", "9999-12-31"]}, opp, qctx, "sqlite")
    assert "signed_at IS NOT NULL" in sql and params == {}


def test_system_fields_are_filterable(opp, qctx):
    user = "0190c0a0-2222-7000-8000-000000000002"
    spec = {"and": [{"field": "owner", "op": "eq", "value": user},
                    {"field": "id", "op": "in", "value": [user]},
                    {"field": "updated_at", "op": "gte", "value": "2026-01-01T00:00:00+08:00"}]}
    sql, params = where_sql(spec, opp, qctx, "postgresql")
    assert "owner =" in sql and "updated_at >=" in sql
    assert datetime(2025, 12, 31, 16, tzinfo=UTC) in params.values()


# --------------------------------------------------------------------------- groups and paths

@pytest.mark.parametrize("spec", [None, {}, {"and": []}, {"or": [{}, None]}, {"not": {}}])
def test_empty_filters_mean_no_condition(opp, qctx, spec):
    assert compile_filter(spec, tables=opp, qctx=qctx) is None
    assert validate_filter(spec, tables=opp, qctx=qctx) == []


def test_groups_nest_and_not_is_a_two_valued_complement(opp, qctx):
    spec = {"or": [{"field": "title", "op": "eq", "value": "a"},
                   {"not": {"and": [{"field": "amount", "op": "gt", "value": 1},
                                    {"field": "stage", "op": "eq", "value": "won"}]}}]}
    sql, _ = where_sql(spec, opp, qctx, "postgresql")
    assert " OR (r_crm__opportunity.amount > %(amount_1)s AND " in sql
    assert ") IS NOT true" in sql
    sql, _ = where_sql(spec, opp, qctx, "sqlite")
    assert ") IS NOT 1" in sql


@pytest.mark.parametrize("dialect", DIALECTS)
def test_relation_paths_compile_to_in_subqueries_without_joins(opp, qctx, dialect):
    sql, params = where_sql({"field": "account.country.name", "op": "eq", "value": "中国"},
                            opp, qctx, dialect)
    assert "JOIN" not in sql
    assert sql.count("IN (SELECT") == 2
    assert sql.count("deleted_at IS NULL") == 2  # deleted targets do not match
    assert "r_crm__opportunity.account IN (SELECT r_crm__account_1.id" in sql
    assert "r_crm__account_1.country IN (SELECT r_crm__country_1.id" in sql
    assert "中国" in params.values()


def test_self_relations_are_aliased(opp, qctx):
    sql, _ = where_sql({"field": "account.parent.name", "op": "eq", "value": "x"}, opp, qctx,
                       "postgresql")
    assert "FROM r_crm__account AS r_crm__account_1" in sql
    assert "r_crm__account_1.parent IN (SELECT r_crm__account_2.id" in sql


def test_negative_operators_through_relations_match_broken_links(opp, qctx):
    sql, _ = where_sql({"field": "account.name", "op": "ne", "value": "x"}, opp, qctx,
                       "postgresql")
    # true for an empty link too; excluded are the live accounts where eq holds
    assert sql.startswith(" NOT (EXISTS (SELECT *")
    assert ("WHERE r_crm__account_1.id = r_crm__opportunity.account AND "
            "r_crm__account_1.deleted_at IS NULL AND (r_crm__account_1.name IS NULL OR "
            "r_crm__account_1.name != %(name_1)s::VARCHAR) IS NOT true))") in sql


# --------------------------------------------------------------------------- errors

def test_unknown_field_lists_the_first_ten_fields_and_a_suggestion(opp, qctx):
    [error] = errors_of({"field": "amout", "op": "gt", "value": 1}, opp, qctx)
    assert error["code"] == "unknown_field" and error["path"] == "$.field"
    assert "did you mean 'amount'" in error["message"]
    assert "title, notes, amount, probability, is_key, stage, labels, close_date, " \
           "signed_at, account, …" in error["message"]


def test_wrong_operator_for_the_type_names_the_allowed_ones(opp, qctx):
    [error] = errors_of({"and": [{"field": "title", "op": "eq", "value": "a"},
                                 {"field": "amount", "op": "contains", "value": "5"}]},
                        opp, qctx)
    assert error["code"] == "operator_not_allowed" and error["path"] == "$.and[1].op"
    assert "allowed: eq, ne, lt, lte, gt, gte, between, in, not_in, is_empty" in \
        error["message"]


def test_formula_fields_accept_only_operators_of_their_result_type(opp, qctx):
    [error] = errors_of({"field": "weighted", "op": "contains", "value": "1"}, opp, qctx)
    assert error["code"] == "operator_not_allowed"
    assert compile_filter({"field": "weighted", "op": "gte", "value": "1.5"}, tables=opp,
                          qctx=qctx) is not None


@pytest.mark.parametrize(("spec", "path", "fragment"), [
    ({"and": [{"field": "title", "op": "eq", "value": "a"},
              {"field": "amount", "op": "gte", "value": "abc"}]},
     "$.and[1].value", "'abc' is not a valid value: expected a number (field 'amount'"),
    ({"field": "close_date", "op": "eq", "value": "31/02/2026"}, "$.value", "expected a date"),
    ({"field": "signed_at", "op": "gt", "value": "2026-01-01T10:00:00"}, "$.value",
     "with time zone"),
    ({"field": "account", "op": "eq", "value": "not-a-uuid"}, "$.value", "a record id"),
    ({"field": "products", "op": "contains_any", "value": ["0190c0a0-1111-7000-8000-00000000"
                                                              "0001", "nope"]},
     "$.value[1]", "'nope' is not a valid value: expected a record id"),
    ({"field": "stage", "op": "in", "value": ["won", "lost", {"x": 1}]}, "$.value[2]",
     "single value"),
    ({"field": "stage", "op": "in", "value": ["won", 5]}, "$.value[1]", "expected a text"),
    ({"field": "stage", "op": "in", "value": "won"}, "$.value", "must be a list"),
    ({"field": "stage", "op": "in", "value": []}, "$.value", "at least one"),
    ({"field": "amount", "op": "between", "value": [5]}, "$.value", "two values"),
    ({"field": "amount", "op": "between", "value": [9, 5]}, "$.value", "greater than"),
    ({"field": "amount", "op": "eq", "value": None}, "$.value", "is_empty"),
    ({"field": "amount", "op": "is_empty", "value": "yes"}, "$.value", "true or false"),
    ({"field": "close_date", "op": "date_range", "value": "this_decade"}, "$.value",
     "unknown date range 'this_decade'"),
    ({"field": "close_date", "op": "date_range", "value": {"last_n_days": 0}}, "$.value",
     "from 1 to 3660"),
    ({"field": "close_date", "op": "date_range", "value": ["2026-03-31", "2026-01-01"]},
     "$.value", "the range starts 2026-03-31 after it ends 2026-01-01"),
    ({"field": "close_date", "op": "date_range", "value": ["2026-01-01"]}, "$.value",
     "a list of two items [from, to]"),
    ({"field": "close_date", "op": "date_range", "value": ["2026-01-01", "31.03.2026"]},
     "$.value[1]", "'31.03.2026' is not a date: to is a date YYYY-MM-DD"),
    ({"field": "signed_at", "op": "date_range", "value": ["2026-02-30", None]}, "$.value[0]",
     "'2026-02-30' is not a date: from is"),
    ({"field": "signed_at", "op": "date_range", "value": ["2026-01-01T00:00:00+08:00", None]},
     "$.value[0]", "is not a date"),
    ({"field": "close_date", "op": "date_range", "value": [None, None]}, "$.value",
     "[null, null] names no days"),
    ({"field": "close_date", "op": "date_range", "value": 20260101}, "$.value",
     "or custom dates [from, to]"),
    ({"field": "account.industry", "op": "under", "value": "农业"}, "$.value",
     "'农业' is not a valid value: expected one of the options: 制造业"),
    # A value no record can hold is an error, not an empty list
    ({"field": "stage", "op": "eq", "value": "nope"}, "$.value",
     "'nope' is not a valid value: expected one of the options: "),
    ({"field": "labels", "op": "contains_any", "value": ["hot", "warm"]}, "$.value[1]",
     "'warm' is not a valid value: expected one of the options: hot, cold, vip"),
    ({"field": "amount", "op": "gte", "value": "1e999999"}, "$.value",
     "expected a number with at most"),
    ({"field": "amount", "op": "eq", "value": 1e308}, "$.value", "expected a number with at most"),
    ({"field": "amount", "op": "eq", "value": "١"}, "$.value", "expected a number"),
    ({"field": "signed_at", "op": "gt", "value": "9999-12-31T23:59:59-12:00"}, "$.value",
     "between the years 1 and 9999"),
    ({"field": "title", "op": "eq", "value": "a\x00b"}, "$.value", "without NUL"),
    ({"field": "title", "op": "eq", "value": 123}, "$.value", "expected a text"),
    ({"field": "title", "op": "contains", "value": "  "}, "$.value", "non-empty text"),
])
def test_bad_values_name_the_path_and_the_field(opp, qctx, spec, path, fragment):
    errors = errors_of(spec, opp, qctx)
    assert [e["path"] for e in errors][0] == path
    assert fragment in errors[0]["message"]
    assert errors[0]["code"] == "invalid_value"


def test_every_bad_list_item_is_reported(opp, qctx):
    errors = errors_of({"field": "amount", "op": "in", "value": ["1", "x", "2", "y"]}, opp,
                       qctx)
    assert [e["path"] for e in errors] == ["$.value[1]", "$.value[3]"]


@pytest.mark.parametrize(("field", "kind"), [("title.x", "text"), ("account.manager.name", "user"),
                                            ("products.name", "multi_relation"),
                                            ("id.name", "system"),
                                            ("owner.name", "system")])
def test_paths_follow_only_relation_fields(opp, qctx, field, kind):
    [error] = errors_of({"field": field, "op": "eq", "value": "a"}, opp, qctx)
    assert error["code"] == "not_a_relation" and error["path"] == "$.field"
    assert f"a {kind} field" in error["message"]


def test_unknown_field_at_the_end_of_a_path_names_the_target_form(opp, qctx):
    [error] = errors_of({"field": "account.country.nmae", "op": "eq", "value": "a"}, opp, qctx)
    assert "unknown field 'nmae' in form 'country'" in error["message"]


def test_unresolvable_target_form_is_an_error(crm, opp):
    broken = QueryContext(resolve=lambda key: {}[key], today=date(2026, 1, 1),
                          timezone="UTC", now=datetime(2026, 1, 1, tzinfo=UTC))
    [error] = errors_of({"field": "account.name", "op": "eq", "value": "a"}, opp, broken)
    assert error["code"] == "form_not_found"


def nested(depth: int) -> dict[str, Any]:
    spec: dict[str, Any] = {"field": "title", "op": "eq", "value": "a"}
    for _ in range(depth - 1):
        spec = {"and": [spec]}
    return spec


def test_depth_limit(opp, qctx):
    assert compile_filter(nested(10), tables=opp, qctx=qctx) is not None
    [error] = errors_of(nested(11), opp, qctx)
    assert error["code"] == "too_deep"
    assert error["path"] == "$" + ".and[0]" * 10


def test_condition_count_limit(opp, qctx):
    cond = {"field": "title", "op": "eq", "value": "a"}
    assert compile_filter({"or": [cond] * 200}, tables=opp, qctx=qctx) is not None
    [error] = errors_of({"or": [cond] * 201}, opp, qctx)
    assert error["code"] == "too_many_conditions" and error["path"] == "$.or[200]"


def test_list_and_text_size_limits(opp, qctx):
    [error] = errors_of({"field": "probability", "op": "in", "value": list(range(1001))}, opp,
                        qctx)
    assert error["code"] == "too_many_values" and error["path"] == "$.value"
    [error] = errors_of({"field": "title", "op": "in", "value": ["a", "x" * 1001]}, opp, qctx)
    assert error["code"] == "value_too_long" and error["path"] == "$.value[1]"
    assert compile_filter({"field": "title", "op": "eq", "value": "x" * 1000}, tables=opp,
                          qctx=qctx) is not None


def test_every_problem_is_reported_at_once(opp, qctx):
    spec = {"and": [
        {"field": "nope", "op": "eq", "value": 1},
        {"field": "amount", "op": "likes", "value": 1},
        {"field": "amount", "op": "gte", "value": "x"},
        {"field": "title", "operator": "eq", "value": "a"},
        {"or": "not a list"},
        {"and": [], "or": []},
        "text",
        {"not": {"field": "title.x", "op": "eq", "value": "a"}},
    ]}
    errors = errors_of(spec, opp, qctx)
    assert [(e["code"], e["path"]) for e in errors] == [
        ("unknown_field", "$.and[0].field"),
        ("unknown_operator", "$.and[1].op"),
        ("invalid_value", "$.and[2].value"),
        ("invalid_node", "$.and[3]"),
        ("unknown_operator", "$.and[3].op"),
        ("invalid_node", "$.and[4].or"),
        ("invalid_node", "$.and[5]"),
        ("invalid_node", "$.and[6]"),
        ("not_a_relation", "$.and[7].not.field"),
    ]


def test_filter_errors_render_for_the_api(opp, qctx):
    with pytest.raises(FilterInvalid) as info:
        compile_filter({"field": "amout", "op": "eq", "value": 1}, tables=opp, qctx=qctx)
    body = info.value.as_dict()
    assert body["code"] == "filter_invalid"
    assert body["errors"][0]["path"] == "$.field"
    assert "amout" in body["message"]


# --------------------------------------------------------------------------- list queries

def list_sql(q: ListQuery, opp: FormTables, qctx: QueryContext, dialect: str
             ) -> tuple[str, dict[str, Any]]:
    stmt, _ = build_select(q, tables=opp, qctx=qctx)
    c = stmt.compile(dialect=DIALECTS[dialect])
    return str(c), dict(c.params)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sort_puts_empty_values_last_in_both_directions_with_an_id_tie_breaker(opp, qctx,
                                                                                dialect):
    sql, params = list_sql(ListQuery(sort=["-amount", "title"], limit=20), opp, qctx, dialect)
    assert ("ORDER BY r_crm__opportunity.amount DESC NULLS LAST, "
            "r_crm__opportunity.title ASC NULLS LAST, r_crm__opportunity.id ASC") in sql
    assert "r_crm__opportunity.deleted_at IS NULL" in sql
    assert 21 in params.values()  # limit + 1: tells whether there is a next page


def test_default_sort_is_newest_id_first(opp, qctx):
    sql, params = list_sql(ListQuery(), opp, qctx, "sqlite")
    assert sql.endswith("ORDER BY r_crm__opportunity.id DESC\n LIMIT ? OFFSET ?")
    assert list(params.values()) == [51, 0]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_sort_by_a_relation_path_uses_a_correlated_scalar_subquery(opp, qctx, dialect):
    sql, _ = list_sql(ListQuery(sort=["account.country.name"]), opp, qctx, dialect)
    assert "JOIN" not in sql
    assert "WHERE r_crm__account_1.id = r_crm__opportunity.account" in sql
    assert "WHERE r_crm__country_1.id = r_crm__account_1.country" in sql
    assert "AS _sort_0" in sql


def test_selected_columns_are_requested_fields_plus_system_fields(opp, qctx):
    stmt, _ = build_select(ListQuery(fields=["amount", "lines"], sort=["title"]), tables=opp,
                           qctx=qctx)
    assert [c.name for c in stmt.selected_columns] == [
        "id", "created_at", "created_by", "updated_at", "updated_by", "owner", "version",
        "deleted_at", "amount", "title"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_search_every_word_in_any_search_field(opp, qctx, dialect):
    sql, params = list_sql(ListQuery(search="汽车  50%\u3000华东"), opp, qctx, dialect)
    assert sorted(params.values(), key=str)[:3] == ["%50\\%%", "%50\\%%", "%华东%"]
    assert sum(v == "%汽车%" for v in params.values()) == 2  # title and notes
    assert sql.count(" OR ") >= 3


def test_search_falls_back_to_the_title_field(crm, qctx):
    sql, params = list_sql(ListQuery(search="abc"), crm["account"], qctx, "postgresql")
    assert "r_crm__account.name ILIKE" in sql and "%abc%" in params.values()


def test_recycle_bin_lists_only_deleted_rows(opp, qctx):
    sql, _ = list_sql(ListQuery(deleted=True), opp, qctx, "sqlite")
    assert "r_crm__opportunity.deleted_at IS NOT NULL" in sql


def test_scope_is_anded_in(opp, qctx):
    scope = opp.table.c.owner == uuid.UUID(int=7)
    stmt, _ = build_select(ListQuery(), tables=opp, qctx=qctx, scope=scope)
    assert "r_crm__opportunity.owner = ?" in str(stmt.compile(dialect=DIALECTS["sqlite"]))


def test_count_has_the_same_conditions_but_no_order_or_limit(opp, qctx):
    q = ListQuery(filter={"field": "amount", "op": "gt", "value": 1}, search="x", limit=10)
    sql = str(build_count(q, tables=opp, qctx=qctx).compile(dialect=DIALECTS["postgresql"]))
    assert sql.startswith("SELECT count(*) AS count_1 \nFROM r_crm__opportunity")
    assert "amount >" in sql and "ILIKE" in sql and "deleted_at IS NULL" in sql
    assert "ORDER BY" not in sql and "LIMIT" not in sql


@pytest.mark.parametrize(("q", "code", "field"), [
    (ListQuery(sort=["amout"]), "unknown_field", "sort"),
    (ListQuery(sort=["notes"]), "invalid_sort", "sort"),
    (ListQuery(sort=["labels"]), "invalid_sort", "sort"),
    (ListQuery(sort=["title", "-title"]), "invalid_sort", "sort"),
    (ListQuery(sort=["title.x"]), "not_a_relation", "sort"),
    (ListQuery(sort="title"), "invalid_sort", "sort"),  # type: ignore[arg-type]
    (ListQuery(sort=["--amount"]), "invalid_sort", "sort"),  # one "-" only
    (ListQuery(sort=["-"]), "invalid_sort", "sort"),
    (ListQuery(search="\x00"), "invalid_search", "search"),  # would match every record
    (ListQuery(search="a\nb"), "invalid_search", "search"),
    (ListQuery(limit=0), "invalid_limit", "limit"),
    (ListQuery(limit=501), "invalid_limit", "limit"),
    (ListQuery(fields=["nope"]), "unknown_field", "fields"),
])
def test_bad_list_queries_are_refused(opp, qctx, q, code, field):
    with pytest.raises(QueryInvalid) as info:
        build_select(q, tables=opp, qctx=qctx)
    assert info.value.code == "query_invalid"
    assert (info.value.errors[0].code, info.value.errors[0].field) == (code, field)


@pytest.mark.parametrize(("text", "code"), [
    ("{not json", "invalid_json"), ("[]", "invalid_node"), ('"x"', "invalid_node"),
    ("123", "invalid_node"), ("null", "invalid_node"), ("[" * 100_000, "invalid_json"),
])
def test_a_filter_sent_as_json_text_must_be_an_object(text, code):
    with pytest.raises(FilterInvalid) as info:
        parse_filter(text)
    assert info.value.code == "filter_invalid"
    assert [(e.code, e.field, e.path) for e in info.value.errors] == [(code, "filter", "$")]
    assert parse_filter('{"field": "stage", "op": "eq", "value": "won"}') == {
        "field": "stage", "op": "eq", "value": "won"}
    assert parse_filter(None) is None and parse_filter("") is None


def test_filter_problems_in_a_list_query_keep_their_filter_paths(opp, qctx):
    q = ListQuery(filter={"and": [{"field": "x", "op": "eq", "value": 1}]}, sort=["nope"])
    with pytest.raises(FilterInvalid) as info:
        build_select(q, tables=opp, qctx=qctx)
    assert [(e.field, e.path) for e in info.value.errors] == [("filter", "$.and[0].field"),
                                                              ("sort", "$[0]")]


# --------------------------------------------------------------------------- cursors

def row_for(opp: FormTables, **values: Any) -> dict[str, Any]:
    base = {c.name: None for c in opp.table.c}
    base.update(values)
    return base


def test_cursor_round_trip_builds_the_keyset_condition(opp, qctx):
    q = ListQuery(sort=["-amount", "close_date"])
    _, cursor_of = build_select(q, tables=opp, qctx=qctx)
    last = uuid.UUID("0190c0a0-3333-7000-8000-000000000003")
    token = cursor_of(row_for(opp, id=last, amount=Decimal("12.50"), close_date=None))
    assert "=" not in token
    stmt, _ = build_select(ListQuery(sort=q.sort, after=token), tables=opp, qctx=qctx)
    c = stmt.compile(dialect=DIALECTS["postgresql"])
    sql, params = str(c), c.params
    # descending amount, empty close_date (sorts last), then the id tie-breaker
    assert ("(r_crm__opportunity.amount < %(param_1)s OR r_crm__opportunity.amount IS NULL "
            "OR r_crm__opportunity.amount = %(param_1)s AND r_crm__opportunity.close_date "
            "IS NULL AND r_crm__opportunity.id > %(param_2)s::UUID)") in sql
    assert params["param_1"] == Decimal("12.50") and params["param_2"] == last


def tamper(token: str, change: Any) -> str:
    payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    change(payload)
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-3] + "!!!",
    lambda t: "bm90IGpzb24",  # "not json"
    lambda t: base64.urlsafe_b64encode(b"[1, 2]").decode(),
    lambda t: tamper(t, lambda p: p["v"].pop()),
    lambda t: tamper(t, lambda p: p["v"].__setitem__(0, "lots")),
    lambda t: tamper(t, lambda p: p["v"].__setitem__(0, 12)),
    lambda t: tamper(t, lambda p: p["v"].__setitem__(1, "2026-13-45")),
    lambda t: tamper(t, lambda p: p["v"].__setitem__(2, None)),
    lambda t: tamper(t, lambda p: p["v"].__setitem__(2, "0190c0a0-zzzz")),
    lambda t: tamper(t, lambda p: p.__setitem__("s", ["-id"])),
    lambda t: tamper(t, lambda p: p.__setitem__("x", 1)),
])
def test_tampered_cursors_are_refused(opp, qctx, mangle):
    q = ListQuery(sort=["-amount", "close_date"])
    _, cursor_of = build_select(q, tables=opp, qctx=qctx)
    token = cursor_of(row_for(opp, id=uuid.UUID(int=5), amount=Decimal("1.00"),
                              close_date=date(2026, 1, 1)))
    with pytest.raises(CursorInvalid) as info:
        build_select(ListQuery(sort=q.sort, after=mangle(token)), tables=opp, qctx=qctx)
    assert info.value.code == "cursor_invalid"
    assert info.value.errors[0].field == "after"


def test_a_cursor_belongs_to_its_sort(opp, qctx):
    _, cursor_of = build_select(ListQuery(sort=["title"]), tables=opp, qctx=qctx)
    token = cursor_of(row_for(opp, id=uuid.UUID(int=5), title="a"))
    with pytest.raises(CursorInvalid, match="another sort"):
        build_select(ListQuery(sort=["-title"], after=token), tables=opp, qctx=qctx)


# --------------------------------------------------------------------------- registries

@pytest.mark.parametrize(("spec", "today", "expected"), [
    ("today", date(2026, 1, 1), (date(2026, 1, 1), date(2026, 1, 1))),
    ("yesterday", date(2026, 1, 1), (date(2025, 12, 31), date(2025, 12, 31))),
    ("tomorrow", date(2024, 2, 28), (date(2024, 2, 29), date(2024, 2, 29))),
    ("this_week", date(2026, 1, 4), (date(2025, 12, 29), date(2026, 1, 4))),  # a Sunday
    ("this_week", date(2026, 1, 5), (date(2026, 1, 5), date(2026, 1, 11))),  # a Monday
    ("last_week", date(2026, 1, 1), (date(2025, 12, 22), date(2025, 12, 28))),
    ("next_week", date(2025, 12, 31), (date(2026, 1, 5), date(2026, 1, 11))),
    ("this_month", date(2024, 2, 10), (date(2024, 2, 1), date(2024, 2, 29))),
    ("last_month", date(2026, 1, 15), (date(2025, 12, 1), date(2025, 12, 31))),
    ("last_month", date(2026, 3, 31), (date(2026, 2, 1), date(2026, 2, 28))),
    ("next_month", date(2025, 12, 31), (date(2026, 1, 1), date(2026, 1, 31))),
    ("this_quarter", date(2026, 5, 20), (date(2026, 4, 1), date(2026, 6, 30))),
    ("this_quarter", date(2026, 12, 31), (date(2026, 10, 1), date(2026, 12, 31))),
    ("last_quarter", date(2026, 2, 1), (date(2025, 10, 1), date(2025, 12, 31))),
    ("this_year", date(2026, 7, 1), (date(2026, 1, 1), date(2026, 12, 31))),
    ("last_year", date(2026, 1, 1), (date(2025, 1, 1), date(2025, 12, 31))),
    ({"last_n_days": 7}, date(2026, 3, 3), (date(2026, 2, 25), date(2026, 3, 3))),
    ({"last_n_days": 1}, date(2026, 3, 3), (date(2026, 3, 3), date(2026, 3, 3))),
    ({"next_n_days": 14}, date(2026, 12, 25), (date(2026, 12, 25), date(2027, 1, 7))),
])
def test_date_ranges(spec, today, expected):
    days = resolve_date_range(spec, today=today)
    assert (days.start, days.end) == expected


def test_every_date_range_is_tested():
    source = Path(__file__).read_text(encoding="utf-8")
    assert [k for k in DATE_RANGES if f'"{k}"' not in source] == []


def test_operator_catalog_is_json_and_lists_the_field_types():
    catalog = operator_catalog()
    json.dumps(catalog, ensure_ascii=False)
    by_key = {entry["key"]: entry for entry in catalog}
    assert list(by_key) == list(OPERATORS)
    assert "tree_select" in by_key["under"]["field_types"]
    assert {"multi_select", "tags", "multi_relation"} <= set(
        by_key["contains_all"]["field_types"])
    assert by_key["between"]["value_shape"] == "pair"
    assert by_key["date_range"]["label"] == {"zh": "日期范围", "en": "in date range"}
    assert [r["key"] for r in by_key["date_range"]["ranges"]] == list(DATE_RANGES)
    assert by_key["date_range"]["value_forms"] == ["range", "from_to"]
