"""The import engine on both backends: encodings, formats, mapping, per-row
errors, duplicate modes, relations, error-file round trip, all-or-nothing."""

from __future__ import annotations

import csv
import io
from datetime import datetime

import pytest
from openpyxl import load_workbook

from tangram.engines.imports import preview
from tangram.errors import ValidationFailed
from tests.import_factories import (
    EN_HEADER,
    ZH_HEADER,
    ImportWorld,
    _uuid,
    csv_bytes,
    lead_row,
    xlsx_bytes,
)


@pytest.fixture
def world(engine, tmp_path):
    return ImportWorld(engine, tmp_path)


def by_mobile(world):
    return {r["mobile"]: r for r in world.leads()}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "gbk", "gb18030"])
def test_each_encoding_of_a_csv_imports_chinese_intact(world, encoding):
    content = csv_bytes(ZH_HEADER, [lead_row(1, name="张三"), lead_row(2, name="李四·欧阳")],
                        encoding)
    job = world.import_file(content)
    assert job["status"] == "succeeded", job
    assert job["encoding"] == {"utf-8-sig": "utf-8"}.get(encoding, encoding if encoding
                                                           == "utf-8" else "gb18030")
    assert job["counts"] == {"created": 2, "updated": 0, "skipped": 0, "errors": 0}
    leads = by_mobile(world)
    assert leads["13800000001"]["name"] == "张三"
    assert leads["13800000002"]["name"] == "李四·欧阳"
    assert leads["13800000001"]["status"] == "new"  # the label 新建 became its value
    assert leads["13800000001"]["vip"] is True and leads["13800000001"]["since"] == "2026-01-31"


def test_xlsx_with_typed_cells(world):
    content = xlsx_bytes(["姓名", "手机", "预算", "首次接触", "重要"], [
        ["王五", 13800000003, 1234.5, datetime(2026, 2, 3), True],
        ["赵六", "138 0000 0004", "1,000.25", "2026年3月4日", "否"]])
    job = world.import_file(content, "leads.xlsx")
    assert job["status"] == "succeeded" and job["format"] == "xlsx", job
    leads = by_mobile(world)
    assert leads["13800000003"]["budget"] == "1234.50"
    assert leads["13800000003"]["since"] == "2026-02-03"
    assert leads["13800000004"]["budget"] == "1000.25"
    assert leads["13800000004"]["since"] == "2026-03-04"
    assert leads["13800000004"]["vip"] is False


def test_columns_map_by_zh_and_en_labels_and_keys(world):
    zh = world.upload(csv_bytes(ZH_HEADER + ["无关列"], [lead_row(1) + ["x"]]))
    assert [m["field"] for m in zh["mapping"]] == [
        "name", "mobile", "email", "status", "account", "budget", "since", "vip", None]
    en = world.upload(csv_bytes(EN_HEADER, [lead_row(1)]))
    assert [m["field"] for m in en["mapping"]] == [
        "name", "mobile", "email", "status", "account", "budget", "since", "vip"]
    assert en["total_rows"] == 1 and en["status"] == "uploaded"


def test_manual_mapping_overrides_and_refusals(world):
    content = csv_bytes(["客户姓名", "电话", "备注"], [["张三", "13800000001", "老客户"]])
    job = world.upload(content)
    assert [m["field"] for m in job["mapping"]] == [None, None, "note"]
    assert job["preview"]["warnings"]  # the required name is not filled
    done = world.import_file(content, overrides={"客户姓名": "name", "电话": "mobile",
                                                 "备注": None})
    assert done["counts"]["created"] == 1
    lead = by_mobile(world)["13800000001"]
    assert lead["name"] == "张三" and lead.get("note") is None
    with pytest.raises(ValidationFailed) as info:
        world.import_file(content, overrides={"no such column": "name", "电话": "nope"})
    assert {e.code for e in info.value.errors} == {"unknown_column", "not_importable"}


def test_preview_lists_several_errors_per_row(world):
    content = csv_bytes(ZH_HEADER, [
        lead_row(1),
        lead_row(2, name="", mobile="12345", email="not-mail", status="无此状态",
                 budget="abc", since="明天"),
    ])
    job = world.upload(content)
    rows = job["preview"]["rows"]
    assert rows[0]["action"] == "create" and rows[0]["errors"] == []
    assert rows[1]["row"] == 3 and rows[1]["action"] == "error"
    assert {e["field"] for e in rows[1]["errors"]} == {
        "name", "mobile", "email", "status", "budget", "since"}
    assert world.leads() == []  # a preview writes nothing


def test_relations_resolve_by_title_or_unique_key(world):
    huawei = world.add_account("华为", code="HW")
    world.add_account("同名")
    world.add_account("同名")
    content = csv_bytes(["姓名", "手机", "客户"], [
        ["a", "13800000001", "华为"], ["b", "13800000002", "HW"], ["c", "13800000003", huawei],
        ["d", "13800000004", "同名"], ["e", "13800000005", "不存在"]])
    job = world.import_file(content)
    assert job["counts"]["created"] == 3 and job["counts"]["errors"] == 2
    leads = by_mobile(world)
    assert {leads[m]["account"] for m in ("13800000001", "13800000002", "13800000003")} == {
        huawei}
    reasons = error_rows(world, job)
    assert reasons[0][0] == "d" and "2" in reasons[0][-1]  # ambiguous: 2 records
    assert reasons[1][0] == "e" and "不存在" in reasons[1][-1]


def error_rows(world, job):
    text = world.error_file(job).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    return rows[1:]


@pytest.mark.parametrize("mode,expected", [
    ("skip", {"name": "旧名", "email": None}),
    ("update", {"name": "新名", "email": "new@example.com"}),
    ("merge", {"name": "旧名", "email": "new@example.com"}),
])
def test_each_dedup_mode(world, mode, expected):
    world.import_file(csv_bytes(["姓名", "手机"], [["旧名", "13800000001"]]))
    content = csv_bytes(["姓名", "手机", "邮箱"], [
        ["新名", "138 0000 0001", "new@example.com"], ["别人", "13800000002", ""]])
    job = world.import_file(content, dedup={"fields": ["mobile"], "mode": mode})
    counts = job["counts"]
    assert counts["created"] == 1 and counts["errors"] == 0
    assert (counts["skipped"], counts["updated"]) == ((1, 0) if mode == "skip" else (0, 1))
    lead = by_mobile(world)["13800000001"]
    assert {k: lead.get(k) for k in expected} == expected
    assert len(world.leads()) == 2


def test_repeated_rows_of_one_file_match_the_record_the_first_created(world):
    content = csv_bytes(["姓名", "手机", "邮箱"], [
        ["甲", "13800000001", ""], ["甲2", "13800000001", "a@example.com"],
        ["乙", "13800000002", ""]])
    job = world.import_file(content, dedup={"fields": ["mobile"], "mode": "merge"})
    assert job["counts"] == {"created": 2, "updated": 1, "skipped": 0, "errors": 0}
    lead = by_mobile(world)["13800000001"]
    assert (lead["name"], lead["email"]) == ("甲", "a@example.com")


def test_error_file_round_trip(world):
    content = csv_bytes(ZH_HEADER, [lead_row(1), lead_row(2, mobile="123", email="bad"),
                                    lead_row(3), lead_row(4, status="无")])
    job = world.import_file(content)
    assert job["counts"]["created"] == 2 and job["counts"]["errors"] == 2
    text = world.error_file(job).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ZH_HEADER + ["错误原因"]
    assert [r[1] for r in rows[1:]] == ["123", "13800000004"]
    assert "手机" in rows[1][-1] and "邮箱" in rows[1][-1]
    # The analyst fixes the cells and imports the same file again.
    rows[1][1], rows[1][2] = "13800000002", "fixed@example.com"
    rows[2][3] = "合格"
    again = world.import_file(csv_bytes(rows[0], rows[1:], "utf-8-sig"), "leads-错误行.csv")
    assert again["counts"] == {"created": 2, "updated": 0, "skipped": 0, "errors": 0}
    leads = by_mobile(world)
    assert len(leads) == 4 and leads["13800000004"]["status"] == "qualified"


def test_xlsx_error_file_is_xlsx(world):
    content = xlsx_bytes(["姓名", "手机"], [["a", "13800000001"], ["", "1"]])
    job = world.import_file(content, "leads.xlsx")
    wb = load_workbook(io.BytesIO(world.error_file(job)), read_only=True)
    rows = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    assert rows[0] == ["姓名", "手机", "错误原因"] and rows[1][:2] == [None, "1"]


def test_all_or_nothing_rolls_back_everything(world):
    good = [lead_row(i) for i in range(1, 30)]
    content = csv_bytes(ZH_HEADER, [*good, lead_row(99, mobile="bad")])
    job = world.import_file(content, mode="all_or_nothing", batch_rows=7)
    assert job["status"] == "failed" and job["counts"]["errors"] == 1
    assert world.leads() == []
    assert len(error_rows(world, job)) == 1
    ok = world.import_file(csv_bytes(ZH_HEADER, good), mode="all_or_nothing", batch_rows=7)
    assert ok["status"] == "succeeded" and ok["counts"]["created"] == 29
    assert len(world.leads()) == 29


def test_preview_with_a_dedup_rule_shows_what_would_happen(world):
    world.import_file(csv_bytes(["姓名", "手机"], [["旧", "13800000001"]]))
    job = world.upload(csv_bytes(["姓名", "手机"], [["新", "13800000001"], ["x", "13800000009"]]))
    shown = world.run(lambda ctx: preview(ctx, world.store, job_id=_uuid(job["id"]),
                                          dedup={"fields": ["mobile"], "mode": "update"}))
    assert [r["action"] for r in shown["rows"]] == ["update", "create"]


def test_an_import_does_not_change_a_locked_record_and_its_preview_says_so(engine, tmp_path):
    from tangram.db import new_id
    from tangram.engines.context import Actor
    from tests.import_factories import LEAD

    # A clerk (not an administrator, who may correct locked records).
    world = ImportWorld(engine, tmp_path, actor=Actor(id=new_id(), username="clerk"))
    world.publish({**LEAD, "lock": {"when": "record.status == 'qualified'",
                                    "editable": ["note"]}})
    world.import_file(csv_bytes(["姓名", "手机", "状态"], [["定", "13800000001", "合格"]]))
    changed = csv_bytes(["姓名", "手机", "备注"], [["改名", "13800000001", "补充"]])
    job = world.upload(changed)
    shown = world.run(lambda ctx: preview(ctx, world.store, job_id=_uuid(job["id"]),
                                          dedup={"fields": ["mobile"], "mode": "update"}))
    [row] = shown["rows"]
    assert row["action"] == "error" and row["errors"][0]["code"] == "record_locked"
    job = world.import_file(changed, dedup={"fields": ["mobile"], "mode": "update"})
    assert job["counts"]["errors"] == 1 and by_mobile(world)["13800000001"]["name"] == "定"
    job = world.import_file(csv_bytes(["手机", "备注"], [["13800000001", "补充"]]),
                            dedup={"fields": ["mobile"], "mode": "update"})
    assert job["counts"]["updated"] == 1  # the editable field
    assert by_mobile(world)["13800000001"]["note"] == "补充"
