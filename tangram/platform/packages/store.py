"""What the platform remembers of an installed package.

``app_packages`` holds the installed version and its manifest (and the
package's templates and seed rows); ``package_definitions`` the package's own bodies of
that version — the *base*. The live definitions (``definitions`` table) are
the base plus the tenant's customization layer; the layer is exactly their
difference, matched by stable keys and ids (see ``layer.py``), so it can
never go stale whichever editor made the change.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.db import metadata
from tangram.db.types import GUID, JSONValue, UTCDateTime

app_packages_table = sa.Table(
    "app_packages", metadata,
    sa.Column("app", sa.String(63), primary_key=True),
    sa.Column("version", sa.String(100), nullable=False),
    sa.Column("manifest", JSONValue, nullable=False),
    sa.Column("files", JSONValue, nullable=False),  # {path: text}: templates, seed rows
    sa.Column("installed_at", UTCDateTime(), nullable=False),
    sa.Column("installed_by", GUID, nullable=True),
    sa.Column("upgraded_at", UTCDateTime(), nullable=True),
    sa.Column("previous_version", sa.String(100), nullable=True),
)

package_definitions_table = sa.Table(
    "package_definitions", metadata,
    sa.Column("app", sa.String(63), sa.ForeignKey("app_packages.app", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("key", sa.String(63), primary_key=True),
    sa.Column("body", JSONValue, nullable=False),
)


@dataclass(frozen=True)
class InstalledPackage:
    app: str
    version: str
    manifest: dict[str, Any]
    files: dict[str, str]
    installed_at: datetime
    upgraded_at: datetime | None


def _installed(row: Any) -> InstalledPackage:
    return InstalledPackage(app=row.app, version=row.version, manifest=row.manifest,
                            files=row.files, installed_at=row.installed_at,
                            upgraded_at=row.upgraded_at)


def find_installed(session: Session, app: str, *, lock: bool = False
                   ) -> InstalledPackage | None:
    t = app_packages_table
    stmt = sa.select(t).where(t.c.app == app)
    if lock:
        stmt = stmt.with_for_update()
    row = session.execute(stmt).first()
    return _installed(row) if row else None


def list_installed(session: Session) -> list[InstalledPackage]:
    t = app_packages_table
    return [_installed(r) for r in session.execute(sa.select(t).order_by(t.c.app))]


def base_bodies(session: Session, app: str) -> dict[tuple[str, str], dict[str, Any]]:
    t = package_definitions_table
    rows = session.execute(sa.select(t.c.kind, t.c.key, t.c.body).where(t.c.app == app))
    return {(r.kind, r.key): r.body for r in rows}


def save_installed(session: Session, *, app: str, version: str, manifest: dict[str, Any],
                   files: dict[str, str], bodies: dict[tuple[str, str], dict[str, Any]],
                   user_id: uuid.UUID | None, now: datetime) -> None:
    """Record (or replace) the installed version and its base bodies."""
    t, d = app_packages_table, package_definitions_table
    previous = find_installed(session, app)
    values = {"version": version, "manifest": manifest, "files": files}
    if previous is None:
        session.execute(sa.insert(t).values(app=app, installed_at=now, installed_by=user_id,
                                            **values))
    else:
        session.execute(sa.update(t).where(t.c.app == app).values(
            upgraded_at=now, previous_version=previous.version, **values))
    session.execute(sa.delete(d).where(d.c.app == app))
    if bodies:
        session.execute(sa.insert(d), [{"app": app, "kind": kind, "key": key, "body": body}
                                       for (kind, key), body in sorted(bodies.items())])


def forget_installed(session: Session, app: str) -> None:
    session.execute(sa.delete(package_definitions_table)
                    .where(package_definitions_table.c.app == app))
    session.execute(sa.delete(app_packages_table).where(app_packages_table.c.app == app))
