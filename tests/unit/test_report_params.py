"""Date range parameters (no database): a value goes to the date_range
operator as given; drill-down pins a relative range to the dates it covered."""

from __future__ import annotations

from datetime import date

import pytest

from tangram.engines.context import Actor
from tangram.engines.reports.params import (
    ParameterInvalid,
    pinned_days,
    resolve_parameters,
    substitute,
)
from tangram.metamodel.reports import Parameter

TODAY = date(2026, 5, 20)
PERIOD = Parameter(key="period", label={"en": "Period"}, type="date_range")
STAGE = Parameter(key="stage", label={"en": "Stage"}, type="text")
FILTER = {"and": [{"field": "created_at", "op": "date_range", "value": {"$param": "period"}},
                  {"field": "stage", "op": "eq", "value": {"$param": "stage"}}]}


def resolved(value: object) -> dict[str, object]:
    return resolve_parameters([PERIOD, STAGE], {"period": value, "stage": "won"},
                              actor=Actor(id=None), today=TODAY)


@pytest.mark.parametrize("value", ["this_quarter", {"last_n_days": 7},
                                   ["2026-01-01", "2026-03-31"], ["2026-01-01", None]])
def test_a_date_range_value_reaches_the_date_range_condition_as_given(value: object) -> None:
    assert substitute(FILTER, resolved(value)) == {"and": [
        {"field": "created_at", "op": "date_range", "value": value},
        {"field": "stage", "op": "eq", "value": "won"}]}


def test_a_between_condition_fed_by_a_date_range_parameter_is_a_date_range() -> None:
    spec = {"or": [{"field": "closed_on", "op": "between", "value": {"$param": "period"}},
                   {"field": "amount", "op": "between", "value": {"$param": "band"}}]}
    values = {"period": "this_month", "band": ["1", "9"]}
    assert substitute(spec, values, date_ranges={"period"}) == {"or": [
        {"field": "closed_on", "op": "date_range", "value": "this_month"},
        {"field": "amount", "op": "between", "value": ["1", "9"]}]}


def test_drill_down_pins_a_relative_range_to_its_dates_and_leaves_the_rest() -> None:
    assert pinned_days([PERIOD, STAGE], resolved("this_quarter"), today=TODAY) == {
        "period": ["2026-04-01", "2026-06-30"], "stage": "won"}
    assert pinned_days([PERIOD], {"period": [None, "2026-03-31"]}, today=TODAY) == {
        "period": [None, "2026-03-31"]}
    assert pinned_days([PERIOD], {"period": None}, today=TODAY) == {"period": None}


@pytest.mark.parametrize(("value", "fragment"), [
    (["2026-03-31", "2026-01-01"], "starts 2026-03-31 after it ends 2026-01-01"),
    (["2026-01-01"], "two items [from, to]"),
    (["2026-01-01", "31.03.2026"], "'31.03.2026' is not a date"),
    ([None, None], "names no days"),
    ("bogus", "unknown date range 'bogus'"),
    ({"last_n_days": 0}, "from 1 to 3660"),
])
def test_a_wrong_range_is_the_parameters_error_saying_what_is_allowed(
        value: object, fragment: str) -> None:
    with pytest.raises(ParameterInvalid) as info:
        resolved(value)
    [error] = info.value.errors
    assert error.field == "parameters.period" and fragment in error.message
