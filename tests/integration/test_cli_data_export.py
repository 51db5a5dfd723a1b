"""`tangram data export` writes its file whole or not at all: an export that
fails half-way leaves no file that looks complete, and an older file as it was."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from typer.testing import CliRunner

import tangram.engines.exports as exports
from tangram.platform.cli import app as cli
from tests.import_factories import ZH_HEADER, ImportWorld, csv_bytes, lead_row


def _export(db_url: str, tmp_path: Any, out: Any) -> Any:
    env = {"TANGRAM_DATABASE_URL": db_url, "TANGRAM_VAR_DIR": str(tmp_path)}
    return CliRunner().invoke(cli, ["data", "export", "crm", "lead", "--out", str(out)],
                              env=env)


def test_an_export_is_written_whole_or_not_at_all(engine, db_url, tmp_path, monkeypatch):
    world = ImportWorld(engine, tmp_path)
    job = world.import_file(csv_bytes(ZH_HEADER, [lead_row(i) for i in range(3)], "utf-8"))
    assert job["counts"]["created"] == 3, job
    out = tmp_path / "leads.csv"
    result = _export(db_url, tmp_path, out)
    assert result.exit_code == 0, result.output
    whole = out.read_bytes()
    assert whole.decode("utf-8-sig").count("\n") == 4  # the header and three leads

    real = exports.stream_export

    def failing(*args: Any, **kwargs: Any) -> Iterator[bytes]:
        chunks = real(*args, **kwargs)
        yield next(chunks)  # the header goes out, then the database "goes away"
        raise RuntimeError("connection lost")

    monkeypatch.setattr(exports, "stream_export", failing)
    result = _export(db_url, tmp_path, out)
    assert result.exit_code != 0
    assert out.read_bytes() == whole  # the earlier file, untouched
    fresh = tmp_path / "fresh.csv"
    assert _export(db_url, tmp_path, fresh).exit_code != 0
    assert not fresh.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []
