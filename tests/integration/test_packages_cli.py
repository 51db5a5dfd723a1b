"""`tangram app install|upgrade` run in-process with typer's CliRunner on
SQLite: who package rows belong to without a signed-in user (`--as`), and
what an upgrade's dry run tells before the real run."""

from __future__ import annotations

import copy
import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tangram.db import create_engine_from_url
from tangram.engines.directory import users_table
from tangram.platform.cli import app
from tangram.platform.packages.source import write_folder
from tests.package_factories import as_files, helpdesk_v1, helpdesk_v2, label


@pytest.fixture
def run(tmp_path):
    env = {"TANGRAM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "TANGRAM_VAR_DIR": str(tmp_path), "TANGRAM_ENVIRONMENT": "test"}
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    invoke.url = env["TANGRAM_DATABASE_URL"]  # type: ignore[attr-defined]
    assert invoke("db", "upgrade").exit_code == 0
    return invoke


def folder(tmp_path: Path, name: str, pkg: dict[str, Any]) -> str:
    write_folder(as_files(pkg), tmp_path / name)
    return str(tmp_path / name)


def tickets(url: str) -> dict[str, tuple[str | None, str | None]]:
    """subject → (owner's username, handler's username)."""
    engine = create_engine_from_url(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            names = {str(i): n for i, n in conn.execute(
                sa.select(users_table.c.id, users_table.c.username))}

            def name(value: Any) -> str | None:
                return names.get(str(uuid.UUID(str(value)))) if value else None

            return {r.subject: (name(r.owner), name(r.handler)) for r in conn.execute(
                sa.text("SELECT subject, owner, handler FROM r_helpdesk__ticket"))}
    finally:
        engine.dispose()


def with_owners() -> dict[str, Any]:
    pkg = copy.deepcopy(helpdesk_v1())
    pkg["forms/ticket.json"]["fields"].append(
        {"key": "handler", "type": "user", "label": label("处理人", "Handler"),
         "default_expr": "user.id"})
    pkg["data/demo/_org.json"] = {"users": [{"id": "agent1", "name": "王一"}]}
    pkg["data/demo/ticket.json"][0]["$owner"] = "agent1"
    return pkg


def test_rows_without_an_owner_belong_to_the_administrator_the_command_runs_as(run, tmp_path):
    path = folder(tmp_path, "helpdesk", with_owners())
    refused = run("app", "install", path, "--demo")
    assert refused.exit_code == 1
    assert "no administrator" in refused.output and "--as" in refused.output
    assert run("user", "create", "rep", "--password", "rep-pass-2026").exit_code == 0
    assert run("user", "create", "boss", "--password", "boss-pass-2026", "--admin",
               ).exit_code == 0
    assert run("user", "create", "chief", "--password", "chief-pass-2026", "--admin",
               ).exit_code == 0
    refused = run("app", "install", path, "--demo", "--as", "rep")
    assert refused.exit_code == 1 and "not an active administrator" in refused.output
    refused = run("app", "install", path, "--demo", "--as", "nobody")
    assert refused.exit_code == 1 and "no user is named 'nobody'" in refused.output

    done = run("app", "install", path, "--demo", "--as", "chief")
    assert done.exit_code == 0, done.output
    rows = tickets(run.url)
    assert rows["Printer"] == ("chief", "chief")     # seed row: the installer's
    assert rows["Demo 1"] == ("chief", "chief")
    assert rows["Demo 0"] == ("agent1", "agent1")    # its $owner, its default as theirs


def test_the_first_administrator_is_the_default(run, tmp_path):
    path = folder(tmp_path, "helpdesk", with_owners())
    for name in ("boss", "chief"):
        assert run("user", "create", name, "--password", f"{name}-pass-2026", "--admin",
                   ).exit_code == 0
    done = run("app", "install", path, "--demo")
    assert done.exit_code == 0, done.output
    assert tickets(run.url)["Demo 1"] == ("boss", "boss")


def test_an_upgrade_dry_run_shows_the_steps_that_need_confirmation(run, tmp_path):
    assert run("user", "create", "boss", "--password", "boss-pass-2026", "--admin",
               ).exit_code == 0
    assert run("app", "install", folder(tmp_path, "v1", helpdesk_v1()), "--demo",
               ).exit_code == 0
    v2 = helpdesk_v2()
    options = v2["forms/ticket.json"]["fields"][2]["options"]
    v2["forms/ticket.json"]["fields"][2]["options"] = [o for o in options
                                                       if o["value"] != "low"]
    path = folder(tmp_path, "v2", v2)

    dry = run("app", "upgrade", path, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "form ticket" in dry.output
    assert "DESTRUCTIVE, 5 row(s) affected" in dry.output       # the 5 low-priority tickets
    assert "--confirm-destructive" in dry.output

    refused = run("app", "upgrade", path)
    assert refused.exit_code == 1 and "--confirm-destructive" in refused.output
    done = run("app", "upgrade", path, "--confirm-destructive")
    assert done.exit_code == 0, done.output
    assert "upgraded helpdesk 1.0.0 → 1.1.0" in done.output
