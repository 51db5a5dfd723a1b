"""Wiring of the import and export engines to the serving process: the
viewer's policy for sessions opened outside the request (a streamed export,
an import thread), and import jobs in background threads.

A job's state is in the database, so a restarted server (or the CLI) can
resume a job this process was running when it died.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy.orm import Session

from tangram.engines.access import AccessPolicy
from tangram.engines.context import Actor
from tangram.engines.imports import ImportEnvironment, run_job
from tangram.platform.permissions.tokens import TokenScope, TokenScopedPolicy

log = logging.getLogger(__name__)


def policy_factory(app: FastAPI, token_scope: TokenScope | None = None
                   ) -> Callable[[Session], AccessPolicy]:
    """The access policy of a new session, as for the request's caller."""
    state = app.state

    def policy_for(session: Session) -> AccessPolicy:
        policy: AccessPolicy = state.policy_for(session, state.clock, state.settings.timezone)
        return TokenScopedPolicy(policy, token_scope) if token_scope is not None else policy

    return policy_for


def import_environment(app: FastAPI, token_scope: TokenScope | None = None
                       ) -> ImportEnvironment:
    state = app.state
    return ImportEnvironment(sessions=state.sessions, store=state.file_store, clock=state.clock,
                             policy_for=policy_factory(app, token_scope),
                             timezone=state.settings.timezone)


def start_in_background(env: ImportEnvironment, job_id: uuid.UUID, actor: Actor) -> None:
    """Run the job in a daemon thread; its progress is read from the job row."""

    def work() -> None:
        try:
            run_job(env, job_id=job_id, actor=actor)
        except Exception:  # the job row already says what happened
            log.exception("import %s stopped", job_id)

    threading.Thread(target=work, name=f"import-{job_id}", daemon=True).start()
