"""Report parameters: values the viewer changes, substituted into the filter.

A filter value ``{"$param": "owner"}`` is replaced by the parameter's value
(the viewer's, else the declared default). A condition whose parameter has
no value is left out — an empty "owner" parameter means every owner. The
filter compiler then checks the value against the field like any other.

A ``date_range`` parameter feeds a ``date_range`` condition, which takes
its value as it is: a relative range (``"this_month"``) or custom dates
(``["2026-01-01", "2026-03-31"]``); a ``between`` condition fed by one is
compiled as ``date_range`` (:func:`substitute`). :func:`pinned_days` writes a
relative range as the dates it covered on the run's day, for drill-down.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from tangram.engines.context import Actor
from tangram.engines.forms.date_ranges import local_midnight, resolve_date_range
from tangram.errors import ErrorItem, ValidationFailed
from tangram.metamodel.reports import Parameter

MAX_TEXT = 1000


class ParameterInvalid(ValidationFailed):
    """A report parameter value is not valid; ``errors`` name the parameter."""

    code = "parameter_invalid"


def day_start(day: date, *, timezone: str, instant: bool) -> str:
    """The filter value where ``day`` starts, for ``gte`` / ``lt`` windows: the
    date for a date field; local midnight in the organization's zone for a
    date-time field."""
    return local_midnight(day, timezone).isoformat() if instant else day.isoformat()


def _check(p: Parameter, value: Any, actor: Actor, today: date) -> Any:
    """A problem message, or the value to substitute."""
    if p.type == "date_range":
        resolve_date_range(value, today=today)  # the operator's own check and message
        return value
    if p.type == "user" and value == "me":
        if actor.id is None:
            raise ValueError("\"me\" needs a signed-in viewer")
        return str(actor.id)
    if p.type in ("user", "department"):
        try:
            return str(uuid.UUID(str(value)))
        except ValueError:
            raise ValueError(f"{value!r} is not the id of a {p.type}") from None
    if p.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ValueError("a number is given as a string such as \"100000\"")
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            number = None
        if number is None or not number.is_finite():
            raise ValueError(f"{value!r} is not a number (give one such as \"100000\" "
                             "or \"99.50\")")
        return str(value)
    if p.type == "date":
        try:
            date.fromisoformat(str(value))
        except ValueError:
            raise ValueError(f"{value!r} is not a date (YYYY-MM-DD)") from None
        return str(value)
    if p.type == "boolean":
        if not isinstance(value, bool):
            raise ValueError("true or false is expected")
        return value
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise ValueError(f"a text of at most {MAX_TEXT} characters is expected")
    return value


def resolve_parameters(declared: list[Parameter], given: Mapping[str, Any] | None, *,
                       actor: Actor, today: date) -> dict[str, Any]:
    """Effective values by key (None: no value). Unknown keys and bad values are
    refused, each error naming the parameter."""
    given = dict(given or {})
    by_key = {p.key: p for p in declared}
    errors: list[ErrorItem] = []
    for key in given:
        if key not in by_key:
            errors.append(ErrorItem(code="unknown_parameter", field=f"parameters.{key}",
                                    message=f"the report has no parameter {key!r}; "
                                    f"parameters: {', '.join(by_key) or 'none'}"))
    values: dict[str, Any] = {}
    for p in declared:
        raw = given.get(p.key, p.default)
        if raw is None or raw == [] or raw == "":
            if p.required:
                errors.append(ErrorItem(code="required", field=f"parameters.{p.key}",
                                        message=f"parameter {p.key!r} needs a value"))
            values[p.key] = None
            continue
        try:
            if p.multiple and p.type != "date_range":
                if not isinstance(raw, list) or len(raw) > 1000:
                    raise ValueError("a list of at most 1000 values is expected")
                values[p.key] = [_check(p, v, actor, today) for v in raw]
            else:
                values[p.key] = _check(p, raw, actor, today)
        except (ValueError, TypeError, InvalidOperation) as exc:
            errors.append(ErrorItem(code="invalid_value", field=f"parameters.{p.key}",
                                    message=f"parameter {p.key!r} ({p.type}): {exc}"))
    if errors:
        raise ParameterInvalid(errors, f"invalid parameters: {errors[0].message}")
    return values


def substitute(spec: Any, values: Mapping[str, Any], *,
               date_ranges: Collection[str] = ()) -> Any:
    """The filter with parameter references replaced; conditions whose parameter
    has no value become ``{}`` (no condition).

    A ``between`` condition fed by one of the ``date_ranges`` parameters
    becomes ``date_range``: reports written before the operator took custom
    dates fed such a parameter's ``[from, to]`` to ``between``, and this way
    they take every value the parameter offers (relative, open-ended)."""
    if isinstance(spec, list):
        return [substitute(s, values, date_ranges=date_ranges) for s in spec]
    if not isinstance(spec, dict):
        return spec
    key = _parameter_of(spec)
    if key is not None:
        if not isinstance(key, str) or key not in values:
            return spec  # left for validation to report (see referenced_parameters)
        if values[key] is None:
            return {}
        if key in date_ranges and spec.get("op") == "between":
            return {**spec, "op": "date_range", "value": values[key]}
        return {**spec, "value": values[key]}
    return {k: substitute(v, values, date_ranges=date_ranges) for k, v in spec.items()}


def pinned_days(declared: list[Parameter], values: Mapping[str, Any], *,
                today: date) -> dict[str, Any]:
    """``values`` with each date_range parameter's value written as the custom
    dates ``[from, to]`` it covers on ``today``: a drill-down filter then
    selects the days the run counted, even when it is used on a later day.

    >>> pinned_days([period], {"period": "this_quarter"}, today=date(2026, 5, 20))
    {'period': ['2026-04-01', '2026-06-30']}
    """
    ranges = {p.key for p in declared if p.type == "date_range"}
    return {k: resolve_date_range(v, today=today).to_json()
            if k in ranges and v is not None else v for k, v in values.items()}


def _parameter_of(condition: dict[str, Any]) -> Any:
    """The parameter key feeding a condition's value (None: no parameter)."""
    value = condition.get("value")
    if "field" in condition and isinstance(value, dict) and set(value) == {"$param"}:
        return value["$param"]
    return None


def parameter_conditions(spec: Any, at: str = "$") -> list[tuple[str, dict[str, Any]]]:
    """(JSON path, condition) of every condition whose value is a parameter."""
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(spec, list):
        for i, s in enumerate(spec):
            out.extend(parameter_conditions(s, f"{at}[{i}]"))
    elif isinstance(spec, dict):
        if _parameter_of(spec) is not None:
            out.append((at, spec))
        else:
            for k, v in spec.items():
                out.extend(parameter_conditions(v, f"{at}.{k}"))
    return out


def referenced_parameters(spec: Any, at: str = "$") -> list[tuple[str, Any]]:
    """(JSON path, referenced key) of every ``{"$param": …}`` in a filter."""
    out: list[tuple[str, Any]] = []
    if isinstance(spec, list):
        for i, s in enumerate(spec):
            out.extend(referenced_parameters(s, f"{at}[{i}]"))
    elif isinstance(spec, dict):
        if set(spec) == {"$param"}:
            out.append((at, spec["$param"]))
        else:
            for k, v in spec.items():
                out.extend(referenced_parameters(v, f"{at}.{k}"))
    return out


def filter_fields(spec: Any) -> list[str]:
    """Every field path a filter names (for permission checks)."""
    out: list[str] = []
    if isinstance(spec, list):
        for s in spec:
            out.extend(filter_fields(s))
    elif isinstance(spec, dict):
        if isinstance(spec.get("field"), str):
            out.append(spec["field"])
        for k, v in spec.items():
            if k != "field":
                out.extend(filter_fields(v))
    return out


def filter_field_paths(spec: Any, at: str = "$") -> list[tuple[str, str]]:
    """(JSON path of the ``field`` key, field path) of every condition of a filter."""
    out: list[tuple[str, str]] = []
    if isinstance(spec, list):
        for i, s in enumerate(spec):
            out.extend(filter_field_paths(s, f"{at}[{i}]"))
    elif isinstance(spec, dict):
        if isinstance(spec.get("field"), str):
            out.append((f"{at}.field", spec["field"]))
        for k, v in spec.items():
            if k != "field":
                out.extend(filter_field_paths(v, f"{at}.{k}"))
    return out


def rename_links(spec: Any, names: tuple[str, ...], link: str) -> Any:
    """The filter with field paths starting at one of ``names`` starting at
    ``link`` instead (``quote.account`` -> ``parent.account``)."""
    if isinstance(spec, list):
        return [rename_links(s, names, link) for s in spec]
    if not isinstance(spec, dict):
        return spec
    out = {k: rename_links(v, names, link) for k, v in spec.items() if k != "field"}
    if "field" in spec:
        path = spec["field"]
        if isinstance(path, str):
            head, dot, rest = path.partition(".")
            if head in names:
                path = link + dot + rest
        out["field"] = path
    return out
