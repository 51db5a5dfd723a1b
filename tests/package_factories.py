"""A small app package (a help desk) in two versions, as ``{path: bytes}``,
for the package tests. Version 2 adds a field, relabels an option, changes
the flow and a report."""

from __future__ import annotations

import copy
import json
from typing import Any


def label(zh: str, en: str) -> dict[str, str]:
    return {"zh": zh, "en": en}


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


def helpdesk_v1() -> dict[str, Any]:
    """The package as JSON values by path (mutable: tests break it on purpose)."""
    return {
        "app.json": {
            "key": "helpdesk", "version": "1.0.0", "name": label("服务台", "Help desk"),
            "platform": ">=0.1.0",
            "menus": [{"key": "tickets", "label": label("工单", "Tickets"), "form": "ticket"}],
            "roles": [{"key": "agent", "label": label("客服", "Agent"),
                       "forms": {"ticket": {"actions": ["read", "create", "update"],
                                            "scope": "all"},
                                 "customer": {"actions": ["read"], "scope": "all"}}}],
        },
        "forms/customer.json": {
            "key": "customer", "label": label("客户", "Customer"),
            "fields": [
                {"key": "name", "type": "text", "label": label("名称", "Name"), "required": True,
                 "unique": True},
                {"key": "tier", "type": "select", "label": label("等级", "Tier"),
                 "options": [{"value": "basic", "label": label("基础", "Basic")},
                             {"value": "gold", "label": label("金牌", "Gold")}]},
                {"key": "ticket_count", "type": "rollup", "label": label("工单数", "Tickets"),
                 "source": {"form": "ticket", "via": "customer"}, "aggregate": "count"},
            ],
        },
        "forms/ticket.json": {
            "key": "ticket", "label": label("工单", "Ticket"),
            "fields": [
                {"key": "subject", "type": "text", "label": label("主题", "Subject"),
                 "required": True},
                {"key": "customer", "type": "relation", "target": "customer",
                 "label": label("客户", "Customer")},
                {"key": "priority", "type": "select", "label": label("优先级", "Priority"),
                 "default": "normal",
                 "options": [{"value": "low", "label": label("低", "Low")},
                             {"value": "normal", "label": label("中", "Normal")},
                             {"value": "high", "label": label("高", "High")}]},
                {"key": "hours", "type": "decimal", "label": label("工时", "Hours"), "min": 0},
            ],
            "rules": [{"assert": "record.hours == None or record.hours < 100",
                       "message": label("工时过多", "Too many hours"), "fields": ["hours"]}],
        },
        "reports/tickets_by_priority.json": {
            "key": "tickets_by_priority", "label": label("按优先级", "By priority"),
            "form": "ticket",
            "dimensions": [{"type": "value", "key": "priority", "field": "priority"}],
            "measures": [{"agg": "count", "key": "tickets"}],
            "chart": {"type": "bar", "x": "priority", "y": ["tickets"]},
        },
        "dashboards/overview.json": {
            "key": "overview", "label": label("概览", "Overview"),
            "widgets": [{"key": "w1", "report": "tickets_by_priority"}],
        },
        "templates/ticket.html": "<h1>{{ record.subject }}</h1>",
        "data/seed/customer.json": [{"$ref": "acme", "name": "Acme", "tier": "gold"},
                                    {"name": "Globex", "tier": "basic"}],
        "data/seed/ticket.json": [{"subject": "Printer", "customer": {"$ref": "acme"},
                                   "priority": "high", "hours": "1.5"}],
        "data/demo/ticket.json": [{"subject": f"Demo {i}", "priority": "low"}
                                  for i in range(5)],
    }


def helpdesk_v2() -> dict[str, Any]:
    """Version 2: a new field, a relabelled option, a changed report."""
    pkg = copy.deepcopy(helpdesk_v1())
    pkg["app.json"]["version"] = "1.1.0"
    ticket = pkg["forms/ticket.json"]
    ticket["fields"].append({"key": "channel", "type": "select",
                             "label": label("渠道", "Channel"),
                             "options": [{"value": "phone", "label": label("电话", "Phone")},
                                         {"value": "email", "label": label("邮件", "Email")}]})
    ticket["fields"][2]["options"][2]["label"] = label("紧急", "Urgent")
    pkg["reports/tickets_by_priority.json"]["measures"].append(
        {"agg": "sum", "key": "hours", "field": "hours"})
    return pkg


def as_files(pkg: dict[str, Any]) -> dict[str, bytes]:
    return {name: value.encode() if isinstance(value, str) else _json(value)
            for name, value in pkg.items()}
