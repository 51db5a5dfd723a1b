"""Catalogs a client reads to build its palettes and editors without
knowing any app: field types, filter operators, expression functions, and
the administrative divisions that region fields accept."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tangram.engines.expressions import function_catalog
from tangram.engines.forms import regions
from tangram.engines.forms.fieldtypes import FIELD_KINDS
from tangram.engines.forms.query import operator_catalog
from tangram.platform.deps import CurrentActor

router = APIRouter(prefix="/api/meta", tags=["meta"])


@router.get("/field-types")
def field_types(actor: CurrentActor) -> list[dict[str, Any]]:
    return [kind.describe() for kind in FIELD_KINDS.values()]


@router.get("/filter-operators")
def filter_operators(actor: CurrentActor) -> list[dict[str, Any]]:
    return operator_catalog()


@router.get("/functions")
def functions(actor: CurrentActor) -> list[dict[str, Any]]:
    return function_catalog()


@router.get("/regions")
def region_tree(actor: CurrentActor) -> list[dict[str, Any]]:
    """Province › city › district, as cascading options for region pickers."""
    return regions.tree()
