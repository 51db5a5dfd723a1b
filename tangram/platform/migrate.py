"""Alembic, driven from code: the CLI, the tests and ``migrations/env.py`` share
one configuration, so `tangram db upgrade` works from a checkout and from an
installed wheel alike.

    upgrade("sqlite:///var/tangram.db")      # alembic upgrade head
    current_revisions("sqlite:///var/tangram.db")  # ["0001"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

import tangram
from tangram.db import create_engine_from_url, metadata, normalize_url
from tangram.db.types import ExactDecimal, UTCDateTime

# An installed wheel carries the revisions inside the package (see
# pyproject's force-include); a checkout keeps them at the repository root.
_PACKAGE_ROOT = Path(tangram.__file__).resolve().parent
_CANDIDATES = (_PACKAGE_ROOT / "migrations", _PACKAGE_ROOT.parent / "migrations")


def migrations_dir() -> Path:
    for candidate in _CANDIDATES:
        if (candidate / "env.py").is_file():
            return candidate
    raise RuntimeError("alembic migrations not found; looked in "
                       + ", ".join(str(c) for c in _CANDIDATES))


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    # Generated revisions are fixed and formatted like the rest of the code.
    for key, value in {
        "hooks": "ruff_format, ruff_fix",
        "ruff_fix.type": "module", "ruff_fix.module": "ruff",
        "ruff_fix.options": "check --fix --exit-zero --quiet REVISION_SCRIPT_FILENAME",
        "ruff_format.type": "module", "ruff_format.module": "ruff",
        "ruff_format.options": "format --quiet REVISION_SCRIPT_FILENAME",
    }.items():
        config.set_section_option("post_write_hooks", key, value)
    # Passed as an attribute, not as sqlalchemy.url: ini options interpolate
    # '%', which percent-encoded URLs are full of.
    config.attributes["database_url"] = normalize_url(database_url)
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    return list(script.get_heads())


def current_revisions(database_url: str) -> list[str]:
    engine = create_engine_from_url(database_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return list(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Compare only the platform's own tables: record tables of published
    forms live in the same database but on a MetaData of the form engine's,
    and autogenerate must never propose to drop them."""
    if type_ == "table":
        return name in metadata.tables
    return True


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Render our portable types by name in generated revisions (so a revision
    means the same on both backends), and boolean server defaults as
    ``sa.false()``/``sa.true()`` rather than SQLite's ``'0'``, which PostgreSQL
    refuses for a boolean column."""
    if type_ == "type":
        if isinstance(obj, UTCDateTime):
            return "tangram.db.types.UTCDateTime()"
        if isinstance(obj, ExactDecimal):
            return f"tangram.db.types.ExactDecimal({obj.precision}, {obj.scale})"
        if isinstance(obj, sa.JSON) and "postgresql" in getattr(obj, "_variant_mapping", {}):
            return "tangram.db.types.JSONValue"
    if type_ == "server_default" and isinstance(obj, sa.DefaultClause):
        if isinstance(obj.arg, sa.sql.elements.False_):
            return "sa.false()"
        if isinstance(obj.arg, sa.sql.elements.True_):
            return "sa.true()"
    return False
