"""What every engine call gets besides its definition: who acts, when, in
which language, under which access policy. Engines never import FastAPI; the
platform builds an :class:`EngineContext` per request (or per job)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.orm import Session

from tangram.clock import SYSTEM_CLOCK, Clock
from tangram.engines.access import AccessPolicy, AllowAll


@dataclass(frozen=True)
class Actor:
    """The user (or system job) on whose behalf an engine acts."""

    id: uuid.UUID | None
    username: str = "system"
    display_name: str = "System"
    is_admin: bool = False
    department_ids: tuple[uuid.UUID, ...] = ()
    primary_department_id: uuid.UUID | None = None
    role_keys: tuple[str, ...] = ()
    language: str = "zh"
    timezone: str = "Asia/Shanghai"

    def as_variables(self) -> dict[str, object]:
        """The ``user`` variable seen by expressions."""
        return {
            "id": str(self.id) if self.id else None,
            "username": self.username,
            "name": self.display_name,
            "is_admin": self.is_admin,
            "department": str(self.primary_department_id) if self.primary_department_id else None,
            "departments": [str(d) for d in self.department_ids],
            "roles": list(self.role_keys),
        }


SYSTEM_ACTOR = Actor(id=None, is_admin=True)


@dataclass
class EngineContext:
    session: Session
    actor: Actor = SYSTEM_ACTOR
    clock: Clock = SYSTEM_CLOCK
    language: str = "zh"
    timezone: str = "Asia/Shanghai"
    policy: AccessPolicy = field(default_factory=AllowAll)

    def now(self) -> datetime:
        return self.clock.now()

    def today(self) -> date:
        return self.clock.today(self.timezone)
