"""A killed import resumes from its last committed batch: `tangram data import`
is SIGKILLed mid-way, run again, and every row is there exactly once.

The first run kills itself with SIGKILL inside the transaction of the batch
that would take it past ``KILLED_AT`` rows — after that batch's rows were
written, before its commit — so where it dies does not depend on how fast
the machine is (watching it from outside raced the import on a busy machine)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa

from tangram.engines.forms.registry import get_runtime
from tangram.engines.imports.tables import import_jobs_table
from tests.import_factories import ZH_HEADER, ImportWorld, csv_bytes, lead_row

ROWS = 12_000
CLI = "from tangram.platform.cli import app; app()"
KILLED_AT = 1200
DIES_MID_BATCH = f"""
import os, signal
from tangram.engines.imports import jobs
record = jobs._Run.record
def dying(run, ctx, batch, results, **values):
    if run.progress.position + len(batch) > {KILLED_AT}:
        os.kill(os.getpid(), signal.SIGKILL)
    record(run, ctx, batch, results, **values)
jobs._Run.record = dying
{CLI}
"""


def _job(world):
    with world.sessions() as s:
        return s.execute(sa.select(import_jobs_table)).first()


def _leads(world):
    with world.sessions() as s:
        t = get_runtime(s, "crm", "lead").table
        return s.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(t.c.mobile)))
                         .where(t.c.deleted_at.is_(None))).one()


@pytest.mark.slow
def test_killed_import_resumes_without_duplicates_or_losses(engine, db_url, tmp_path):
    world = ImportWorld(engine, tmp_path)
    path = tmp_path / "leads.csv"
    path.write_bytes(csv_bytes(ZH_HEADER, [lead_row(i, mobile=f"139{i:08d}")
                                           for i in range(ROWS)], "gb18030"))
    env = {**os.environ, "TANGRAM_DATABASE_URL": db_url, "TANGRAM_VAR_DIR": str(tmp_path)}
    arguments = ["data", "import", "crm", "lead", str(path), "--batch-size", "200",
                 "--dedup", "mobile:skip"]
    first = subprocess.run([sys.executable, "-c", DIES_MID_BATCH, *arguments], env=env,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == -signal.SIGKILL, first.stderr
    killed = _job(world)
    assert killed.status == "running" and killed.position == KILLED_AT
    count, distinct = _leads(world)
    assert count == distinct == KILLED_AT  # the batch it died in left no row

    command = [sys.executable, "-c", CLI, *arguments]
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "resuming import" in second.stdout
    done = _job(world)
    assert done.status == "succeeded" and done.position == ROWS
    assert (done.created_count, done.skipped_count, done.error_count) == (ROWS, 0, 0)
    assert tuple(_leads(world)) == (ROWS, ROWS)
