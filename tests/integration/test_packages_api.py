"""Packages through the HTTP API, and hostile archives refused (untrusted input)."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from tangram.errors import LimitExceeded
from tangram.platform.packages.errors import PackageInvalid
from tangram.platform.packages.source import PackageLimits, read_package, read_zip, write_zip
from tests.package_factories import as_files, helpdesk_v1, helpdesk_v2


def _zip(entries: dict[str, bytes], *, symlink: str | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return buffer.getvalue()


GOOD = as_files(helpdesk_v1())


@pytest.mark.parametrize("name", ["../evil.json", "/etc/cron.d/x", "forms/../../x.json",
                                  "C:/windows/x.json", "forms\\lead.json"])
def test_path_traversal_and_absolute_paths_are_refused(name):
    with pytest.raises(PackageInvalid, match="refused"):
        read_zip(_zip({**GOOD, name: b"{}"}))


def test_symlinks_in_a_zip_are_refused():
    with pytest.raises(PackageInvalid, match="symbolic link"):
        read_zip(_zip(GOOD, symlink="forms/link.json"))


def test_symlinks_in_a_folder_are_refused(tmp_path: Path):
    (tmp_path / "forms").mkdir()
    (tmp_path / "app.json").write_bytes(GOOD["app.json"])
    os.symlink("/etc/passwd", tmp_path / "forms" / "lead.json")
    with pytest.raises(PackageInvalid, match="symbolic link"):
        read_package(tmp_path)


def test_a_zip_bomb_is_refused_without_expanding_it():
    bomb = _zip({"app.json": GOOD["app.json"], "data/seed/x.json": b"0" * (30 * 1024 * 1024)})
    assert len(bomb) < 100_000
    with pytest.raises(LimitExceeded, match="zip bomb|size limit|expands"):
        read_zip(bomb, PackageLimits(max_file_bytes=10 * 1024 * 1024))
    with pytest.raises(LimitExceeded, match="expands to"):  # declared size: not even opened
        read_zip(bomb)
    small = _zip({"app.json": GOOD["app.json"], "data/seed/x.json": b"0" * (15 * 1024 * 1024)})
    with pytest.raises(LimitExceeded, match="zip bomb"):  # under the size limit, not the ratio
        read_zip(small)


def test_too_large_or_too_many_files_are_refused():
    with pytest.raises(LimitExceeded):
        read_zip(b"x" * 2000, PackageLimits(max_archive_bytes=1000))
    many = _zip({f"templates/t{i}.txt": b"x" for i in range(30)})
    with pytest.raises(LimitExceeded, match="entries"):
        read_zip(many, PackageLimits(max_files=10))


def test_a_zip_of_the_package_folder_is_read_like_the_folder():
    nested = _zip({f"helpdesk/{k}": v for k, v in GOOD.items()})
    assert read_zip(nested) == GOOD
    assert read_zip(write_zip(GOOD)) == GOOD


def test_templates_are_only_parsed_in_the_sandbox():
    from tangram.platform.packages.loader import check_template

    assert check_template("t.html", "{{ record.x.__class__ }}") is None  # parsed, not run
    assert "syntax" in (check_template("t.html", "{% for %}") or "")


# --- HTTP ----------------------------------------------------------------------------

def test_validate_reports_every_error_without_installing(admin_client):
    pkg = helpdesk_v1()
    pkg["app.json"]["version"] = "1"
    pkg["forms/ticket.json"]["fields"][0]["type"] = "strin"
    r = admin_client.post("/api/packages/validate",
                          files={"file": ("p.zip", write_zip(as_files(pkg)), "application/zip")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is False
    assert {e["file"] for e in body["errors"]} == {"app.json", "forms/ticket.json"}
    assert admin_client.get("/api/packages").json() == []
    r = admin_client.post("/api/packages/validate", json={"files": helpdesk_v1()})
    assert r.json()["valid"] is True, r.text
    r = admin_client.post("/api/packages/validate", json={"files": {"../x": "{}"}})
    assert r.status_code == 422 and r.json()["code"] == "package_invalid"


def test_validate_knows_this_installations_users(admin_client):
    pkg = helpdesk_v1()
    pkg["data/demo/ticket.json"][0]["$owner"] = "admin"   # a user here, in no fixture
    pkg["data/demo/ticket.json"][1]["$owner"] = "ghost"
    r = admin_client.post("/api/packages/validate", json={"files": pkg})
    assert r.status_code == 200, r.text
    assert [(e["code"], e["file"], e["path"]) for e in r.json()["errors"]] == [
        ("data_owner", "data/demo/ticket.json", "$[1].$owner")]
    del pkg["data/demo/ticket.json"][1]["$owner"]
    r = admin_client.post("/api/packages/validate", json={"files": pkg})
    assert r.json()["valid"] is True, r.text


def test_install_upgrade_export_uninstall_over_http(admin_client, make_user):
    r = admin_client.post("/api/packages/install?demo=true",
                          files={"file": ("p.zip", write_zip(GOOD), "application/zip")})
    assert r.status_code == 201, r.text
    assert r.json()["rows"] == {"customer": 2, "ticket": 6}
    r = admin_client.post("/api/packages/install",
                          files={"file": ("p.zip", write_zip(GOOD), "application/zip")})
    assert r.status_code == 409
    v2 = write_zip(as_files(helpdesk_v2()))
    r = admin_client.post("/api/packages/upgrade?dry_run=true",
                          files={"file": ("p.zip", v2, "application/zip")})
    assert r.status_code == 200 and r.json()["dry_run"] is True
    assert admin_client.get("/api/packages").json()[0]["version"] == "1.0.0"
    r = admin_client.post("/api/packages/upgrade", files={"file": ("p.zip", v2, "application/zip")})
    assert r.status_code == 200, r.text
    assert admin_client.get("/api/packages").json()[0]["version"] == "1.1.0"
    r = admin_client.get("/api/packages/helpdesk/export?data=true")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    exported = read_zip(r.content)
    assert "forms/ticket.json" in exported and "data/seed/ticket.json" in exported
    _, token = make_user("rep")
    r = admin_client.delete("/api/packages/helpdesk", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 403
    assert admin_client.delete("/api/packages/helpdesk").status_code == 200
    assert admin_client.get("/api/packages").json() == []


def test_the_manifest_schema_is_published(admin_client):
    r = admin_client.get("/api/meta/schemas/package")
    assert r.status_code == 200
    assert "dependencies" in r.json()["properties"]
