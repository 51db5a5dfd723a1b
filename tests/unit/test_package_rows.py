"""The data-file vocabulary of packages (tangram/platform/packages/rows.py),
without a database: relative dates resolve against the install day, and
every malformed ``$``-key or value is reported with its file and JSON path."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from tangram.metamodel.forms import Form
from tangram.platform.packages.rows import BadSpec, Resolver, check_rows, resolve_date
from tests.package_factories import helpdesk_v1

TODAY = date(2026, 3, 31)


@pytest.mark.parametrize(("spec", "expected"), [
    ("today", date(2026, 3, 31)),
    ("+0d", date(2026, 3, 31)),
    ("-45d", date(2026, 2, 14)),
    ("+2w", date(2026, 4, 14)),
    ("-1m", date(2026, 2, 28)),  # clamped to the month's end
    ("+11m", date(2027, 2, 28)),
    ("-1y", date(2025, 3, 31)),
    ("-1y+2m-3d", date(2025, 5, 28)),
    ("-18m", date(2024, 9, 30)),
])
def test_a_relative_date_counts_from_the_install_day(spec: str, expected: date):
    assert resolve_date(spec, today=TODAY) == expected


@pytest.mark.parametrize("spec", ["45d", "-45", "-45 d", "yesterday", "-4.5d", "", 45, None,
                                  "-99999y"])
def test_a_malformed_relative_date_says_what_is_allowed(spec):
    with pytest.raises(BadSpec, match="relative date|range"):
        resolve_date(spec, today=TODAY)


def test_a_relative_datetime_is_a_time_of_day_in_the_organization_zone():
    r = Resolver(today=TODAY, timezone="Asia/Shanghai", ids={})
    assert r.value({"$datetime": "-1d 10:30"}) == "2026-03-30T10:30:00+08:00"
    assert r.created_at({"$datetime": "-1d 10:30"}).astimezone(UTC) == \
        datetime(2026, 3, 30, 2, 30, tzinfo=UTC)
    assert r.created_at({"$date": "today"}).astimezone(UTC) == \
        datetime(2026, 3, 30, 16, 0, tzinfo=UTC)
    assert r.created_at("2025-01-02T03:04:05") == datetime.fromisoformat(
        "2025-01-02T03:04:05+08:00")
    with pytest.raises(BadSpec, match="time of day"):
        r.value({"$datetime": "-1d 24:00"})


def test_values_resolve_inside_sub_rows_and_links_stay_until_their_row_exists():
    r = Resolver(today=TODAY, timezone="UTC", ids={"acme": "id-1"})
    value = [{"due": {"$date": "+1w"}, "customer": {"$ref": "acme"}},
             {"other": {"$ref": "later"}}]
    assert r.value(value) == [{"due": "2026-04-07", "customer": "id-1"},
                              {"other": {"$ref": "later"}}]


def test_every_problem_of_a_data_file_is_reported_with_its_json_path():
    form = Form.model_validate(helpdesk_v1()["forms/ticket.json"])
    rows = [
        {"$ref": "t1", "subject": "ok", "$owner": "rep01",
         "$created_at": {"$datetime": "-3d 09:00"}, "hours": "1"},
        {"$ref": "t1", "subject": {"$date": "-3x"}, "$owner": 7, "$created_at": "soon",
         "owner": "x", "colour": "red", "$whatever": 1, "customer": {"$refs": "acme"}},
    ]
    errors = check_rows("data/demo/ticket.json", "demo", form, rows, set())
    found = {(e.path, e.code) for e in errors}
    assert found == {("$[1].$ref", "data_ref"), ("$[1].subject", "data_date"),
                     ("$[1].$owner", "data_owner"), ("$[1].$created_at", "data_date"),
                     ("$[1].owner", "system_field"), ("$[1].colour", "unknown_field"),
                     ("$[1].$whatever", "data_key"), ("$[1].customer", "data_value")}
    assert all(e.file == "data/demo/ticket.json" for e in errors)
    assert "-45d" in next(e.message for e in errors if e.path == "$[1].subject")


def test_user_and_file_values_are_checked_without_a_database():
    form = Form.model_validate(helpdesk_v1()["forms/ticket.json"])
    good = {"sha256": "a" * 64, "name": "合同.pdf", "content_type": "application/pdf",
            "size": 12}
    rows = [{"subject": {"$user": "rep01"}, "hours": [{"$file": good}]},
            {"subject": {"$user": ""}, "hours": [{"$file": {**good, "sha256": "ABC"}},
                                                 {"$file": {**good, "size": -1}},
                                                 {"$file": {**good, "owner": "x"}},
                                                 {"$file": "a.pdf"}]}]
    errors = check_rows("data/seed/ticket.json", "seed", form, rows, set())
    assert {(e.path, e.code) for e in errors} == {
        ("$[1].subject", "data_user"), ("$[1].hours[0]", "data_file"),
        ("$[1].hours[1]", "data_file"), ("$[1].hours[2]", "data_file"),
        ("$[1].hours[3]", "data_file")}
    assert "64 lowercase hex" in next(e.message for e in errors if e.path == "$[1].hours[0]")


def test_user_and_file_values_resolve_to_ids():
    r = Resolver(today=date(2026, 3, 31), timezone="Asia/Shanghai", ids={},
                 users={"rep01": "u-1"}, files={("a" * 64, "x.pdf", ""): "f-1"})
    value = {"by": {"$user": "REP01"}, "scan": [{"$file": {"sha256": "a" * 64,
                                                         "name": "x.pdf", "size": 3}}],
             "nobody": {"$user": "ghost"}}
    assert r.value(value) == {"by": "u-1", "scan": ["f-1"], "nobody": {"$user": "ghost"}}
