"""Stored and uploaded values at the edges, on both backends: nothing accepted is
lost on the way into or out of a spreadsheet, and nothing in an error file
runs as a formula in Excel."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from openpyxl import load_workbook

from tangram.engines.exports import plan_export, stream_export
from tangram.engines.forms import records
from tangram.engines.forms.query import ListQuery
from tangram.engines.printing.values import ShowEnv, shown
from tangram.metamodel import fields as fm
from tests.factories import field, form_body
from tests.import_factories import ZH_HEADER, ImportWorld, csv_bytes, lead_row, xlsx_bytes


@pytest.fixture
def world(engine, tmp_path):
    return ImportWorld(engine, tmp_path)


def error_rows(world, job):
    text = world.error_file(job).decode("utf-8-sig")
    return list(csv.reader(io.StringIO(text)))


def by_mobile(world):
    return {r["mobile"]: r for r in world.leads()}


# --------------------------------------------------------------------------- export

LATE = "9999-12-31T23:00:00Z"  # valid in UTC; past year 9999 on Shanghai's clock


@pytest.mark.parametrize("format", ["csv", "xlsx"])
def test_a_datetime_at_the_calendar_end_exports_in_utc(world, format):
    world.publish(form_body("event", field("name"), field("at", "datetime"),
                            title_field="name"))
    for name, at in (("late", LATE), ("new_year", "2026-01-01T00:00:00Z")):
        world.run(records.create_record, app="crm", form="event", data={"name": name, "at": at})
    with world.sessions() as session:
        ctx = world.ctx(session)
        plan = plan_export(ctx, app="crm", form="event",
                           query=ListQuery(fields=["name", "at"], sort=["name"]), format=format)
        data = b"".join(stream_export(ctx, plan))
    if format == "csv":
        rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[1:]
    else:
        sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
        rows = [list(r) for r in sheet.iter_rows(values_only=True)][1:]
    by_name = {r[0]: r[1] for r in rows}
    assert by_name["late"] == "9999-12-31T23:00:00Z"  # in UTC, and says so
    local = "2026-01-01 08:00:00" if format == "csv" else datetime(2026, 1, 1, 8)
    assert by_name["new_year"] == local  # the organization's wall clock as before


def test_a_datetime_at_the_calendar_end_prints_in_utc():
    f = fm.FIELD_MODELS["datetime"].model_validate({"key": "at", "type": "datetime",
                                                    "label": {"en": "At"}})
    env = ShowEnv(language="zh", zone=ZoneInfo("Asia/Shanghai"))
    value = shown(f, LATE, env, {})
    assert str(value) == "9999-12-31 23:00 UTC"
    assert value.raw == datetime(9999, 12, 31, 23, tzinfo=UTC)
    assert str(shown(f, "2026-01-01T00:00:00Z", env, {})) == "2026-01-01 08:00"


# --------------------------------------------------------------------------- error file

FORMULAS = ['=HYPERLINK("http://evil.example","点我")', "+1+1", "-", "@SUM(A1)"]


def test_formula_like_cells_in_the_error_file_are_guarded_and_import_back(world):
    rows = [lead_row(i, name=name, email="bad") for i, name in enumerate(FORMULAS, 1)]
    job = world.import_file(csv_bytes(ZH_HEADER, [*rows, lead_row(9)]))
    assert job["counts"]["created"] == 1 and job["counts"]["errors"] == 4
    out = error_rows(world, job)
    assert [r[0] for r in out[1:]] == ["'" + name for name in FORMULAS]
    # Fixed and imported again, the names are the user's own, without the guard.
    for r in out[1:]:
        r[2] = "fixed@example.com"
    again = world.import_file(csv_bytes(out[0], out[1:], "utf-8-sig"), "leads-错误行.csv")
    assert again["counts"]["created"] == 4 and again["counts"]["errors"] == 0
    assert {r["name"] for r in world.leads()} >= set(FORMULAS)


# --------------------------------------------------------------------------- XLSX cells

def patched(content: bytes, replace: dict[str, str]) -> bytes:
    """The workbook with its first sheet's XML edited (as Excel would have written
    it): each regular expression's first match replaced."""
    source = zipfile.ZipFile(io.BytesIO(content))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "xl/worksheets/sheet1.xml":
                text = data.decode()
                for pattern, new in replace.items():
                    text, found = re.subn(pattern, new, text, count=1)
                    assert found, pattern
                data = text.encode()
            target.writestr(item, data)
    return out.getvalue()


def test_a_formula_without_a_computed_value_is_a_row_error(world):
    content = xlsx_bytes(["姓名", "手机", "备注"], [
        ["=A1&\"x\"", "13800000001", "a"],     # written by openpyxl: no computed value
        ["张三", "13800000002", "=1+1"],       # computed by "Excel" below: imported
        ["李四", "13800000003", "plain"]])
    # openpyxl writes the empty value as <v></v> or <v /> (with or without lxml).
    content = patched(content, {r"<f>1\+1</f><v(></v>| ?/>)": "<f>1+1</f><v>2</v>"})
    job = world.import_file(content, "leads.xlsx", overrides={"备注": "note"})
    assert job["counts"]["created"] == 2 and job["counts"]["errors"] == 1, job
    leads = by_mobile(world)
    assert leads["13800000002"]["note"] == "2"
    assert "13800000001" not in leads
    wb = load_workbook(io.BytesIO(world.error_file(job)), read_only=True)
    failed = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)][1]
    assert failed[0] == "=A1&\"x\""  # the formula is kept, as text
    assert "姓名" in failed[-1] and "公式" in failed[-1] and "Excel" in failed[-1]
    assert "必填" not in failed[-1]  # not also "name is required"


def test_large_numbers_read_into_text_as_their_digits(world):
    content = xlsx_bytes(["姓名", "手机", "备注"], [
        ["a", "13800000001", 1.5e17], ["b", "13800000002", 1.0e16],
        ["c", "13800000003", 1e-07]])
    # Excel writes 15 significant digits, as 1.23456789012346E+17.
    content = patched(content, {r"<v>1\.5e\+17</v>": "<v>1.23456789012346E+17</v>"})
    job = world.import_file(content, "leads.xlsx", overrides={"备注": "note"})
    assert job["counts"]["created"] == 3, job
    notes = {m: r["note"] for m, r in by_mobile(world).items()}
    assert notes == {"13800000001": "123456789012346000", "13800000002": "10000000000000000",
                     "13800000003": "0.0000001"}


# --------------------------------------------------------------------------- CSV cells

def test_csv_cells_beyond_the_header_are_a_row_error(world):
    shifted = lead_row(1, name="上海市", email="a@example.com")
    shifted.insert(1, "浦东新区")  # "上海市,浦东新区" unquoted: one cell too many
    trailing = [*lead_row(2), "", " "]  # empty cells past the header are harmless
    job = world.import_file(csv_bytes(ZH_HEADER, [shifted, trailing]))
    assert job["counts"]["created"] == 1 and job["counts"]["errors"] == 1, job
    reason = error_rows(world, job)[1][-1]
    assert "表头的8列之外" in reason and "是" in reason  # the value pushed out: 重要=是
    assert set(by_mobile(world)) == {"13800000002"}
