"""The `tangram` command, run in-process with typer's CliRunner on SQLite."""

from __future__ import annotations

import os

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tangram.db import create_engine_from_url
from tangram.engines.directory import users_table
from tangram.platform import migrate
from tangram.platform.auth import passwords
from tangram.platform.cli import app


@pytest.fixture
def run(tmp_path):
    env = {"TANGRAM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "TANGRAM_VAR_DIR": str(tmp_path), "TANGRAM_ENVIRONMENT": "test"}
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None):
        return runner.invoke(app, list(args), env=env, input=input)

    invoke.url = env["TANGRAM_DATABASE_URL"]
    return invoke


def stored_user(url: str, username: str):
    engine = create_engine_from_url(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.select(users_table)
                                .where(users_table.c.username == username)).first()
    finally:
        engine.dispose()


def test_db_upgrade_and_current(run):
    before = run("db", "current")
    assert before.exit_code == 0, before.output
    assert "(empty database)" in before.output
    assert "tangram db upgrade" in before.output
    upgraded = run("db", "upgrade")
    assert upgraded.exit_code == 0, upgraded.output
    assert migrate.current_revisions(run.url) == migrate.head_revisions()
    after = run("db", "current")
    assert "up to date" in after.output


def test_user_create_with_password_option(run):
    run("db", "upgrade")
    res = run("user", "create", "Zhou.Min", "--password", "s3cret-pass", "--name", "周敏",
              "--admin", "--email", "zhou@example.com")
    assert res.exit_code == 0, res.output
    assert "created administrator 'zhou.min'" in res.output
    row = stored_user(run.url, "zhou.min")
    assert row.display_name == "周敏"
    assert row.is_admin is True
    assert row.email == "zhou@example.com"
    assert passwords.verify_password(row.password_hash, "s3cret-pass")
    assert "s3cret-pass" not in row.password_hash


def test_user_create_prompts_for_a_hidden_password(run):
    run("db", "upgrade")
    res = run("user", "create", "wu.gang", input="prompted-pass\nprompted-pass\n")
    assert res.exit_code == 0, res.output
    assert "prompted-pass" not in res.output  # hidden input is not echoed
    row = stored_user(run.url, "wu.gang")
    assert passwords.verify_password(row.password_hash, "prompted-pass")
    assert row.is_admin is False


def test_user_create_refuses_a_duplicate(run):
    run("db", "upgrade")
    assert run("user", "create", "zheng.he", "--password", "first-pass").exit_code == 0
    again = run("user", "create", "ZHENG.HE", "--password", "second-pass")
    assert again.exit_code == 1
    assert "A user named 'zheng.he' already exists." in again.output
    ok = run("user", "create", "zheng.he", "--password", "second-pass", "--exist-ok")
    assert ok.exit_code == 0
    assert "already exists; unchanged" in ok.output
    assert passwords.verify_password(stored_user(run.url, "zheng.he").password_hash,
                                     "first-pass")


def test_user_create_explains_a_bad_password(run):
    run("db", "upgrade")
    res = run("user", "create", "short.pw", "--password", "abc")
    assert res.exit_code == 1
    assert "password: use 8 to 1024 characters" in res.output


def test_user_list(run):
    run("db", "upgrade")
    assert "no users yet" in run("user", "list").output
    run("user", "create", "boss", "--password", "boss-pass-1", "--admin")
    run("user", "create", "clerk", "--password", "clerk-pass-1", "--name", "Clerk Li")
    lines = run("user", "list").output.splitlines()
    assert lines == ["boss   boss  [admin]", "clerk  Clerk Li"]


def test_serve_upgrades_then_runs_the_app_factory(run, monkeypatch):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda target, **kw: calls.append((target, kw)))
    # serve passes the flag on as the setting's variable; setenv first so that
    # monkeypatch restores the environment afterwards.
    monkeypatch.setenv("TANGRAM_IN_PROCESS_WORKER", "true")
    res = run("serve", "--port", "8123", "--no-worker")
    assert res.exit_code == 0, res.output
    assert "http://127.0.0.1:8123/" in res.output
    assert calls == [("tangram.platform.app:create_app",
                      {"factory": True, "host": "127.0.0.1", "port": 8123, "reload": False})]
    assert migrate.current_revisions(run.url) == migrate.head_revisions()
    assert os.environ["TANGRAM_IN_PROCESS_WORKER"] == "false"


def test_help_lists_the_commands(run):
    res = run("--help")
    assert res.exit_code == 0
    for command in ("serve", "db", "user"):
        assert command in res.output


def test_the_cli_alone_gives_the_engines_what_they_need_from_the_platform():
    # A fresh interpreter that only imports the command (as `tangram app
    # install` does) has the role resolver and the placeholder sampler: the
    # demo install once failed on the CRM's list views because only the web
    # app's modules installed them.
    import subprocess
    import sys

    code = (
        "import tangram.platform.cli\n"
        "from tangram.engines.flows import assignees\n"
        "from tangram.engines.forms import views\n"
        "assert assignees._role_resolver[0].__name__ == 'role_members'\n"
        "assert views._sampler[0].__name__ == 'sample_placeholders'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "TANGRAM_ENVIRONMENT": "test"}, timeout=120)
    assert done.returncode == 0, done.stderr


def test_user_set_password(run):
    run("db", "upgrade")
    assert run("user", "create", "li.lei", "--password", "first-secret-1").exit_code == 0
    res = run("user", "set-password", "Li.Lei", input="second-secret-2\nsecond-secret-2\n")
    assert res.exit_code == 0, res.output
    assert "password of 'li.lei' set" in res.output
    assert passwords.verify_password(stored_user(run.url, "li.lei").password_hash,
                                     "second-secret-2")
    bad = run("user", "set-password", "li.lei", "--password", "li.lei")
    assert bad.exit_code == 1 and "password" in bad.output.lower()
    missing = run("user", "set-password", "nobody", "--password", "whatever-secret")
    assert missing.exit_code == 1 and "no user named 'nobody'" in missing.output
