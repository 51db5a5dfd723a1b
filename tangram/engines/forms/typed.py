"""A record's JSON values as expressions see them: decimals as Decimal,
dates as date, date-times as datetime (the records API writes them as text)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tangram.engines.context import EngineContext


def typed_values(ctx: EngineContext, app: str, form: str,
                 data: Mapping[str, Any]) -> dict[str, Any]:
    from tangram.engines.forms.registry import get_runtime

    rt = get_runtime(ctx.session, app, form)
    out: dict[str, Any] = dict(data)
    for key, compiled in rt.fields.items():
        value = data.get(key)
        if value is None or isinstance(value, list | dict):
            continue
        try:
            out[key] = compiled.convert(value)
        except Exception:  # noqa: S112 - a value the converter refuses stays as JSON
            continue
    return out
