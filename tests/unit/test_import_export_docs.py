"""Every import mode, duplicate mode, file format and export format is
documented for analysts in docs/import-export.md."""

from __future__ import annotations

from pathlib import Path

from tangram.engines.exports import EXPORT_FORMATS
from tangram.engines.imports import IMPORT_MODES
from tangram.engines.imports.cells import CELL_ADAPTERS
from tangram.engines.imports.dedup import DEDUP_MODES
from tangram.engines.imports.sources import FILE_FORMATS

DOC = (Path(__file__).parents[2] / "docs" / "import-export.md").read_text(encoding="utf-8")


def test_modes_and_formats_are_documented():
    for key in [*IMPORT_MODES, *DEDUP_MODES]:
        assert f"`{key}`" in DOC, key
    for fmt in [*FILE_FORMATS, *EXPORT_FORMATS]:
        assert fmt.upper() in DOC, fmt


def test_every_cell_reading_rule_has_a_row_in_the_table():
    names = {"select": "select", "tree_select": "tree select", "multi_select": "multi-select",
             "integer": "integer", "decimal": "decimal", "currency": "currency",
             "percent": "percent", "date": "date", "datetime": "date & time",
             "time": "time", "boolean": "yes/no", "text": "text", "long_text": "long text",
             "rich_text": "rich text", "email": "email", "phone": "phone", "url": "URL"}
    for kind in CELL_ADAPTERS:
        assert names[kind] in DOC, kind
