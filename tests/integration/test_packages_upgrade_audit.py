"""The package audit's upgrade and validation findings (D4–D6, D9–D13), on
SQLite and PostgreSQL: what a dry run tells before the real run, renaming a
field in a package version, downgrades, definitions the new version drops,
the command's text in one language, strict versions, exact error paths."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from tangram.engines.context import EngineContext
from tangram.engines.forms.query import ListQuery
from tangram.engines.forms.records import create_record, list_records
from tangram.errors import ConfirmationRequired
from tangram.metamodel import storage
from tangram.platform.packages.errors import PackageInvalid, UpgradeConflict, VersionNotNewer
from tangram.platform.packages.install import customizations, install_package, upgrade_package
from tangram.platform.packages.loader import check_package, load_package
from tangram.platform.packages.source import write_folder
from tests.factories import World
from tests.package_factories import as_files, helpdesk_v1, helpdesk_v2, label


@pytest.fixture
def world(engine: Engine) -> World:
    return World(engine)


def install(world: World, pkg: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return world.run(install_package, load_package(as_files(pkg)), **kwargs)


def upgrade(world: World, pkg: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return world.run(upgrade_package, load_package(as_files(pkg)), **kwargs)


def installed_version(world: World) -> str:
    from tangram.platform.packages.store import find_installed

    with world.sessions.begin() as s:
        found = find_installed(s, "helpdesk")
        assert found is not None
        return found.version


def live(world: World, kind: str, key: str) -> dict[str, Any] | None:
    return world.run(lambda ctx: storage.latest_body(ctx.session, app="helpdesk", kind=kind,
                                                     key=key))


def customers(world: World) -> dict[str, dict[str, Any]]:
    rows = world.run(lambda ctx: list_records(ctx, app="helpdesk", form="customer",
                                              query=ListQuery(limit=100))["items"])
    return {r["name"]: r for r in rows}


def version(pkg: dict[str, Any], v: str) -> dict[str, Any]:
    pkg = copy.deepcopy(pkg)
    pkg["app.json"]["version"] = v
    return pkg


def tenant_report_on_tier(ctx: EngineContext) -> None:
    from tangram.engines.reports.service import publish_report, save_report_draft

    save_report_draft(ctx, app="helpdesk", key="by_tier", body={
        "key": "by_tier", "label": label("按等级", "By tier"), "form": "customer",
        "dimensions": [{"type": "value", "key": "tier", "field": "tier"}],
        "measures": [{"agg": "count", "key": "n"}]})
    publish_report(ctx, app="helpdesk", key="by_tier")


def without_tier(v: str) -> dict[str, Any]:
    pkg = version(helpdesk_v1(), v)
    form = pkg["forms/customer.json"]
    form["fields"] = [f for f in form["fields"] if f["key"] != "tier"]
    for row in pkg["data/seed/customer.json"]:
        row.pop("tier", None)
    return pkg


# --- D4: the dry run lists every conflict the real run refuses on ------------------------

def test_the_dry_run_lists_the_recheck_conflicts_without_confirmation(world):
    install(world, helpdesk_v1())
    world.run(tenant_report_on_tier)
    v2 = without_tier("1.1.0")  # removes a field with data: destructive too

    for confirm in (False, True):
        plan = upgrade(world, v2, dry_run=True, confirm_destructive=confirm)
        assert [(c["code"], c["file"], c["path"]) for c in plan["conflicts"]] == [
            ("unknown_field", "(your report by_tier)", "$.dimensions[0].field")]
        assert plan["evolution"][0]["key"] == "customer"  # the data plan is shown too
        assert any(s["op"] == "remove_field" for s in plan["evolution"][0]["plan"]["steps"])

    # The real run refuses on the conflict, not on the confirmation it would ask next.
    with pytest.raises(UpgradeConflict) as caught:
        upgrade(world, v2)
    assert any(e.details.get("key") == "by_tier" for e in caught.value.errors)
    with pytest.raises(UpgradeConflict):
        upgrade(world, v2, confirm_destructive=True)
    assert installed_version(world) == "1.0.0"


def test_with_merge_conflicts_the_dry_run_still_shows_the_data_plan(world):
    install(world, helpdesk_v1())
    world.run(tenant_report_on_tier)
    world.run(relabel_customer_name, label("客户名", "Customer name"))
    v2 = without_tier("1.1.0")
    v2["forms/customer.json"]["fields"][0]["label"] = label("名字", "Name of customer")

    plan = upgrade(world, v2, dry_run=True)
    codes = {c["code"] for c in plan["conflicts"]}
    assert codes == {"merge_conflict", "unknown_field"}
    assert [e["key"] for e in plan["evolution"]] == ["customer"]
    assert plan["needs_confirmation"] is True
    with pytest.raises(UpgradeConflict) as caught:  # both kinds of conflict at once
        upgrade(world, v2)
    assert {e.code for e in caught.value.errors} == codes


def relabel_customer_name(ctx: EngineContext, new_label: dict[str, str]) -> None:
    from tangram.engines.forms.publish import publish_form, save_form_draft

    body = storage.latest_body(ctx.session, app="helpdesk", kind="form", key="customer")
    assert body is not None
    body["fields"][0]["label"] = new_label
    save_form_draft(ctx, app="helpdesk", key="customer", body=body)
    publish_form(ctx, app="helpdesk", key="customer")


def test_confirmation_is_asked_when_nothing_conflicts(world):
    install(world, helpdesk_v1())
    with pytest.raises(ConfirmationRequired):
        upgrade(world, without_tier("1.1.0"))
    upgrade(world, without_tier("1.1.0"), confirm_destructive=True)
    assert installed_version(world) == "1.1.0"


# --- D5: a package version renames a field and keeps its data ---------------------------

def with_website() -> dict[str, Any]:
    pkg = helpdesk_v1()
    pkg["forms/customer.json"]["fields"].insert(1, {
        "key": "website", "type": "url", "label": label("网站", "Website")})
    pkg["data/seed/customer.json"][0]["website"] = "https://acme.example"
    return pkg


def renamed(v: str = "1.1.0") -> dict[str, Any]:
    pkg = version(with_website(), v)
    field = pkg["forms/customer.json"]["fields"][1]
    field.update(key="homepage", label=label("主页", "Homepage"), renamed_from="website")
    pkg["data/seed/customer.json"][0]["homepage"] = pkg["data/seed/customer.json"][0].pop(
        "website")
    return pkg


def test_a_package_version_renames_a_field_and_keeps_its_values(world):
    install(world, with_website())
    world.run(lambda ctx: create_record(ctx, app="helpdesk", form="customer", data={
        "name": "Initech", "website": "https://initech.example"}))
    before = {f["key"]: f["id"] for f in live(world, "form", "customer")["fields"]}

    plan = upgrade(world, renamed(), dry_run=True)
    assert plan["conflicts"] == [] and plan["renamed"] == {"customer": [
        "website → homepage"]}
    steps = plan["evolution"][0]["plan"]["steps"]
    assert [(s["op"], s.get("destructive")) for s in steps] == [("rename_field", False)]

    report = upgrade(world, renamed())  # no confirmation: nothing is lost
    assert report["renamed"] == {"customer": ["website → homepage"]}
    rows = customers(world)
    assert rows["Initech"]["homepage"] == "https://initech.example"
    assert rows["Acme"]["homepage"] == "https://acme.example"
    body = live(world, "form", "customer")
    fields = {f["key"]: f for f in body["fields"]}
    assert "website" not in fields and fields["homepage"]["id"] == before["website"]
    assert "renamed_from" not in fields["homepage"]

    # The hint left in the next version is harmless: the field is renamed already.
    upgrade(world, renamed("1.2.0"))
    assert customers(world)["Initech"]["homepage"] == "https://initech.example"


def test_a_rename_keeps_the_tenants_changes_of_the_field(world):
    install(world, with_website())
    world.run(lambda ctx: create_record(ctx, app="helpdesk", form="customer", data={
        "name": "Initech", "website": "https://initech.example"}))

    def relabel(ctx: EngineContext) -> None:
        from tangram.engines.forms.publish import publish_form, save_form_draft

        body = storage.latest_body(ctx.session, app="helpdesk", kind="form", key="customer")
        assert body is not None
        body["fields"][1]["help"] = label("官网地址", "The official site")
        save_form_draft(ctx, app="helpdesk", key="customer", body=body)
        publish_form(ctx, app="helpdesk", key="customer")

    world.run(relabel)
    upgrade(world, renamed())
    homepage = {f["key"]: f for f in live(world, "form", "customer")["fields"]}["homepage"]
    assert homepage["help"] == label("官网地址", "The official site")
    assert homepage["label"] == label("主页", "Homepage")
    assert customers(world)["Initech"]["homepage"] == "https://initech.example"


def test_renamed_from_must_name_a_field_of_the_installed_version(world):
    install(world, helpdesk_v1())  # no website field
    with pytest.raises(PackageInvalid) as caught:
        upgrade(world, renamed(), dry_run=True)
    [problem] = caught.value.errors
    assert (problem.code, problem.file, problem.path) == (
        "unknown_rename", "forms/customer.json", "$.fields[1].renamed_from")
    assert "'website'" in problem.message and "1.0.0" in problem.message


def test_renamed_from_is_checked_in_the_package_itself():
    pkg = renamed()
    pkg["forms/customer.json"]["fields"].append(
        {"key": "website", "type": "text", "label": label("网站", "Website")})
    errors = check_package(as_files(pkg)).errors
    assert [(e.code, e.path) for e in errors] == [("invalid_rename",
                                                   "$.fields[1].renamed_from")]
    pkg = renamed()
    pkg["forms/customer.json"]["fields"][1]["renamed_from"] = "Not A Key"
    errors = check_package(as_files(pkg)).errors
    assert [(e.file, e.path) for e in errors] == [("forms/customer.json",
                                                   "$.fields[1].renamed_from")]


def test_a_fresh_install_ignores_renamed_from(world):
    install(world, renamed())
    fields = {f["key"]: f for f in live(world, "form", "customer")["fields"]}
    assert "homepage" in fields and "renamed_from" not in fields["homepage"]


# --- D6: downgrades and the same version ------------------------------------------------

def test_a_downgrade_is_refused_unless_allowed(world):
    install(world, helpdesk_v2())  # 1.1.0
    for dry_run in (True, False):
        with pytest.raises(VersionNotNewer, match=r"1\.1\.0.*1\.0\.0.*--allow-downgrade"):
            upgrade(world, helpdesk_v1(), dry_run=dry_run)
    plan = upgrade(world, helpdesk_v1(), dry_run=True, allow_downgrade=True)
    assert plan["downgrade"] is True and plan["to_version"] == "1.0.0"
    upgrade(world, helpdesk_v1(), allow_downgrade=True, confirm_destructive=True)
    assert installed_version(world) == "1.0.0"


def test_the_same_version_is_reported_as_already_installed(world):
    install(world, helpdesk_v1())
    for dry_run in (True, False):
        report = upgrade(world, helpdesk_v1(), dry_run=dry_run)
        assert report["unchanged"] is True and report["from_version"] == "1.0.0"
    changed = helpdesk_v2()
    changed["app.json"]["version"] = "1.0.0"  # other content under the same number
    with pytest.raises(VersionNotNewer, match="already installed.*differs"):
        upgrade(world, changed, dry_run=True)
    upgrade(world, changed, allow_downgrade=True)
    assert "channel" in {f["key"] for f in live(world, "form", "ticket")["fields"]}


# --- D9: a dropped definition the tenant changed is kept as theirs ----------------------

def test_a_dropped_definition_the_tenant_changed_is_kept_as_theirs(world):
    install(world, helpdesk_v1())

    def relabel_report(ctx: EngineContext) -> None:
        from tangram.engines.reports.service import publish_report, save_report_draft

        body = storage.latest_body(ctx.session, app="helpdesk", kind="report",
                                   key="tickets_by_priority")
        assert body is not None
        save_report_draft(ctx, app="helpdesk", key="tickets_by_priority",
                          body={**body, "label": label("我的优先级", "My priorities")})
        publish_report(ctx, app="helpdesk", key="tickets_by_priority")

    world.run(relabel_report)
    v2 = version(helpdesk_v1(), "1.1.0")
    del v2["reports/tickets_by_priority.json"]
    del v2["dashboards/overview.json"]
    plan = upgrade(world, v2, dry_run=True)
    assert plan["conflicts"] == [] and plan["kept_changed"] == {
        "report": ["tickets_by_priority"]}
    upgrade(world, v2)
    assert live(world, "report", "tickets_by_priority")["label"] == label(
        "我的优先级", "My priorities")
    layer = world.run(customizations, "helpdesk")
    assert ("report", "tickets_by_priority", "added") in {
        (c["kind"], c["key"], c["change"]) for c in layer}


def test_a_dropped_definition_the_tenant_did_not_change_is_removed(world):
    install(world, helpdesk_v1())
    v2 = version(helpdesk_v1(), "1.1.0")
    del v2["reports/tickets_by_priority.json"]
    del v2["dashboards/overview.json"]
    plan = upgrade(world, v2)
    assert plan["removed"] == {"dashboard": ["overview"], "report": ["tickets_by_priority"]}
    assert live(world, "report", "tickets_by_priority") is None


# --- D12, D13: strict versions, exact paths ---------------------------------------------

@pytest.mark.parametrize("bad", ["01.0.0", "1.02.0", "1.0.00", "1.0.0-01"])
def test_versions_with_leading_zeros_are_refused(bad):
    pkg = helpdesk_v1()
    pkg["app.json"]["version"] = bad
    [problem] = check_package(as_files(pkg)).errors
    assert (problem.file, problem.path) == ("app.json", "$.version")
    assert "leading zero" in problem.message and repr(bad) in problem.message


@pytest.mark.parametrize("good", ["1.0.0-rc.1+build.5", "1.0.0-alpha+001", "1.0.0+20261127"])
def test_versions_with_a_pre_release_and_build_install(world, good):
    # SemVer allows both parts; the app's own model refused the pair (a
    # traceback from validate and install instead of a problem list).
    pkg = helpdesk_v1()
    pkg["app.json"]["version"] = good
    assert check_package(as_files(pkg)).errors == []
    install(world, pkg)
    assert installed_version(world) == good


def test_ranges_with_leading_zeros_are_refused():
    pkg = helpdesk_v1()
    pkg["app.json"]["platform"] = ">=0.01.0"
    [problem] = check_package(as_files(pkg)).errors
    assert problem.path == "$.platform" and "leading zero" in problem.message


@pytest.mark.parametrize(("change", "path"), [
    ({"title_field": "nosuch"}, "$.title_field"),
    ({"search_fields": ["subject", "nosuch"]}, "$.search_fields[1]"),
    ({"default_sort": ["-nosuch"]}, "$.default_sort[0]"),
    ({"layout": {"sections": [{"fields": ["subject", "nosuch"]}]}},
     "$.layout.sections[0].fields[1]"),
    ({"views": [{"key": "mine", "label": label("我的", "Mine"), "columns": ["nosuch"]}]},
     "$.views[0].columns[0]"),
    ({"lock": {"when": "true", "editable": ["nosuch"]}}, "$.lock.editable[0]"),
])
def test_form_level_problems_name_their_exact_path(change, path):
    pkg = helpdesk_v1()
    pkg["forms/ticket.json"].update(change)
    [problem] = check_package(as_files(pkg)).errors
    assert (problem.file, problem.path) == ("forms/ticket.json", path)
    assert "nosuch" in problem.message


# --- D10, D11: the command's text ------------------------------------------------------

@pytest.fixture
def cli(tmp_path):
    from tangram.platform.cli import app

    env = {"TANGRAM_DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
           "TANGRAM_VAR_DIR": str(tmp_path), "TANGRAM_ENVIRONMENT": "test"}
    runner = CliRunner()

    def invoke(*args: str, **extra_env: str) -> Any:
        return runner.invoke(app, list(args), env={**env, **extra_env})

    invoke.url = env["TANGRAM_DATABASE_URL"]  # type: ignore[attr-defined]
    assert invoke("db", "upgrade").exit_code == 0
    return invoke


def folder(tmp_path: Path, name: str, pkg: dict[str, Any]) -> str:
    write_folder(as_files(pkg), tmp_path / name)
    return str(tmp_path / name)


def test_the_dry_run_text_lists_every_definition(cli, tmp_path):
    from tangram.db import create_engine_from_url

    assert cli("user", "create", "boss", "--password", "boss-pass-2026", "--admin",
               ).exit_code == 0
    v1 = helpdesk_v1()
    v1["reports/by_customer.json"] = {
        "key": "by_customer", "label": label("按客户", "By customer"), "form": "ticket",
        "dimensions": [{"type": "value", "key": "customer", "field": "customer"}],
        "measures": [{"agg": "count", "key": "n"}]}
    v1["reports/open_hours.json"] = {
        "key": "open_hours", "label": label("工时", "Hours"), "form": "ticket",
        "measures": [{"agg": "sum", "key": "h", "field": "hours"}]}
    assert cli("app", "install", folder(tmp_path, "v1", v1)).exit_code == 0
    engine = create_engine_from_url(cli.url)
    try:
        def relabel(ctx: EngineContext) -> None:  # the tenant's change of open_hours
            from tangram.engines.reports.service import publish_report, save_report_draft

            body = storage.latest_body(ctx.session, app="helpdesk", kind="report",
                                       key="open_hours")
            assert body is not None
            save_report_draft(ctx, app="helpdesk", key="open_hours",
                              body={**body, "label": label("我的工时", "My hours")})
            publish_report(ctx, app="helpdesk", key="open_hours")

        World(engine).run(relabel)
    finally:
        engine.dispose()
    v2 = version(helpdesk_v2(), "1.1.0")
    v2["reports/new_one.json"] = {**v1["reports/by_customer.json"], "key": "new_one"}
    dry = cli("app", "upgrade", folder(tmp_path, "v2", v2), "--dry-run")
    assert dry.exit_code == 0, dry.output
    text = dry.output
    assert "added: report new_one" in text
    assert "changed: form ticket, report tickets_by_priority" in text
    assert "removed: report by_customer" in text
    assert "kept (you changed them; they are yours now): report open_hours" in text


def test_the_command_speaks_one_language(cli, tmp_path):
    assert cli("user", "create", "boss", "--password", "boss-pass-2026", "--admin",
               "--language", "en").exit_code == 0
    assert cli("app", "install", folder(tmp_path, "v1", with_website())).exit_code == 0
    path = folder(tmp_path, "v2", without_website())
    english = cli("app", "upgrade", path, "--dry-run")  # the admin's language
    assert "Remove field website" in english.output, english.output
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in english.output)
    chinese = cli("app", "upgrade", path, "--dry-run", "--lang", "zh")
    assert "删除字段 website" in chinese.output, chinese.output
    by_env = cli("app", "upgrade", path, "--dry-run", TANGRAM_LANGUAGE="zh")
    assert "删除字段 website" in by_env.output

    bad = helpdesk_v1()
    bad["data/seed/customer.json"].append({"name": "Acme"})          # unique
    bad["data/seed/ticket.json"].append({"priority": "low"})          # required subject
    bad["data/seed/customer.json"][1]["nam"] = "x"                    # unknown field
    result = cli("package", "validate", folder(tmp_path, "bad", bad), "--lang", "en")
    assert result.exit_code == 1
    assert "has no field 'nam'" in result.output and "required" in result.output.lower()
    assert not any("\u4e00" <= ch <= "\u9fff" for ch in result.output), result.output
    refused = cli("app", "upgrade", path, "--lang", "fr")
    assert refused.exit_code != 0 and "zh or en" in refused.output


def without_website() -> dict[str, Any]:
    pkg = version(with_website(), "1.1.0")
    pkg["forms/customer.json"]["fields"].pop(1)
    pkg["data/seed/customer.json"][0].pop("website")
    return pkg
