"""JSON Schemas of the definition models, for editors that validate packages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from tangram.metamodel import storage
from tangram.platform.deps import CurrentActor

router = APIRouter(prefix="/api/meta", tags=["meta"])


class SchemaRef(BaseModel):
    name: str
    url: str


class SchemaList(BaseModel):
    schemas: list[SchemaRef]


@router.get("/schemas", response_model=SchemaList)
def list_schemas(actor: CurrentActor) -> SchemaList:
    return SchemaList(schemas=[SchemaRef(name=name, url=f"{router.prefix}/schemas/{name}")
                               for name in sorted(storage.SCHEMAS)])


@router.get("/schemas/{name}", response_model=dict[str, Any],
            responses={404: {"description": "No schema has this name."}})
def get_schema(name: str, actor: CurrentActor) -> dict[str, Any]:
    return storage.json_schema(name)
