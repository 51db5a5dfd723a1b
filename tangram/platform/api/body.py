"""The base of every request body the API reads."""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, model_validator

MAX_DEPTH = 100  # levels of JSON objects and arrays in one body


class Body(BaseModel):
    """A request body: keys it does not define are refused with 422 naming
    them — a misspelled optional key (``"verison"``) would otherwise be
    ignored, and with it the check it asked for.

    Before any field is read, the JSON is checked for what no field can take:
    a lone UTF-16 surrogate (``"\\ud800"``: valid JSON, but no character, and
    no database can store it) and nesting deeper than :data:`MAX_DEPTH`."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _readable_json(cls, data: Any) -> Any:
        problem = json_problem(data)
        if problem is not None:
            # Raised as is (not a ValueError pydantic would wrap), so the 422
            # names where in the body the problem is.
            code, loc, message = problem
            raise RequestValidationError([{"type": code, "loc": ("body", *loc),
                                           "msg": message}])
        return data


def json_problem(data: Any) -> tuple[str, tuple[str | int, ...], str] | None:
    """What is wrong with ``data`` (parsed JSON) — a lone surrogate or nesting
    deeper than :data:`MAX_DEPTH` — as (code, where, message); None when it is
    fine. Iterative, so any depth is safe to check.

    >>> json_problem({"a": ["x\\ud800"]})[:2]
    ('lone_surrogate', ('a', 0))
    """
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            if (bad := _surrogate(value)) is not None:
                return "lone_surrogate", loc, _lone("the text", bad)
            continue
        if not isinstance(value, (dict, list)):
            continue
        if len(loc) >= MAX_DEPTH:
            return "too_deep", loc, f"the JSON nests deeper than {MAX_DEPTH} levels"
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            if isinstance(key, str) and (bad := _surrogate(key)) is not None:
                shown = key.encode("utf-8", "backslashreplace").decode()
                return "lone_surrogate", loc, _lone(f"key {shown!r}", bad)
            stack.append(((*loc, key), item))
    return None


def _lone(what: str, char: str) -> str:
    return f"{what} contains a lone UTF-16 surrogate (\\u{ord(char):04x}), which is not a character"


def _surrogate(text: str) -> str | None:
    """The first lone surrogate of ``text`` (JSON's \\ud800), else None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return text[exc.start]
    return None
