"""Every HTTP router of the platform; ``create_app`` includes them in this order."""

from fastapi import APIRouter

from tangram.platform.api import (
    apps,
    auth,
    catalog,
    docs,
    files,
    health,
    meta,
    org,
    records,
    roles,
    sharing,
    tokens,
)

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    meta.router,
    catalog.router,
    apps.router,
    sharing.router,
    records.router,
    roles.router,
    org.router,
    tokens.router,
    files.router,
    docs.router,
]
