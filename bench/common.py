"""Helpers shared by benchmarks: databases to run on, timing."""

from __future__ import annotations

import os
import secrets
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from urllib.parse import quote

import sqlalchemy as sa

from tangram.db import create_engine_from_url, normalize_url


@contextmanager
def databases() -> Iterator[list[tuple[str, sa.Engine]]]:
    """An empty SQLite database and, when TANGRAM_TEST_POSTGRES_URL is set, an
    empty PostgreSQL schema; both with the platform's tables."""
    from tangram.platform.schema import create_platform_tables

    pg_url = os.environ.get("TANGRAM_TEST_POSTGRES_URL")
    with TemporaryDirectory() as tmp:
        engines = [("sqlite", create_engine_from_url(f"sqlite:///{Path(tmp) / 'bench.db'}"))]
        schema = f"bench_{secrets.token_hex(4)}"
        admin = None
        if pg_url:
            admin = create_engine_from_url(pg_url, poolclass=sa.NullPool)
            with admin.begin() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            sep = "&" if "?" in pg_url else "?"
            url = normalize_url(pg_url) + f"{sep}options={quote(f'-csearch_path={schema}')}"
            engines.append(("postgresql", create_engine_from_url(url)))
        else:
            print("note: TANGRAM_TEST_POSTGRES_URL is not set; measuring SQLite only")
        try:
            for _, eng in engines:
                create_platform_tables(eng)
            yield engines
        finally:
            for _, eng in engines:
                eng.dispose()
            if admin is not None:
                with admin.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
                admin.dispose()


def best_of(fn: Callable[[], object], repeat: int = 3) -> float:
    """Fastest of ``repeat`` runs, in seconds (the least disturbed by noise)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def median_of(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
