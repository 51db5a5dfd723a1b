"""The export engine: list views as CSV or XLSX, streamed with the viewer's
permissions (``service``), values formatted for people (``values``), one
writer per format (``writers``). Analyst documentation: ``docs/import-export.md``."""

from tangram.engines.exports.service import ExportPlan, export_rows, plan_export, stream_export
from tangram.engines.exports.writers import EXPORT_FORMATS

__all__ = ["EXPORT_FORMATS", "ExportPlan", "export_rows", "plan_export", "stream_export"]
