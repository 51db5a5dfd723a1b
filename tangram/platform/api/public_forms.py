"""Public forms: builders publish a form at an anonymous URL; anyone may read
its definition and submit it (rate-limited per IP, with a honeypot and size
limits)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import Field
from starlette.concurrency import run_in_threadpool

from tangram.engines.context import EngineContext
from tangram.engines.publicforms import service
from tangram.errors import ErrorItem, LimitExceeded, ValidationFailed
from tangram.platform.api.body import Body
from tangram.platform.deps import (
    BuilderActor,
    ClockDep,
    ContextDep,
    SessionDep,
    SettingsDep,
    request_language,
)

router = APIRouter(tags=["public forms"])


class PublicFormBody(Body):
    fields: list[str] | None = Field(None, description="Field keys shown; omit for all.")
    utm_fields: dict[str, str] = Field(default_factory=dict,
                                       description='e.g. {"utm_source": "source"}')
    honeypot: str = Field(service.DEFAULT_HONEYPOT, max_length=63)
    max_per_hour: int = Field(20, ge=1, le=10_000)


class SubmitBody(Body):
    values: dict[str, Any] = Field(max_length=200)
    utm: dict[str, str] = Field(default_factory=dict,
                                description="UTM parameters of the page, if not in the URL.")


@router.get("/api/apps/{app}/forms/{form}/public-forms")
def list_public_forms(app: str, form: str, ctx: ContextDep,
                      _b: BuilderActor) -> dict[str, Any]:
    return {"items": service.list_public_forms(ctx, app=app, form=form)}


@router.post("/api/apps/{app}/forms/{form}/public-forms", status_code=status.HTTP_201_CREATED)
def publish_public_form(app: str, form: str, body: PublicFormBody, ctx: ContextDep,
                        _b: BuilderActor) -> dict[str, Any]:
    return service.publish_public_form(ctx, app=app, form=form, fields=body.fields,
                                       utm_fields=body.utm_fields, honeypot=body.honeypot,
                                       max_per_hour=body.max_per_hour)


@router.delete("/api/apps/{app}/public-forms/{token}", status_code=status.HTTP_204_NO_CONTENT)
def unpublish_public_form(app: str, token: str, ctx: ContextDep, _b: BuilderActor) -> None:
    service.unpublish(ctx, app=app, token=token)


def _anonymous(request: Request, session: SessionDep, settings: SettingsDep,
               clock: ClockDep) -> EngineContext:
    return EngineContext(session=session, clock=clock, timezone=settings.timezone,
                         language=request_language(request, settings))


@router.get("/api/public/forms/{token}")
def public_definition(token: str, request: Request, session: SessionDep,
                      settings: SettingsDep, clock: ClockDep) -> dict[str, Any]:
    """No sign-in: the published fields, labels and options, to render the form."""
    return service.definition(_anonymous(request, session, settings, clock), token=token)


@router.post("/api/public/forms/{token}", status_code=status.HTTP_201_CREATED)
async def public_submit(token: str, request: Request, session: SessionDep,
                        settings: SettingsDep, clock: ClockDep) -> dict[str, Any]:
    """No sign-in: submit the form. UTM parameters come from the query string
    (or ``utm`` in the body)."""
    raw = await request.body()
    if len(raw) > service.MAX_BODY_BYTES:
        raise LimitExceeded(f"the submission is larger than {service.MAX_BODY_BYTES} bytes")
    try:
        body = SubmitBody.model_validate_json(raw)
    except ValueError as exc:
        raise ValidationFailed([ErrorItem(code="request_invalid", field="body",
                                          message=f"not a valid submission: {exc}"[:500])]) \
            from None
    utm = {k: v for k, v in request.query_params.items() if k.startswith("utm_")}
    ip = request.client.host if request.client else "unknown"
    # The database work runs off the event loop, like a plain (sync) route.
    return await run_in_threadpool(
        service.submit, _anonymous(request, session, settings, clock), token=token,
        values=body.values, utm={**body.utm, **utm}, ip=ip)

