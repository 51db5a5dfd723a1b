"""Cache of report results, in process memory.

The key is the compiled SQL text and its parameters (so the viewer's row
scope, every parameter and "today" are part of it: a narrower scope compiles
to other SQL and can never hit a wider one's entry), the definition version,
the language, and the data version of every form the report reads (bumped in
the transaction of every record write: ``form_tables.data_version``). So an
unchanged dashboard re-renders without querying, a write anywhere in a source
form misses, and a process never serves what another process's write made
stale: the data versions are read from the database on every run (one small
indexed query).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from tangram.engines.forms.systables import form_tables_table

MAX_ENTRIES = 256

_entries: OrderedDict[str, Any] = OrderedDict()
_lock = threading.Lock()
stats = {"hits": 0, "misses": 0}


def data_versions(session: Session, app: str, forms: tuple[str, ...]) -> dict[str, int]:
    ft = form_tables_table
    rows = session.execute(sa.select(ft.c.form, ft.c.data_version)
                           .where(ft.c.app == app, ft.c.form.in_(forms)))
    return {r.form: int(r.data_version) for r in rows}


def cache_key(*, sql: str, params: dict[str, Any], version: Any, language: str,
              versions: dict[str, int], database: str) -> str:
    payload = json.dumps({"sql": sql, "params": params, "version": version, "lang": language,
                          "data": versions, "db": database}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def get(key: str) -> Any:
    with _lock:
        value = _entries.get(key)
        if value is not None:
            _entries.move_to_end(key)
            stats["hits"] += 1
        else:
            stats["misses"] += 1
        return value


def put(key: str, value: Any) -> None:
    with _lock:
        _entries[key] = value
        _entries.move_to_end(key)
        while len(_entries) > MAX_ENTRIES:
            _entries.popitem(last=False)


def clear() -> None:
    with _lock:
        _entries.clear()
        stats.update(hits=0, misses=0)
