"""Messages that say what failed and where: a form rule that cannot be
evaluated is named, a refused value is not also "missing", the summary of a
failed save is in the caller's language, and expressions explain why a
number or a long sum is refused — quickly."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tangram.engines.expressions import EvalContext, ExpressionError, compile_expression
from tangram.engines.forms.validation import compile_validator
from tangram.errors import ErrorItem, ValidationFailed
from tangram.metamodel.forms import Form
from tests.factories import field, form_body

CTX = EvalContext(now=datetime(2026, 3, 1, 2, 0, tzinfo=UTC), timezone="Asia/Shanghai")


def _validate(form: dict, data: dict, language: str) -> list[ErrorItem]:
    v = compile_validator(Form.model_validate(form))
    return v.validate(data, old=None, user={"id": None}, eval_context=CTX,
                      language=language).errors


@pytest.mark.parametrize(("rule", "language", "expected"), [
    ({"key": "positive"}, "en", "Rule “positive”: the expression failed: "),
    ({"key": "positive"}, "zh", "规则“positive”：表达式计算出错："),
    ({}, "zh", "规则“数量必须为正”：表达式计算出错："),
    ({}, "en", "Rule “qty must be positive”: the expression failed: "),
])
def test_a_rule_that_cannot_be_evaluated_is_named(rule, language, expected):
    form = form_body("t", field("qty"), rules=[{
        "assert": "record.qty > 0", "fields": ["qty"],
        "message": {"zh": "数量必须为正", "en": "qty must be positive"}, **rule}])
    errors = _validate(form, {"qty": "abc"}, language)
    assert [(e.field, e.code) for e in errors] == [("qty", "expression")]
    assert errors[0].message.startswith(expected), errors[0].message


def test_a_refused_required_value_is_reported_once():
    form = form_body("t", field("title", required=True))
    errors = _validate(form, {"title": "a\x00b"}, "en")
    assert [(e.field, e.code) for e in errors] == [("title", "type")]


def test_the_summary_of_a_failed_save_is_in_the_callers_language():
    items = [ErrorItem(code="required", message="x"), ErrorItem(code="type", message="y")]
    assert ValidationFailed(items, language="zh").message == "2 处填写有误"
    assert ValidationFailed(items).message == "2 validation error(s)"


def test_a_negative_number_to_a_fractional_power_is_not_a_real_number():
    expr = compile_expression("(-record.n) ** 0.5")
    with pytest.raises(ExpressionError) as info:
        expr.evaluate({"record": {"n": 4}})
    assert "not a real number" in str(info.value)
    assert compile_expression("(-record.n) ** 2").evaluate({"record": {"n": 4}}) == 16


def test_a_long_sum_is_refused_with_a_way_out():
    with pytest.raises(ExpressionError) as info:
        compile_expression("+".join(["1"] * 1999))
    assert "sum([a, b, …])" in str(info.value)
    assert compile_expression("sum([" + ",".join(["1"] * 1990) + "])").evaluate({}) == 1990
