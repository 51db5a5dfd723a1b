"""Node types: one entry per kind, read by validation (successors, which
nodes wait), execution (``enter``), the metadata endpoint and the docs.

Built-in node types register themselves in the modules that implement them
(``runtime`` for start/branch/parallel/delay/end, ``approvals``, ``actions``)
through :func:`register_node`, the same way a plugin would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tangram.engines.flows.runtime import Execution, Run


@dataclass(frozen=True)
class NodeTypeSpec:
    type: str
    label: dict[str, str]
    model: Any
    successors: Callable[[Any], list[str]]
    enter: Callable[[Run, Any, Execution], None]
    waits: bool = False  # may stay active across transactions (a timeout may apply)
    holds: tuple[str, ...] = ()  # what a token here may own: tasks, timers, jobs
    # Whether a token at this node may own timers (an approval without
    # timeouts never does, so leaving it cancels none).
    timed: Callable[[Any], bool] = lambda node: True
    doc: str = ""


NODE_TYPES: dict[str, NodeTypeSpec] = {}


def register_node(spec: NodeTypeSpec) -> NodeTypeSpec:
    NODE_TYPES[spec.type] = spec
    return spec


def successors(node: Any) -> list[str]:
    return NODE_TYPES[node.type].successors(node)


def describe() -> dict[str, Any]:
    """Every registry of the flow engine, for ``GET /api/meta/flows`` and the docs."""
    from tangram.engines.flows.actions import ACTION_KINDS
    from tangram.engines.flows.approvals import TIMEOUT_ACTIONS
    from tangram.engines.flows.assignees import ASSIGNEE_RULES
    from tangram.engines.flows.tasks import TASK_ACTIONS
    from tangram.engines.flows.triggers import TRIGGER_KINDS
    from tangram.metamodel.common import model_schema
    from tangram.metamodel.flows import TASK_ACTION_DOCS

    def entries(reg: dict[str, Any], attr: str) -> list[dict[str, Any]]:
        return [{"kind": k, "label": s.label,
                 "description": palette_doc(getattr(s, "model", None), getattr(s, "doc", "")),
                 **({"options_schema": model_schema(s.model)}
                    if getattr(s, "model", None) is not None else {})}
                for k, s in reg.items()]

    return {
        "node_types": entries(NODE_TYPES, "type"),
        "trigger_kinds": entries(TRIGGER_KINDS, "kind"),
        "assignee_rules": entries(ASSIGNEE_RULES, "kind"),
        "action_kinds": entries(ACTION_KINDS, "kind"),
        "timeout_actions": entries(TIMEOUT_ACTIONS, "kind"),
        "task_actions": [{"kind": k, "label": s.label,
                          "description": TASK_ACTION_DOCS.get(k) or palette_doc(None, s.doc),
                          "by": s.by}
                         for k, s in TASK_ACTIONS.items()],
    }


def palette_doc(model: Any, doc: str) -> dict[str, str]:
    """What an entry does, as the designer shows it: plain text in each
    language. A built-in kind's model says it (``palette``, next to its
    fields); a plugin's entry without one shows its ``doc`` (or its model's
    docstring) as one plain paragraph in every language."""
    palette = getattr(model, "palette", None)
    if palette:
        return dict(palette)
    text = doc or (getattr(model, "__doc__", None) or "")
    text = " ".join(text.replace("``", "").split())
    return {"zh": text, "en": text}
