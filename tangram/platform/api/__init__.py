"""Every HTTP router of the platform; ``create_app`` includes them in this order."""

from fastapi import APIRouter

from tangram.platform.api import apps, auth, catalog, docs, files, health, meta, records

ROUTERS: list[APIRouter] = [
    health.router,
    auth.router,
    meta.router,
    catalog.router,
    apps.router,
    records.router,
    files.router,
    docs.router,
]
