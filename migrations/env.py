"""Alembic environment for the platform's own tables (``tangram.db.metadata``).

The URL comes from the config attribute ``database_url`` (set by
tangram.platform.migrate) or else from the settings (TANGRAM_DATABASE_URL).
SQLite gets batch mode, since it cannot ALTER most things in place.
"""

from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context

from tangram.db import create_engine_from_url, metadata, normalize_url
from tangram.platform.migrate import include_name, render_item
from tangram.platform.schema import load_all_tables
from tangram.settings import Settings

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

load_all_tables()


def database_url() -> str:
    url = config.attributes.get("database_url") or Settings().database_url
    return normalize_url(url)


def configure_options(dialect_name: str) -> dict:
    return {
        "target_metadata": metadata,
        "render_as_batch": dialect_name == "sqlite",
        "include_name": include_name,
        "render_item": render_item,
        "compare_type": True,
    }


def run_migrations_offline() -> None:
    url = database_url()
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"},
                      **configure_options(sa.engine.make_url(url).get_dialect().name))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine_from_url(database_url(), poolclass=sa.NullPool)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection,
                              **configure_options(connection.dialect.name))
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
