"""Imports and exports through HTTP, as real users — including the denied paths."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest
from fastapi.testclient import TestClient

from tests import permission_factories as pf
from tests.import_factories import ACCOUNT, LEAD, ZH_HEADER, csv_bytes, lead_row, xlsx_bytes

IMPORTS = "/api/apps/crm/forms/lead/imports"
ZH = {"Accept-Language": "zh"}  # files in the reader's language
EXPORT = "/api/apps/crm/forms/lead/export"


@pytest.fixture
def crm(admin_client):
    r = admin_client.post("/api/apps", json={"key": "crm", "name": {"zh": "客户管理"}})
    assert r.status_code == 201, r.text
    for body in (ACCOUNT, LEAD):
        r = admin_client.put(f"/api/apps/crm/forms/{body['key']}/draft",
                             json={"definition": body})
        assert r.status_code == 200, r.text
        r = admin_client.post(f"/api/apps/crm/forms/{body['key']}/publish", json={})
        assert r.status_code == 200, r.text
    return admin_client


def upload(client, content: bytes, name: str = "leads.csv"):
    return client.post(IMPORTS, files={"file": (name, content, "application/octet-stream")})


def wait(client, job_id: str) -> dict:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = client.get(f"{IMPORTS}/{job_id}").json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"import {job_id} did not finish: {job}")


def test_upload_preview_start_poll_and_error_file(crm):
    content = csv_bytes(ZH_HEADER + ["备注说明"], [lead_row(1) + ["x"],
                                               lead_row(2, mobile="1", email="bad") + ["y"],
                                               lead_row(3) + ["z"]], "gbk")
    r = upload(crm, content)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["encoding"] == "gb18030" and job["total_rows"] == 3
    assert job["mapping"][-1] == {"column": "备注说明", "field": None}
    errors = job["preview"]["rows"][1]["errors"]
    assert {e["field"] for e in errors} == {"mobile", "email"}
    # Re-preview with the extra column mapped to the note field.
    shown = crm.post(f"{IMPORTS}/{job['id']}/preview", json={"mapping": {"备注说明": "note"}})
    assert shown.status_code == 200 and shown.json()["mapping"][-1]["field"] == "note"
    r = crm.post(f"{IMPORTS}/{job['id']}/start", json={  # the job speaks its starter's language
        "mapping": {"备注说明": "note"}, "dedup": {"fields": ["mobile"], "mode": "skip"}},
        headers=ZH)
    assert r.status_code == 202, r.text
    done = wait(crm, job["id"])
    assert done["status"] == "succeeded" and done["progress"] == 1.0
    assert done["counts"] == {"created": 2, "updated": 0, "skipped": 0, "errors": 1}
    r = crm.get(f"{IMPORTS}/{job['id']}/errors")
    assert r.status_code == 200 and "attachment" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][-1] == "错误原因" and rows[1][1] == "1"
    again = crm.post(f"{IMPORTS}/{job['id']}/start", json={})
    assert again.status_code == 409
    leads = crm.get("/api/apps/crm/forms/lead/records").json()["items"]
    assert {lead["note"] for lead in leads} == {"x", "z"}


def test_an_import_of_history_starts_only_the_flows_that_ask_for_it(crm):
    def flow(key: str, **trigger) -> None:
        body = {"key": key, "label": {"zh": key}, "form": "lead", "nodes": [
            {"type": "start", "key": "start", "next": "end",
             "trigger": {"kind": "record_created", **trigger}},
            {"type": "end", "key": "end", "outcome": "done"}]}
        assert crm.put(f"/api/apps/crm/flows/{key}/draft", json={"definition": body}
                       ).status_code == 200
        res = crm.post(f"/api/apps/crm/flows/{key}/publish", json={})
        assert res.status_code == 200, res.text

    flow("welcome")  # no sources: every change but history
    flow("archive", sources=["history"])

    def run(rows: list, **options) -> dict:
        job = upload(crm, csv_bytes(ZH_HEADER, rows, "utf-8")).json()
        assert crm.post(f"{IMPORTS}/{job['id']}/start", json=options).status_code == 202
        return wait(crm, job["id"])

    def started() -> list[str]:
        items = crm.get("/api/flows/tasks", params={"box": "submitted"}).json()["items"]
        return sorted(i["flow"] for i in items)

    assert run([lead_row(1)])["historical"] is False
    assert started() == ["welcome"]
    done = run([lead_row(2), lead_row(3)], historical=True)
    assert done["historical"] is True and done["counts"]["created"] == 2
    assert started() == ["archive", "archive", "welcome"]


def test_invalid_uploads_and_options_are_refused_with_reasons(crm):
    r = upload(crm, b"not a spreadsheet", "leads.pdf")
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "file_format"
    r = upload(crm, b"PK\x03\x04 broken", "leads.xlsx")
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "file_unreadable"
    job = upload(crm, csv_bytes(["姓名", "手机"], [["a", "13800000001"]])).json()
    r = crm.post(f"{IMPORTS}/{job['id']}/start", json={"mode": "sometimes"})
    assert r.status_code == 422
    r = crm.post(f"{IMPORTS}/{job['id']}/start", json={"dedup": {"fields": ["email"]}})
    assert r.status_code == 422 and "email" in r.json()["errors"][0]["message"]


def test_files_that_are_not_csv_text_are_refused_and_duplicate_columns_are_reported(crm):
    # Only the documented extensions: a .txt is not taken for a CSV
    r = upload(crm, csv_bytes(["姓名", "手机"], [["a", "13800000001"]]), "a.txt")
    assert r.status_code == 422 and r.json()["errors"][0]["code"] == "file_format"
    # A binary that starts like a UTF-32 / UTF-16 byte-order mark is not read as text
    for head in (b"\xff\xfe\x00\x00", b"\xff\xfe"):
        r = upload(crm, head + bytes(range(256)) * 4, "leads.csv")
        assert r.status_code == 422, r.text
        assert r.json()["errors"][0]["code"] == "file_unreadable"
        assert "cannot read the file as CSV" in r.json()["errors"][0]["message"]
    # name,mobile,mobile: the second mobile column does not vanish without a word
    job = upload(crm, csv_bytes(["姓名", "手机", "手机"],
                                [["a", "13800000001", "13800000002"]])).json()
    [warning] = job["preview"]["warnings"]
    assert "column 3" in warning and "not imported" in warning and "#3" in warning


def test_imported_mobiles_are_stored_as_11_digits_so_unique_sees_duplicates(crm):
    job = upload(crm, csv_bytes(["姓名", "手机"], [["a", "+86 138 0000 0001"],
                                                 ["b", "8613800000001"]])).json()
    rows = job["preview"]["rows"]
    assert rows[0]["errors"] == []
    crm.post(f"{IMPORTS}/{job['id']}/start", json={"mode": "valid_only"})
    done = wait(crm, job["id"])
    assert done["status"] == "succeeded", done
    items = crm.get("/api/apps/crm/forms/lead/records").json()["items"]
    assert [i["mobile"] for i in items] == ["13800000001"]  # b is the duplicate of a
    # An xlsx cell typed as a number fills a text field as its digits
    job = upload(crm, xlsx_bytes(["姓名", "手机"], [[12345, 13800000009]]), "leads.xlsx").json()
    assert job["preview"]["rows"][0]["errors"] == []
    assert job["preview"]["rows"][0]["values"] == {"name": "12345", "mobile": "13800000009"}


def test_xlsx_all_or_nothing_through_http(crm):
    content = xlsx_bytes(["姓名", "手机"], [["a", "13800000001"], ["b", "bad"]])
    job = upload(crm, content, "leads.xlsx").json()
    crm.post(f"{IMPORTS}/{job['id']}/start", json={"mode": "all_or_nothing"})
    done = wait(crm, job["id"])
    assert done["status"] == "failed" and done["counts"]["errors"] == 1
    assert crm.get("/api/apps/crm/forms/lead/records").json()["items"] == []
    r = crm.get(f"{IMPORTS}/{job['id']}/errors")
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats")


def test_export_streams_the_list_view(crm):
    job = upload(crm, csv_bytes(ZH_HEADER, [lead_row(i) for i in range(1, 6)])).json()
    crm.post(f"{IMPORTS}/{job['id']}/start", json={})
    wait(crm, job["id"])
    flt = {"field": "budget", "op": "gte", "value": "3"}
    r = crm.get(EXPORT, params={"format": "csv", "filter": json.dumps(flt), "sort": "-budget",
                                "fields": "name,budget,status"}, headers=ZH)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert "filename*=UTF-8''" in r.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows == [["姓名", "预算", "状态"], ["客户5", "5.50", "新建"], ["客户4", "4.50", "新建"],
                    ["客户3", "3.50", "新建"]]
    r = crm.post(EXPORT, json={"format": "xlsx", "sort": ["name"]})
    assert r.status_code == 200 and r.content[:2] == b"PK"
    bad = crm.get(EXPORT, params={"filter": json.dumps({"field": "nope", "op": "eq"})})
    assert bad.status_code == 422


def test_export_and_import_follow_the_viewers_role(crm, app, make_user):
    job = upload(crm, csv_bytes(ZH_HEADER, [lead_row(1), lead_row(2)])).json()
    crm.post(f"{IMPORTS}/{job['id']}/start", json={})
    wait(crm, job["id"])
    reader_id, reader_token = make_user("reader")
    exporter_id, exporter_token = make_user("exporter")
    with app.state.sessions.begin() as s:
        pf.role(s, "crm", "reader", pf.grant("lead", ["read"], "all"))
        pf.role(s, "crm", "exporter", pf.grant("lead", ["read", "export", "import", "create"],
                                               "all", fields={"budget": "hidden"}))
        pf.assign(s, "crm", "reader", user_id=reader_id)
        pf.assign(s, "crm", "exporter", user_id=exporter_id)
    with TestClient(app, headers={"Authorization": f"Bearer {reader_token}"}) as reader:
        assert reader.get(EXPORT).status_code == 403
        assert upload(reader, csv_bytes(["姓名"], [["x"]])).status_code == 403
    with TestClient(app, headers={"Authorization": f"Bearer {exporter_token}"}) as exporter:
        r = exporter.get(EXPORT, headers=ZH)
        assert r.status_code == 200
        header = next(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
        assert "姓名" in header and "预算" not in header
        assert exporter.get(EXPORT, params={"fields": "name,budget"}).status_code == 403
        job = upload(exporter, csv_bytes(["姓名", "手机", "预算"], [["x", "13900000001", "9"]]))
        assert job.status_code == 201
        # the hidden column is not offered, and may not be mapped by hand
        assert [m["field"] for m in job.json()["mapping"]] == ["name", "mobile", None]
        r = exporter.post(f"{IMPORTS}/{job.json()['id']}/start",
                          json={"mapping": {"预算": "budget"}})
        assert r.status_code == 422 and "hidden" in r.json()["errors"][0]["message"]


def test_an_import_job_belongs_to_its_uploader(crm, app, make_user):
    """Another importer cannot see, poll, preview, start, resume or download the
    error file of someone else's job (404, as if it did not exist); an
    administrator can."""
    ids = {}
    for name in ("alice", "bob"):
        ids[name], token = make_user(name)
        ids[name + "_token"] = token
    with app.state.sessions.begin() as s:
        pf.role(s, "crm", "importer", pf.grant("lead", ["read", "create", "import"], "all"))
        for name in ("alice", "bob"):
            pf.assign(s, "crm", "importer", user_id=ids[name])
    alice = TestClient(app, headers={"Authorization": f"Bearer {ids['alice_token']}"})
    bob = TestClient(app, headers={"Authorization": f"Bearer {ids['bob_token']}"})
    content = csv_bytes(ZH_HEADER, [lead_row(1), lead_row(2, mobile="1")])
    job = upload(alice, content).json()
    url = f"{IMPORTS}/{job['id']}"
    refused = [bob.get(url), bob.post(f"{url}/preview", json={}),
               bob.post(f"{url}/start", json={}), bob.post(f"{url}/resume"),
               bob.get(f"{url}/errors")]
    assert [r.status_code for r in refused] == [404] * 5
    assert all(r.json()["code"] == "not_found" for r in refused)
    assert alice.get(url).status_code == 200
    assert alice.post(f"{url}/start", json={}).status_code == 202
    done = wait(alice, job["id"])
    assert done["counts"]["errors"] == 1
    assert bob.get(f"{url}/errors").status_code == 404
    assert alice.get(f"{url}/errors").status_code == 200
    # Administrators see every job.
    assert crm.get(url).status_code == 200 and crm.get(f"{url}/errors").status_code == 200


def test_a_duplicate_rule_matches_only_records_the_importer_may_read(crm, app, make_user):
    # The administrator's lead 13800000001 is outside the importer's own
    # scope: its dedup match would reveal it (skip/merge) and name it.
    job = upload(crm, csv_bytes(ZH_HEADER, [lead_row(1)])).json()
    crm.post(f"{IMPORTS}/{job['id']}/start", json={})
    wait(crm, job["id"])
    uid, token = make_user("own_only")
    with app.state.sessions.begin() as s:
        pf.role(s, "crm", "own_importer", pf.grant(
            "lead", ["read", "create", "update", "import"], "own"))
        pf.assign(s, "crm", "own_importer", user_id=uid)
    me = TestClient(app, headers={"Authorization": f"Bearer {token}"})
    job = upload(me, csv_bytes(["姓名", "手机"], [["改", "13800000001"]])).json()
    shown = me.post(f"{IMPORTS}/{job['id']}/preview", json={
        "dedup": {"fields": ["mobile"], "mode": "merge"}}).json()
    [row] = shown["rows"]
    assert row["action"] == "error" and row["errors"][0]["code"] == "unique"
    assert me.post(f"{IMPORTS}/{job['id']}/start", json={
        "dedup": {"fields": ["mobile"], "mode": "update"}}).status_code == 202
    done = wait(me, job["id"])
    assert done["counts"] == {"created": 0, "updated": 0, "skipped": 0, "errors": 1}
    errors = me.get(f"{IMPORTS}/{job['id']}/errors").content.decode("utf-8-sig")
    assert "does not exist" not in errors
