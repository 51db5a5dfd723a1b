"""Export benchmark: peak memory of a streamed export, 100,000 vs 1,000,000 rows.

Run: ``uv run python -m bench.exports`` (PostgreSQL too when
TANGRAM_TEST_POSTGRES_URL is set; ``BENCH_EXPORT_ROWS=20000,200000`` for a
quick run). Each export runs in a fresh subprocess that streams the CSV (and
XLSX) of every row to nowhere and reports its peak RSS before and after: a
streamed export grows by the same few MB whatever the row count.
Ends with ``bench.exports: rss_growth_mb_small=<a> rss_growth_mb_large=<b>``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa

from bench.common import databases
from bench.imports import lead_form
from tangram.db import new_id
from tangram.engines.forms.registry import get_runtime
from tests.factories import World

SIZES = [int(n) for n in os.environ.get("BENCH_EXPORT_ROWS", "100000,1000000").split(",")]
FORMATS = os.environ.get("BENCH_EXPORT_FORMATS", "csv,xlsx").split(",")

MEASURE = textwrap.dedent("""
    import resource, sys, threading, time
    from tangram.db import create_engine_from_url, session_factory
    from tangram.engines.context import EngineContext
    from tangram.engines.exports import plan_export, stream_export
    from tangram.engines.forms.query import ListQuery

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


def fill(engine: sa.Engine, table: sa.Table, start: int, stop: int) -> None:
    now = datetime.now(UTC)
    for offset in range(start, stop, 10_000):
        with engine.begin() as conn:
            conn.execute(table.insert(), [
                {"id": new_id(), "created_at": now, "updated_at": now, "version": 1,
                 "name": f"客户{i}", "mobile": f"13{i:09d}", "email": f"lead{i}@example.com",
                 "company": f"公司{i % 5000}", "status": "new", "source": "web",
                 "budget": Decimal(i) / 100, "city": "深圳", "note": "来自展会的客户，需要回访"}
                for i in range(offset, min(offset + 10_000, stop))])


def measure(url: str, fmt: str) -> tuple[float, float, float]:
    """(RSS growth in MB, output MB, seconds) of one export in a fresh process."""
    out = subprocess.run([sys.executable, "-c", MEASURE, url, fmt, "bench"], capture_output=True,
                         text=True, check=True).stdout.split()
    before, after, size, seconds = int(out[0]), int(out[1]), int(out[2]), float(out[3])
    return (after - before) / 1024, size / 1e6, seconds


def main() -> None:
    growth: dict[int, float] = {}
    with databases() as engines:
        for name, engine in engines:
            world = World(engine, app="bench")
            world.publish(lead_form())
            with world.sessions() as s:
                table = get_runtime(s, "bench", "lead").table
            filled = 0
            for size in sorted(SIZES):
                started = time.perf_counter()
                fill(engine, table, filled, size)
                filled = size
                print(f"[{name}] {size:,} rows in the table "
                      f"(filled in {time.perf_counter() - started:.0f}s)")
                for fmt in FORMATS:
                    mb, out_mb, seconds = measure(engine.url.render_as_string(
                        hide_password=False), fmt)
                    growth[size] = max(growth.get(size, 0.0), mb)
                    print(f"  export {fmt}: {out_mb:,.1f} MB in {seconds:.1f}s "
                          f"({size / seconds:,.0f} rows/s), peak RSS growth {mb:.1f} MB")
    small, large = min(SIZES), max(SIZES)
    print(f"bench.exports: rss_growth_mb_small={growth[small]:.1f} "
          f"rss_growth_mb_large={growth[large]:.1f} rows_small={small} rows_large={large}")


if __name__ == "__main__":
    main()
