"""API tokens of the signed-in user: create (shown once), list, revoke."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, status
from pydantic import Field

from tangram.platform.api.body import Body
from tangram.platform.deps import ClockDep, SessionDep, SignedInActor
from tangram.platform.permissions import tokens

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


class TokenBody(Body):
    name: str = Field(min_length=1, max_length=100)
    apps: list[str] = Field(min_length=1, description='App keys, or ["*"] for all.')
    actions: list[str] = Field(min_length=1, description="e.g. [\"read\", \"create\"]")
    expires_at: datetime | None = None


@router.get("")
def list_tokens(session: SessionDep, actor: SignedInActor) -> list[dict[str, Any]]:
    assert actor.id is not None
    return tokens.list_tokens(session, user_id=actor.id)


@router.post("", status_code=status.HTTP_201_CREATED)
def create_token(body: TokenBody, session: SessionDep, actor: SignedInActor,
                 clock: ClockDep) -> dict[str, Any]:
    """The response's ``token`` is shown this once; only its hash is kept."""
    assert actor.id is not None
    return tokens.create_token(session, user_id=actor.id, name=body.name, apps=body.apps,
                               actions=body.actions, now=clock.now(),
                               expires_at=body.expires_at)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: uuid.UUID, session: SessionDep, actor: SignedInActor,
                 clock: ClockDep) -> None:
    tokens.revoke_token(session, token_id=token_id, actor=actor, now=clock.now())
