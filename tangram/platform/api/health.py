"""Liveness and database check for load balancers; needs no login."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

router = APIRouter(prefix="/api", tags=["health"])
log = logging.getLogger(__name__)


class Health(BaseModel):
    status: str
    database: str


@router.get("/health", response_model=Health,
            responses={503: {"model": Health, "description": "The database is unreachable."}})
def health(request: Request) -> JSONResponse:
    try:
        with request.app.state.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.SQLAlchemyError:
        log.exception("health check: the database did not answer SELECT 1")
        return JSONResponse({"status": "error", "database": "error"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
