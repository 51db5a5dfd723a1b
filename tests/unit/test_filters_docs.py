"""docs/filters.md documents every operator, date range and error code of the
filter language: adding one to a registry without documenting it fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tangram.engines.forms.operators as operators_module
import tangram.engines.forms.query as query_module
from tangram.engines.forms.date_ranges import DATE_RANGES
from tangram.engines.forms.operators import OPERATORS
from tangram.engines.forms.query import CursorInvalid, FilterInvalid, QueryInvalid

DOC = Path(__file__).resolve().parents[2] / "docs" / "filters.md"


@pytest.fixture(scope="module")
def table_keys() -> set[str]:
    """Keys in the first column of the doc's tables: | `key` | …"""
    return set(re.findall(r"^\| `([a-z_]+)`", DOC.read_text(encoding="utf-8"), re.M))


@pytest.mark.parametrize("key", OPERATORS)
def test_every_operator_has_a_row_in_the_docs(key, table_keys):
    assert key in table_keys, f"operator {key!r} is missing from docs/filters.md"


@pytest.mark.parametrize("key", DATE_RANGES)
def test_every_date_range_has_a_row_in_the_docs(key, table_keys):
    assert key in table_keys, f"date range {key!r} is missing from docs/filters.md"


def test_every_error_code_is_documented():
    text = DOC.read_text(encoding="utf-8")
    codes = {cls.code for cls in (QueryInvalid, FilterInvalid, CursorInvalid)}
    for module in (query_module, operators_module):
        source = Path(module.__file__ or "").read_text(encoding="utf-8")
        codes |= set(re.findall(r'code="([a-z_]+)"', source))
        codes |= set(re.findall(r'(?:_error|_PathProblem)\(\s*"([a-z_]+)"', source))
    assert len(codes) > 15
    missing = sorted(c for c in codes if f"`{c}`" not in text)
    assert not missing, f"error codes missing from docs/filters.md: {missing}"
