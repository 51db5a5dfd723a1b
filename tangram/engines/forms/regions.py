"""China's administrative divisions (province › city › district, GB/T 2260
codes at county level and above), shipped with the platform so region fields
validate offline. The data is ``regions.json`` beside this module, built by
``tools/build_regions.py`` (source and licence there).

Names are the official full names (``广东省``, ``深圳市``, ``南山区``); what
people type in spreadsheets — ``广东``, ``深圳``, ``内蒙古`` — is resolved to
the one full name it starts, when exactly one matches.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

_DATA: dict[str, dict[str, list[str]]] = json.loads(
    (Path(__file__).with_name("regions.json")).read_text(encoding="utf-8"))

PROVINCES: frozenset[str] = frozenset(_DATA)


def cities(province: str) -> dict[str, list[str]] | None:
    """The cities of ``province`` with their districts (None: no such province)."""
    return _DATA.get(province)


def resolve(name: str, choices: Any) -> str:
    """``name`` as a full name among ``choices``: itself when listed, else
    the single choice it starts (``广东`` → ``广东省``); unchanged otherwise."""
    if name in choices:
        return name
    return _prefix_index(tuple(choices)).get(name, name)


@cache
def _prefix_index(choices: tuple[str, ...]) -> dict[str, str]:
    index: dict[str, str | None] = {}
    for full in choices:
        for end in range(2, len(full)):
            short = full[:end]
            index[short] = None if short in index and index[short] != full else full
    return {k: v for k, v in index.items() if v is not None}


def tree() -> list[dict[str, Any]]:
    """The whole table as cascading options (for pickers):
    ``[{"value": "广东省", "children": [{"value": "深圳市", "children": [...]}]}]``."""
    return [{"value": p, "children": [
        {"value": c, "children": [{"value": d} for d in districts]}
        for c, districts in cs.items()]} for p, cs in _DATA.items()]
