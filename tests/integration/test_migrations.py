"""The alembic revisions build exactly the tables the code declares: a table
or column added to the MetaData without a migration fails here."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tangram.db import create_engine_from_url, metadata
from tangram.platform import migrate
from tangram.platform.schema import load_all_tables


def schema_differences(db_url: str) -> list:
    load_all_tables()
    engine = create_engine_from_url(db_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "include_name": migrate.include_name, "compare_type": True,
                "target_metadata": metadata})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def test_upgrade_head_matches_the_metadata(db_url):
    migrate.upgrade(db_url)
    assert schema_differences(db_url) == []
    assert migrate.current_revisions(db_url) == migrate.head_revisions()


def test_the_comparison_notices_a_missing_migration(db_url):
    migrate.upgrade(db_url)
    extra = sa.Table("not_migrated", metadata, sa.Column("id", sa.Integer, primary_key=True))
    try:
        diffs = schema_differences(db_url)
    finally:
        metadata.remove(extra)
    assert [d[0] for d in diffs] == ["add_table"]


def test_tables_outside_the_metadata_are_left_alone(db_url):
    """Record tables of published forms share the database; autogenerate must
    not propose to drop them."""
    migrate.upgrade(db_url)
    engine = create_engine_from_url(db_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE rec_crm_lead (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()
    assert schema_differences(db_url) == []


def test_downgrade_to_base_removes_every_table(db_url):
    migrate.upgrade(db_url)
    migrate.downgrade(db_url, "base")
    engine = create_engine_from_url(db_url, poolclass=sa.NullPool)
    try:
        assert sa.inspect(engine).get_table_names() == ["alembic_version"]
    finally:
        engine.dispose()
    assert migrate.current_revisions(db_url) == []
