"""Every HTTP router of the platform; ``create_app`` includes them in this order."""

from fastapi import APIRouter

from tangram.platform.api import (
    apps,
    auth,
    catalog,
    docs,
    exports,
    files,
    flows,
    health,
    imports,
    meta,
    notifications,
    org,
    pickers,
    printing,
    public_forms,
    records,
    reports,
    roles,
    sharing,
    tokens,
    webhooks,
)
from tangram.platform.packages import api as packages

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    meta.router,
    catalog.router,
    apps.router,
    packages.router,
    sharing.router,
    records.router,
    pickers.router,
    imports.router,
    exports.router,
    printing.router,
    reports.router,
    roles.router,
    org.router,
    tokens.router,
    files.router,
    flows.router,
    notifications.router,
    webhooks.router,
    public_forms.router,
    docs.router,
]
