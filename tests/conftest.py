"""Shared fixtures: every data-layer test runs on SQLite and, when
TANGRAM_TEST_POSTGRES_URL is set (CI sets it), on PostgreSQL too — each test in
a schema of its own that is dropped afterwards."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tangram.db import create_engine_from_url, normalize_url

POSTGRES_URL = os.environ.get("TANGRAM_TEST_POSTGRES_URL")

BACKENDS = ["sqlite"] + (["postgresql"] if POSTGRES_URL else [])


def _pg_schema_url(schema: str) -> str:
    assert POSTGRES_URL
    sep = "&" if "?" in POSTGRES_URL else "?"
    return normalize_url(POSTGRES_URL) + f"{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:
    """A URL of an empty database of each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine_from_url(POSTGRES_URL, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty database with the platform's tables created."""
    from tangram.platform.schema import create_platform_tables

    eng = create_engine_from_url(db_url)
    create_platform_tables(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def backend(engine: Engine) -> str:
    return engine.dialect.name


@pytest.fixture(autouse=True)
def _process_wide_owner_resolver() -> Iterator[None]:
    """create_app installs a process-wide owner lookup for webhooks and alerts
    (tangram.engines.notify.webhooks); put the default back after each test
    so an engine-level test never runs with an app's policy from an earlier one."""
    yield
    from tangram.engines.notify import webhooks

    webhooks.set_owner_resolver(None)


@pytest.fixture(autouse=True)
def english_speaking_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """Test clients send ``Accept-Language: en`` unless a test names the
    header itself: the texts tests assert are the English ones, while users
    are created with the product's default language (zh). A test of what a
    client without the header gets removes it from ``client.headers``."""
    from fastapi.testclient import TestClient

    original = TestClient.__init__

    def init(self: TestClient, *args: object, headers: dict[str, str] | None = None,
             **kwargs: object) -> None:
        headers = dict(headers or {})
        if not any(name.lower() == "accept-language" for name in headers):
            headers["Accept-Language"] = "en"
        original(self, *args, headers=headers, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(TestClient, "__init__", init)

