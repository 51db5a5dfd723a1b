"""The small error hierarchy every layer raises.

Each error has a stable ``code`` (documented in ``docs/errors.md``) and an HTTP
status; the platform renders all of them with one exception handler, so engines
never import FastAPI. Messages say what was wrong, where, and what is allowed.

An error people meet in daily work is raised with a catalog message
(:class:`tangram.i18n.Msg`) instead of a text: ``message`` holds its English (for
logs and code), and the handler says it in the caller's language::

    raise Conflict(Msg("task_decided", status=status_word("approved")))
    exc.message            # 'this task was already decided (approved)'
    exc.as_dict("zh")      # {'code': 'conflict', 'message': '该任务已被处理（已同意）'}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tangram import i18n
from tangram.i18n import Msg


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
    text: Msg | None = None  # the catalog message ``message`` is the English of

    @classmethod
    def localized(cls, code: str, text: Msg, *, field: str | None = None,
                  path: str | None = None, details: dict[str, Any] | None = None
                  ) -> ErrorItem:
        """An item whose message the HTTP layer says in the caller's language."""
        return cls(code=code, message=text.render("en"), field=field, path=path,
                   details=details or {}, text=text)

    def as_dict(self, language: str | None = None) -> dict[str, Any]:
        """The item as JSON; a catalog message in ``language`` (None: ``message``)."""
        message = self.text.render(language) if self.text and language else self.message
        out: dict[str, Any] = {"code": self.code, "message": message}
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
    """``message``: a text, or a catalog message (then ``message`` is its English
    and ``text`` the message). ``language``: the caller's language where the
    raiser already knew it (sign-in errors); the HTTP handler says the error in
    the language the request asks for, else in that one, else in English."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str | Msg, *, errors: list[ErrorItem] | None = None,
                 details: dict[str, Any] | None = None, language: str | None = None) -> None:
        self.text = message if isinstance(message, Msg) else None
        self.message = message.render("en") if isinstance(message, Msg) else message
        super().__init__(self.message)
        self.errors = errors or []
        self.details = details or {}
        self.language = language

    def fallback_text(self) -> Msg | None:
        """For an error raised with a plain (English) text: a catalog message
        that says its gist in other languages, if its class has one."""
        return None

    def as_dict(self, language: str | None = None) -> dict[str, Any]:
        """The error as the API returns it: ``code``, ``message``, ``errors``,
        ``details``. Catalog messages are said in ``language``; None (or a
        message without one) gives ``message`` as raised."""
        text = self.text or (self.fallback_text() if language not in (None, "en") else None)
        message = text.render(language) if text is not None and language else self.message
        out: dict[str, Any] = {"code": self.code, "message": message}
        if self.errors:
            out["errors"] = [e.as_dict(language) for e in self.errors]
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
        if message is not None:
            super().__init__(message, errors=errors)
            return
        # The summary stays in ``language`` (what callers read before it had a
        # catalog message) and the handler may say it in another.
        super().__init__(Msg("validation_failed", count=len(errors)), errors=errors,
                         language=language)
        self.message = i18n.message("validation_failed", language, count=len(errors))


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
    retry_after: int | None = None  # seconds: the Retry-After header

    def fallback_text(self) -> Msg | None:
        # Sign-in lockouts and public form submissions raise English texts;
        # "try again in N minutes" is still said in the caller's language.
        if self.retry_after:
            return Msg("rate_limited_minutes", minutes=-(-self.retry_after // 60))
        return Msg("rate_limited")


class LimitExceeded(TangramError):
    """Input larger than allowed (file size, string length, evaluation steps)."""

    status = 413
    code = "limit_exceeded"

    def fallback_text(self) -> Msg | None:
        # Uploads, prints and public forms raise English texts: the gist in
        # the caller's language, the specifics (which limit) as raised.
        return Msg("limit_exceeded", detail=self.message)


ALL_ERRORS: tuple[type[TangramError], ...] = (
    TangramError, ValidationFailed, DefinitionInvalid, NotFound, Conflict, RecordLocked,
    ConfirmationRequired, NotAuthenticated, PermissionDenied, RateLimited, LimitExceeded,
)
