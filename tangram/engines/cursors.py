"""Keyset-paging cursors, one format for every list that pages with ``after``
(records, the flow inbox, the directory): the values the next page starts
after, as compact JSON in URL-safe base64 — opaque to clients, checked when
it comes back.

    token = encode_cursor({"v": ["2026-03-01T00:00:00+00:00", "0190…"]})
    decode_cursor(token, of="inbox")  # the payload, or CursorInvalid (422)
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any

from tangram.errors import ErrorItem

if TYPE_CHECKING:
    from tangram.engines.forms.query import CursorInvalid


def encode_cursor(payload: Any) -> str:
    raw = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode("ascii").rstrip("=")


def cursor_invalid(why: str, *, of: str) -> CursorInvalid:
    """The error for an ``after`` that this list (``of``: "query", "inbox", …)
    did not make."""
    # Imported here: the query compiler is the home of the error class.
    from tangram.engines.forms.query import CursorInvalid

    item = ErrorItem(code="cursor_invalid", field="after", message=(
        f"the cursor is not valid for this {of} ({why}); start again from the first page"))
    return CursorInvalid([item], item.message)


def decode_cursor(token: str, *, of: str) -> Any:
    """The payload :func:`encode_cursor` made, or :func:`cursor_invalid`."""
    try:
        padded = token + "=" * (-len(token) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise cursor_invalid("not a cursor", of=of) from None
