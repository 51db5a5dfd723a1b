"""A killed import resumes from its last committed batch: `tangram data import`
is SIGKILLed mid-way, run again, and every row is there exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from tangram.engines.forms.registry import get_runtime
from tangram.engines.imports.tables import import_jobs_table
from tests.import_factories import ZH_HEADER, ImportWorld, csv_bytes, lead_row

ROWS = 12_000
CLI = "from tangram.platform.cli import app; app()"


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
    command = [sys.executable, "-c", CLI, "data", "import", "crm", "lead", str(path),
               "--batch-size", "200", "--dedup", "mobile:skip"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            job = _job(world)
            if job is not None and job.position >= 1000:
                break
            assert first.poll() is None, first.stderr.read().decode() if first.stderr else ""
            time.sleep(0.02)
        else:
            pytest.fail("the import made no progress")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    killed = _job(world)
    assert killed.status == "running" and 1000 <= killed.position < ROWS
    count, distinct = _leads(world)
    assert count == distinct == killed.position  # committed rows match the position

    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    assert "resuming import" in second.stdout
    done = _job(world)
    assert done.status == "succeeded" and done.position == ROWS
    assert (done.created_count, done.skipped_count, done.error_count) == (ROWS, 0, 0)
    assert tuple(_leads(world)) == (ROWS, ROWS)
