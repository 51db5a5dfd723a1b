"""The export engine on both backends: contents as people read them,
permissions, XLSX, the import round trip, and flat memory while streaming."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from tangram.db import new_id
from tangram.engines.access import AllowAll
from tangram.engines.exports import plan_export, stream_export
from tangram.engines.forms.query import ListQuery, QueryInvalid
from tangram.engines.forms.registry import get_runtime
from tangram.errors import PermissionDenied
from tests.import_factories import ZH_HEADER, ImportWorld, csv_bytes, lead_row


class HidingPolicy(AllowAll):
    """Export allowed, ``budget`` hidden; or export denied."""

    def __init__(self, *, may_export: bool = True) -> None:
        self.may_export = may_export

    def check_form_action(self, actor, app, form, action):
        if action == "export" and not self.may_export:
            raise PermissionDenied("no export for you")

    def field_access(self, actor, app, form):
        return {"budget": "hidden"}


@pytest.fixture
def world(engine, tmp_path):
    w = ImportWorld(engine, tmp_path)
    huawei = w.add_account("华为")
    rows = [lead_row(i, account="华为" if i % 2 else "", budget=f"{i}000000000.07",
                     status="合格" if i % 3 == 0 else "新建") for i in range(1, 8)]
    rows.append(lead_row(8, name="=HYPERLINK(\"http://x\")", vip="否"))
    job = w.import_file(csv_bytes(ZH_HEADER, rows))
    assert job["counts"]["created"] == 8, job
    w.huawei = huawei
    return w


def export(world, *, format="csv", policy=None, **query):
    with world.sessions() as session:
        ctx = world.ctx(session)
        if policy is not None:
            ctx.policy = policy
        plan = plan_export(ctx, app="crm", form="lead", query=ListQuery(**query),
                           format=format)
        return plan, b"".join(stream_export(ctx, plan))


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith("\ufeff".encode())  # Excel needs the BOM for Chinese
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


def test_csv_export_of_a_list_view_reads_like_the_screen(world):
    flt = {"field": "account.name", "op": "eq", "value": "华为"}
    plan, data = export(world, filter=flt, sort=["-budget"],
                        fields=["name", "status", "account", "budget", "vip", "since"])
    rows = read_csv(data)
    assert rows[0] == ["姓名", "状态", "客户", "预算", "重要", "首次接触"]
    assert [r[0] for r in rows[1:]] == ["客户7", "客户5", "客户3", "客户1"]
    assert rows[1][1:] == ["新建", "华为", "7000000000.07", "是", "2026-01-31"]
    assert rows[3][1] == "合格"
    assert plan.file_name.endswith(".csv") and plan.file_name.startswith("lead-")


def test_formula_like_text_is_neutralized_and_imports_back(world):
    _, data = export(world, fields=["name", "mobile"], sort=["mobile"])
    rows = read_csv(data)
    assert rows[-1][0] == "'=HYPERLINK(\"http://x\")"
    # Re-importing the export (merge on mobile) changes nothing.
    job = world.import_file(data, "export.csv", dedup={"fields": ["mobile"], "mode": "update"})
    assert job["counts"]["errors"] == 0
    assert {r["name"] for r in world.leads()} >= {"=HYPERLINK(\"http://x\")"}


def test_hidden_fields_are_left_out_and_export_needs_the_right(world):
    _, data = export(world, policy=HidingPolicy())
    header = read_csv(data)[0]
    assert "姓名" in header and "预算" not in header
    with pytest.raises(PermissionDenied):
        export(world, policy=HidingPolicy(), fields=["name", "budget"])
    with pytest.raises(PermissionDenied):
        export(world, policy=HidingPolicy(), sort=["-budget"])
    with pytest.raises(PermissionDenied):
        export(world, policy=HidingPolicy(may_export=False))


class HiddenCodePolicy(AllowAll):
    """The account's ``code`` hidden: a lead's export may not filter or sort
    through ``account.code`` (its row count would give the code away)."""

    def field_access(self, actor, app, form):
        return {"code": "hidden"} if form == "account" else {}


def test_a_field_hidden_on_a_linked_form_is_refused_too(world):
    for query in ({"filter": {"field": "account.code", "op": "eq", "value": "X"}},
                  {"filter": {"not": {"field": "account.code", "op": "is_empty"}}},
                  {"sort": ["account.code"]}):
        with pytest.raises(PermissionDenied) as info:
            export(world, policy=HiddenCodePolicy(), **query)
        assert info.value.details == {"field": "account.code"}
    _, data = export(world, policy=HiddenCodePolicy(),
                     filter={"field": "account.name", "op": "eq", "value": "华为"})
    assert len(read_csv(data)) == 1 + 4  # the header and the four leads of 华为


class HiddenNamePolicy(AllowAll):
    def field_access(self, actor, app, form):
        return {"name": "hidden"} if form == "lead" else {}


def test_the_search_does_not_look_in_hidden_fields(world):
    _, data = export(world, search="客户1")
    assert len(read_csv(data)) == 1 + 1  # the name is the lead form's search field
    # Finding it would give the hidden name away: for this viewer the form has
    # nothing to search in, as in the records list.
    with pytest.raises(QueryInvalid, match="no search fields"):
        export(world, policy=HiddenNamePolicy(), search="客户1")


def test_xlsx_export_keeps_types_and_exact_decimals(world):
    _, data = export(world, format="xlsx", fields=["name", "budget", "since", "owner"],
                     sort=["name"])
    wb = load_workbook(io.BytesIO(data), read_only=True)
    rows = [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    assert rows[0] == ["姓名", "预算", "首次接触", "负责人"]
    by_name = {r[0]: r for r in rows[1:]}
    first = by_name["客户1"]
    assert Decimal(str(first[1])) == Decimal("1000000000.07")
    assert first[2] == datetime(2026, 1, 31)
    assert "=HYPERLINK(\"http://x\")" in by_name  # text, not a formula


def test_paging_covers_every_row_once(world):
    rt_rows = 1200
    with world.sessions.begin() as s:
        rt = get_runtime(s, "crm", "lead")
        now = datetime.now(UTC)
        s.execute(rt.table.insert(), [
            {"id": new_id(), "created_at": now, "updated_at": now, "version": 1,
             "name": f"批量{i}", "mobile": f"139{i:08d}"} for i in range(rt_rows)])
    _, data = export(world, fields=["mobile"])
    mobiles = [r[0] for r in read_csv(data)[1:]]
    assert len(mobiles) == rt_rows + 8 and len(set(mobiles)) == rt_rows + 8


MEASURE = textwrap.dedent("""
    import resource, sys, threading, time
    from tangram.db import create_engine_from_url, session_factory
    from tangram.engines.context import EngineContext
    from tangram.engines.exports import plan_export, stream_export
    from tangram.engines.forms.query import ListQuery, QueryInvalid

    def rss_kb():
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() // 1024

    engine = create_engine_from_url(sys.argv[1])
    with session_factory(engine)() as session:
        ctx = EngineContext(session=session)
        plan = plan_export(ctx, app=sys.argv[3], form="lead", query=ListQuery(),
                           format=sys.argv[2])
        before = peak = rss_kb()
        done = False

        def sample():
            global peak
            while not done:
                peak = max(peak, rss_kb())
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.perf_counter()
        size = sum(len(chunk) for chunk in stream_export(ctx, plan))
        seconds = time.perf_counter() - start
        done = True
        sampler.join()
    print(before, max(peak, rss_kb()), size, seconds)
""")


def peak_rss_growth_kb(db_url: str, fmt: str) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", MEASURE, db_url, fmt, "crm"], capture_output=True,
                         text=True, check=True, timeout=600).stdout.split()
    before, after, size = int(out[0]), int(out[1]), int(out[2])
    return after - before, size


def add_leads(world, count: int, start: int) -> None:
    with world.sessions.begin() as conn:
        rt_table = get_runtime(conn, "crm", "lead").table
        now = datetime.now(UTC)
        for offset in range(0, count, 5000):
            conn.execute(rt_table.insert(), [
                {"id": new_id(), "created_at": now, "updated_at": now, "version": 1,
                 "name": f"客户{i}", "mobile": f"13{i:09d}", "status": "new",
                 "budget": Decimal(i) / 100, "note": "备注" * 20}
                for i in range(start + offset, start + min(offset + 5000, count))])


@pytest.mark.slow
def test_streamed_export_memory_stays_flat(engine, tmp_path, db_url):
    world = ImportWorld(engine, tmp_path)
    small, large = 3_000, 30_000
    add_leads(world, small, 0)
    small_growth, small_size = peak_rss_growth_kb(db_url, "csv")
    add_leads(world, large - small, small)
    large_growth, large_size = peak_rss_growth_kb(db_url, "csv")
    assert large_size > 8 * small_size
    # Ten times the rows, (nearly) the same memory: a few MB of slack for
    # allocator noise, far below the ~10 MB the rows themselves take.
    assert large_growth - small_growth < 6_000, json.dumps(
        {"small_kb": small_growth, "large_kb": large_growth})
    assert world is not None
