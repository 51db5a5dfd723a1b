"""Who may list and read an app's definitions (flows, reports, dashboards).

- An app's definitions are for its **members**: administrators, builders of
  the app, and users holding at least one of its (published) roles. A
  signed-in user with no role in the app is refused (403); an API token
  additionally needs the app among its apps.
- A report is listed for a member who may ``read`` its source form and see
  every field it reads (its rows then follow the member's scope when it
  runs; running one that reads a hidden field is refused, naming it); a
  dashboard is
  visible when at least one of its widgets' reports is, and shows only those
  widgets. Administrators and builders see every one, drafts included.

The HTTP routers call these before the engines; the engines then apply row
scopes and field rules as on every data path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tangram.engines.context import EngineContext
from tangram.errors import NotFound, PermissionDenied, TangramError
from tangram.metamodel import storage
from tangram.platform.permissions import grants
from tangram.platform.permissions.roles import is_app_builder
from tangram.platform.permissions.tokens import ALL_APPS, TokenScope


def is_designer(ctx: EngineContext, app: str) -> bool:
    """Administrators and builders of the app: they see every definition."""
    return ctx.actor.is_admin or is_app_builder(ctx.session, user_id=ctx.actor.id, app=app)


def require_member(ctx: EngineContext, app: str, *, token: TokenScope | None) -> None:
    """Raise PermissionDenied unless the caller is a member of ``app``."""
    if token is not None and ALL_APPS not in token.apps and app not in token.apps:
        raise PermissionDenied(f"this API token does not reach app {app!r}",
                               details={"app": app})
    if is_designer(ctx, app):
        return
    if not grants.held_roles(ctx.session, app=app, user_id=ctx.actor.id):
        raise PermissionDenied(f"you hold no role in app {app!r}, so you may not see its "
                               "flows, reports or dashboards", details={"app": app})


def may_read_form(ctx: EngineContext, app: str, form: str) -> bool:
    """Whether the caller may read records of ``form`` (in some scope)."""
    try:
        ctx.policy.check_form_action(ctx.actor, app, form, "read")
    except (PermissionDenied, NotFound):
        return False
    return True


def _report_form(ctx: EngineContext, app: str, key: str) -> str | None:
    """The source form of the report's published version (None: unpublished)."""
    body = storage.latest_body(ctx.session, app=app, kind="report", key=key)
    form = body.get("form") if isinstance(body, dict) else None
    return form if isinstance(form, str) else None


def _hidden_field_refusal(ctx: EngineContext, app: str, key: str) -> PermissionDenied | None:
    """The refusal naming the field, when the published report reads a field
    the caller may not see (compiled for the caller, from the compile cache)."""
    from tangram.engines.reports.compiler import compile_report
    from tangram.metamodel import reports as rm

    body = storage.latest_body(ctx.session, app=app, kind="report", key=key)
    try:
        compile_report(ctx, app=app, report=rm.Report.model_validate(body))
    except PermissionDenied as exc:
        return exc
    except TangramError:
        return None  # broken, or a parameter needs a value: its run says so
    return None


def report_visible(ctx: EngineContext, app: str, key: str) -> bool:
    """A designer sees every report; a member one on a form they may read
    that reads no field hidden from them."""
    if is_designer(ctx, app):
        return True
    form = _report_form(ctx, app, key)
    return (form is not None and may_read_form(ctx, app, form)
            and _hidden_field_refusal(ctx, app, key) is None)


def require_report(ctx: EngineContext, app: str, key: str) -> None:
    """Raise unless the (member) caller may see the report: read its form and
    every field it reads (the refusal names the field) — for its definition,
    runs, exports, KPIs and drill-downs alike."""
    if is_designer(ctx, app):
        return
    form = _report_form(ctx, app, key)
    if form is not None and may_read_form(ctx, app, form):
        refusal = _hidden_field_refusal(ctx, app, key)
        if refusal is not None:
            raise refusal
        return
    form = _report_form(ctx, app, key)
    if form is None:
        raise NotFound(f"report {key!r} is not published")
    raise PermissionDenied(f"report {key!r} is built on form {form!r}, which you may not "
                           "read", details={"app": app, "report": key, "form": form})


def visible_reports(ctx: EngineContext, app: str, items: Iterable[dict[str, Any]]
                    ) -> list[dict[str, Any]]:
    """The report list entries the caller may see (entries have ``key``)."""
    if is_designer(ctx, app):
        return list(items)
    return [i for i in items if report_visible(ctx, app, i["key"])]


def visible_widgets(ctx: EngineContext, app: str, widgets: Iterable[Any]) -> list[Any]:
    """The dashboard widgets (with a ``report`` key or attribute) the caller may see."""
    seen: dict[str, bool] = {}
    out = []
    for w in widgets:
        report = w["report"] if isinstance(w, dict) else w.report
        if report not in seen:
            seen[report] = report_visible(ctx, app, report)
        if seen[report]:
            out.append(w)
    return out


def dashboard_visible(ctx: EngineContext, app: str, key: str) -> bool:
    """Designers see every dashboard; others one meant for a role they hold
    (when it names roles) that shows at least one report they may see."""
    if is_designer(ctx, app):
        return True
    body = storage.latest_body(ctx.session, app=app, kind="dashboard", key=key)
    if not isinstance(body, dict):
        return False
    if body.get("roles"):
        held = {r.key for r in grants.held_roles(ctx.session, app=app, user_id=ctx.actor.id)}
        if not held & set(body["roles"]):
            return False
    return bool(visible_widgets(ctx, app, body.get("widgets", [])))


def require_dashboard(ctx: EngineContext, app: str, key: str) -> None:
    if not dashboard_visible(ctx, app, key):
        if storage.latest_body(ctx.session, app=app, kind="dashboard", key=key) is None:
            raise NotFound(f"dashboard {key!r} does not exist in app {app!r}")
        raise PermissionDenied(f"dashboard {key!r} is not shown to you: it is meant for "
                               "other roles, or shows only reports you may not see",
                               details={"app": app, "dashboard": key})

