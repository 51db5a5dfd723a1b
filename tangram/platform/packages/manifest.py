"""``app.json``: what a package is, what it needs, and how its app is laid out.

    {"format": 1, "key": "crm", "version": "1.2.0",
     "name": {"zh": "客户关系管理", "en": "CRM"},
     "platform": ">=0.1.0 <1.0.0",
     "dependencies": {"contacts": "^2.0"},
     "menus": [{"key": "sales", "label": {"zh": "销售"}, "children": [
         {"key": "leads", "label": {"zh": "线索"}, "form": "lead"}]}],
     "default_dashboards": {"sales_director": "director_cockpit", "*": "rep_view"}}

Roles may be listed inline (``"roles": [...]``) or as files under ``roles/``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, model_validator

from tangram.metamodel.common import Definition, Key, Label
from tangram.platform.packages.semver import (
    RANGE_HELP,
    VERSION_PATTERN,
    check_range,
    check_version,
)

VersionRange = Annotated[str, AfterValidator(check_range), Field(
    max_length=200, description=f"A version range: {RANGE_HELP}.")]


def platform_version() -> str:
    try:
        return version("tangram")
    except PackageNotFoundError:
        return "0.0.0"


class MenuItem(Definition):
    """One entry of the app's navigation: a group (``children``) or a link to
    one form's list, report, dashboard or the flow inbox."""

    key: Key
    label: Label
    icon: str | None = Field(None, max_length=60)
    form: Key | None = None
    report: Key | None = None
    dashboard: Key | None = None
    page: Literal["inbox", "public_pool"] | None = None
    filter: dict[str, Any] | None = Field(None, description="With form: a saved list filter "
                                          "(records filter language).")
    roles: list[Key] = Field(default_factory=list, description="Shown only to these roles; "
                             "empty = everyone with access to the target.")
    children: list[MenuItem] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_target(self) -> MenuItem:
        targets = [t for t in (self.form, self.report, self.dashboard, self.page) if t]
        if self.children and targets:
            raise ValueError(f"menu {self.key!r} is a group (children) and a link at once")
        if not self.children and len(targets) != 1:
            raise ValueError(f"menu {self.key!r} needs exactly one of form, report, dashboard, "
                             "page — or children")
        return self

    def walk(self, path: str) -> list[tuple[MenuItem, str]]:
        out = [(self, path)]
        for i, child in enumerate(self.children):
            out.extend(child.walk(f"{path}.children[{i}]"))
        return out


class AppManifest(Definition):
    """The ``app.json`` of a package."""

    format: Literal[1] = Field(1, description="Package format version.")
    key: Key
    # Checked by check_version (a message that says why, e.g. a leading zero);
    # the pattern is for the published JSON Schema.
    version: Annotated[str, AfterValidator(check_version)] = Field(
        json_schema_extra={"pattern": VERSION_PATTERN},
        description="Semantic version (semver.org), e.g. 1.4.0 or 2.0.0-beta.1.")
    name: Label
    description: Label | None = None
    icon: str | None = Field(None, max_length=60)
    publisher: str | None = Field(None, max_length=200)
    license: str | None = Field(None, max_length=100)
    platform: VersionRange = Field("*", description="Platform versions this package "
                                   "runs on.")
    dependencies: dict[Key, VersionRange] = Field(default_factory=dict, description=(
        "Apps that must be installed first, with the versions accepted."))
    roles: list[dict[str, Any]] = Field(default_factory=list, description=(
        "Role definitions (the role schema), as an alternative to files in roles/."))
    menus: list[MenuItem] = Field(default_factory=list)
    default_dashboards: dict[str, Key] = Field(default_factory=dict, description=(
        "Role key (or \"*\" for everyone else) → the dashboard shown first."))

    @model_validator(mode="after")
    def _not_self_dependent(self) -> AppManifest:
        if self.key in self.dependencies:
            raise ValueError(f"app {self.key!r} cannot depend on itself")
        keys = [item.key for m in self.menus for item, _ in m.walk("")]
        if len(keys) != len(set(keys)):
            raise ValueError("two menu entries share one key")
        return self

    def menu_items(self) -> list[tuple[MenuItem, str]]:
        out = []
        for i, m in enumerate(self.menus):
            out.extend(m.walk(f"$.menus[{i}]"))
        return out


def _register() -> None:
    from tangram.metamodel import storage

    # Published at GET /api/meta/schemas/package for partners' editors.
    storage.SCHEMAS["package"] = AppManifest


_register()
