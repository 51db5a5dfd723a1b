"""Sharing records and transferring their ownership (single and bulk)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, status
from pydantic import Field

from tangram.platform.api.body import Body
from tangram.platform.deps import ContextDep
from tangram.platform.permissions import sharing
from tangram.platform.permissions.sharing import ShareAccess

router = APIRouter(prefix="/api/apps/{app}/forms/{form}/records", tags=["sharing"])


class ShareBody(Body):
    access: ShareAccess = "read"
    user_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None


class BulkTransferBody(Body):
    owner: uuid.UUID = Field(description="The new owner's user id.")
    record_ids: list[str] = Field(min_length=1, max_length=5000)


class TransferBody(Body):
    owner: uuid.UUID = Field(description="The new owner's user id.")
    version: int | None = Field(None, description="The record version you read; if it "
                                "changed meanwhile (e.g. someone else took it): 409.")


@router.post("/transfer")
def bulk_transfer(app: str, form: str, body: BulkTransferBody, ctx: ContextDep
                  ) -> dict[str, Any]:
    """Give many records to another owner, all or none (audited)."""
    return {"items": sharing.transfer(ctx, app=app, form=form, record_ids=body.record_ids,
                                      new_owner=body.owner)}


@router.post("/{record_id}/transfer")
def transfer(app: str, form: str, record_id: str, body: TransferBody, ctx: ContextDep
             ) -> dict[str, Any]:
    return sharing.transfer(ctx, app=app, form=form, record_ids=[record_id],
                            new_owner=body.owner, version=body.version)[0]


@router.get("/{record_id}/shares")
def list_shares(app: str, form: str, record_id: str, ctx: ContextDep) -> dict[str, Any]:
    return {"items": sharing.list_shares(ctx, app=app, form=form, record_id=record_id)}


@router.post("/{record_id}/shares", status_code=status.HTTP_201_CREATED)
def share(app: str, form: str, record_id: str, body: ShareBody, ctx: ContextDep
          ) -> dict[str, Any]:
    return sharing.share_record(ctx, app=app, form=form, record_id=record_id,
                                access=body.access, user_id=body.user_id,
                                department_id=body.department_id)


@router.delete("/{record_id}/shares/{share_id}", status_code=status.HTTP_204_NO_CONTENT)
def unshare(app: str, form: str, record_id: str, share_id: uuid.UUID, ctx: ContextDep
            ) -> None:
    sharing.unshare_record(ctx, app=app, form=form, record_id=record_id, share_id=share_id)
