"""The import engine: spreadsheets (CSV in any Chinese encoding, XLSX) into
form records, through the form engine's validation, as resumable jobs.

Modules, each one step: ``sources`` (file formats), ``mapping`` (columns to
fields), ``cells`` (cell values per field kind), ``lookups`` (relations, users,
departments by title), ``dedup`` (duplicate modes), ``pipeline`` (one batch),
``jobs`` (upload, preview, run, resume, error file), ``tables``.
Analyst documentation: ``docs/import-export.md``.
"""

from tangram.engines.imports.jobs import (
    IMPORT_MODES,
    ImportEnvironment,
    Progress,
    configure_job,
    create_job,
    find_unfinished,
    get_job,
    open_error_file,
    preview,
    run_job,
)

__all__ = ["IMPORT_MODES", "ImportEnvironment", "Progress", "configure_job", "create_job",
           "find_unfinished", "get_job", "open_error_file", "preview", "run_job"]
