"""The flow engine: approvals and automations as one durable interpreter.

Importing the package registers every built-in node type, action kind and
the record-event subscriber; ``tangram.engines.flows.service`` is the entry
point for definitions and reads, ``tasks`` for what people do,
``triggers`` for starts and ``worker`` for what is due.
"""

from tangram.engines.flows import (  # noqa: F401 - registration side effects
    actions,
    approvals,
    runtime,
    tasks,
    triggers,
)
