"""Every field type's validation, valid and invalid, through the compiled
validator (no database): the cases a user would type."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest

from tangram.engines.expressions import EvalContext
from tangram.engines.forms.validation import compile_validator
from tangram.errors import DefinitionInvalid
from tangram.metamodel.forms import Form
from tests.factories import field, form_body

CTX = EvalContext(now=datetime(2026, 3, 1, 2, 0, tzinfo=UTC), timezone="Asia/Shanghai")

OPTIONS = [{"value": "a", "label": {"en": "A"}}, {"value": "b", "label": {"en": "B"}}]
TREE = [{"value": "mfg", "label": {"zh": "制造业"},
         "children": [{"value": "auto_parts", "label": {"zh": "汽车零配件"}}]},
        {"value": "it", "label": {"zh": "信息技术"}}]

# (field definition, valid inputs with expected stored value, invalid inputs with error code)
CASES: list[tuple[dict[str, Any], list[tuple[Any, Any]], list[tuple[Any, str]]]] = [
    (field("v", "text", max_length=5, min_length=2),
     [("ab", "ab"), ("  abc ", "abc"), ("a\tb", "a\tb")],
     # texts only (no number for a text), one line, no NUL
     [("a", "min_length"), ("abcdef", "max_length"), ([1], "type"), (123, "type"),
      ("a\nb", "type"), ("a\x00b", "type"), ("a\rb", "type")]),
    (field("v", "text", pattern=r"[A-Z]{2}\d+"),
     [("AB12", "AB12")], [("ab12", "pattern")]),
    (field("v", "long_text", max_length=10), [("line\nline", "line\nline")],
     [("x" * 11, "max_length"), (5, "type"), ("a\x00", "type")]),
    (field("v", "rich_text"),
     [("<p>hi <script>alert(1)</script><b onclick='x'>b</b></p>", "<p>hi <b>b</b></p>"),
      ('<a href="javascript:alert(1)">x</a>', "<a>x</a>")], [(True, "type")]),
    (field("v", "integer", min=1, max=10),
     [(5, 5), ("7", 7), ("3.0", 3)], [(0, "min"), (11, "max"), ("2.5", "type"),
                                      (True, "type"), ("abc", "type")]),
    (field("v", "decimal", precision=6, scale=2, min=0),
     [("12.5", Decimal("12.5")), (3, Decimal(3)), (0.1, Decimal("0.1"))],
     [("1.234", "scale"), ("12345.6", "precision"), ("-1", "min"), ("NaN", "type"),
      ("x", "type")]),
    (field("v", "currency"), [("500000.00", Decimal("500000.00"))], [("5e", "type")]),
    (field("v", "percent", max=100), [("12.5", Decimal("12.5"))], [("100.5", "max")]),
    (field("v", "boolean"), [(True, True), ("是", True), ("false", False), (0, False)],
     [("maybe", "type"), (2, "type")]),
    (field("v", "date", min="2020-01-01"),
     [("2026-01-31", date(2026, 1, 31)), ("2026/02/03", date(2026, 2, 3))],
     [("2026-02-30", "type"), ("2019-12-31", "min"), (20260101, "type")]),
    (field("v", "datetime"),
     [("2026-01-31T08:00:00Z", datetime(2026, 1, 31, 8, tzinfo=UTC)),
      ("2026-01-31T16:00:00+08:00", datetime(2026, 1, 31, 8, tzinfo=UTC))],
     [("2026-01-31T08:00:00", "type"), ("yesterday", "type")]),
    (field("v", "time"), [("09:30", time(9, 30))], [("25:00", "type")]),
    (field("v", "select", options=OPTIONS), [("a", "a")], [("c", "option"), (1, "type")]),
    (field("v", "multi_select", options=OPTIONS, max_items=1),
     [(["a"], ["a"]), ("b", ["b"]), (["a", "a"], ["a"])],
     [(["a", "b"], "max_items"), (["z"], "option"), ([1], "type")]),
    (field("v", "tree_select", options=TREE, leaf_only=True),
     [("auto_parts", "auto_parts"), ("it", "it")], [("mfg", "option"), ("x", "option")]),
    (field("v", "tags", max_items=3, max_tag_length=4),
     [(["vip", "big"], ["vip", "big"]), ("a,b，c", ["a", "b", "c"])],
     [(["a", "b", "c", "d"], "max_items"), (["toolong"], "tag_length")]),
    (field("v", "email"), [("Zhang.San@Example.com", "zhang.san@example.com")],
     [("not-an-email", "email"), ("a@b", "email")]),
    # Mainland mobiles are stored as their 11 digits, whatever the prefix and spacing
    (field("v", "phone"), [("13812345678", "13812345678"), ("+86 138 1234 5678", "13812345678"),
                           ("8613812345678", "13812345678"), ("138-1234-5678", "13812345678"),
                           ("0086 13812345678", "13812345678")],
     [("12812345678", "phone"), ("1381234567", "phone"), ("+1 555 0100", "phone")]),
    (field("v", "phone", preset="e164"), [("+86 138 1234 5678", "+8613812345678")],
     [("13812345678", "phone")]),
    (field("v", "phone", preset="cn_landline"), [("010-12345678", "010-12345678")],
     [("13812345678", "phone")]),
    (field("v", "url"), [("https://example.com/x?y=1", "https://example.com/x?y=1")],
     [("ftp://x", "url"), ("javascript:alert(1)", "url")]),
    (field("v", "region", levels=2),
     [({"province": "广东省", "city": "深圳市"}, {"province": "广东省", "city": "深圳市"}),
      ("广东省/深圳市/南山区", {"province": "广东省", "city": "深圳市", "district": "南山区"}),
      # spreadsheet short names become the official full names
      ("广东/深圳/南山", {"province": "广东省", "city": "深圳市", "district": "南山区"}),
      ({"province": "内蒙古", "city": "呼和浩特"},
       {"province": "内蒙古自治区", "city": "呼和浩特市"}),
      ({"province": "北京市", "city": "北京市", "district": "海淀区"},
       {"province": "北京市", "city": "北京市", "district": "海淀区"}),
      # a city without districts (东莞) takes any district text
      ({"province": "广东省", "city": "东莞市", "district": "松山湖"},
       {"province": "广东省", "city": "东莞市", "district": "松山湖"})],
     [({"province": "火星省", "city": "x"}, "region"), ({"province": "广东省"}, "region_levels"),
      ({"province": "广东省", "city": "杭州市"}, "region_city"),
      ({"province": "广东省", "city": "深圳市", "district": "海淀区"}, "region_district"),
      ({"planet": "x"}, "type")]),
    (field("v", "relation", target="other"),
     [("018f0000-0000-7000-8000-000000000001", "uuid")], [("nope", "type")]),
    (field("v", "user"), [("018f0000-0000-7000-8000-000000000001", "uuid")], [(5, "type")]),
    (field("v", "attachment", max_files=1),
     [("018f0000-0000-7000-8000-000000000001", "uuid-list")],
     [(["018f0000-0000-7000-8000-000000000001", "018f0000-0000-7000-8000-000000000002"],
       "max_items"), (["x"], "type")]),
]


def _validator(*fields: dict[str, Any], **options: Any):
    return compile_validator(Form.model_validate(form_body("t", *fields, **options)))


def _validate(v, data, old=None):
    return v.validate(data, old=old, user={"id": None}, eval_context=CTX, language="en")


@pytest.mark.parametrize("definition,valid,invalid", CASES,
                         ids=[f"{c[0]['type']}-{i}" for i, c in enumerate(CASES)])
def test_field_type(definition, valid, invalid):
    v = _validator(definition)
    for raw, expected in valid:
        out = _validate(v, {"v": raw})
        assert out.errors == [], (raw, out.errors)
        if expected == "uuid":
            assert str(out.values["v"]) == raw
        elif expected == "uuid-list":
            assert [str(x) for x in out.values["v"]] == [raw]
        else:
            assert out.values["v"] == expected
    for raw, code in invalid:
        out = _validate(v, {"v": raw})
        assert [(e.field, e.code) for e in out.errors] == [("v", code)], (raw, out.errors)
        assert out.errors[0].message  # a sentence, not just a code


def test_every_error_at_once_and_localized():
    v = _validator(field("name", required=True), field("age", "integer", max=150),
                   field("email", "email"), field("phone", "phone", unique=True))
    out = _validate(v, {"age": 200, "email": "x", "phone": "1", "bogus": 1})
    assert sorted((e.field, e.code) for e in out.errors) == [
        ("age", "max"), ("bogus", "unknown_field"), ("email", "email"), ("name", "required"),
        ("phone", "phone")]
    zh = v.validate({}, old=None, user={}, eval_context=CTX, language="zh").errors
    assert zh[0].message == "name为必填项"


def test_required_and_visibility_conditions():
    v = _validator(field("status", "select", options=[
        {"value": "won", "label": {"en": "Won"}}, {"value": "lost", "label": {"en": "Lost"}}]),
        field("lost_reason", required_when="record.status == 'lost'",
              visible_when="record.status == 'lost'"))
    assert [e.code for e in _validate(v, {"status": "lost"}).errors] == ["required"]
    assert _validate(v, {"status": "lost", "lost_reason": "price"}).errors == []
    assert [e.code for e in _validate(v, {"status": "won", "lost_reason": "x"}).errors] == \
        ["hidden"]
    # A value that became hidden through an update is cleared, not kept.
    out = _validate(v, {"status": "won"}, old={"status": "lost", "lost_reason": "price"})
    assert out.errors == [] and out.values["lost_reason"] is None


def test_defaults_formulas_and_rules():
    v = _validator(
        field("qty", "integer", default=1),
        field("price", "decimal", scale=2),
        field("discount", "percent", default_expr="10"),
        field("total", "formula", expression="record.qty * record.price * "
              "(100 - record.discount) / 100", result_type="decimal", scale=2),
        field("due", "date", default_expr="add_days(today(), 30)"),
        rules=[{"assert": "record.total < 1000", "message": {"en": "too big", "zh": "太大"},
                "fields": ["price"]}])
    out = _validate(v, {"price": "19.99"})
    assert out.errors == []
    assert out.values["total"] == Decimal("17.99")  # 1 * 19.99 * 0.9 rounded to 2 places
    assert out.values["due"] == date(2026, 3, 31)  # today in Asia/Shanghai is 2026-03-01
    errors = _validate(v, {"price": "999", "qty": 2}).errors
    assert [(e.field, e.code, e.message) for e in errors] == [("price", "rule", "too big")]


def test_read_only_and_computed_fields_refused_from_clients():
    v = _validator(field("code", "autonumber", pattern="C{seq:3}"), field("x", read_only=True),
                   field("n", "formula", expression="1", result_type="integer"))
    errors = _validate(v, {"code": "C001", "x": "a", "n": 2}).errors
    assert sorted((e.field, e.code) for e in errors) == [
        ("code", "read_only"), ("n", "read_only"), ("x", "read_only")]
    assert v.validate({"x": "a"}, old=None, user={}, eval_context=CTX,
                      allow_read_only=True).errors == []


def test_sub_table_rows_validated_by_index_with_formulas_and_rollup():
    v = _validator(field("lines", "sub_table", min_rows=1, fields=[
        field("product", required=True), field("qty", "integer", min=1),
        field("price", "decimal"),
        field("subtotal", "formula", expression="row.qty * row.price", result_type="decimal")],
        rules=[{"assert": "row.qty < 100", "message": {"en": "ask for a bulk quote"},
                "fields": ["qty"]}]))
    out = _validate(v, {"lines": [{"product": "A", "qty": 2, "price": "3.50"},
                                  {"qty": 0, "price": "x"}, {"product": "C", "qty": 150}]})
    assert sorted((e.field, e.code) for e in out.errors) == [
        ("lines[1].price", "type"), ("lines[1].product", "required"), ("lines[1].qty", "min"),
        ("lines[2].qty", "rule")]
    ok = _validate(v, {"lines": [{"product": "A", "qty": 2, "price": "3.50",
                                  "subtotal": "999"}]})
    assert ok.errors == [] and ok.values["lines"][0]["subtotal"] == Decimal("7.00")
    assert [e.code for e in _validate(v, {"lines": []}).errors] == ["min_rows"]


def test_bad_expressions_are_definition_errors_with_paths():
    with pytest.raises(DefinitionInvalid) as info:
        _validator(field("a", default_expr="record.__class__"),
                   field("b", "formula", expression="1 +", result_type="integer"),
                   rules=[{"assert": "__import__('os')", "message": {"en": "x"}}])
    paths = sorted(e.path for e in info.value.errors)
    assert paths == ["$.fields[0].default_expr", "$.fields[1].expression", "$.rules[0].assert"]


def test_formula_cycle_is_refused():
    with pytest.raises(DefinitionInvalid) as info:
        _validator(field("a", "formula", expression="record.b + 1", result_type="integer"),
                   field("b", "formula", expression="record.a + 1", result_type="integer"))
    assert info.value.errors[0].code == "formula_cycle"
