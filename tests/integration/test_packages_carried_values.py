"""User and attachment values travel with an export (``--data``): users by
username (``{"$user": …}``, in sub-table rows too), mapped to the target's
users as owners are — users the target lacks come from the seed org
fixture, one named nowhere is listed and refused —, and files in the package
(``data/seed/_files/<sha256>``, one entry per content), stored on install
through the file API so downloads work with their permission checks. A
package whose file entry is missing, corrupted, or larger than the target's
upload limit is refused at validation and installs nothing; one larger than
other package entries may be, but within the upload limit, round-trips — on
SQLite and PostgreSQL. The same content under two names is stored once."""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tangram.db import create_engine_from_url, normalize_url
from tangram.engines.directory import users_table
from tangram.engines.forms.systables import files_table
from tangram.platform.packages.api import installation_limits
from tangram.platform.packages.source import PackageLimits, read_zip, write_zip
from tests.conftest import POSTGRES_URL
from tests.package_factories import as_files, helpdesk_v1, label

PDF = b"%PDF-1.4 the signed contract " + bytes(range(256)) * 8
PNG = b"\x89PNG\r\n\x1a\n a photo of the printer " + bytes(range(200))


def helpdesk_with_people_and_files() -> dict[str, Any]:
    pkg = copy.deepcopy(helpdesk_v1())
    pkg["forms/ticket.json"]["fields"] += [
        {"key": "assignee", "type": "user", "label": label("处理人", "Assignee")},
        {"key": "files", "type": "attachment", "label": label("附件", "Files")},
        {"key": "steps", "type": "sub_table", "label": label("步骤", "Steps"),
         "fields": [{"key": "note", "type": "text", "label": label("说明", "Note")},
                    {"key": "by", "type": "user", "label": label("人", "By")},
                    {"key": "scan", "type": "attachment", "label": label("扫描件", "Scan")}]}]
    pkg["data/seed/_org.json"] = {
        "departments": [{"id": "support", "parent_id": None, "name": "客服部"}],
        "users": [{"id": "agent1", "name": "王一", "department_ids": ["support"]},
                  {"id": "boss", "name": "林主管", "department_ids": ["support"],
                   "is_head": ["support"]}],
        "roles": [{"role": "agent", "users": ["agent1"]}]}
    return pkg


@pytest.fixture
def target_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """A second empty database of the same backend: the installation the
    export is carried to."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'target.db'}"
        return
    assert POSTGRES_URL
    schema = f"t_{secrets.token_hex(6)}"
    admin = create_engine_from_url(POSTGRES_URL, poolclass=sa.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield normalize_url(POSTGRES_URL) + f"{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


Installation = tuple[FastAPI, Callable[..., TestClient]]


def installation(app_factory: Callable[..., FastAPI], make_user: Callable[..., Any],
                 where: Path, **settings: Any) -> tuple[FastAPI, TestClient]:
    """An app on its own database and file folder, and its administrator's client."""
    app = app_factory(var_dir=where, **settings)
    _, token = make_user("root", is_admin=True, app=app)
    return app, TestClient(app, headers={"Authorization": f"Bearer {token}"})


def user_ids(app: FastAPI) -> dict[str, str]:
    with app.state.sessions.begin() as s:
        return {name: str(i) for i, name in s.execute(
            sa.select(users_table.c.id, users_table.c.username))}


def upload(client: TestClient, name: str, content: bytes, content_type: str) -> str:
    r = client.post("/api/files", files={"file": (name, content, content_type)})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


RECORDS = "/api/apps/helpdesk/forms/ticket/records"


@pytest.fixture
def source(app_factory, make_user, tmp_path) -> tuple[FastAPI, TestClient]:
    """The help desk with tickets naming users and carrying files: one file
    attached to two tickets, the same content uploaded twice (another name),
    a sub-table row with a user and a scan."""
    app, client = installation(app_factory, make_user, tmp_path / "source")
    r = client.post("/api/packages/install", files={
        "file": ("p.zip", write_zip(as_files(helpdesk_with_people_and_files())),
                 "application/zip")})
    assert r.status_code == 201, r.text
    users = user_ids(app)
    shared = upload(client, "合同.pdf", PDF, "application/pdf")
    again = upload(client, "contract-copy.pdf", PDF, "application/pdf")
    photo = upload(client, "printer.png", PNG, "image/png")
    for data in (
        {"subject": "Jam", "assignee": users["agent1"], "files": [shared, photo],
         "steps": [{"note": "scanned", "by": users["boss"], "scan": [again]}]},
        {"subject": "Toner", "assignee": users["boss"], "files": [shared]},
        {"subject": "Nobody's"},
    ):
        r = client.post(RECORDS, json={"values": data})
        assert r.status_code == 201, r.text
    return app, client


def export(client: TestClient) -> tuple[dict[str, bytes], list[str]]:
    r = client.get("/api/packages/helpdesk/export?data=true")
    assert r.status_code == 200, r.text
    return read_zip(r.content), [unquote(w) for w in
                                 r.headers.get_list("X-Tangram-Export-Warning")]


def tickets(client: TestClient) -> dict[str, dict[str, Any]]:
    r = client.get(RECORDS, params={"limit": 50})
    assert r.status_code == 200, r.text
    return {t["subject"]: t for t in r.json()["items"]}


def test_users_and_files_survive_the_round_trip_and_downloads_check_permissions(
        source, app_factory, make_user, target_url, tmp_path):
    src_app, src = source
    files, warnings = export(src)
    text = "\n".join(warnings)
    assert "ticket.assignee" not in text and "ticket.files" not in text, warnings
    assert "steps" not in text, warnings
    rows = {r["subject"]: r for r in json.loads(files["data/seed/ticket.json"])}
    assert rows["Jam"]["assignee"] == {"$user": "agent1"}
    assert rows["Jam"]["steps"][0]["by"] == {"$user": "boss"}
    sha = hashlib.sha256(PDF).hexdigest()
    assert rows["Toner"]["files"] == [{"$file": {
        "sha256": sha, "name": "合同.pdf", "content_type": "application/pdf",
        "size": len(PDF)}}]
    # One entry per content: the PDF attached twice and uploaded twice is stored once.
    blobs = sorted(p for p in files if p.startswith("data/seed/_files/"))
    assert blobs == sorted(f"data/seed/_files/{hashlib.sha256(c).hexdigest()}"
                           for c in (PDF, PNG))

    # The target has agent1 already (made by hand), not boss: the fixture brings boss.
    tgt_app, tgt = installation(app_factory, make_user, tmp_path / "target",
                                database_url=target_url)
    _, agent_token = make_user("agent1", app=tgt_app)
    _, outsider_token = make_user("outsider", app=tgt_app)
    r = tgt.post("/api/packages/install", files={"file": ("p.zip", write_zip(files),
                                                          "application/zip")})
    assert r.status_code == 201, r.text
    there = user_ids(tgt_app)
    before, after = tickets(src), tickets(tgt)
    assert after["Jam"]["assignee"] == there["agent1"]
    assert after["Toner"]["assignee"] == there["boss"]
    assert after["Jam"]["steps"][0]["by"] == there["boss"]
    assert after["Nobody's"].get("assignee") is None

    def described(ticket: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(f["name"], f["size"], f["content_type"]) for f in ticket["files"]]

    for subject in ("Jam", "Toner"):
        assert described(after[subject]) == described(before[subject])
    # One file attached to both tickets on the source is one file on the target.
    assert after["Jam"]["files"][0]["id"] == after["Toner"]["files"][0]["id"]

    agent = TestClient(tgt_app, headers={"Authorization": f"Bearer {agent_token}"})
    outsider = TestClient(tgt_app, headers={"Authorization": f"Bearer {outsider_token}"})
    scan = after["Jam"]["steps"][0]["scan"][0]
    for file_id, content in ((after["Jam"]["files"][0]["id"], PDF),
                             (after["Jam"]["files"][1]["id"], PNG), (scan, PDF)):
        for reader in (tgt, agent):  # the administrator; an agent who may read tickets
            r = reader.get(f"/api/files/{file_id}")
            assert r.status_code == 200, r.text
            assert r.content == content
        assert outsider.get(f"/api/files/{file_id}").status_code == 404  # no role: no file
    r = tgt.get(f"/api/files/{after['Jam']['files'][1]['id']}")
    assert r.headers["content-type"] == "image/png"


def test_a_user_named_nowhere_is_listed_at_validation_and_nothing_is_installed(
        source, app_factory, make_user, target_url, tmp_path):
    _, src = source
    files, _ = export(src)
    org = json.loads(files["data/seed/_org.json"])
    org["users"] = [u for u in org["users"] if u["id"] != "boss"]
    for u in org["users"]:
        u["is_head"] = []
    files["data/seed/_org.json"] = json.dumps(org).encode()

    tgt_app, tgt = installation(app_factory, make_user, tmp_path / "target",
                                database_url=target_url)
    zipped = write_zip(files)
    r = tgt.post("/api/packages/validate", files={"file": ("p.zip", zipped, "application/zip")})
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["valid"] is False
    problems = {(e["code"], e["file"], e["path"]) for e in report["errors"]}
    rows = [json.loads(line.rstrip(",")) for line in
            files["data/seed/ticket.json"].decode().splitlines()[1:-1]]
    toner = next(i for i, row in enumerate(rows) if row["subject"] == "Toner")
    jam = next(i for i, row in enumerate(rows) if row["subject"] == "Jam")
    assert ("data_user", "data/seed/ticket.json", f"$[{toner}].assignee") in problems
    assert ("data_user", "data/seed/ticket.json", f"$[{jam}].steps[0].by") in problems
    assert any("'boss'" in e["message"] for e in report["errors"])

    r = tgt.post("/api/packages/install", files={"file": ("p.zip", zipped, "application/zip")})
    assert r.status_code == 422, r.text
    assert "data_user" in {e["code"] for e in r.json()["errors"]}
    assert_nothing_installed(tgt_app, tmp_path / "target")


def assert_nothing_installed(app: FastAPI, var_dir: Path) -> None:
    with app.state.sessions.begin() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(files_table)).scalar() == 0
        assert s.execute(sa.text("SELECT count(*) FROM apps WHERE key = 'helpdesk'")
                         ).scalar() == 0
    stored = [p for p in Path(app.state.settings.files_path).rglob("*") if p.is_file()] \
        if Path(app.state.settings.files_path).exists() else []
    assert stored == []


@pytest.mark.parametrize("damage", ["missing", "corrupted", "too_big"])
def test_a_package_with_a_bad_file_is_refused_at_validation_and_installs_nothing(
        damage, app_factory, make_user, target_url, tmp_path):
    big = secrets.token_bytes((1 << 20) + 1000)  # over the target's 1 MiB upload limit
    src_app, src = installation(app_factory, make_user, tmp_path / "source")
    r = src.post("/api/packages/install", files={
        "file": ("p.zip", write_zip(as_files(helpdesk_with_people_and_files())),
                 "application/zip")})
    assert r.status_code == 201, r.text
    content = big if damage == "too_big" else PDF
    file_id = upload(src, "scan.bin", content, "application/octet-stream")
    r = src.post(RECORDS, json={"values": {"subject": "Jam", "files": [file_id]}})
    assert r.status_code == 201, r.text
    files, _ = export(src)
    entry = f"data/seed/_files/{hashlib.sha256(content).hexdigest()}"
    if damage == "missing":
        del files[entry]
    elif damage == "corrupted":
        files[entry] = files[entry][:-1] + b"!"

    tgt_app, tgt = installation(app_factory, make_user, tmp_path / "target",
                                database_url=target_url, max_upload_mb=1)
    zipped = write_zip(files)
    r = tgt.post("/api/packages/validate", files={"file": ("p.zip", zipped, "application/zip")})
    if damage == "too_big":
        # Refused as the package is read: its entry may not be larger than an upload.
        assert r.status_code == 413, r.text
        assert [(e["code"], e["file"]) for e in r.json()["errors"]] == [("data_file", entry)]
        assert "upload limit of 1 MB (max_upload_mb)" in r.json()["errors"][0]["message"]
        # The source's export, with the target's limits, says so.
        src_app.dependency_overrides[installation_limits] = \
            lambda: PackageLimits.for_installation(1 << 20)
        _, warnings = export(src)
        assert any(entry in w and "upload limit of 1 MB" in w and "refuses" in w
                   for w in warnings), warnings
    else:
        assert r.status_code == 200, r.text
    report = r.json() if damage != "too_big" else {"valid": False, "errors": []}
    assert report["valid"] is False
    rows = [json.loads(line.rstrip(",")) for line in
            files["data/seed/ticket.json"].decode().splitlines()[1:-1]]
    jam = next(i for i, row in enumerate(rows) if row["subject"] == "Jam")
    where = {(e["code"], e["file"], e["path"]): e["message"] for e in report["errors"]}
    if damage != "too_big":
        expected = {
            "missing": (("data_file", "data/seed/ticket.json", f"$[{jam}].files[0]"),
                        "not in the package"),
            "corrupted": (("data_file", entry, "$"), "does not match"),
        }[damage]
        assert expected[0] in where, report["errors"]
        assert expected[1] in where[expected[0]]

    r = tgt.post("/api/packages/install", files={"file": ("p.zip", zipped, "application/zip")})
    assert r.status_code in (413, 422), r.text
    assert "data_file" in {e.get("code") for e in r.json().get("errors", [])}, r.text
    assert_nothing_installed(tgt_app, tmp_path / "target")


def test_the_commands_install_and_export_packaged_files(tmp_path):
    """A hand-written package with a file installs with ``tangram app
    install`` into the configured file storage, and ``tangram app export
    --data`` carries it again."""
    from typer.testing import CliRunner

    from tangram.platform.cli import app
    from tangram.platform.packages.source import write_folder

    pkg = as_files(helpdesk_with_people_and_files())
    sha = hashlib.sha256(PNG).hexdigest()
    pkg["data/seed/_files/" + sha] = PNG
    pkg["data/seed/ticket.json"] = json.dumps([
        {"subject": "Photo", "assignee": {"$user": "agent1"},
         "files": [{"$file": {"sha256": sha, "name": "printer.png",
                              "content_type": "image/png", "size": len(PNG)}}]}]).encode()
    env = {"TANGRAM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "TANGRAM_VAR_DIR": str(tmp_path), "TANGRAM_ENVIRONMENT": "test"}
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, list(args), env=env)

    assert run("db", "upgrade").exit_code == 0
    assert run("user", "create", "boss2", "--password", "boss-pass-2026", "--admin",
               ).exit_code == 0
    write_folder(pkg, tmp_path / "helpdesk")
    done = run("package", "validate", str(tmp_path / "helpdesk"))
    assert done.exit_code == 0, done.output
    done = run("app", "install", str(tmp_path / "helpdesk"))
    assert done.exit_code == 0, done.output
    done = run("app", "export", "helpdesk", "-o", str(tmp_path / "out.zip"), "--data")
    assert done.exit_code == 0, done.output
    assert "not exported" not in done.output
    out = read_zip((tmp_path / "out.zip").read_bytes())
    assert out["data/seed/_files/" + sha] == PNG
    row = json.loads(out["data/seed/ticket.json"])[0]
    assert row["assignee"] == {"$user": "agent1"}
    assert row["files"][0]["$file"]["name"] == "printer.png"
    # Without --data the package's own seed rows are kept, and so are their files.
    done = run("app", "export", "helpdesk", "-o", str(tmp_path / "plain.zip"))
    assert done.exit_code == 0, done.output
    plain = read_zip((tmp_path / "plain.zip").read_bytes())
    assert plain["data/seed/_files/" + sha] == PNG
    assert json.loads(plain["data/seed/ticket.json"])[0]["files"][0]["$file"]["sha256"] == sha


def test_a_user_value_may_name_a_user_of_the_installation(app_factory, make_user, tmp_path):
    """Not in the package's org fixture but on the installation: valid (the
    scratch install of validation knows them too), and installed as them."""
    app, client = installation(app_factory, make_user, tmp_path / "here")
    pkg = helpdesk_with_people_and_files()
    pkg["data/seed/ticket.json"] = [
        {"subject": "Mine", "assignee": {"$user": "root"},
         "steps": [{"note": "checked", "by": {"$user": "ROOT"}}]}]
    zipped = write_zip(as_files(pkg))
    r = client.post("/api/packages/validate", files={"file": ("p.zip", zipped,
                                                               "application/zip")})
    assert r.status_code == 200 and r.json()["valid"] is True, r.text
    r = client.post("/api/packages/install", files={"file": ("p.zip", zipped,
                                                              "application/zip")})
    assert r.status_code == 201, r.text
    mine = tickets(client)["Mine"]
    assert mine["assignee"] == user_ids(app)["root"] == mine["steps"][0]["by"]


# A 1 MiB upload limit, and other package entries limited to 256 KiB: the
# defaults (50 MB, 20 MB) scaled down so the round trip stays small.
SMALL_LIMITS = PackageLimits.for_installation(1 << 20, max_file_bytes=256 << 10)


def stored_contents(app: FastAPI) -> list[Path]:
    root = Path(app.state.settings.files_path)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_a_file_larger_than_a_package_entry_but_within_the_upload_limit_round_trips(
        app_factory, make_user, target_url, tmp_path):
    big = secrets.token_bytes(600 << 10)  # > 256 KiB per entry, < the 1 MiB upload limit
    src_app, src = installation(app_factory, make_user, tmp_path / "source", max_upload_mb=1)
    src_app.dependency_overrides[installation_limits] = lambda: SMALL_LIMITS
    r = src.post("/api/packages/install", files={
        "file": ("p.zip", write_zip(as_files(helpdesk_with_people_and_files())),
                 "application/zip")})
    assert r.status_code == 201, r.text
    file_id = upload(src, "drawing.bin", big, "application/octet-stream")
    r = src.post(RECORDS, json={"values": {"subject": "Big", "files": [file_id]}})
    assert r.status_code == 201, r.text
    files, warnings = export(src)
    assert not [w for w in warnings if "refuses" in w], warnings  # nothing the limits refuse
    entry = f"data/seed/_files/{hashlib.sha256(big).hexdigest()}"
    assert files[entry] == big

    tgt_app, tgt = installation(app_factory, make_user, tmp_path / "target",
                                database_url=target_url, max_upload_mb=1)
    tgt_app.dependency_overrides[installation_limits] = lambda: SMALL_LIMITS
    zipped = write_zip(files)
    r = tgt.post("/api/packages/validate", files={"file": ("p.zip", zipped, "application/zip")})
    assert r.status_code == 200 and r.json()["valid"] is True, r.text
    r = tgt.post("/api/packages/install", files={"file": ("p.zip", zipped, "application/zip")})
    assert r.status_code == 201, r.text
    (there,) = tickets(tgt)["Big"]["files"]
    assert (there["name"], there["size"]) == ("drawing.bin", len(big))
    r = tgt.get(f"/api/files/{there['id']}")
    assert r.status_code == 200 and r.content == big
    # And it goes on: the target exports it again, as installable as before.
    assert not [w for w in export(tgt)[1] if "refuses" in w]


def test_the_same_content_under_two_names_is_stored_once_on_install(
        source, app_factory, make_user, target_url, tmp_path):
    _, src = source
    files, _ = export(src)
    tgt_app, tgt = installation(app_factory, make_user, tmp_path / "target",
                                database_url=target_url)
    r = tgt.post("/api/packages/install", files={"file": ("p.zip", write_zip(files),
                                                          "application/zip")})
    assert r.status_code == 201, r.text
    with tgt_app.state.sessions.begin() as s:
        rows = s.execute(sa.select(files_table.c.name, files_table.c.sha256,
                                   files_table.c.storage_key)).all()
    by_name = {r.name: r for r in rows}
    # Two names of the PDF (two files, as on the source), one content in storage.
    assert sorted(by_name) == ["contract-copy.pdf", "printer.png", "合同.pdf"]
    assert by_name["合同.pdf"].storage_key == by_name["contract-copy.pdf"].storage_key
    assert by_name["合同.pdf"].storage_key != by_name["printer.png"].storage_key
    assert len(stored_contents(tgt_app)) == 2
    jam = tickets(tgt)["Jam"]
    scan = jam["steps"][0]["scan"][0]
    for file_id in (jam["files"][0]["id"], scan):
        r = tgt.get(f"/api/files/{file_id}")
        assert r.status_code == 200 and r.content == PDF
    assert tgt.get(f"/api/files/{scan}").headers["content-disposition"].find(
        "contract-copy.pdf") != -1


def test_a_failed_install_takes_back_a_content_stored_under_two_names(
        source, app_factory, make_user, target_url, tmp_path):
    """The files are stored before the rows are written: a row refused then
    leaves no content behind, shared or not."""
    _, src = source
    files, _ = export(src)
    rows = json.loads(files["data/seed/ticket.json"])
    rows.append({"subject": None})  # required: refused after the files are stored
    files["data/seed/ticket.json"] = json.dumps(rows).encode()
    tgt_app, tgt = installation(app_factory, make_user, tmp_path / "target",
                                database_url=target_url)
    r = tgt.post("/api/packages/install", files={"file": ("p.zip", write_zip(files),
                                                          "application/zip")})
    assert r.status_code == 422, r.text
    assert_nothing_installed(tgt_app, tmp_path / "target")
