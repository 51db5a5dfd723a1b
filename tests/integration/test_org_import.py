"""Org-chart import from DingTalk/WeCom-shaped JSON and CSV: idempotent, moves
users, all or nothing; and the ``tangram org import`` command."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from tangram.db import session_factory
from tangram.engines.directory import departments_table, user_departments_table, users_table
from tangram.errors import ValidationFailed
from tangram.platform.cli import app as cli
from tangram.platform.permissions.org_import import import_org, normalize, parse_files
from tests.permission_factories import NOW

DINGTALK = {
    "departments": [
        {"dept_id": 1, "name": "总公司", "parent_id": None},
        {"dept_id": 2, "name": "华东销售", "parent_id": 1},
        {"dept_id": 3, "name": "华南销售", "parent_id": 1},
    ],
    "users": [
        {"userid": "zhangsan", "name": "张三", "mobile": "13800000001",
         "dept_id_list": [2], "leader_in_dept": [{"dept_id": 2, "leader": True}]},
        {"userid": "lisi", "name": "李四", "mobile": "13800000002", "dept_id_list": [2, 3],
         "main_department": 3},
    ],
}


def run_import(engine, data):
    with session_factory(engine).begin() as s:
        return import_org(s, normalize(data), actor_id=None, now=NOW).as_dict()


def memberships(engine):
    d, u, ud = departments_table, users_table, user_departments_table
    with engine.connect() as conn:
        rows = conn.execute(sa.select(u.c.username, d.c.name, ud.c.is_head)
                            .join(ud, ud.c.user_id == u.c.id)
                            .join(d, d.c.id == ud.c.department_id)).all()
        primary = dict(conn.execute(sa.select(u.c.username, d.c.name).join(
            d, d.c.id == u.c.primary_department_id)).all())
    return sorted((r.username, r.name, r.is_head) for r in rows), primary


def test_importing_twice_changes_nothing_and_a_moved_user_moves(engine):
    first = run_import(engine, DINGTALK)
    assert (first["departments_created"], first["users_created"]) == (3, 2)
    before = memberships(engine)
    assert before == ([("lisi", "华东销售", False), ("lisi", "华南销售", False),
                       ("zhangsan", "华东销售", True)],
                      {"lisi": "华南销售", "zhangsan": "华东销售"})
    again = run_import(engine, DINGTALK)
    assert again["departments_created"] == again["departments_updated"] == 0
    assert again["users_created"] == again["users_updated"] == 0
    assert memberships(engine) == before
    moved = json.loads(json.dumps(DINGTALK))
    moved["users"][0]["dept_id_list"] = [3]
    moved["users"][0]["leader_in_dept"] = []
    moved["departments"][2]["name"] = "华南大区"
    third = run_import(engine, moved)
    assert (third["users_updated"], third["departments_updated"]) == (1, 1)
    assert ("zhangsan", "华南大区", False) in memberships(engine)[0]
    assert memberships(engine)[1]["zhangsan"] == "华南大区"


def test_wecom_shape_and_every_error_at_once(engine):
    wecom = {"department": [{"id": 1, "name": "公司", "parentid": 0},
                            {"id": 5, "name": "研发", "parentid": 1}],
             "userlist": [{"userid": "wangwu", "name": "王五", "department": [1, 5],
                           "is_leader_in_dept": [0, 1], "main_department": 5}]}
    run_import(engine, wecom)
    assert memberships(engine)[0] == [("wangwu", "公司", False), ("wangwu", "研发", True)]
    with pytest.raises(ValidationFailed) as info:
        run_import(engine, {"departments": [{"id": "9", "name": "X", "parent_id": "404"}],
                            "users": [{"id": "a", "name": "A", "department_ids": ["77"]}]})
    assert {e.code for e in info.value.errors} == {"unknown_parent", "unknown_department"}


def test_cli_imports_csv_files_idempotently(tmp_path):
    (tmp_path / "departments.csv").write_text(
        "id,parent_id,name\n1,,总公司\n2,1,华东销售\n", encoding="utf-8")
    (tmp_path / "users.csv").write_text(
        "id,name,mobile,department_ids,is_head\nzhangsan,张三,13800000001,2,true\n"
        "lisi,李四,13800000002,1;2,false\n", encoding="utf-8")
    env = {"TANGRAM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "TANGRAM_VAR_DIR": str(tmp_path), "TANGRAM_ENVIRONMENT": "test"}
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=env).exit_code == 0
    files = [str(tmp_path / "departments.csv"), str(tmp_path / "users.csv")]
    first = runner.invoke(cli, ["org", "import", *files], env=env)
    assert first.exit_code == 0, first.output
    assert "departments_created=2" in first.output and "users_created=2" in first.output
    again = runner.invoke(cli, ["org", "import", *files], env=env)
    assert "users_unchanged=2" in again.output and "departments_unchanged=2" in again.output
    chart = parse_files([tmp_path / "users.csv"])
    assert chart.users[1]["department_ids"] == ["1", "2"]
