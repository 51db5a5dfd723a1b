"""Factories for engine-level tests: apps, forms and contexts with few literals."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from tangram.clock import FrozenClock
from tangram.db import session_factory
from tangram.engines.context import SYSTEM_ACTOR, Actor, EngineContext
from tangram.metamodel import storage
from tangram.metamodel.forms import App


def label(text: str) -> dict[str, str]:
    return {"zh": text, "en": text}


def field(key: str, type_: str = "text", **options: Any) -> dict[str, Any]:
    return {"key": key, "type": type_, "label": label(key), **options}


def form_body(key: str, *fields: dict[str, Any], **options: Any) -> dict[str, Any]:
    return {"key": key, "label": label(key), "fields": list(fields), **options}


class World:
    """A database with one app, a clock and a way to run engine calls in a
    transaction, as the HTTP layer would."""

    def __init__(self, engine: Engine, app: str = "demo", *, actor: Actor = SYSTEM_ACTOR,
                 language: str = "en") -> None:
        self.engine = engine
        self.sessions = session_factory(engine)
        self.clock = FrozenClock()
        self.app = app
        self.actor = actor
        self.language = language
        with self.sessions.begin() as s:
            if not any(a.key == app for a in storage.list_apps(s)):
                storage.create_app(s, app=App(key=app, name=label(app)), user_id=None,
                                   now=self.clock.now())

    def ctx(self, session: Session, actor: Actor | None = None) -> EngineContext:
        return EngineContext(session=session, actor=actor or self.actor, clock=self.clock,
                             language=self.language)

    def run(self, fn: Any, /, *args: Any, actor: Actor | None = None, **kwargs: Any) -> Any:
        """Run ``fn(ctx, ...)`` in its own transaction (committed unless it raises)."""
        with self.sessions.begin() as s:
            return fn(self.ctx(s, actor), *args, **kwargs)

    def publish(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        from tangram.engines.forms.publish import publish_form, save_form_draft

        def go(ctx: EngineContext) -> dict[str, Any]:
            save_form_draft(ctx, app=self.app, key=body["key"], body=body)
            return publish_form(ctx, app=self.app, key=body["key"], **kwargs)
        return self.run(go)
