"""Report parameters: values the viewer changes, substituted into the filter.

A filter value ``{"$param": "owner"}`` is replaced by the parameter's value
(the viewer's, else the declared default). A condition whose parameter has
no value is left out — an empty "owner" parameter means every owner. The
filter compiler then checks the value against the field like any other.

A ``date_range`` parameter's value — a relative range (``"this_month"``) or
``[from, to]`` dates — becomes the local days it covers: each condition it
feeds is written as ``gte`` its first day and ``lt`` the day after its last
(:func:`with_day_bounds`), whatever the condition's operator, because the
filter language's ``date_range`` operator takes relative ranges only.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from tangram.engines.context import Actor
from tangram.engines.forms.date_ranges import DayRange, resolve_date_range
from tangram.errors import ErrorItem, ValidationFailed
from tangram.metamodel.reports import Parameter

MAX_TEXT = 1000


class ParameterInvalid(ValidationFailed):
    """A report parameter value is not valid; ``errors`` name the parameter."""

    code = "parameter_invalid"


def day_range(value: Any, *, today: date) -> DayRange:
    """The local days a date_range parameter's value covers: ``[from, to]``
    dates (both included) or a relative range. Raises ``ValueError`` saying
    what is allowed.

    >>> day_range(["2026-01-01", "2026-03-31"], today=date(2026, 5, 20))
    DayRange(start=datetime.date(2026, 1, 1), end=datetime.date(2026, 3, 31))
    """
    if not isinstance(value, list):
        return resolve_date_range(value, today=today)
    if len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise ValueError("a date range is [from, to] as YYYY-MM-DD texts or a relative "
                         "range such as \"this_month\"")
    try:
        start, end = (date.fromisoformat(v) for v in value)
    except ValueError:
        raise ValueError(f"{value!r} is not a [from, to] pair of dates (YYYY-MM-DD)") from None
    if start > end:
        raise ValueError(f"the range starts {start} after it ends {end}")
    return DayRange(start, end)


def day_start(day: date, *, timezone: str, instant: bool) -> str:
    """The filter value where ``day`` starts: the date for a date field; local
    midnight in the organization's zone for a date-time field."""
    if not instant:
        return day.isoformat()
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).isoformat()


def _check(p: Parameter, value: Any, actor: Actor, today: date) -> Any:
    """A problem message, or the value to substitute."""
    if p.type == "date_range":
        day_range(value, today=today)
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


def substitute(spec: Any, values: Mapping[str, Any]) -> Any:
    """The filter with parameter references replaced; conditions whose parameter
    has no value become ``{}`` (no condition)."""
    if isinstance(spec, list):
        return [substitute(s, values) for s in spec]
    if not isinstance(spec, dict):
        return spec
    key = _parameter_of(spec)
    if key is not None:
        if not isinstance(key, str) or key not in values:
            return spec  # left for validation to report (see referenced_parameters)
        if values[key] is None:
            return {}
        return {**spec, "value": values[key]}
    return {k: substitute(v, values) for k, v in spec.items()}


def with_day_bounds(spec: Any, declared: list[Parameter], values: Mapping[str, Any], *,
                    today: date, timezone: str, is_instant: Callable[[str], bool]) -> Any:
    """The filter with each condition fed by a date_range parameter that has a
    value written as ``{"and": [gte first day, lt the day after the last]}`` on
    its field (``is_instant``: is that field a date-time?)."""
    ranges = {p.key: day_range(values[p.key], today=today) for p in declared
              if p.type == "date_range" and values.get(p.key) is not None}
    if not ranges:
        return spec

    def bounded(s: Any) -> Any:
        if isinstance(s, list):
            return [bounded(x) for x in s]
        if not isinstance(s, dict):
            return s
        key = _parameter_of(s)
        if not isinstance(key, str) or key not in ranges:
            return {k: bounded(v) for k, v in s.items()}
        days, path = ranges[key], s["field"]
        instant = is_instant(path)
        return {"and": [
            {"field": path, "op": "gte",
             "value": day_start(days.start, timezone=timezone, instant=instant)},
            {"field": path, "op": "lt", "value": day_start(
                days.end + timedelta(days=1), timezone=timezone, instant=instant)}]}

    return bounded(spec)


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
