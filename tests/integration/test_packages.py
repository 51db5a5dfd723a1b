"""App packages on SQLite and PostgreSQL: validation, install, customize,
upgrade under the layer, conflicts, rollback, dependencies, export round trip."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from tangram.engines.context import EngineContext
from tangram.engines.forms.publish import publish_form, save_form_draft
from tangram.engines.forms.query import ListQuery
from tangram.engines.forms.records import create_record, list_records
from tangram.errors import ConfirmationRequired
from tangram.metamodel import storage
from tangram.platform.packages import kinds as kinds_module
from tangram.platform.packages.errors import (
    DependencyInUse,
    DependencyMissing,
    PackageInvalid,
    UpgradeConflict,
)
from tangram.platform.packages.export import export_app, validate_files
from tangram.platform.packages.install import (
    customizations,
    install_package,
    uninstall_app,
    upgrade_package,
)
from tangram.platform.packages.layer import live_bodies, without_ids
from tangram.platform.packages.loader import load_package
from tangram.platform.packages.source import read_zip, write_zip
from tangram.platform.packages.store import find_installed
from tests.factories import World, field, label
from tests.package_factories import as_files, helpdesk_v1, helpdesk_v2

KINDS = ["form", "role", "report", "dashboard", "flow", "calendar"]


@pytest.fixture
def world(engine: Engine) -> World:
    # The World's own "demo" app stays; packages install their own apps.
    return World(engine)


def install(world: World, pkg: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return world.run(install_package, load_package(as_files(pkg)), **kwargs)


def upgrade(world: World, pkg: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return world.run(upgrade_package, load_package(as_files(pkg)), **kwargs)


def records(world: World, form: str, app: str = "helpdesk") -> list[dict[str, Any]]:
    return world.run(lambda ctx: list_records(ctx, app=app, form=form,
                                              query=ListQuery(limit=500))["items"])


def table_names(world: World) -> set[str]:
    with world.engine.connect() as conn:
        return set(sa.inspect(conn).get_table_names())


def customize(ctx: EngineContext) -> None:
    """A tenant's changes: a new field, a changed label, a report of their own."""
    body = without_ids(storage.latest_body(ctx.session, app="helpdesk", kind="form",
                                           key="ticket"))
    body["fields"].append(field("wechat", "text"))
    body["fields"][0]["label"] = label("问题标题")
    save_form_draft(ctx, app="helpdesk", key="ticket", body=body)
    publish_form(ctx, app="helpdesk", key="ticket")
    from tangram.engines.reports.service import publish_report, save_report_draft

    save_report_draft(ctx, app="helpdesk", key="hours_by_wechat", body={
        "key": "hours_by_wechat", "label": label("hours by wechat"), "form": "ticket",
        "dimensions": [{"type": "value", "key": "wechat", "field": "wechat"}],
        "measures": [{"agg": "sum", "key": "hours", "field": "hours"}]})
    publish_report(ctx, app="helpdesk", key="hours_by_wechat")


# --- validation -----------------------------------------------------------------------

def test_a_broken_package_reports_every_error_at_once_and_installs_nothing(world):
    pkg = helpdesk_v1()
    pkg["app.json"]["version"] = "one"                            # not semver
    pkg["forms/ticket.json"]["fields"][3]["type"] = "money"        # unknown field type
    pkg["dashboards/overview.json"]["widgets"][0]["w"] = 20        # out of range
    pkg["reports/tickets_by_priority.json"]["form"] = "tickett"   # unknown form
    pkg["data/seed/customer.json"][1]["colour"] = "red"           # unknown field
    pkg["scripts/setup.py"] = "import os"                           # not package content
    with pytest.raises(PackageInvalid) as caught:
        load_package(as_files(pkg))
    where = {(e.file, e.path) for e in caught.value.errors}
    assert ("app.json", "$.version") in where
    assert ("forms/ticket.json", "$.fields[3]") in where or any(
        f == "forms/ticket.json" and p.startswith("$.fields[3]") for f, p in where)
    assert ("dashboards/overview.json", "$.widgets[0].w") in where
    assert ("reports/tickets_by_priority.json", "$.form") in where
    assert ("data/seed/customer.json", "$[1].colour") in where
    assert any(f == "scripts/setup.py" for f, _ in where)
    assert len(caught.value.errors) >= 6
    report = validate_files(as_files(pkg))
    assert not report["valid"] and len(report["errors"]) >= 5
    with world.sessions.begin() as s:
        assert find_installed(s, "helpdesk") is None


def test_deep_validation_finds_what_only_publishing_finds(world):
    pkg = helpdesk_v1()
    pkg["forms/ticket.json"]["rules"][0]["assert"] = "record.hourz < 100"
    pkg["data/seed/ticket.json"][0]["priority"] = "extreme"
    report = validate_files(as_files(pkg))
    assert not report["valid"]
    assert any(e["file"] == "forms/ticket.json" and "hourz" in e["message"]
               for e in report["errors"])
    pkg = helpdesk_v1()
    pkg["data/seed/ticket.json"][0]["priority"] = "extreme"
    report = validate_files(as_files(pkg))
    assert [(e["file"], e["path"]) for e in report["errors"]] == [
        ("data/seed/ticket.json", "$[0].priority")]
    assert validate_files(as_files(helpdesk_v1()))["valid"]


# --- install ---------------------------------------------------------------------------

def test_install_publishes_every_definition_and_loads_seed_rows(world):
    result = install(world, helpdesk_v1())
    assert result["definitions"] == {"dashboard": ["overview"], "form": ["customer", "ticket"],
                                     "report": ["tickets_by_priority"], "role": ["agent"]}
    customers = {c["name"]: c for c in records(world, "customer")}
    assert customers["Acme"]["ticket_count"] == 1  # seed rows linked by $ref, rollup current
    assert [t["subject"] for t in records(world, "ticket")] == ["Printer"]
    with world.sessions.begin() as s:
        assert find_installed(s, "helpdesk").version == "1.0.0"
        assert storage.get_app(s, "helpdesk").version == "1.0.0"


def test_install_with_demo_rows(world):
    assert install(world, helpdesk_v1(), demo=True)["rows"] == {"customer": 2, "ticket": 6}


def test_a_failure_halfway_rolls_back_definitions_tables_and_rows(world, monkeypatch):
    before = table_names(world)
    original = kinds_module.PACKAGE_KINDS["dashboard"]

    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    # Forms are published (tables created) and the role too before dashboards.
    monkeypatch.setitem(kinds_module.PACKAGE_KINDS, "dashboard",
                        kinds_module.PackageKind("dashboard", "dashboards", 50, publish=explode))
    with pytest.raises(RuntimeError):
        install(world, helpdesk_v1())
    monkeypatch.setitem(kinds_module.PACKAGE_KINDS, "dashboard", original)
    assert table_names(world) == before
    with world.sessions.begin() as s:
        assert find_installed(s, "helpdesk") is None
        assert all(a.key != "helpdesk" for a in storage.list_apps(s))
        assert s.execute(sa.select(sa.func.count()).select_from(storage.definitions_table)
                         .where(storage.definitions_table.c.app == "helpdesk")).scalar() == 0
    install(world, helpdesk_v1())  # and it installs cleanly afterwards


def test_a_bad_seed_row_rolls_back_everything(world):
    before = table_names(world)
    pkg = helpdesk_v1()
    pkg["data/seed/ticket.json"].append({"subject": "x", "hours": "500"})  # breaks the rule
    with pytest.raises(PackageInvalid) as caught:
        install(world, pkg)
    assert [(e.file, e.path) for e in caught.value.errors] == [("data/seed/ticket.json",
                                                                "$[1].hours")]
    assert table_names(world) == before


def test_dependencies_are_checked_on_install_upgrade_and_uninstall(world):
    addon = {"app.json": {"key": "sla", "version": "1.0.0", "name": label("SLA"),
                          "dependencies": {"helpdesk": "^1.0"}},
             "forms/sla_policy.json": {"key": "sla_policy", "label": label("SLA policy"),
                                       "fields": [field("name")]}}
    with pytest.raises(DependencyMissing, match="needs app 'helpdesk'.*not installed"):
        install(world, addon)
    old = helpdesk_v1()
    old["app.json"]["version"] = "0.9.0"
    install(world, old)
    with pytest.raises(DependencyMissing, match="version 0.9.0 is installed"):
        install(world, addon)
    upgrade(world, helpdesk_v1())
    install(world, addon)
    with pytest.raises(DependencyInUse, match="'sla'"):
        world.run(uninstall_app, "helpdesk")
    major = helpdesk_v1()
    major["app.json"]["version"] = "2.0.0"
    with pytest.raises(DependencyInUse, match="would break it"):
        upgrade(world, major)
    world.run(uninstall_app, "sla")
    world.run(uninstall_app, "helpdesk")
    assert not any(t.startswith(("rec_helpdesk", "rec_sla")) for t in table_names(world))


# --- customize and upgrade --------------------------------------------------------------

def test_upgrade_keeps_customizations_and_every_record(world):
    install(world, helpdesk_v1())
    world.run(customize)
    world.run(lambda ctx: create_record(ctx, app="helpdesk", form="ticket", data={
        "subject": "VPN down", "priority": "high", "wechat": "wx_123", "hours": "2"}))
    layer = world.run(customizations, "helpdesk")
    assert {(c["kind"], c["key"], c["change"]) for c in layer} == {
        ("form", "ticket", "changed"), ("report", "hours_by_wechat", "added")}

    plan = upgrade(world, helpdesk_v2(), dry_run=True)
    assert plan["conflicts"] == [] and plan["changed"]["form"] == ["ticket"]
    with world.sessions.begin() as s:  # the dry run changed nothing
        assert find_installed(s, "helpdesk").version == "1.0.0"

    report = upgrade(world, helpdesk_v2())
    assert report["to_version"] == "1.1.0"
    ticket = world.run(lambda ctx: storage.latest_body(ctx.session, app="helpdesk",
                                                       kind="form", key="ticket"))
    by_key = {f["key"]: f for f in ticket["fields"]}
    assert by_key["subject"]["label"] == label("问题标题")            # tenant's label kept
    assert "wechat" in by_key and "channel" in by_key                 # both new fields
    assert by_key["priority"]["options"][2]["label"] == {"zh": "紧急", "en": "Urgent"}
    rows = {t["subject"]: t for t in records(world, "ticket")}
    assert set(rows) == {"Printer", "VPN down"}
    assert rows["VPN down"]["wechat"] == "wx_123" and rows["VPN down"]["priority"] == "high"
    report_body = world.run(lambda ctx: storage.latest_body(
        ctx.session, app="helpdesk", kind="report", key="tickets_by_priority"))
    assert [m["key"] for m in report_body["measures"]] == ["tickets", "hours"]
    with world.sessions.begin() as s:
        assert find_installed(s, "helpdesk").version == "1.1.0"
    layer = world.run(customizations, "helpdesk")  # the layer is still the tenant's
    assert {(c["kind"], c["key"]) for c in layer} == {("form", "ticket"),
                                                      ("report", "hours_by_wechat")}


def test_conflicts_are_reported_before_anything_is_applied(world):
    install(world, helpdesk_v1())
    world.run(customize)
    v2 = helpdesk_v2()
    v2["forms/ticket.json"]["fields"][0]["label"] = label("标题")  # both changed one label
    with pytest.raises(UpgradeConflict) as caught:
        upgrade(world, v2)
    assert any(e.path.startswith("$.fields[subject].label") for e in caught.value.errors)
    plan = upgrade(world, v2, dry_run=True)
    assert plan["conflicts"] and plan["conflicts"][0]["file"] == "forms/ticket.json"

    # The package removes a field the tenant's report uses.
    v3 = helpdesk_v1()
    v3["app.json"]["version"] = "1.2.0"
    v3["forms/ticket.json"]["fields"] = [f for f in v3["forms/ticket.json"]["fields"]
                                         if f["key"] != "hours"]
    v3["forms/ticket.json"]["rules"] = []
    del v3["data/seed/ticket.json"][0]["hours"]
    v3["reports/tickets_by_priority.json"]["measures"] = [{"agg": "count", "key": "tickets"}]
    with pytest.raises(UpgradeConflict) as caught:
        upgrade(world, v3, confirm_destructive=True)
    assert any(e.details.get("key") == "hours_by_wechat" for e in caught.value.errors)
    with world.sessions.begin() as s:
        assert find_installed(s, "helpdesk").version == "1.0.0"
        body = storage.latest_body(s, app="helpdesk", kind="form", key="ticket")
        assert "hours" in {f["key"] for f in body["fields"]}


def test_an_upgrade_that_loses_data_needs_confirmation(world):
    install(world, helpdesk_v1())
    v2 = helpdesk_v1()
    v2["app.json"]["version"] = "1.0.1"
    v2["forms/ticket.json"]["fields"][2]["options"].pop(2)  # option "high" removed
    with pytest.raises(ConfirmationRequired) as caught:
        upgrade(world, v2)
    assert caught.value.details["forms"][0]["key"] == "ticket"
    upgrade(world, v2, confirm_destructive=True)
    with world.sessions.begin() as s:
        assert find_installed(s, "helpdesk").version == "1.0.1"


# --- export ----------------------------------------------------------------------------

def _definitions(world: World, app: str = "helpdesk") -> dict[Any, Any]:
    with world.sessions.begin() as s:
        return live_bodies(s, app, KINDS)


def test_export_then_install_into_an_empty_database_reproduces_the_definitions(
        world, db_url, tmp_path):
    from tangram.db import create_engine_from_url
    from tangram.platform.schema import create_platform_tables

    install(world, helpdesk_v1())
    world.run(customize)
    with_layer = world.run(export_app, "helpdesk", layer=True, data=True)
    without_layer = world.run(export_app, "helpdesk", layer=False)
    assert "reports/hours_by_wechat.json" in with_layer
    assert "reports/hours_by_wechat.json" not in without_layer
    original = _definitions(world)
    original_records = records(world, "ticket")

    other_url = (f"sqlite:///{tmp_path / 'other.db'}" if db_url.startswith("sqlite")
                 else db_url)
    if not db_url.startswith("sqlite"):  # same database: make room first
        world.run(uninstall_app, "helpdesk")
    other = create_engine_from_url(other_url)
    try:
        create_platform_tables(other)
        second = World(other)
        second.run(install_package, load_package(read_zip(write_zip(with_layer))))
        assert _definitions(second) == original
        assert {r["subject"] for r in records(second, "ticket")} == \
            {r["subject"] for r in original_records}
        acme = next(c for c in records(second, "customer") if c["name"] == "Acme")
        assert acme["ticket_count"] == 1
        second.run(uninstall_app, "helpdesk")
        second.run(install_package, load_package(without_layer))
        plain = {k: without_ids(v) for k, v in _definitions(second).items()}
        assert plain == {k: v for k, v in load_package(as_files(helpdesk_v1())).bodies().items()}
    finally:
        other.dispose()


def test_uninstall_removes_tables_and_definitions(world):
    before = table_names(world)
    install(world, helpdesk_v1())
    assert table_names(world) > before
    world.run(uninstall_app, "helpdesk")
    assert table_names(world) == before
    install(world, helpdesk_v1())  # installable again


def test_every_kind_in_storage_has_a_package_folder():
    folders = {k.kind: k.folder for k in kinds_module.package_kinds()}
    assert set(storage.DEFINITION_KINDS) <= set(folders)
    assert len(set(folders.values())) == len(folders)



def test_validation_reports_structural_deep_and_data_problems_in_one_round(world):
    pkg = helpdesk_v1()
    pkg["forms/customer.json"]["key"] = "customers"                   # key ≠ file name
    pkg["data/seed/customer.json"][1]["$created_at"] = {"$date": "yesterday"}
    pkg["notes.txt"] = "todo"                                          # unexpected file
    pkg["app.json"]["menus"].append({"key": "assets", "label": label("资产"), "form": "asset"})
    pkg["app.json"]["default_dashboards"] = {"*": "home"}              # no such dashboard
    pkg["forms/ticket.json"]["rules"][0]["assert"] = "record.hourz < 100"  # deep: a typo
    pkg["flows/escalate.json"] = {
        "key": "escalate", "label": label("升级"), "form": "ticket",
        "nodes": [{"key": "start", "type": "start", "trigger": {"kind": "record_created"},
                   "next": "done"},
                  {"key": "done", "type": "end"}]}
    report = validate_files(as_files(pkg))
    assert not report["valid"]
    found = {(e["code"], e["file"], e.get("path")) for e in report["errors"]}
    assert ("key_mismatch", "forms/customer.json", "$.key") in found
    assert ("unexpected_file", "notes.txt", "$") in found
    assert ("unknown_form", "app.json", "$.menus[1].form") in found
    assert ("unknown_dashboard", "app.json", "$.default_dashboards.*") in found
    assert ("data_date", "data/seed/customer.json", "$[1].$created_at") in found
    typo = [e for e in report["errors"] if "hourz" in e["message"]]
    assert len(typo) == 1 and typo[0]["file"] == "forms/ticket.json"
    # The report and the flow on the broken form, and the ticket's link to the
    # broken customer form, are not blamed for those forms' own problems.
    assert not any("not published" in e["message"] for e in report["errors"]), report
    assert {e["file"] for e in report["errors"]} == {
        "forms/customer.json", "data/seed/customer.json", "notes.txt", "app.json",
        "forms/ticket.json"}, report["errors"]


def test_validation_checks_seed_rows_of_forms_that_publish_despite_other_problems(world):
    pkg = helpdesk_v1()
    pkg["app.json"]["menus"][0]["form"] = "tickets"                    # structural
    pkg["data/seed/customer.json"][1]["tier"] = "platinum"            # deep: not an option
    pkg["data/seed/customer.json"][0]["colour"] = "red"                # structural
    report = validate_files(as_files(pkg))
    found = {(e["code"], e["file"], e.get("path")) for e in report["errors"]}
    assert ("unknown_form", "app.json", "$.menus[0].form") in found
    assert ("unknown_field", "data/seed/customer.json", "$[0].colour") in found
    assert any(f == "data/seed/customer.json" and p == "$[1].tier" for _, f, p in found), found
    assert len(report["errors"]) == 3, report["errors"]
