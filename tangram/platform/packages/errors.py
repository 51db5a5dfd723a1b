"""Errors of the package service (stable codes, documented in docs/packages.md)."""

from __future__ import annotations

from tangram.errors import Conflict, DefinitionInvalid


class PackageInvalid(DefinitionInvalid):
    """A package file (or the package as a whole) is not valid; ``errors`` lists
    every problem with its file and JSON path. Nothing was installed."""

    code = "package_invalid"


class DependencyMissing(Conflict):
    """A dependency is not installed, or at a version outside the range."""

    code = "dependency_missing"


class DependencyInUse(Conflict):
    """Another installed app depends on the app being uninstalled."""

    code = "dependency_in_use"


class UpgradeConflict(Conflict):
    """The new package version clashes with the tenant's customizations;
    ``errors`` lists each conflict. Nothing was changed."""

    code = "upgrade_conflict"


class VersionNotNewer(Conflict):
    """The package's version is older than the installed one (a downgrade), or
    the same number with other content; ``allow_downgrade`` applies it anyway."""

    code = "version_not_newer"
