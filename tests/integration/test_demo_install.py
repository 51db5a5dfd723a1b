"""The README's first command, as its script runs it: the database migrated,
an administrator made and the CRM installed with its demo company, each by
the `tangram` command in a fresh process (nothing imported by a test helps)."""

from __future__ import annotations

import os
import subprocess
import sys

import sqlalchemy as sa

from tangram.db import create_engine_from_url


def test_the_demo_installs_from_the_command_line(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    env = {**os.environ, "TANGRAM_DATABASE_URL": url, "TANGRAM_VAR_DIR": str(tmp_path),
           "TANGRAM_ENVIRONMENT": "test"}

    def tangram(*args: str) -> str:
        done = subprocess.run([sys.executable, "-c", "from tangram.platform.cli import app; "
                               "app()", *args], env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    tangram("db", "upgrade")
    tangram("user", "create", "admin", "--password", "tangram-admin", "--admin",
            "--exist-ok")
    assert "installed crm" in tangram("app", "install", "apps_catalog/crm", "--demo",
                                      "--if-missing")
    engine = create_engine_from_url(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            leads = conn.execute(sa.text("SELECT count(*) FROM r_crm__lead")).scalar()
            told = conn.execute(sa.text("SELECT count(*) FROM notifications")).scalar()
            # The audit (D3): contracts "in approval" with no approval running
            # were stuck — in no one's inbox, locked, not resubmittable.
            stuck = conn.execute(sa.text(
                "SELECT count(*) FROM r_crm__contract c WHERE c.status = 'in_approval' "
                "AND NOT EXISTS (SELECT 1 FROM flow_instances i WHERE i.record_id = c.id "
                "AND i.flow = 'contract_approval' AND i.status = 'running')")).scalar()
            # Rows of the past take their own period's numbers; those drawn at
            # insert are given back: the numbering of each period has no gap.
            numbers = list(conn.execute(sa.text(
                "SELECT number FROM r_crm__contract ORDER BY number")).scalars())
            counters = {(form, period): value for form, period, value in conn.execute(
                sa.text("SELECT form, period, value FROM autonumber_counters"))}
    finally:
        engine.dispose()
    assert leads == 2000
    assert stuck == 0
    by_year: dict[str, list[int]] = {}
    for number in numbers:  # HT-2026-0007
        _, year, seq = number.split("-")
        by_year.setdefault(year, []).append(int(seq))
    for year, seqs in by_year.items():
        assert seqs == list(range(1, len(seqs) + 1)), year
        assert counters[("contract", year)] == len(seqs)
    assert told and told > 0  # the director's close-risk alerts: role holders resolved
