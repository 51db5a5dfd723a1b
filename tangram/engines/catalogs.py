"""The designer catalogs as ``GET /api/meta/{name}`` serves them: one function
each, in :data:`META_CATALOGS`, whose answer belongs to the caller.

The engines build their catalogs from registry entries and put the entries'
own ``label`` and ``description`` maps (and lists such as ``examples``) into
the answer. A caller changing such an answer in place would change the
registry itself: every later answer, and what validation reads. The
functions here hand out a copy that shares no dict or list with any
registry. The copy is a plain walk over JSON data, a small fraction of the
cost of building the catalog (the field types' JSON Schemas alone take far
longer).

>>> answer = field_types()
>>> answer[0]["label"]["zh"] = "改掉"
>>> field_types()[0]["label"]["zh"]
'单行文本'
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar, cast

from tangram.engines import expressions
from tangram.engines.flows import registry as flow_registry  # the package registers the kinds
from tangram.engines.forms import fieldtypes, query, regions
from tangram.engines.reports import registry as report_registry

_SCALARS = (str, int, float, bool, type(None))
T = TypeVar("T")


def detached(value: T) -> T:
    """A copy of JSON data that shares no mutable object with ``value``."""
    return cast(T, _copy(value))


def _copy(value: Any) -> Any:
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is dict:
        return {key: _copy(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return kind(_copy(item) for item in value)
    return copy.deepcopy(value)  # anything else a plugin put in: never shared either


def field_types() -> list[dict[str, Any]]:
    return detached(fieldtypes.field_type_catalog())


def field_type_categories() -> list[dict[str, Any]]:
    return detached(fieldtypes.field_type_categories())


def filter_operators() -> list[dict[str, Any]]:
    return detached(query.operator_catalog())


def functions() -> list[dict[str, Any]]:
    return detached(expressions.function_catalog())


def function_categories() -> list[dict[str, Any]]:
    return detached(expressions.function_categories())


def reports() -> dict[str, Any]:
    return detached(report_registry.catalog())


def flows() -> dict[str, Any]:
    return detached(flow_registry.describe())


def region_tree() -> list[dict[str, Any]]:
    """Built afresh on every call already (nothing to detach)."""
    return regions.tree()


# name in ``/api/meta/{name}`` -> the function answering it
META_CATALOGS: dict[str, Callable[[], Any]] = {
    "field-types": field_types, "field-type-categories": field_type_categories,
    "filter-operators": filter_operators, "functions": functions,
    "function-categories": function_categories, "reports": reports, "flows": flows,
    "regions": region_tree,
}
