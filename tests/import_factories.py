"""Factories for import and export tests: a lead/account app, files in every
encoding and format, and a one-call import."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from openpyxl import Workbook

from tangram.engines.access import AllowAll
from tangram.engines.forms.files import LocalFileStore
from tangram.engines.imports import ImportEnvironment, configure_job, create_job, run_job
from tests.factories import World, field, form_body

STATUS = [{"value": "new", "label": {"zh": "新建", "en": "New"}},
          {"value": "qualified", "label": {"zh": "合格", "en": "Qualified"}}]

ACCOUNT = form_body("account", field("name", required=True, label={"zh": "客户名称",
                                                                     "en": "Account name"}),
                    field("code", unique=True, label={"zh": "编码", "en": "Code"}))
LEAD = form_body(
    "lead",
    field("name", required=True, label={"zh": "姓名", "en": "Name"}),
    field("mobile", "phone", unique=True, label={"zh": "手机", "en": "Mobile phone"}),
    field("email", "email", label={"zh": "邮箱", "en": "Email"}),
    field("status", "select", options=STATUS, label={"zh": "状态", "en": "Status"}),
    field("account", "relation", target="account", label={"zh": "客户", "en": "Account"}),
    field("budget", "currency", label={"zh": "预算", "en": "Budget"}),
    field("since", "date", label={"zh": "首次接触", "en": "First contact"}),
    field("vip", "boolean", label={"zh": "重要", "en": "VIP"}),
    field("note", "long_text", label={"zh": "备注", "en": "Note"}),
    title_field="name",
)

ZH_HEADER = ["姓名", "手机", "邮箱", "状态", "客户", "预算", "首次接触", "重要"]
EN_HEADER = ["name", "MOBILE PHONE", " Email ", "Status", "account", "budget", "First Contact",
             "vip"]


class ImportWorld(World):
    """A World with the lead app published, a file store and an import env."""

    def __init__(self, engine: Any, tmp_path: Path, **kwargs: Any) -> None:
        kwargs.setdefault("language", "zh")
        super().__init__(engine, app="crm", **kwargs)
        self.store = LocalFileStore(tmp_path / "files")
        self.env = ImportEnvironment(sessions=self.sessions, store=self.store,
                                     clock=self.clock, policy_for=lambda s: AllowAll())
        self.publish(ACCOUNT)
        self.publish(LEAD)

    def upload(self, content: bytes, name: str = "leads.csv") -> dict[str, Any]:
        return self.run(lambda ctx: create_job(ctx, self.store, app="crm", form="lead",
                                               file_name=name, source=io.BytesIO(content)))

    def import_file(self, content: bytes, name: str = "leads.csv", *,
                    overrides: dict[str, str | None] | None = None,
                    dedup: dict[str, Any] | None = None, mode: str = "valid_only",
                    batch_rows: int = 500) -> dict[str, Any]:
        job = self.upload(content, name)
        self.run(lambda ctx: configure_job(ctx, job_id=_uuid(job["id"]), overrides=overrides,
                                           dedup=dedup, mode=mode))
        return run_job(self.env, job_id=_uuid(job["id"]), actor=self.actor,
                       batch_rows=batch_rows)

    def leads(self) -> list[dict[str, Any]]:
        from tangram.engines.forms import records
        from tangram.engines.forms.query import ListQuery

        out: list[dict[str, Any]] = []
        after = None
        while True:
            page = self.run(records.list_records, app="crm", form="lead",
                            query=ListQuery(limit=500, after=after, sort=["id"]))
            out += page["items"]
            after = page["next_cursor"]
            if not after:
                return out

    def add_account(self, name: str, code: str | None = None) -> str:
        from tangram.engines.forms import records

        values = {"name": name, **({"code": code} if code else {})}
        rec = self.run(records.create_record, app="crm", form="account", data=values)
        return str(rec["id"])

    def error_file(self, job: dict[str, Any]) -> bytes:
        from tangram.engines.imports import open_error_file

        def read(ctx: Any) -> bytes:
            _, _, fh = open_error_file(ctx, self.store, job_id=_uuid(job["id"]))
            with fh:
                return fh.read()
        return self.run(read)


def _uuid(text: str) -> Any:
    import uuid

    return uuid.UUID(text)


def csv_bytes(header: list[str], rows: list[list[Any]], encoding: str = "utf-8") -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def xlsx_bytes(header: list[str], rows: list[list[Any]]) -> bytes:
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(header)
    for row in rows:
        ws.append(row)
    buffer = io.BytesIO()
    wb.save(buffer)
    return buffer.getvalue()


def lead_row(i: int, **changes: Any) -> list[Any]:
    """A valid lead row in ZH_HEADER order."""
    row = {"name": f"客户{i}", "mobile": f"1380000{i:04d}", "email": f"u{i}@example.com",
           "status": "新建", "account": "", "budget": f"{i}.50", "since": "2026/01/31",
           "vip": "是"}
    row.update(changes)
    return list(row.values())
