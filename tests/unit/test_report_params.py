"""Date range parameters become local-day bounds in the filter (no database)."""

from __future__ import annotations

from datetime import date

import pytest

from tangram.engines.reports.params import day_range, with_day_bounds
from tangram.metamodel.reports import Parameter

TODAY = date(2026, 5, 20)
PERIOD = Parameter(key="period", label={"en": "Period"}, type="date_range")
FILTER = {"and": [{"field": "created_at", "op": "date_range", "value": {"$param": "period"}},
                  {"field": "closed_on", "op": "between", "value": {"$param": "period"}},
                  {"field": "stage", "op": "eq", "value": "won"}]}


def bounded(value: object) -> object:
    return with_day_bounds(FILTER, [PERIOD], {"period": value}, today=TODAY,
                           timezone="Asia/Shanghai", is_instant=lambda p: p == "created_at")


def test_custom_dates_bound_a_date_time_at_local_midnight_and_a_date_by_day() -> None:
    assert bounded(["2026-01-01", "2026-03-31"]) == {"and": [
        {"and": [{"field": "created_at", "op": "gte", "value": "2026-01-01T00:00:00+08:00"},
                 {"field": "created_at", "op": "lt", "value": "2026-04-01T00:00:00+08:00"}]},
        {"and": [{"field": "closed_on", "op": "gte", "value": "2026-01-01"},
                 {"field": "closed_on", "op": "lt", "value": "2026-04-01"}]},
        {"field": "stage", "op": "eq", "value": "won"}]}


def test_a_relative_range_is_bounded_the_same_way_whatever_the_operator() -> None:
    assert bounded("this_quarter")["and"][1] == {"and": [  # type: ignore[index]
        {"field": "closed_on", "op": "gte", "value": "2026-04-01"},
        {"field": "closed_on", "op": "lt", "value": "2026-07-01"}]}


def test_no_value_leaves_the_filter_to_substitution() -> None:
    assert bounded(None) == FILTER


@pytest.mark.parametrize("value", [["2026-03-31", "2026-01-01"], ["2026-01-01"],
                                   ["2026-01-01", "31.03.2026"], "bogus", {"last_n_days": 0}])
def test_wrong_ranges_say_what_is_allowed(value: object) -> None:
    with pytest.raises(ValueError):
        day_range(value, today=TODAY)
