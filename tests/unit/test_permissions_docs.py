"""docs/permissions.md documents every scope kind, user placeholder, role
action and audit action — a new entry without docs fails here."""

from __future__ import annotations

import re
from pathlib import Path

from tangram.metamodel.roles import ROLE_ACTIONS
from tangram.platform.permissions.placeholders import PLACEHOLDERS
from tangram.platform.permissions.scopes import SCOPES

DOC = (Path(__file__).parents[2] / "docs" / "permissions.md").read_text()
SOURCES = Path(__file__).parents[2] / "tangram" / "platform"


def test_every_scope_and_placeholder_is_documented():
    assert [k for k in SCOPES if f"| `{k}` |" not in DOC] == []
    assert [p for p in PLACEHOLDERS if f"| `{p}` |" not in DOC] == []


def test_every_role_action_is_documented():
    assert [a for a in ROLE_ACTIONS if f"`{a}`" not in DOC] == []


def test_every_audit_action_is_documented():
    used = set()
    for path in SOURCES.rglob("*.py"):
        used |= set(re.findall(r'action="([a-z_]+\.[a-z_]+)"', path.read_text()))
        for a, b in re.findall(r'"([a-z_]+\.[a-z_]+)" if \w+ else "([a-z_]+\.[a-z_]+)"',
                               path.read_text()):
            used |= {a, b}
    documented = set(re.findall(r"`([a-z_]+\.[a-z_]+)`", DOC))
    for short in re.findall(r"`([a-z_]+)\.([a-z_]+)`/`([a-z_]+)`", DOC):
        documented.add(f"{short[0]}.{short[2]}")
    assert used and sorted(used - documented) == []
