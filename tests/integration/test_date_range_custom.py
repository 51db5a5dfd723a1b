"""Custom dates in the ``date_range`` operator, over HTTP in the CRM: the same
[from, to] days in the records list, an export, a report and its drill-down —
local days in Shanghai, both ends included, either end open."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

import pytest

from tests.integration.test_crm_scenarios import BASE, Crm

Q1 = ["2026-01-01", "2026-03-31"]


@pytest.fixture
def crm(app_factory, make_user) -> Crm:
    crm = Crm(app_factory, make_user)
    # 31 March 23:30 in Shanghai is in the first quarter; 00:30 on 1 April is
    # not, though both are 31 March in UTC.
    for moment in ("2026-01-05T02:00:00+00:00", "2026-03-31T15:30:00+00:00",
                   "2026-03-31T16:30:00+00:00", "2026-04-02T02:00:00+00:00"):
        crm.clock.advance(datetime.fromisoformat(moment) - crm.clock.now())
        crm.lead("rep1", f"lead {moment}")
    return crm


def created(value: Any) -> dict[str, Any]:
    return {"field": "created_at", "op": "date_range", "value": value}


def names(crm: Crm, spec: Any) -> list[str]:
    res = crm["director"].post(f"{BASE}/forms/lead/records/query",
                               json={"filter": spec, "sort": ["created_at"]})
    assert res.status_code == 200, res.text
    return [r["name"] for r in res.json()["items"]]


def test_the_records_list_takes_custom_dates_as_local_days(crm: Crm) -> None:
    assert names(crm, created(Q1)) == ["lead 2026-01-05T02:00:00+00:00",
                                       "lead 2026-03-31T15:30:00+00:00"]
    assert names(crm, created(["2026-04-01", None])) == ["lead 2026-03-31T16:30:00+00:00",
                                                         "lead 2026-04-02T02:00:00+00:00"]
    assert names(crm, created([None, "2026-01-05"])) == ["lead 2026-01-05T02:00:00+00:00"]
    # The list's GET form, with the filter as a query parameter, says the same.
    res = crm["director"].get(f"{BASE}/forms/lead/records",
                              params={"filter": json.dumps(created(Q1))})
    assert res.status_code == 200, res.text
    assert len(res.json()["items"]) == 2


@pytest.mark.parametrize(("value", "path", "fragment"), [
    (["2026-03-31", "2026-01-01"], "$.value", "starts 2026-03-31 after it ends 2026-01-01"),
    (["2026-01-01", "2026-13-01"], "$.value[1]", "'2026-13-01' is not a date"),
    (["2026-01-01"], "$.value", "two items [from, to]"),
    ([None, None], "$.value", "names no days"),
])
def test_a_wrong_custom_range_is_refused_naming_the_value(
        crm: Crm, value: Any, path: str, fragment: str) -> None:
    res = crm["director"].post(f"{BASE}/forms/lead/records/query",
                               json={"filter": created(value)})
    assert res.status_code == 422, res.text
    assert res.json()["code"] == "filter_invalid"
    [error] = res.json()["errors"]
    assert (error["code"], error["path"]) == ("invalid_value", path)
    assert fragment in error["message"]


def test_an_export_takes_the_same_days(crm: Crm) -> None:
    res = crm["director"].post(f"{BASE}/forms/lead/export",
                               json={"filter": created(Q1), "format": "csv"})
    assert res.status_code == 200, res.text
    rows = list(csv.reader(io.StringIO(res.content.decode("utf-8-sig"))))
    assert len(rows) == 1 + 2  # the header and the two leads of the first quarter


def test_a_report_drills_down_to_the_records_of_the_days_it_counted(crm: Crm) -> None:
    for period, pinned, leads in ((Q1, Q1, 2), ("this_month", ["2026-04-01", "2026-04-30"], 2),
                                  (["2026-04-01", None], ["2026-04-01", None], 2)):
        run = crm["director"].post(f"{BASE}/reports/channel_conversion/run",
                                   json={"parameters": {"period": period}})
        assert run.status_code == 200, run.text
        assert run.json()["totals"]["leads"] == leads
        assert run.json()["parameters"]["period"] == period  # as the viewer gave it
        source = run.json()["rows"][0]["source"]
        drill = crm["director"].post(f"{BASE}/reports/channel_conversion/drilldown", json={
            "parameters": {"period": period}, "element": {"source": source}})
        assert drill.status_code == 200, drill.text
        found = drill.json()["filter"]
        # The period's condition, its value the dates the run covered.
        assert created(pinned) in found["and"][0]["and"], found
        records = crm["director"].post(f"{BASE}/forms/lead/records/query",
                                       json={"filter": found, "include_total": True})
        assert records.status_code == 200, records.text
        assert records.json()["total"] == run.json()["rows"][0]["leads"]


def test_a_between_condition_fed_by_a_date_range_parameter_takes_every_range(
        crm: Crm) -> None:
    # Reports written when only between took [from, to] keep working, and now
    # take relative and open-ended ranges too: the condition is a date_range.
    body = {"label": {"zh": "期间", "en": "Period"}, "form": "lead",
            "measures": [{"agg": "count", "key": "n"}],
            "parameters": [{"key": "period", "label": {"zh": "期间", "en": "Period"},
                            "type": "date_range"}],
            "filter": {"field": "created_at", "op": "between", "value": {"$param": "period"}}}
    res = crm.admin.put(f"{BASE}/reports/by_period/draft", json={"definition": body})
    assert res.status_code == 200, res.text
    assert crm.admin.post(f"{BASE}/reports/by_period/publish", json={}).status_code == 200
    for period, n in ((Q1, 2), ("this_month", 2), ([None, "2026-03-31"], 2)):
        run = crm.admin.post(f"{BASE}/reports/by_period/run",
                             json={"parameters": {"period": period}})
        assert run.status_code == 200, run.text
        assert run.json()["totals"]["n"] == n, period
    drill = crm.admin.post(f"{BASE}/reports/by_period/drilldown", json={
        "parameters": {"period": "this_month"}, "element": {}})
    assert drill.status_code == 200, drill.text
    assert drill.json()["filter"] == {"and": [created(["2026-04-01", "2026-04-30"])]}
    wrong = crm.admin.post(f"{BASE}/reports/by_period/run",
                           json={"parameters": {"period": ["2026-03-31", None, None]}})
    assert wrong.status_code == 422, wrong.text
    assert [e["field"] for e in wrong.json()["errors"]] == ["parameters.period"]
