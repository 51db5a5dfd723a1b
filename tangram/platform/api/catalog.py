"""Catalogs a client reads to build its palettes and editors without
knowing any app: field types and their categories, filter operators,
expression functions and their categories, and the administrative divisions
that region fields accept (all from :mod:`tangram.engines.catalogs`: each
answer is the caller's own copy)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tangram.engines import catalogs
from tangram.platform.deps import CurrentActor

router = APIRouter(prefix="/api/meta", tags=["meta"])


@router.get("/field-types")
def field_types(actor: CurrentActor) -> list[dict[str, Any]]:
    return catalogs.field_types()


@router.get("/field-type-categories")
def field_type_categories(actor: CurrentActor) -> list[dict[str, Any]]:
    """The groups of ``/field-types`` (their ``category``), in order, with their titles."""
    return catalogs.field_type_categories()


@router.get("/filter-operators")
def filter_operators(actor: CurrentActor) -> list[dict[str, Any]]:
    return catalogs.filter_operators()


@router.get("/functions")
def functions(actor: CurrentActor) -> list[dict[str, Any]]:
    return catalogs.functions()


@router.get("/function-categories")
def function_categories(actor: CurrentActor) -> list[dict[str, Any]]:
    """The groups of ``/functions`` (their ``category``), in order, with their titles."""
    return catalogs.function_categories()


@router.get("/regions")
def region_tree(actor: CurrentActor) -> list[dict[str, Any]]:
    """Province › city › district, as cascading options for region pickers."""
    return catalogs.region_tree()
