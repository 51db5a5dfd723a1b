"""User placeholders filled for one user (views, expression scopes)."""

from __future__ import annotations

import uuid
from typing import Any, cast

import pytest

from tangram.engines.forms.query import MATCH_ALL, MATCH_NONE
from tangram.platform.permissions.org import OrgView
from tangram.platform.permissions.placeholders import (
    PlaceholderUnknown,
    UserFacts,
    substitute,
)

DEPT = uuid.UUID(int=7)


def facts(*departments: uuid.UUID) -> UserFacts:
    return UserFacts(id=uuid.UUID(int=1), username="rep01", departments=frozenset(departments),
                     primary_department=departments[0] if departments else None,
                     org=cast(OrgView, None))


def cond(op: str, name: str) -> dict[str, Any]:
    return {"field": "owner", "op": op, "value": {"$user": name}}


def test_values_of_the_user_replace_placeholders():
    assert substitute({"and": [cond("eq", "id"), cond("in", "departments")]}, facts(DEPT)) == {
        "and": [{"field": "owner", "op": "eq", "value": str(uuid.UUID(int=1))},
                {"field": "owner", "op": "in", "value": [str(DEPT)]}]}


@pytest.mark.parametrize(("op", "name", "expected"), [
    ("in", "departments", MATCH_NONE), ("in_department", "departments", MATCH_NONE),
    ("contains_any", "departments", MATCH_NONE), ("eq", "department", MATCH_NONE),
    ("not_in", "departments", MATCH_ALL), ("ne", "department", MATCH_ALL),
    ("contains_all", "departments", MATCH_ALL),
])
def test_a_placeholder_without_value_makes_its_condition_a_constant(op, name, expected):
    # A user in no department: "in my departments" holds for no record,
    # "not in my departments" for every one (not an "empty list" error).
    assert substitute(cond(op, name), facts()) == expected
    spec = {"or": [cond(op, name), {"field": "status", "op": "eq", "value": "new"}]}
    assert substitute(spec, facts()) == {"or": [expected, spec["or"][1]]}


def test_literal_empty_values_are_left_to_the_filter_check():
    # Only a placeholder's missing value is settled here; an analyst's own
    # empty list still gets the filter's error.
    spec = {"field": "owner", "op": "in", "value": []}
    assert substitute(spec, facts()) == spec


def test_unknown_placeholder_is_named():
    with pytest.raises(PlaceholderUnknown, match="nobody"):
        substitute(cond("eq", "nobody"), facts())
