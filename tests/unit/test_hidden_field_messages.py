"""Unknown-field messages name only what the viewer may see, without a
database: the records query compiler (``QueryContext.hidden``) and the
report path resolver (``PathResolver(hidden=...)``), on the form queried and
at the far end of a relation; without the hook (the system, analysts at
publish time) every field is listed."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from tangram.engines.forms.query import PathProblem, QueryContext, validate_filter
from tangram.engines.forms.tables import FormTables, build_tables
from tangram.engines.reports.paths import PathResolver
from tangram.metamodel.forms import Form


def _fld(key: str, type_: str = "text", **options: Any) -> dict[str, Any]:
    return {"key": key, "type": type_, "label": {"en": key}, **options}


@pytest.fixture(scope="module")
def forms() -> dict[str, FormTables]:
    account = Form.model_validate({"key": "account", "label": {"en": "Account"}, "fields": [
        _fld("name"), _fld("credit_limit", "currency"), _fld("industry")]})
    contract = Form.model_validate({"key": "contract", "label": {"en": "Contract"}, "fields": [
        _fld("title"), _fld("amount", "currency"), _fld("account", "relation", target="account"),
        _fld("lines", "sub_table", fields=[_fld("qty", "integer"), _fld("cost", "currency")])]})
    md = sa.MetaData()
    return {f.key: build_tables("crm", f, metadata=md) for f in (account, contract)}


HIDDEN = {"account": {"credit_limit"}, "contract": {"amount"}}


def _qctx(forms: dict[str, FormTables], hidden: Any) -> QueryContext:
    return QueryContext(resolve=forms.__getitem__, today=date(2026, 3, 18),
                        timezone="Asia/Shanghai", now=datetime(2026, 3, 18, 2, tzinfo=UTC),
                        hidden=hidden)


@pytest.mark.parametrize("path", ["account.credit_limt", "amout"])
def test_the_filter_message_lists_and_suggests_only_visible_fields(forms, path):
    # On the far end of a relation and on the form queried (the records API
    # passes the viewer's own form already without its hidden fields).
    spec = {"field": path, "op": "eq", "value": "1"}
    [error] = validate_filter(spec, tables=forms["contract"],
                              qctx=_qctx(forms, lambda key: HIDDEN.get(key, set())))
    assert error.code == "unknown_field"
    assert "credit_limit" not in error.message and "amount" not in error.message
    [whole] = validate_filter(spec, tables=forms["contract"], qctx=_qctx(forms, None))
    assert "did you mean 'credit_limit'?" in whole.message or "amount" in whole.message


def test_a_hidden_field_still_resolves_for_the_callers_own_refusal(forms):
    assert validate_filter({"field": "account.credit_limit", "op": "gt", "value": "1"},
                           tables=forms["contract"],
                           qctx=_qctx(forms, lambda key: HIDDEN.get(key, set()))) == []


def _problem(resolver: PathResolver, path: str) -> str:
    with pytest.raises(PathProblem) as caught:
        resolver.resolve(path)
    assert caught.value.code == "unknown_field"
    return caught.value.message


def test_report_paths_list_only_what_the_viewer_may_see(forms):
    viewer = PathResolver(forms["contract"], forms.__getitem__,
                          hidden=lambda key: HIDDEN.get(key, set()))
    message = _problem(viewer, "account.credit_limt")
    assert "credit_limit" not in message and "fields: name, industry, id" in message
    assert "amount" not in _problem(viewer, "amout")
    assert viewer.resolve("account.credit_limit").access_key == "credit_limit"
    analyst = PathResolver(forms["contract"], forms.__getitem__)
    assert "did you mean 'credit_limit'?" in _problem(analyst, "account.credit_limt")


def test_a_hidden_sub_table_lists_none_of_its_columns(forms):
    viewer = PathResolver(forms["contract"], forms.__getitem__,
                          hidden=lambda key: {"lines"} if key == "contract" else set())
    message = _problem(viewer, "lines.cots")
    assert "qty" not in message and "cost" not in message
    assert message.endswith("fields: none you may see")
    shown = _problem(PathResolver(forms["contract"], forms.__getitem__), "lines.cots")
    assert "did you mean 'cost'?" in shown
