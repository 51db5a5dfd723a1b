"""The small error hierarchy every layer raises.

Each error has a stable ``code`` (documented in ``docs/errors.md``) and an HTTP
status; the platform renders all of them with one exception handler, so engines
never import FastAPI. Messages say what was wrong, where, and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tangram import i18n


@dataclass
class ErrorItem:
    """One problem, located by ``field`` (a record field path such as
    ``lines[2].qty``) or by ``path`` (a JSON path inside a definition), and by
    ``file`` when the definition came from a file of an app package."""

    code: str
    message: str
    field: str | None = None
    path: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)
    file: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.file is not None:
            out["file"] = self.file
        if self.field is not None:
            out["field"] = self.field
        if self.path is not None:
            out["path"] = self.path
        if self.details:
            out["details"] = self.details
        return out


class TangramError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, errors: list[ErrorItem] | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.errors:
            out["errors"] = [e.as_dict() for e in self.errors]
        if self.details:
            out["details"] = self.details
        return out


class ValidationFailed(TangramError):
    """A record (or request body) broke one or more rules; ``errors`` lists all."""

    status = 422
    code = "validation_failed"

    def __init__(self, errors: list[ErrorItem], message: str | None = None, *,
                 language: str = "en") -> None:
        """Without ``message`` the summary counts the errors in ``language``
        (the caller's: ``ctx.language``)."""
        super().__init__(message or i18n.message("validation_failed", language,
                                                 count=len(errors)), errors=errors)


class DefinitionInvalid(TangramError):
    """A definition (form, app, flow, report, package file) is not valid."""

    status = 422
    code = "definition_invalid"


class NotFound(TangramError):
    status = 404
    code = "not_found"


class Conflict(TangramError):
    """The request lost a race (stale version, task already decided, duplicate)."""

    status = 409
    code = "conflict"


class RecordLocked(Conflict):
    """The record is locked by its form's lock rule (in approval, signed…)."""

    code = "record_locked"


class ConfirmationRequired(TangramError):
    """A destructive change needs explicit confirmation; ``details`` holds the dry run."""

    status = 409
    code = "confirmation_required"


class NotAuthenticated(TangramError):
    status = 401
    code = "not_authenticated"


class PermissionDenied(TangramError):
    status = 403
    code = "permission_denied"


class RateLimited(TangramError):
    status = 429
    code = "rate_limited"


class LimitExceeded(TangramError):
    """Input larger than allowed (file size, string length, evaluation steps)."""

    status = 413
    code = "limit_exceeded"


ALL_ERRORS: tuple[type[TangramError], ...] = (
    TangramError, ValidationFailed, DefinitionInvalid, NotFound, Conflict, RecordLocked,
    ConfirmationRequired, NotAuthenticated, PermissionDenied, RateLimited, LimitExceeded,
)
