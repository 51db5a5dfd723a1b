"""Options schemas are built once per model class; each caller gets its own copy."""

from __future__ import annotations

from pydantic import BaseModel

from tangram.engines import catalogs
from tangram.metamodel import common
from tangram.metamodel.common import model_schema


def test_a_schema_is_built_once_and_each_answer_is_the_callers_own(monkeypatch):
    class Options(BaseModel):
        size: int = 1

    built = []
    real = Options.model_json_schema.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(Options, "model_json_schema",
                        classmethod(lambda cls, **kw: built.append(cls) or real(cls, **kw)))
    first = model_schema(Options)
    first["properties"]["size"]["default"] = 99
    second = model_schema(Options)
    assert second["properties"]["size"]["default"] == 1
    assert built == [Options]


def test_the_designer_catalogs_build_no_schema_after_the_first_answer():
    catalogs.field_types(), catalogs.flows()
    misses = common._built_schema.cache_info().misses
    fields, flows = catalogs.field_types(), catalogs.flows()
    assert common._built_schema.cache_info().misses == misses
    assert all("options_schema" in kind for kind in fields)
    assert any("options_schema" in node for node in flows["node_types"])
