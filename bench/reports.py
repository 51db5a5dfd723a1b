"""Reports benchmark: our engine vs hand-written SQL vs pandas.

Run: ``uv run python -m bench.reports`` (PostgreSQL too when
TANGRAM_TEST_POSTGRES_URL is set). ``BENCH_REPORT_ROWS`` sets the number of
opportunities (default 1,000,000; e.g. 20000 for a quick run) and
``BENCH_REPORT_RUNS`` the runs per variant (default 5). Rows are generated
with a fixed seed and loaded straight into the form tables.

For three reports (funnel by stage, won amount by month × region, top 20
reps) it times, interleaved, medians of the runs: our engine end to end
(compile + run + DataFrame), the hand-written SQL for the same answer, and
loading the rows into pandas and aggregating there; and the peak Python
memory (tracemalloc) of ours and of the pandas way. The last line:

    bench.reports: vs_hand_sql=<ours/hand> vs_pandas=<pandas/ours>
        mem_ratio=<pandas/ours peak memory> compile_ms=<p95 definition-to-SQL>

each ratio the worst over the three reports and both databases.
"""

from __future__ import annotations

import os
import random
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pandas as pd
import sqlalchemy as sa

from bench.common import databases
from tangram.engines.context import EngineContext
from tangram.engines.directory import users_table
from tangram.engines.forms.registry import get_runtime
from tangram.engines.reports.compiler import compile_report
from tangram.engines.reports.results import execute
from tangram.metamodel.reports import Report
from tests.factories import World, field, form_body, label

ROWS = int(os.environ.get("BENCH_REPORT_ROWS", "1000000"))
RUNS = max(5, int(os.environ.get("BENCH_REPORT_RUNS", "5")))
STAGES = ["lead", "qualified", "proposal", "negotiation", "won", "lost"]
REGIONS = ["华东", "华南", "华北", "华中", "西南", "西北", "东北"]
REPS = 200
BATCH = 20000

REPORTS: dict[str, dict[str, Any]] = {
    "funnel": {"dimensions": [{"type": "value", "key": "stage", "field": "stage"}],
               "measures": [{"agg": "count", "key": "n"},
                            {"agg": "sum", "key": "amount", "field": "amount"}],
               "chart": {"type": "funnel", "stage": "stage", "value": "n"}},
    "won_by_month_region": {
        "filter": {"field": "stage", "op": "eq", "value": "won"},
        "dimensions": [{"type": "date", "key": "month", "field": "close_date",
                        "bucket": "month"},
                       {"type": "value", "key": "region", "field": "account.region"}],
        "measures": [{"agg": "sum", "key": "won", "field": "amount"}]},
    "top_reps": {"filter": {"field": "stage", "op": "eq", "value": "won"},
                 "dimensions": [{"type": "value", "key": "rep", "field": "owner"}],
                 "measures": [{"agg": "sum", "key": "won", "field": "amount"}],
                 "sort": ["-won"], "limit": 20,
                 "chart": {"type": "leaderboard", "name": "rep", "value": "won"}},
}


def _report(key: str) -> Report:
    return Report.model_validate({"key": key, "label": label(key), "form": "opportunity",
                                  **REPORTS[key]})


def load(engine: sa.Engine) -> tuple[World, sa.Table, sa.Table]:
    world = World(engine)
    world.publish(form_body("account", field("name"), field("region")))
    world.publish(form_body(
        "opportunity", field("name"), field("amount", "currency"),
        field("stage", "select", options=[{"value": s, "label": label(s)} for s in STAGES]),
        field("close_date", "date"), field("account", "relation", target="account")))
    with world.sessions.begin() as s:
        acc = get_runtime(s, "demo", "account").table
        opp = get_runtime(s, "demo", "opportunity").table
    rnd = random.Random(20260105)
    now = datetime(2026, 1, 5, tzinfo=UTC)
    reps = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(REPS)]
    n_accounts = max(10, ROWS // 100)
    accounts = [uuid.UUID(int=rnd.getrandbits(128)) for _ in range(n_accounts)]
    with engine.begin() as conn:
        conn.execute(users_table.insert(), [
            {"id": r, "username": f"rep{i}", "display_name": f"销售{i}", "created_at": now,
             "updated_at": now} for i, r in enumerate(reps)])
        conn.execute(acc.insert(), [
            {"id": a, "name": f"客户{i}", "region": rnd.choice(REGIONS), "created_at": now,
             "updated_at": now, "version": 1} for i, a in enumerate(accounts)])
    start = date(2023, 1, 1)
    done = 0
    while done < ROWS:
        batch = []
        for i in range(done, min(ROWS, done + BATCH)):
            batch.append({
                "id": uuid.UUID(int=rnd.getrandbits(128)), "name": f"商机{i}",
                "amount": Decimal(rnd.randrange(100_00, 2_000_000_00)) / 100,
                "stage": rnd.choice(STAGES),
                "close_date": start + timedelta(days=rnd.randrange(0, 3 * 365)),
                "account": rnd.choice(accounts), "owner": rnd.choice(reps),
                "created_at": now, "updated_at": now, "version": 1})
        with engine.begin() as conn:
            conn.execute(opp.insert(), batch)
        done += len(batch)
    with engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    return world, acc, opp


def hand_sql(dialect: str, opp: sa.Table, acc: sa.Table) -> dict[str, str]:
    """The SQL an engineer would write for the same answers."""
    o, a = opp.name, acc.name
    month = ("date_trunc('month', o.close_date)" if dialect == "postgresql"
             else "date(o.close_date, 'start of month')")
    return {
        "funnel": f"SELECT o.stage, count(*), sum(o.amount) FROM {o} o "
                  "WHERE o.deleted_at IS NULL GROUP BY o.stage",
        "won_by_month_region": f"SELECT {month} AS m, a.region, sum(o.amount) FROM {o} o "
                               f"LEFT JOIN {a} a ON a.id = o.account AND a.deleted_at IS NULL "
                               "WHERE o.deleted_at IS NULL AND o.stage = 'won' "
                               "GROUP BY m, a.region",
        "top_reps": f"SELECT o.owner, u.display_name, sum(o.amount) AS won FROM {o} o "
                    "LEFT JOIN users u ON u.id = o.owner "
                    "WHERE o.deleted_at IS NULL AND o.stage = 'won' "
                    "GROUP BY o.owner, u.display_name ORDER BY won DESC LIMIT 20",
    }


def pandas_way(engine: sa.Engine, opp: sa.Table, acc: sa.Table, key: str) -> pd.DataFrame:
    """Load the needed rows into pandas and aggregate there."""
    scale = 100 if engine.dialect.name == "sqlite" else 1  # SQLite stores cents
    with engine.connect() as conn:
        if key == "funnel":
            df = pd.read_sql(sa.select(opp.c.stage, opp.c.amount)
                             .where(opp.c.deleted_at.is_(None)), conn)
            return df.groupby("stage").agg(n=("amount", "size"), amount=("amount", "sum"))
        df = pd.read_sql(sa.select(opp.c.stage, opp.c.amount, opp.c.close_date, opp.c.account,
                                   opp.c.owner).where(opp.c.deleted_at.is_(None)), conn)
        df = df[df.stage == "won"]
        df["amount"] = df.amount.astype(float) / scale
        if key == "won_by_month_region":
            regions = pd.read_sql(sa.select(acc.c.id, acc.c.region), conn)
            df = df.merge(regions, left_on="account", right_on="id", how="left")
            df["month"] = pd.to_datetime(df.close_date).dt.to_period("M")
            return df.groupby(["month", "region"], dropna=False).amount.sum().reset_index()
        users = pd.read_sql(sa.select(users_table.c.id, users_table.c.display_name), conn)
        top = df.groupby("owner").amount.sum().nlargest(20).reset_index()
        return top.merge(users, left_on="owner", right_on="id", how="left")


def main() -> None:
    print(f"bench.reports: {ROWS:,} opportunities, {RUNS} runs per variant")
    worst_hand = 0.0
    worst_pandas = worst_mem = float("inf")
    compile_times: list[float] = []
    with databases() as dbs:
        for name, engine in dbs:
            t0 = time.perf_counter()
            world, acc, opp = load(engine)
            print(f"[{name}] loaded in {time.perf_counter() - t0:.1f}s")
            hand = hand_sql(engine.dialect.name, opp, acc)
            for key in REPORTS:
                report = _report(key)

                def ours(report: Report = report, world: World = world) -> Any:
                    with world.sessions() as s:
                        ctx = EngineContext(session=s, clock=world.clock, language="zh")
                        compiled = compile_report(ctx, app="demo", report=report)
                        return execute(s, compiled, language="zh").frame

                def by_hand(text: str = hand[key], engine: sa.Engine = engine) -> Any:
                    with engine.connect() as conn:
                        return conn.execute(sa.text(text)).all()

                def in_pandas(key: str = key, engine: sa.Engine = engine, opp: sa.Table = opp,
                              acc: sa.Table = acc) -> Any:
                    return pandas_way(engine, opp, acc, key)

                variants: dict[str, Callable[[], Any]] = {
                    "ours": ours, "hand": by_hand, "pandas": in_pandas}
                for fn in variants.values():
                    fn()  # warm caches (pages, compiled definitions)
                times: dict[str, list[float]] = {k: [] for k in variants}
                for _ in range(RUNS):
                    for k, fn in variants.items():  # interleaved
                        start = time.perf_counter()
                        fn()
                        times[k].append(time.perf_counter() - start)
                med = {k: statistics.median(v) for k, v in times.items()}
                peaks = {}
                for k in ("ours", "pandas"):
                    tracemalloc.start()
                    variants[k]()
                    peaks[k] = tracemalloc.get_traced_memory()[1]
                    tracemalloc.stop()
                with world.sessions() as s:
                    ctx = EngineContext(session=s, clock=world.clock)
                    compile_report(ctx, app="demo", report=report)
                    for _ in range(100):
                        start = time.perf_counter()
                        compile_report(ctx, app="demo", report=report).sql(engine.dialect)
                        compile_times.append(time.perf_counter() - start)
                vs_hand = med["ours"] / med["hand"]
                vs_pandas = med["pandas"] / med["ours"]
                mem = peaks["pandas"] / max(peaks["ours"], 1)
                worst_hand = max(worst_hand, vs_hand)
                worst_pandas = min(worst_pandas, vs_pandas)
                worst_mem = min(worst_mem, mem)
                print(f"[{name}] {key:22s} ours {med['ours'] * 1000:8.1f} ms  hand "
                      f"{med['hand'] * 1000:8.1f} ms  pandas {med['pandas'] * 1000:8.1f} ms  "
                      f"peak ours {peaks['ours'] / 1e6:7.2f} MB  pandas "
                      f"{peaks['pandas'] / 1e6:7.2f} MB")
    compile_times.sort()
    p95 = compile_times[int(len(compile_times) * 0.95) - 1] * 1000
    print(f"bench.reports: vs_hand_sql={worst_hand:.2f} vs_pandas={worst_pandas:.2f} "
          f"mem_ratio={worst_mem:.1f} compile_ms={p95:.2f}")


if __name__ == "__main__":
    main()
