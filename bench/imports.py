"""Import benchmark: generated lead rows from a CSV file through the whole
import pipeline vs raw SQLAlchemy executemany of the same rows.

Run: ``uv run python -m bench.imports`` (PostgreSQL too when
TANGRAM_TEST_POSTGRES_URL is set; ``BENCH_IMPORT_ROWS=20000`` for a quick run).

Ours: upload (store, detect encoding, count, preview), then the job — parse,
map columns by their Chinese labels, adapt cells (option labels, dates),
validate every row with the form engine, dedup on the phone number (2% of the
rows repeat an earlier phone and are skipped), insert in batches of 1,000
(one transaction each, with the job's position, record events and the
error-row bookkeeping). Raw: the surviving rows, already typed, inserted by
``insert()`` executemany in batches of 1,000 — no parsing, no validation.
Ends with ``bench.imports: rows_per_s=<ours> ratio=<ours/raw>`` (worst backend).
"""

from __future__ import annotations

import csv
import os
import random
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import sqlalchemy as sa

from bench.common import databases
from tangram.db import new_id
from tangram.engines.access import AllowAll
from tangram.engines.forms.files import LocalFileStore
from tangram.engines.forms.registry import get_runtime
from tangram.engines.imports import ImportEnvironment, configure_job, create_job, run_job
from tests.factories import World, field, form_body

ROWS = int(os.environ.get("BENCH_IMPORT_ROWS", "100000"))
BATCH = 1000
DUPLICATES = 0.02
STATUS = [{"value": v, "label": {"zh": zh, "en": v}}
          for v, zh in (("new", "新建"), ("contacted", "已联系"), ("qualified", "合格"))]
SOURCES = [{"value": v, "label": {"zh": zh, "en": v}}
           for v, zh in (("web", "官网"), ("expo", "展会"), ("referral", "转介绍"))]
HEADER = ["姓名", "手机", "邮箱", "公司", "状态", "来源", "预算", "城市", "首次接触", "备注"]


def lead_form() -> dict[str, Any]:
    def lab(zh: str, en: str) -> dict[str, str]:
        return {"zh": zh, "en": en}

    return form_body(
        "lead",
        field("name", required=True, max_length=100, label=lab("姓名", "Name")),
        field("mobile", "phone", unique=True, label=lab("手机", "Mobile")),
        field("email", "email", label=lab("邮箱", "Email")),
        field("company", max_length=200, label=lab("公司", "Company")),
        field("status", "select", options=STATUS, default="new", label=lab("状态", "Status")),
        field("source", "select", options=SOURCES, label=lab("来源", "Source")),
        field("budget", "currency", min=0, label=lab("预算", "Budget")),
        field("city", label=lab("城市", "City")),
        field("since", "date", label=lab("首次接触", "First contact")),
        field("note", "long_text", max_length=2000, label=lab("备注", "Note")),
        title_field="name")


def make_csv(path: Path, n: int, seed: int = 11) -> list[dict[str, Any]]:
    """Write the CSV; return the typed rows a correct import keeps (first of each phone)."""
    rnd = random.Random(seed)
    kept: list[dict[str, Any]] = []
    phones: list[str] = []
    with open(path, "w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        for i in range(n):
            duplicate = phones and rnd.random() < DUPLICATES
            phone = rnd.choice(phones) if duplicate else f"13{i:09d}"
            status, source = rnd.choice(STATUS), rnd.choice(SOURCES)
            budget = f"{rnd.randint(0, 10**6)}.{rnd.randint(0, 99):02d}"
            day = date(2026, rnd.randint(1, 12), rnd.randint(1, 28))
            row = [f"客户{i}", phone, f"lead{i}@example.com", f"公司{i % 5000}",
                   status["label"]["zh"], source["label"]["zh"], budget,
                   rnd.choice(["深圳", "上海", "北京", "成都"]), day.strftime("%Y/%m/%d"),
                   "来自展会的客户，需要回访" if i % 3 == 0 else ""]
            writer.writerow(row)
            if not duplicate:
                phones.append(phone)
                kept.append({"name": row[0], "mobile": phone, "email": row[2],
                             "company": row[3], "status": status["value"],
                             "source": source["value"], "budget": Decimal(budget),
                             "city": row[7], "since": day, "note": row[9] or None})
    return kept


def ours(world: World, store: LocalFileStore, path: Path) -> dict[str, Any]:
    env = ImportEnvironment(sessions=world.sessions, store=store, clock=world.clock,
                            policy_for=lambda s: AllowAll())
    with open(path, "rb") as fh:
        job = world.run(lambda ctx: create_job(ctx, store, app="bench", form="lead",
                                               file_name=path.name, source=fh,
                                               max_bytes=1 << 40))
    job_id = uuid.UUID(job["id"])
    assert [m["field"] for m in job["mapping"]] == [
        "name", "mobile", "email", "company", "status", "source", "budget", "city", "since",
        "note"], job["mapping"]
    world.run(lambda ctx: configure_job(ctx, job_id=job_id,
                                        dedup={"fields": ["mobile"], "mode": "skip"}))
    return run_job(env, job_id=job_id, actor=world.actor, batch_rows=BATCH)


def raw(engine: sa.Engine, table: sa.Table, kept: list[dict[str, Any]]) -> None:
    now = datetime.now(UTC)
    for start in range(0, len(kept), BATCH):
        with engine.begin() as conn:
            conn.execute(table.insert(), [
                {"id": new_id(), "created_at": now, "updated_at": now, "version": 1, **row}
                for row in kept[start:start + BATCH]])


def bench(name: str, engine: sa.Engine, path: Path, kept: list[dict[str, Any]],
          tmp: Path) -> tuple[float, float]:
    world = World(engine, app="bench")
    world.publish(lead_form())
    store = LocalFileStore(tmp / f"files-{name}")
    with world.sessions() as s:
        table = get_runtime(s, "bench", "lead").table

    def clear() -> None:
        with engine.begin() as conn:
            conn.execute(table.delete())

    start = time.perf_counter()
    job = ours(world, store, path)
    ours_s = time.perf_counter() - start
    counts = job["counts"]
    assert job["status"] == "succeeded", job
    assert counts["created"] == len(kept) and counts["errors"] == 0, counts
    assert counts["skipped"] == ROWS - len(kept), counts
    clear()
    start = time.perf_counter()
    raw(engine, table, kept)
    raw_s = time.perf_counter() - start
    clear()
    return ROWS / ours_s, ROWS / raw_s


def main() -> None:
    with TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        path = tmp / "leads.csv"
        kept = make_csv(path, ROWS)
        print(f"{ROWS:,} rows ({path.stat().st_size / 1e6:.1f} MB CSV), "
              f"{ROWS - len(kept):,} repeat an earlier phone")
        results = []
        with databases() as engines:
            for name, engine in engines:
                ours_rate, raw_rate = bench(name, engine, path, kept, tmp)
                ratio = ours_rate / raw_rate
                results.append((ratio, ours_rate))
                print(f"import [{name}]: ours {ours_rate:,.0f} rows/s (CSV → records)   "
                      f"raw executemany {raw_rate:,.0f} rows/s   ratio {ratio:.2f}")
    ratio, rate = min(results)
    print(f"bench.imports: rows_per_s={rate:.0f} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
