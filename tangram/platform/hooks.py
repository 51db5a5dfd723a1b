"""What the platform tells the engines, which do not import it: who holds an
app role (flow assignees, report alerts) and how user placeholders are
filled for checking (forms' list views). Installed when the platform package
is imported, so every entry point — the server, the CLI installing a
package, a worker — has them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from tangram.engines.flows.assignees import set_role_resolver
from tangram.engines.forms.views import set_placeholder_sampler
from tangram.platform.permissions import grants
from tangram.platform.permissions.placeholders import sample_facts, substitute


def role_members(session: Session, app: str, role: str) -> list[uuid.UUID]:
    """Holders of an app role, as the permissions see them (``grants.role_holders``:
    sub-departments included where the assignment says so)."""
    return grants.role_holders(session, app=app, role=role)


def sample_placeholders(session: Session, spec: Any) -> Any:
    """``spec`` with its user placeholders filled with made-up values."""
    return substitute(spec, sample_facts(session))


def install() -> None:
    set_role_resolver(role_members)
    set_placeholder_sampler(sample_placeholders)


install()
