"""Building blocks shared by every definition: keys, localized labels, expressions."""

from __future__ import annotations

import copy
import functools
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

KEY_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
_KEY_RE = re.compile(KEY_PATTERN)
LANGUAGES = ("zh", "en")


def check_key(value: str, what: str = "key") -> str:
    """Keys become SQL identifiers only after passing this check (and quoting)."""
    if not isinstance(value, str) or not _KEY_RE.match(value):
        raise ValueError(
            f"{what} {value!r} is not valid: use 1-63 lowercase letters, digits and "
            "underscores, starting with a letter"
        )
    return value


Key = Annotated[str, Field(pattern=KEY_PATTERN, description="Stable identifier: "
                           "lowercase letters, digits, underscores; starts with a letter.")]


def _check_label(value: dict[str, str]) -> dict[str, str]:
    if not value or not any(v.strip() for v in value.values()):
        raise ValueError("a label needs at least one non-empty text, e.g. {\"zh\": \"商机\"}")
    for lang, text in value.items():
        if not re.match(r"^[a-z]{2}(-[A-Za-z]{2,4})?$", lang):
            raise ValueError(f"label language {lang!r} is not a language code like zh or en")
        if len(text) > 500:
            raise ValueError(f"label text for {lang!r} is longer than 500 characters")
    return value


Label = Annotated[
    dict[str, str],
    AfterValidator(_check_label),
    Field(description="Localized text, e.g. {\"zh\": \"商机\", \"en\": \"Opportunity\"}",
          json_schema_extra={"minProperties": 1}),
]

Expression = Annotated[str, Field(min_length=1, max_length=4000, description=(
    "An expression in Tangram's sandboxed expression language (see docs/expressions.md)."))]


def localize(label: dict[str, str] | None, lang: str = "zh") -> str:
    """Pick the text for ``lang``, falling back to zh, en, then any language."""
    if not label:
        return ""
    for candidate in (lang, lang.split("-")[0], "zh", "en"):
        if label.get(candidate):
            return label[candidate]
    return next(iter(label.values()))


class Definition(BaseModel):
    """Base of every definition model: unknown keys are refused (a typo in a
    package must be an error, not silently ignored)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# Tags of unions discriminated by the shape of the JSON (an object or a list
# of them): never keys (they hold a "-"), dropped from error paths.
SHAPE_TAGS = frozenset({"one-object", "object-list"})


def object_or_list(item: Any) -> Any:
    """The type "one ``item`` object, or a list of them", whose validation
    errors point at what the author wrote (``$.forms.lead[1].scope``)."""
    from pydantic import Discriminator, Tag

    return Annotated[Annotated[item, Tag("one-object")] | Annotated[
        list[item], Field(min_length=1), Tag("object-list")], Discriminator(
            lambda v: "object-list" if isinstance(v, list) else "one-object")]


def json_path(loc: tuple[Any, ...]) -> str:
    """pydantic ``loc`` → ``$.fields[3].max_length`` style JSON path."""
    out = "$"
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}"
    return out


@functools.cache
def _built_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True)


def model_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema (by alias), the caller's own copy. Built once per
    model class — a class's schema cannot change, and building one costs
    milliseconds, which the designer catalogs paid for every field type and
    node option model on every request."""
    return copy.deepcopy(_built_schema(model))


@dataclass(frozen=True)
class PaletteGroup:
    """A group of a designer palette (field types, expression functions): a
    key entries name as their ``category``, and a label and description
    ``{"zh": …, "en": …}``."""

    key: str
    label: dict[str, str]
    description: dict[str, str]

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "label": self.label, "description": self.description}

