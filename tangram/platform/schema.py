"""All platform tables, imported in one place so MetaData is complete
(alembic's env.py and test fixtures use this)."""

from __future__ import annotations

from sqlalchemy import Engine

from tangram.db import metadata


def load_all_tables() -> None:
    # Importing the modules registers their tables on the shared MetaData.
    import tangram.engines.directory  # noqa: F401
    import tangram.engines.flows.tables  # noqa: F401
    import tangram.engines.forms.systables  # noqa: F401
    import tangram.engines.imports.tables  # noqa: F401
    import tangram.engines.notify.tables  # noqa: F401
    import tangram.engines.publicforms.tables  # noqa: F401
    import tangram.engines.reports.alerts  # noqa: F401
    import tangram.metamodel.flows  # noqa: F401
    import tangram.metamodel.storage  # noqa: F401
    import tangram.platform.auth.tables  # noqa: F401
    import tangram.platform.packages.store  # noqa: F401
    import tangram.platform.permissions.tables  # noqa: F401


def create_platform_tables(engine: Engine) -> None:
    """Create every platform table directly (tests); deployments use alembic."""
    load_all_tables()
    metadata.create_all(engine)
