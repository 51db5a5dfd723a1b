"""What a form change breaks elsewhere in its app.

Renaming or removing a field is a schema change the form engine carries out
safely for the form's own data — but flows, reports, print templates, roles
and other forms of the app may name that field. Each definition kind has a
check against the rest of the app (``PackageKind.check``, the one a package
upgrade runs); here the definitions that refer to the form are checked before
and after the form is published, and what the change newly breaks is
reported, each problem naming the definition and where in it.

    broken = DependentCheck(ctx, app="crm", form="contract")   # before
    publish_form(...)
    errors = broken.new_errors()                                # after
"""

from __future__ import annotations

from typing import Any

from tangram.engines.context import EngineContext
from tangram.errors import ErrorItem
from tangram.metamodel import storage
from tangram.platform.packages.kinds import PackageKind, package_kinds
from tangram.platform.packages.layer import live_bodies


class DependentCheck:
    """The app's definitions that refer to ``form``, checked now; after the
    form changed, :meth:`new_errors` lists the problems that were not there
    before."""

    def __init__(self, ctx: EngineContext, *, app: str, form: str) -> None:
        self.ctx, self.app, self.form = ctx, app, form
        self.kinds = {k.kind: k for k in package_kinds() if k.check is not None}
        self.before = self._errors()

    def _dependents(self) -> list[tuple[PackageKind, str, Any]]:
        out = []
        for (kind, key), body in sorted(live_bodies(self.ctx.session, self.app,
                                                    list(self.kinds)).items()):
            if kind == "form" and key == self.form:
                continue
            spec = self.kinds[kind]
            try:
                model = storage.DEFINITION_KINDS[kind].model_validate(body)
            except ValueError:
                continue  # a definition that does not parse is not this change's doing
            if any(kind_ == "form" and target == self.form
                   for kind_, target, _ in spec.references(model)):
                out.append((spec, key, model))
        return out

    def _errors(self) -> dict[tuple[str, str, str, str], ErrorItem]:
        found: dict[tuple[str, str, str, str], ErrorItem] = {}
        for spec, key, model in self._dependents():
            assert spec.check is not None
            for e in spec.check(self.ctx, self.app, model):
                found[(spec.kind, key, e.path or "", e.code)] = ErrorItem(
                    code=e.code, path=e.path,
                    message=f"{spec.kind} {key!r}: {e.message}",
                    details={**e.details, "kind": spec.kind, "key": key})
        return found

    def new_errors(self) -> list[ErrorItem]:
        after = self._errors()
        return [e for k, e in after.items() if k not in self.before]
