"""Print-template filters and the template check, without a database; and
docs/print.md lists exactly the registry's filters."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tangram.engines.exports.values import Env, formatter_for
from tangram.engines.printing.filters import PRINT_FILTERS, AmountOutOfRange, money, rmb_upper
from tangram.engines.printing.filters import date as date_filter
from tangram.engines.printing.render import check_template_text, render_text
from tangram.engines.printing.values import PrintRecord, ShowEnv, Shown, shown
from tangram.engines.templates import TemplateInvalid
from tangram.metamodel.fields import RollupField

DOC = (Path(__file__).resolve().parents[2] / "docs" / "print.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("amount", "words"), [
    ("1200000", "壹佰贰拾万元整"),
    ("1200000.00", "壹佰贰拾万元整"),
    ("10005.5", "壹万零伍元伍角"),
    ("0.05", "伍分"),
    ("0.5", "伍角"),
    ("0", "零元整"),
    ("1.05", "壹元零伍分"),
    ("10", "壹拾元整"),
    ("105000", "壹拾万伍仟元整"),
    ("100000010", "壹亿零壹拾元整"),
    ("1010101.01", "壹佰零壹万零壹佰零壹元零壹分"),
    ("-36.8", "负叁拾陆元捌角"),
    ("1234567890123.456", "壹万贰仟叁佰肆拾伍亿陆仟柒佰捌拾玖万零壹佰贰拾叁元肆角陆分"),
])
def test_rmb_upper(amount: str, words: str) -> None:
    assert rmb_upper(Decimal(amount)) == words
    assert rmb_upper(Shown("¥…", Decimal(amount))) == words  # a field value: its raw


def test_rmb_upper_empty_and_limits() -> None:
    assert rmb_upper(None) == "" and rmb_upper("") == "" and rmb_upper("abc") == ""
    with pytest.raises(AmountOutOfRange):
        rmb_upper(Decimal("1e16"))


def test_money_and_date() -> None:
    assert money(Decimal("1200000")) == "¥1,200,000.00"
    assert money("-1234.565", "", 2) == "-1,234.57"
    assert money(Decimal("99.5"), "US$", 0) == "US$100"
    assert money(None) == ""
    assert date_filter(date(2026, 3, 1), "%Y年%m月%d日") == "2026年03月01日"
    assert date_filter(Shown("2026-03-01 08:00", datetime(2026, 3, 1, 8))) == "2026-03-01"
    assert date_filter("2026-03-01") == "2026-03-01"
    assert date_filter(None) == ""


def test_templates_render_fields_and_print_hidden_ones_as_empty() -> None:
    record = PrintRecord({"title": Shown("合同", "合同"),
                          "amount": Shown("¥10.00", Decimal("10.00"))}, title="合同")
    out = render_text("{{ record }}|{{ record.amount }}|{{ record.amount | rmb_upper }}|"
                      "{{ record.secret }}|{{ record.secret.raw }}|{{ record.title.label }}",
                      {"record": record})
    assert out == "合同|¥10.00|壹拾元整|||"
    assert render_text("{{ x }}", {"x": Shown("<b>", "<b>")}) == "&lt;b&gt;"


def test_a_failing_template_names_its_line() -> None:
    row = PrintRecord({"qty": Shown("", None)})
    with pytest.raises(TemplateInvalid, match=r"failed at line 3: TypeError"):
        render_text("<p>\n\n{{ row.qty.raw * 2 }}</p>", {"row": row})
    with pytest.raises(TemplateInvalid, match=r"failed at line 1: UndefinedError"):
        render_text("{{ row.missing * 2 }}", {"row": row})


@pytest.mark.parametrize(("source", "problem"), [
    ("{{ ''.__class__.__mro__ }}", "line 1: the sandbox does not allow '__class__'"),
    ("\n\n{{ record['_values'] }}", "line 3: the sandbox does not allow '_values'"),
    ("{% if %}", "template syntax error at line 1"),
    ("{{ x | nope }}", "No filter named 'nope'"),
])
def test_check_template_text(source: str, problem: str) -> None:
    assert problem in (check_template_text(source) or "")


def test_check_template_text_accepts_print_filters() -> None:
    assert check_template_text("{{ a | rmb_upper }}{{ a | money('', 0) }}{{ a | date }}") is None


def test_every_print_filter_is_documented() -> None:
    table = DOC.split("### Filters", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert documented == set(PRINT_FILTERS), "docs/print.md#filters lists every print filter"


def test_rollups_print_and_export_as_what_they_hold() -> None:
    def rollup(**options: str) -> RollupField:
        return RollupField.model_validate({"key": "r", "type": "rollup", "label": {"en": "R"},
                                           "source": {"form": "c", "via": "a"}, **options})

    env = ShowEnv(language="en", zone=ZoneInfo("Asia/Shanghai"))
    last = shown(rollup(aggregate="max", field="d", result_type="date"), "2026-01-03", env, {})
    assert (str(last), last.raw) == ("2026-01-03", date(2026, 1, 3))
    first = shown(rollup(aggregate="min", field="t", result_type="datetime"),
                  "2026-01-03T16:30:00Z", env, {})
    assert str(first) == "2026-01-04 00:30"  # the organization's wall clock
    total = shown(rollup(aggregate="sum", field="n"), "1200000.50", env, {})
    assert (str(total), total.raw) == ("1,200,000.50", Decimal("1200000.50"))
    to_sheet = formatter_for(rollup(aggregate="min", field="t", result_type="datetime"),
                             Env(language="en", zone=ZoneInfo("Asia/Shanghai")))
    assert to_sheet(datetime(2026, 1, 3, 16, 30, tzinfo=UTC), {}) == datetime(2026, 1, 4, 0, 30)
