"""Notifications: the signed-in user's inbox and channel preferences, and the
group channels (DingTalk / WeCom robots) administrators configure."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from pydantic import Field

from tangram.engines.notify import service
from tangram.engines.notify.channels import CHANNELS
from tangram.platform.api.body import Body
from tangram.platform.deps import AdminActor, ContextDep, SignedInActor

router = APIRouter(prefix="/api/notifications", tags=["notifications"])


class MarkReadBody(Body):
    ids: list[uuid.UUID] | None = Field(None, description="Omit to mark all read.")


class PreferencesBody(Body):
    channels: dict[str, bool] = Field(description="Channel key → on/off, e.g. "
                                      '{"email": true}.')


class GroupChannelBody(Body):
    key: str = Field(max_length=63)
    kind: str = Field(description="dingtalk or wecom")
    label: str = Field(max_length=200)
    config: dict[str, Any] = Field(description="dingtalk: webhook_url, secret; wecom: key.")


@router.get("")
def inbox(ctx: ContextDep, _u: SignedInActor, unread: bool = False,
          limit: Annotated[int, Query(ge=1, le=200)] = 50) -> dict[str, Any]:
    return service.inbox(ctx, unread_only=unread, limit=limit)


@router.get("/unread-count")
def unread_count(ctx: ContextDep, _u: SignedInActor) -> dict[str, int]:
    return {"unread": service.unread_count(ctx)}


@router.post("/read")
def mark_read(body: MarkReadBody, ctx: ContextDep, _u: SignedInActor) -> dict[str, int]:
    changed = service.mark_read(ctx, ids=body.ids)
    return {"marked": changed, "unread": service.unread_count(ctx)}


@router.get("/channels")
def channel_kinds(_u: SignedInActor) -> dict[str, Any]:
    """The channel registry (for settings screens and the flow designer)."""
    return {"items": [{"key": k, "label": c.label, "personal": c.personal,
                       "default_enabled": c.default_enabled} for k, c in CHANNELS.items()]}


@router.get("/preferences")
def get_preferences(ctx: ContextDep, _u: SignedInActor) -> dict[str, Any]:
    return service.get_preferences(ctx)


@router.put("/preferences")
def set_preferences(body: PreferencesBody, ctx: ContextDep,
                    _u: SignedInActor) -> dict[str, Any]:
    return service.set_preferences(ctx, channels=body.channels)


@router.get("/group-channels")
def list_group_channels(ctx: ContextDep, _u: SignedInActor) -> dict[str, Any]:
    return {"items": service.list_group_channels(ctx)}


@router.post("/group-channels", status_code=status.HTTP_201_CREATED)
def create_group_channel(body: GroupChannelBody, ctx: ContextDep,
                         _a: AdminActor) -> dict[str, Any]:
    return service.create_group_channel(ctx, key=body.key, kind=body.kind, label=body.label,
                                        config=body.config)


@router.delete("/group-channels/{key}", status_code=status.HTTP_204_NO_CONTENT)
def delete_group_channel(key: str, ctx: ContextDep, _a: AdminActor) -> None:
    service.delete_group_channel(ctx, key=key)
