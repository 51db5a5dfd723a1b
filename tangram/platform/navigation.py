"""An app's menu as one member sees it: the package's menus (``app.json``)
filtered to what the member may open, and the dashboard shown first.

A menu entry links to a form's list (optionally with a saved filter), a
report, a dashboard or a page of the client (the inbox, the public pool); it
may be meant for some roles only. Entries the member may not open are left
out, and so are groups left empty. Administrators and the app's builders
see every entry (they design the menu).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tangram.engines.context import EngineContext
from tangram.metamodel import storage
from tangram.platform.packages.manifest import AppManifest, MenuItem
from tangram.platform.packages.store import find_installed
from tangram.platform.permissions import definitions, grants


def app_menu(ctx: EngineContext, app: str) -> dict[str, Any]:
    """``{"menus": [...], "default_dashboard": key | None}`` for the caller; an
    app not installed from a package has no menus (a client then builds
    one from the navigation's forms, reports and dashboards)."""
    installed = find_installed(ctx.session, app)
    if installed is None:
        return {"menus": [], "default_dashboard": None}
    manifest = AppManifest.model_validate(installed.manifest)
    designer = definitions.is_designer(ctx, app)
    held = {r.key for r in grants.held_roles(ctx.session, app=app, user_id=ctx.actor.id)}
    cache: dict[tuple[str, str], bool] = {}

    def allowed(kind: str, key: str, check: Callable[[], bool]) -> bool:
        if (kind, key) not in cache:
            cache[(kind, key)] = check()
        return cache[(kind, key)]

    def may_open(item: MenuItem) -> bool:
        if item.roles and not designer and not held & set(item.roles):
            return False
        if item.form:
            return allowed("form", item.form,
                           lambda: definitions.may_read_form(ctx, app, item.form or ""))
        if item.report:
            return allowed("report", item.report, lambda: _published(ctx, app, "report",
                                                                   item.report or "")
                           and definitions.report_visible(ctx, app, item.report or ""))
        if item.dashboard:
            return allowed("dashboard", item.dashboard,
                           lambda: definitions.dashboard_visible(ctx, app, item.dashboard or ""))
        return True  # a page of the client

    def entry(item: MenuItem) -> dict[str, Any] | None:
        if item.children:
            children = [e for c in item.children if (e := entry(c)) is not None]
            if not children:
                return None
            return {"key": item.key, "label": item.label, "icon": item.icon,
                    "children": children}
        if not may_open(item):
            return None
        out: dict[str, Any] = {"key": item.key, "label": item.label, "icon": item.icon}
        for target in ("form", "report", "dashboard", "page", "filter"):
            value = getattr(item, target)
            if value is not None:
                out[target] = value
        return out

    menus = [e for m in manifest.menus if (e := entry(m)) is not None]
    return {"menus": menus, "default_dashboard": _default_dashboard(ctx, app, manifest, held)}


def _default_dashboard(ctx: EngineContext, app: str, manifest: AppManifest,
                       held: set[str]) -> str | None:
    """The first dashboard named for a role the caller holds (in the order
    of ``default_dashboards``), else the one for ``*`` — when they may see it."""
    ordered = [d for role, d in manifest.default_dashboards.items() if role in held]
    if "*" in manifest.default_dashboards:
        ordered.append(manifest.default_dashboards["*"])
    for key in ordered:
        if definitions.dashboard_visible(ctx, app, key):
            return key
    return None


def _published(ctx: EngineContext, app: str, kind: str, key: str) -> bool:
    return storage.latest_body(ctx.session, app=app, kind=kind, key=key) is not None
