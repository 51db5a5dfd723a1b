"""Every registry entry of the flow engine is documented in docs/flows.md
(a new node type, trigger, rule or action fails here until it is)."""

from __future__ import annotations

from pathlib import Path

import tangram.engines.flows  # noqa: F401 - registers the built-in entries
from tangram.engines.flows.registry import describe

DOC = (Path(__file__).resolve().parents[2] / "docs" / "flows.md").read_text()


def test_every_flow_registry_entry_is_documented():
    missing = [f"{registry}: {entry['kind']}" for registry, entries in describe().items()
               for entry in entries if f"`{entry['kind']}`" not in DOC]
    assert missing == []
